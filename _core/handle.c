/* Handle and TimerHandle: asyncio's callback wrappers as C types.
 *
 * A Handle is what call_soon returns and what the ready queue holds; a
 * TimerHandle adds a deadline and lives in its loop's timer heap until it is
 * due.  Their Python-visible API is asyncio.Handle's and
 * asyncio.TimerHandle's: cancel, cancelled, get_context, when, _run, and the
 * underscore attributes that asyncio's own helpers read. */
#include "core.h"
#include "engine/aio_fault.h"

static PyObject *tuple_from_array(PyObject *const *items, Py_ssize_t n)
{
    PyObject *t = PyTuple_New(n);
    if (t == NULL)
        return NULL;
    for (Py_ssize_t i = 0; i < n; i++)
        PyTuple_SET_ITEM(t, i, Py_NewRef(items[i]));
    return t;
}

HandleObject *aio_handle_new(aio_state *st, int timer, PyObject *callback,
                             PyObject *const *args, Py_ssize_t nargs,
                             PyObject *loop, PyObject *context)
{
    PyTypeObject *tp = timer ? st->TimerHandleType : st->HandleType;
    HandleObject *h = PyObject_GC_New(HandleObject, tp);
    if (h == NULL)
        return NULL;
    h->callback = Py_NewRef(callback);
    h->args = tuple_from_array(args, nargs);
    h->loop = Py_NewRef(loop);
    h->repr = NULL;
    h->source_traceback = NULL;
    h->weakreflist = NULL;
    h->cancelled = 0;
    h->ctx_shared = 0;
    if (context == NULL || context == Py_None)
        h->context = PyContext_CopyCurrent();
    else
        h->context = Py_NewRef(context);
    if (timer) {
        TimerHandleObject *t = (TimerHandleObject *)h;
        t->when = 0.0;
        t->when_obj = NULL;
        t->seq = 0;
        t->scheduled = 0;
    }
    PyObject_GC_Track(h);
    if (h->args == NULL || h->context == NULL) {
        Py_DECREF(h);
        return NULL;
    }
    return h;
}

void aio_timer_set_when(TimerHandleObject *t, double when, PyObject *given)
{
    t->when = when;
    if (given != NULL && !PyFloat_CheckExact(given))
        Py_XSETREF(t->when_obj, Py_NewRef(given));
}

PyObject *aio_debug_helpers(aio_state *st)
{
    if (st->debug_helpers == NULL)
        st->debug_helpers = PyImport_ImportModule("aioloop._debug");
    return st->debug_helpers;
}

int aio_handle_capture_traceback(aio_state *st, HandleObject *h)
{
    PyObject *helpers = aio_debug_helpers(st);
    if (helpers == NULL)
        return -1;
    PyObject *tb = PyObject_CallMethod(helpers, "extract_stack", NULL);
    if (tb == NULL)
        return -1;
    Py_XSETREF(h->source_traceback, tb);
    return 0;
}

/* Reports an exception raised by a callback, as asyncio's Handle._run does. */
static int handle_report(aio_state *st, HandleObject *h, PyObject *exc)
{
    PyObject *helpers = aio_debug_helpers(st);
    if (helpers == NULL)
        return -1;
    PyObject *msg = PyObject_CallMethod(helpers, "callback_message", "OO",
                                        (PyObject *)h, h->loop);
    if (msg == NULL)
        return -1;
    PyObject *ctx = PyDict_New();
    if (ctx == NULL) {
        Py_DECREF(msg);
        return -1;
    }
    int rc = PyDict_SetItem(ctx, st->str_message, msg);
    Py_DECREF(msg);
    if (rc == 0)
        rc = PyDict_SetItem(ctx, st->str_exception, exc);
    if (rc == 0)
        rc = PyDict_SetItem(ctx, st->str_handle, (PyObject *)h);
    if (rc == 0 && h->source_traceback != NULL && PyObject_IsTrue(h->source_traceback) > 0)
        rc = PyDict_SetItem(ctx, st->str_source_traceback, h->source_traceback);
    if (rc < 0) {
        Py_DECREF(ctx);
        return -1;
    }
    PyObject *res = PyObject_CallMethodOneArg(h->loop, st->str_call_exception_handler, ctx);
    Py_DECREF(ctx);
    if (res == NULL)
        return -1;
    Py_DECREF(res);
    return 0;
}

/* The exception set now, from running h: SystemExit and KeyboardInterrupt
 * propagate (-1), anything else goes to the exception handler. */
static int handle_report_current(aio_state *st, HandleObject *h)
{
    if (PyErr_ExceptionMatches(PyExc_SystemExit) ||
        PyErr_ExceptionMatches(PyExc_KeyboardInterrupt))
        return -1;
    PyObject *exc = aio_err_fetch();
    int rc = handle_report(st, h, exc);
    Py_DECREF(exc);
    return rc;
}

/* A handle's context once it is its own: a shared snapshot (loop.c,
 * context_snapshot) is copied first, unless nothing else holds it
 * any more.  Borrowed, or NULL with an exception set. */
PyObject *aio_handle_own_context(HandleObject *h)
{
    if (h->ctx_shared && h->context != NULL) {
        if (Py_REFCNT(h->context) > 1) {
            PyObject *own = aio_fault_hit(AIO_FAULT_CONTEXT)   /* a fault site */
                                ? PyErr_NoMemory()
                                : PyContext_Copy(h->context);
            if (own == NULL)
                return NULL;
            Py_SETREF(h->context, own);
        }
        h->ctx_shared = 0;
    }
    return h->context;
}

int aio_handle_run(aio_state *st, HandleObject *h)
{
    PyObject *res;
    PyObject *cb = h->callback;
    if (cb == NULL)
        return 0;
    if (aio_handle_own_context(h) == NULL)
        return handle_report_current(st, h);
    Py_INCREF(cb);
    PyObject *args = h->args;
    Py_INCREF(args);
    PyObject *const *argv = &PyTuple_GET_ITEM(args, 0);
    Py_ssize_t nargs = PyTuple_GET_SIZE(args);
    if (PyContext_CheckExact(h->context)) {
        if (PyContext_Enter(h->context) < 0) {
            res = NULL;
        } else {
            res = PyObject_Vectorcall(cb, argv, (size_t)nargs, NULL);
            if (PyContext_Exit(h->context) < 0)
                Py_CLEAR(res);
        }
    } else {
        /* Something context-like that is not a Context: call its run(). */
        PyObject *run = PyObject_GetAttrString(h->context, "run");
        PyObject *full = run ? PyTuple_New(nargs + 1) : NULL;
        if (full != NULL) {
            PyTuple_SET_ITEM(full, 0, Py_NewRef(cb));
            for (Py_ssize_t i = 0; i < nargs; i++)
                PyTuple_SET_ITEM(full, i + 1, Py_NewRef(argv[i]));
        }
        res = full ? PyObject_Call(run, full, NULL) : NULL;
        Py_XDECREF(full);
        Py_XDECREF(run);
    }
    Py_DECREF(args);
    Py_DECREF(cb);
    if (res != NULL) {
        Py_DECREF(res);
        return 0;
    }
    return handle_report_current(st, h);
}

/* ---- Python-visible API ---- */

static aio_state *handle_state(PyObject *self)
{
    return aio_get_state_by_type(Py_TYPE(self));
}

/* Handle(callback, args, loop, context=None) and TimerHandle(when, ...), as
 * asyncio's classes are made: __new__ only allocates an instance of the
 * type asked for (a subclass stays a subclass), __init__ sets the fields,
 * so a subclass's __init__ runs and its super().__init__() is this.  A
 * handle whose __init__ never ran has no callback: running it does
 * nothing.  (call_soon and the timers make theirs with aio_handle_new.) */
static PyObject *handle_tp_new(PyTypeObject *tp, PyObject *args, PyObject *kwds)
{
    (void)args;
    (void)kwds;
    return tp->tp_alloc(tp, 0);
}

static int handle_tp_init(PyObject *self, PyObject *args, PyObject *kwds)
{
    static char *kwlist[] = {"callback", "args", "loop", "context", NULL};
    HandleObject *h = (HandleObject *)self;
    PyObject *cb, *cargs, *loop, *context = Py_None, *when_given = NULL;
    double when = 0.0;
    aio_state *st = aio_get_state_by_type(Py_TYPE(self));
    if (st == NULL)
        return -1;
    int timer = PyObject_TypeCheck(self, st->TimerHandleType);
    if (timer) {
        static char *tkwlist[] = {"when", "callback", "args", "loop", "context", NULL};
        if (!PyArg_ParseTupleAndKeywords(args, kwds, "OOOO|O:TimerHandle", tkwlist,
                                         &when_given, &cb, &cargs, &loop, &context))
            return -1;
        when = PyFloat_AsDouble(when_given);
        if (when == -1.0 && PyErr_Occurred())
            return -1;
    } else if (!PyArg_ParseTupleAndKeywords(args, kwds, "OOO|O:Handle", kwlist,
                                            &cb, &cargs, &loop, &context)) {
        return -1;
    }
    /* args=None is an empty call (a new reference either way). */
    PyObject *tup = cargs == Py_None ? PyTuple_New(0) : PySequence_Tuple(cargs);
    if (tup == NULL)
        return -1;
    PyObject *ctx = context == Py_None ? PyContext_CopyCurrent() : Py_NewRef(context);
    if (ctx == NULL) {
        Py_DECREF(tup);
        return -1;
    }
    Py_XSETREF(h->callback, Py_NewRef(cb));
    Py_XSETREF(h->args, tup);
    Py_XSETREF(h->loop, Py_NewRef(loop));
    Py_XSETREF(h->context, ctx);
    Py_CLEAR(h->repr);
    h->cancelled = 0;
    if (timer) {
        TimerHandleObject *t = (TimerHandleObject *)h;
        Py_CLEAR(t->when_obj);
        aio_timer_set_when(t, when, when_given);
    }
    return 0;
}

static int handle_traverse(HandleObject *h, visitproc visit, void *arg)
{
    Py_VISIT(Py_TYPE(h));
    Py_VISIT(h->callback);
    Py_VISIT(h->args);
    Py_VISIT(h->context);
    Py_VISIT(h->loop);
    Py_VISIT(h->repr);
    Py_VISIT(h->source_traceback);
    return 0;
}

static int handle_clear(HandleObject *h)
{
    Py_CLEAR(h->callback);
    Py_CLEAR(h->args);
    Py_CLEAR(h->context);
    Py_CLEAR(h->loop);
    Py_CLEAR(h->repr);
    Py_CLEAR(h->source_traceback);
    return 0;
}

static void handle_dealloc(HandleObject *h)
{
    PyTypeObject *tp = Py_TYPE(h);
    PyObject_GC_UnTrack(h);
    if (h->weakreflist != NULL)
        PyObject_ClearWeakRefs((PyObject *)h);
    handle_clear(h);
    tp->tp_free(h);
    Py_DECREF(tp);
}

static PyObject *handle_repr(HandleObject *h)
{
    aio_state *st = handle_state((PyObject *)h);
    if (h->repr != NULL)
        return Py_NewRef(h->repr);
    PyObject *helpers = aio_debug_helpers(st);
    if (helpers == NULL)
        return NULL;
    return PyObject_CallMethod(helpers, "handle_repr", "O", (PyObject *)h);
}

static PyObject *handle_cancel(HandleObject *h, PyObject *Py_UNUSED(ignored))
{
    if (h->cancelled)
        Py_RETURN_NONE;
    aio_state *st = handle_state((PyObject *)h);
    h->cancelled = 1;
    if (h->loop != NULL) {
        PyObject *dbg = PyObject_CallMethod(h->loop, "get_debug", NULL);
        int debug = dbg ? PyObject_IsTrue(dbg) : -1;
        Py_XDECREF(dbg);
        if (debug < 0)
            return NULL;
        if (debug) {
            /* Keep a repr for debugging cancelled handles (asyncio does). */
            PyObject *r = handle_repr(h);
            if (r == NULL)
                return NULL;
            Py_XSETREF(h->repr, r);
        }
    }
    if (PyObject_TypeCheck((PyObject *)h, st->TimerHandleType)) {
        TimerHandleObject *t = (TimerHandleObject *)h;
        if (t->scheduled && h->loop != NULL) {
            PyObject *r = PyObject_CallMethodOneArg(h->loop, st->str_timer_handle_cancelled,
                                                    (PyObject *)h);
            if (r == NULL)
                return NULL;
            Py_DECREF(r);
        }
    }
    Py_CLEAR(h->callback);
    Py_CLEAR(h->args);
    Py_RETURN_NONE;
}

static PyObject *handle_cancelled(HandleObject *h, PyObject *Py_UNUSED(ignored))
{
    return PyBool_FromLong(h->cancelled);
}

static PyObject *handle_get_context(HandleObject *h, PyObject *Py_UNUSED(ignored))
{
    if (h->context != NULL && aio_handle_own_context(h) == NULL)
        return NULL;
    return Py_NewRef(h->context ? h->context : Py_None);
}

static PyObject *handle_py_run(HandleObject *h, PyObject *Py_UNUSED(ignored))
{
    if (aio_handle_run(handle_state((PyObject *)h), h) < 0)
        return NULL;
    Py_RETURN_NONE;
}

static PyObject *handle_get_callback(HandleObject *h, void *c)
{
    (void)c;
    return Py_NewRef(h->callback ? h->callback : Py_None);
}

static PyObject *handle_get_args(HandleObject *h, void *c)
{
    (void)c;
    return Py_NewRef(h->args ? h->args : Py_None);
}

static PyObject *handle_get_cancelled_attr(HandleObject *h, void *c)
{
    (void)c;
    return PyBool_FromLong(h->cancelled);
}

static PyObject *timer_get_scheduled(TimerHandleObject *t, void *c)
{
    (void)c;
    return PyBool_FromLong(t->scheduled);
}

static PyObject *timer_when(TimerHandleObject *t, PyObject *Py_UNUSED(ignored))
{
    if (t->when_obj != NULL)
        return Py_NewRef(t->when_obj);
    return PyFloat_FromDouble(t->when);
}

static PyObject *timer_get_when(TimerHandleObject *t, void *c)
{
    (void)c;
    return timer_when(t, NULL);
}

static int timer_traverse(TimerHandleObject *t, visitproc visit, void *arg)
{
    Py_VISIT(t->when_obj);
    return handle_traverse(&t->base, visit, arg);
}

static int timer_clear(TimerHandleObject *t)
{
    Py_CLEAR(t->when_obj);
    return handle_clear(&t->base);
}

static void timer_dealloc(TimerHandleObject *t)
{
    PyObject_GC_UnTrack(t);
    Py_CLEAR(t->when_obj);
    handle_dealloc(&t->base);
}

static PyObject *timer_richcompare(PyObject *a, PyObject *b, int op)
{
    aio_state *st = handle_state(a);
    if (!PyObject_TypeCheck(b, st->TimerHandleType))
        Py_RETURN_NOTIMPLEMENTED;
    TimerHandleObject *x = (TimerHandleObject *)a, *y = (TimerHandleObject *)b;
    if (op == Py_EQ || op == Py_NE) {
        int eq = a == b || (x->when == y->when &&
                            x->base.callback == y->base.callback &&
                            x->base.cancelled == y->base.cancelled);
        if (eq && a != b && x->base.args != y->base.args) {
            int r = PyObject_RichCompareBool(x->base.args, y->base.args, Py_EQ);
            if (r < 0)
                return NULL;
            eq = r;
        }
        return PyBool_FromLong(op == Py_EQ ? eq : !eq);
    }
    Py_RETURN_RICHCOMPARE(x->when, y->when, op);
}

static Py_hash_t timer_hash(TimerHandleObject *t)
{
    if (t->when_obj != NULL)   /* asyncio's: hash(self._when) */
        return PyObject_Hash(t->when_obj);
    PyObject *f = PyFloat_FromDouble(t->when);
    if (f == NULL)
        return -1;
    Py_hash_t hv = PyObject_Hash(f);
    Py_DECREF(f);
    return hv;
}

static PyMemberDef handle_members[] = {
    {"_loop", T_OBJECT, offsetof(HandleObject, loop), READONLY, NULL},
    {"_repr", T_OBJECT, offsetof(HandleObject, repr), 0, NULL},
    {"_source_traceback", T_OBJECT, offsetof(HandleObject, source_traceback), 0, NULL},
    {"__weaklistoffset__", T_PYSSIZET, offsetof(HandleObject, weakreflist), READONLY, NULL},
    {NULL, 0, 0, 0, NULL},
};

static PyGetSetDef handle_getset[] = {
    {"_callback", (getter)handle_get_callback, NULL, NULL, NULL},
    {"_context", (getter)handle_get_context, NULL, NULL, NULL},
    {"_args", (getter)handle_get_args, NULL, NULL, NULL},
    {"_cancelled", (getter)handle_get_cancelled_attr, NULL, NULL, NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static PyMethodDef handle_methods[] = {
    {"cancel", (PyCFunction)handle_cancel, METH_NOARGS, "Cancel the callback."},
    {"cancelled", (PyCFunction)handle_cancelled, METH_NOARGS, "Whether cancel() was called."},
    {"get_context", (PyCFunction)handle_get_context, METH_NOARGS,
     "The contextvars.Context the callback runs in."},
    {"_run", (PyCFunction)handle_py_run, METH_NOARGS, NULL},
    {NULL, NULL, 0, NULL},
};

static PyType_Slot handle_slots[] = {
    {Py_tp_doc, "A callback scheduled with call_soon (asyncio.Handle's API)."},
    {Py_tp_new, handle_tp_new},
    {Py_tp_init, handle_tp_init},
    {Py_tp_dealloc, handle_dealloc},
    {Py_tp_traverse, handle_traverse},
    {Py_tp_clear, handle_clear},
    {Py_tp_repr, handle_repr},
    {Py_tp_methods, handle_methods},
    {Py_tp_members, handle_members},
    {Py_tp_getset, handle_getset},
    {0, NULL},
};

PyType_Spec aio_handle_spec = {
    .name = "aioloop._core.Handle",
    .basicsize = sizeof(HandleObject),
    .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_BASETYPE | Py_TPFLAGS_HAVE_GC,
    .slots = handle_slots,
};

static PyGetSetDef timer_getset[] = {
    {"_when", (getter)timer_get_when, NULL, NULL, NULL},
    {"_scheduled", (getter)timer_get_scheduled, NULL, NULL, NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static PyMethodDef timer_methods[] = {
    {"when", (PyCFunction)timer_when, METH_NOARGS,
     "The absolute time (loop.time() clock) the callback is scheduled for."},
    {NULL, NULL, 0, NULL},
};

static PyType_Slot timer_slots[] = {
    {Py_tp_doc, "A callback scheduled with call_later/call_at (asyncio.TimerHandle's API)."},
    {Py_tp_dealloc, timer_dealloc},
    {Py_tp_traverse, timer_traverse},
    {Py_tp_clear, timer_clear},
    {Py_tp_methods, timer_methods},
    {Py_tp_getset, timer_getset},
    {Py_tp_richcompare, timer_richcompare},
    {Py_tp_hash, timer_hash},
    {0, NULL},
};

PyType_Spec aio_timer_handle_spec = {
    .name = "aioloop._core.TimerHandle",
    .basicsize = sizeof(TimerHandleObject),
    .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_BASETYPE | Py_TPFLAGS_HAVE_GC,
    .slots = timer_slots,
};
