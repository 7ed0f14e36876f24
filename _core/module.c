/* aioloop._core: module state and multi-phase initialisation. */
#include "core.h"

#include <string.h>

PyObject *aio_oserror(int err)
{
    if (err == ENOMEM)
        return PyObject_CallNoArgs(PyExc_MemoryError);
    /* OSError.__new__ picks the subclass from the errno. */
    return PyObject_CallFunction(PyExc_OSError, "is", err, strerror(err));
}

int aio_set_errno_error(int err)
{
    PyObject *exc = aio_oserror(err);
    if (exc != NULL)
        aio_err_restore(exc);
    return -1;
}

static struct PyModuleDef aio_module_def;

/* faultmod.c */
extern PyMethodDef aio_fault_methods[];
#include "tls.h"
int aio_fault_add_sites(PyObject *m);

aio_state *aio_get_state_by_type(PyTypeObject *tp)
{
    PyObject *mod = PyType_GetModuleByDef(tp, &aio_module_def);
    return mod ? (aio_state *)PyModule_GetState(mod) : NULL;
}

static int intern(PyObject **slot, const char *s)
{
    *slot = PyUnicode_InternFromString(s);
    return *slot ? 0 : -1;
}

static int add_type(PyObject *m, PyTypeObject **slot, PyType_Spec *spec, PyObject *base)
{
    *slot = (PyTypeObject *)PyType_FromModuleAndSpec(m, spec, base);
    if (*slot == NULL)
        return -1;
    return PyModule_AddType(m, *slot);
}

static int aio_exec(PyObject *m)
{
    aio_state *st = PyModule_GetState(m);
    if (add_type(m, &st->HandleType, &aio_handle_spec, NULL) < 0 ||
        add_type(m, &st->TimerHandleType, &aio_timer_handle_spec,
                 (PyObject *)st->HandleType) < 0 ||
        add_type(m, &st->LoopType, &aio_loop_spec, NULL) < 0)
        return -1;

    PyObject *asyncio = PyImport_ImportModule("asyncio");
    if (asyncio == NULL)
        return -1;
    st->FutureType = PyObject_GetAttrString(asyncio, "Future");
    st->TaskType = PyObject_GetAttrString(asyncio, "Task");
    PyObject *base_loop = PyObject_GetAttrString(asyncio, "BaseEventLoop");
    st->base_create_task = base_loop ? PyObject_GetAttrString(base_loop, "create_task") : NULL;
    Py_XDECREF(base_loop);
    if (st->TaskType == NULL || st->base_create_task == NULL) {
        Py_DECREF(asyncio);
        return -1;
    }
    st->BufferedProtocol = PyObject_GetAttrString(asyncio, "BufferedProtocol");
    PyObject *transports = PyImport_ImportModule("asyncio.transports");
    PyObject *transport_base = transports ? PyObject_GetAttrString(transports, "_FlowControlMixin")
                                          : NULL;
    Py_XDECREF(transports);
    Py_DECREF(asyncio);
    if (st->FutureType == NULL || st->BufferedProtocol == NULL || transport_base == NULL) {
        Py_XDECREF(transport_base);
        return -1;
    }
    /* StreamTransport subclasses asyncio's _FlowControlMixin, whose instances
     * are a PyObject header plus five slots (`_extra` first): our struct
     * starts the same way.  Refuse to load if asyncio changes that layout. */
    if (((PyTypeObject *)transport_base)->tp_basicsize != sizeof(PyObject) + 5 * sizeof(PyObject *) ||
        ((PyTypeObject *)transport_base)->tp_dictoffset != 0) {
        Py_DECREF(transport_base);
        PyErr_SetString(PyExc_ImportError,
                        "asyncio.Transport has an unexpected layout on this Python");
        return -1;
    }
    int rc = add_type(m, &st->TransportType, &aio_transport_spec, transport_base);
    Py_DECREF(transport_base);
    if (rc < 0 || add_type(m, &st->ListenerType, &aio_listener_spec, NULL) < 0)
        return -1;
    PyObject *socket = PyImport_ImportModule("socket");
    if (socket == NULL)
        return -1;
    st->gaierror = PyObject_GetAttrString(socket, "gaierror");
    Py_DECREF(socket);
    if (st->FutureType == NULL || st->gaierror == NULL)
        return -1;

    if (intern(&st->str_call_exception_handler, "call_exception_handler") < 0 ||
        intern(&st->str_message, "message") < 0 ||
        intern(&st->str_exception, "exception") < 0 ||
        intern(&st->str_handle, "handle") < 0 ||
        intern(&st->str_source_traceback, "source_traceback") < 0 ||
        intern(&st->str_loop, "loop") < 0 ||
        intern(&st->str_task_factory, "_task_factory") < 0 ||
        intern(&st->str_name, "name") < 0 ||
        intern(&st->str_context, "context") < 0 ||
        intern(&st->str_set_result, "set_result") < 0 ||
        intern(&st->str_set_exception, "set_exception") < 0 ||
        intern(&st->str_done, "done") < 0 ||
        intern(&st->str_timer_handle_cancelled, "_timer_handle_cancelled") < 0 ||
        intern(&st->str_current_handle, "_current_handle") < 0 ||
        intern(&st->str_data_received, "data_received") < 0 ||
        intern(&st->str_get_buffer, "get_buffer") < 0 ||
        intern(&st->str_buffer_updated, "buffer_updated") < 0 ||
        intern(&st->str_connection_lost, "connection_lost") < 0 ||
        intern(&st->str_sockname, "sockname") < 0 ||
        intern(&st->str_time, "time") < 0)
        return -1;
    st->core_time = PyObject_GetAttr((PyObject *)st->LoopType, st->str_time);
    if (st->core_time == NULL)
        return -1;
    st->kw_loop = PyTuple_Pack(1, st->str_loop);
    if (st->kw_loop == NULL)
        return -1;
    if (PyModule_AddIntConstant(m, "URING_COMPILED", aio_uring_compiled()) < 0)
        return -1;
    if (PyModule_AddIntConstant(m, "DEFAULT_THREADS", aio_default_threads()) < 0)
        return -1;
    if (aio_fault_add_sites(m) < 0)
        return -1;
    if (aio_tls_add_types(m, st) < 0 || PyModule_AddFunctions(m, aio_tls_methods) < 0)
        return -1;
    return 0;
}

static int aio_traverse(PyObject *m, visitproc visit, void *arg)
{
    aio_state *st = PyModule_GetState(m);
    Py_VISIT(st->HandleType);
    Py_VISIT(st->TimerHandleType);
    Py_VISIT(st->LoopType);
    Py_VISIT(st->TransportType);
    Py_VISIT(st->ListenerType);
    Py_VISIT(st->BufferedProtocol);
    Py_VISIT(st->FutureType);
    Py_VISIT(st->TaskType);
    Py_VISIT(st->base_create_task);
    Py_VISIT(st->kw_loop);
    Py_VISIT(st->gaierror);
    Py_VISIT(st->debug_helpers);
    Py_VISIT(st->core_time);
    return aio_tls_traverse(st, visit, arg);
}

static int aio_clear(PyObject *m)
{
    aio_state *st = PyModule_GetState(m);
    Py_CLEAR(st->HandleType);
    Py_CLEAR(st->TimerHandleType);
    Py_CLEAR(st->LoopType);
    Py_CLEAR(st->TransportType);
    Py_CLEAR(st->ListenerType);
    Py_CLEAR(st->BufferedProtocol);
    Py_CLEAR(st->FutureType);
    Py_CLEAR(st->TaskType);
    Py_CLEAR(st->base_create_task);
    Py_CLEAR(st->kw_loop);
    Py_CLEAR(st->gaierror);
    Py_CLEAR(st->debug_helpers);
    Py_CLEAR(st->str_call_exception_handler);
    Py_CLEAR(st->str_message);
    Py_CLEAR(st->str_exception);
    Py_CLEAR(st->str_handle);
    Py_CLEAR(st->str_source_traceback);
    Py_CLEAR(st->str_loop);
    Py_CLEAR(st->str_task_factory);
    Py_CLEAR(st->str_name);
    Py_CLEAR(st->str_context);
    Py_CLEAR(st->str_set_result);
    Py_CLEAR(st->str_set_exception);
    Py_CLEAR(st->str_done);
    Py_CLEAR(st->str_timer_handle_cancelled);
    Py_CLEAR(st->str_current_handle);
    Py_CLEAR(st->str_data_received);
    Py_CLEAR(st->str_get_buffer);
    Py_CLEAR(st->str_buffer_updated);
    Py_CLEAR(st->str_connection_lost);
    Py_CLEAR(st->str_sockname);
    Py_CLEAR(st->str_time);
    Py_CLEAR(st->core_time);
    aio_tls_clear(st);
    return 0;
}

static void aio_free(void *m)
{
    aio_clear((PyObject *)m);
}

static PyModuleDef_Slot aio_slots[] = {
    {Py_mod_exec, aio_exec},
#if PY_VERSION_HEX >= 0x030C0000
    {Py_mod_multiple_interpreters, Py_MOD_PER_INTERPRETER_GIL_SUPPORTED},
#endif
    {0, NULL},
};

static struct PyModuleDef aio_module_def = {
    PyModuleDef_HEAD_INIT,
    .m_name = "aioloop._core",
    .m_doc = "C core of aioloop: the event loop, handles and the completion engine.",
    .m_size = sizeof(aio_state),
    .m_methods = aio_fault_methods,
    .m_slots = aio_slots,
    .m_traverse = aio_traverse,
    .m_clear = aio_clear,
    .m_free = aio_free,
};

PyMODINIT_FUNC PyInit__core(void)
{
    return PyModuleDef_Init(&aio_module_def);
}
