/* Shared declarations of the CPython binding (_core).  Everything here runs
 * on a thread that holds the GIL; the engine under engine/ never sees these. */
#ifndef AIO_CORE_H
#define AIO_CORE_H

#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <structmember.h>

#ifdef Py_GIL_DISABLED
#error "aioloop relies on the GIL to guard the ready queue; free-threaded builds are not supported yet"

#endif

#include "engine/aio_engine.h"

typedef struct {
    PyTypeObject *HandleType;
    PyTypeObject *TimerHandleType;
    PyTypeObject *LoopType;
    PyTypeObject *TransportType;
    PyTypeObject *ListenerType;
    PyObject *BufferedProtocol;      /* asyncio.BufferedProtocol */
    PyObject *FutureType;            /* asyncio.Future (the C one when present) */
    PyObject *TaskType;              /* asyncio.Task (the C one when present) */
    PyObject *base_create_task;      /* asyncio.BaseEventLoop.create_task */
    PyObject *kw_loop;               /* ("loop",) */
    PyObject *str_task_factory;
    PyObject *str_name;
    PyObject *str_context;
    PyObject *gaierror;              /* socket.gaierror */
    PyObject *str_call_exception_handler;
    PyObject *str_message;
    PyObject *str_exception;
    PyObject *str_handle;
    PyObject *str_source_traceback;
    PyObject *str_loop;
    PyObject *str_set_result;
    PyObject *str_set_exception;
    PyObject *str_done;
    PyObject *str_timer_handle_cancelled;
    PyObject *str_current_handle;
    PyObject *str_data_received;
    PyObject *str_get_buffer;
    PyObject *str_buffer_updated;
    PyObject *str_connection_lost;
    PyObject *str_sockname;
    PyObject *str_time;
    PyObject *core_time;             /* the core Loop type's own time() descriptor */
    PyObject *debug_helpers;         /* aioloop._debug, imported lazily */
    struct aio_tls_state *tls;       /* tls.c's own state */
} aio_state;

typedef struct {
    PyObject_HEAD
    PyObject *callback;      /* NULL once cancelled or run-and-cleared */
    PyObject *args;          /* tuple, or NULL */
    PyObject *context;       /* contextvars.Context */
    PyObject *loop;
    PyObject *repr;          /* saved repr of a handle cancelled in debug mode */
    PyObject *source_traceback;
    PyObject *weakreflist;
    char cancelled;
    char ctx_shared;         /* context is a snapshot other handles share */
} HandleObject;

typedef struct {
    HandleObject base;
    double when;             /* the deadline the heap orders by */
    PyObject *when_obj;      /* the deadline as given when it was not an exact
                              * float (an int, a Fraction): when() returns it,
                              * as asyncio's does; NULL otherwise */
    uint64_t seq;            /* tie-break: equal deadlines run FIFO */
    char scheduled;          /* in its loop's timer heap */
} TimerHandleObject;

extern PyType_Spec aio_handle_spec;
extern PyType_Spec aio_timer_handle_spec;
extern PyType_Spec aio_loop_spec;
extern PyType_Spec aio_transport_spec;
extern PyType_Spec aio_listener_spec;

aio_state *aio_get_state_by_type(PyTypeObject *tp);

/* Creates a Handle (timer=0) or TimerHandle. context may be NULL or None:
 * the current context is copied. Returns a new reference or NULL. */
HandleObject *aio_handle_new(aio_state *st, int timer, PyObject *callback,
                             PyObject *const *args, Py_ssize_t nargs,
                             PyObject *loop, PyObject *context);
/* Runs a handle's callback in its context. Exceptions other than SystemExit
 * and KeyboardInterrupt go to loop.call_exception_handler(). Returns 0, or -1
 * with an exception set when the run loop must stop. */
int aio_handle_run(aio_state *st, HandleObject *h);
/* The handle's context, made its own first if it is a shared snapshot
 * (aio_loop_handle_new): borrowed, or NULL with an exception set. */
PyObject *aio_handle_own_context(HandleObject *h);
/* Sets a timer's deadline: `when` for the heap and, when `given` is not an
 * exact float, `given` itself for when() (given may be NULL). */
void aio_timer_set_when(TimerHandleObject *t, double when, PyObject *given);
/* Collects the debug-mode source traceback for a new handle (0 or -1). */
int aio_handle_capture_traceback(aio_state *st, HandleObject *h);

/* Imports aioloop._debug on first use; returns a borrowed reference. */
PyObject *aio_debug_helpers(aio_state *st);

/* The one place an engine error (-errno, passed as errno) becomes Python's:
 * the OSError subclass OSError(errno, strerror) maps it to
 * (ConnectionResetError, BlockingIOError, ...).  aio_oserror returns a new
 * exception object (NULL with an error set if even that failed);
 * aio_set_errno_error raises it and returns -1. */
PyObject *aio_oserror(int err);
int aio_set_errno_error(int err);


/* The raised exception as one object (3.12's API, emulated on 3.11). */
static inline PyObject *aio_err_fetch(void)
{
#if PY_VERSION_HEX >= 0x030C0000
    return PyErr_GetRaisedException();
#else
    PyObject *type, *value, *tb;
    PyErr_Fetch(&type, &value, &tb);
    if (type == NULL)
        return NULL;
    PyErr_NormalizeException(&type, &value, &tb);
    if (tb != NULL)
        PyException_SetTraceback(value, tb);
    Py_XDECREF(type);
    Py_XDECREF(tb);
    return value;
#endif
}

static inline void aio_err_restore(PyObject *exc)   /* steals exc */
{
#if PY_VERSION_HEX >= 0x030C0000
    PyErr_SetRaisedException(exc);
#else
    PyErr_Restore(Py_NewRef((PyObject *)Py_TYPE(exc)), exc, PyException_GetTraceback(exc));
#endif
}

#endif
