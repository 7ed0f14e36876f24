/* Listeners: a server socket whose accepts are done by the engine; each
 * accepted descriptor comes back as a completion and goes to the loop's
 * callback(fd, addr) (callback(None, exc) for an error), which makes the
 * socket, protocol and transport (aioloop/_loop.py). */
#include "loop.h"
#include "engine/aio_fault.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <unistd.h>

#define ACCEPT_CREDITS 64         /* unconsumed accepts per listener */

typedef struct ListenerObject {
    PyObject_HEAD
    LoopObject *loop;
    PyObject *callback;           /* callback(fd, addr) or callback(None, exc) */
    PyObject *context;            /* the accept callback runs in it (asyncio: the
                                     context the server was started in) */
    aio_stream *stream;
    int fd;                       /* our own descriptor (a dup), closed after CLOSE */
    char closing;
} ListenerObject;

static PyObject *ls_new(PyTypeObject *tp, PyObject *args, PyObject *kw)
{
    static char *kwlist[] = {"loop", "fd", "callback", NULL};
    PyObject *loop, *callback;
    int fd;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "OiO:Listener", kwlist, &loop, &fd, &callback))
        return NULL;
    LoopObject *L = aio_loop_arg(tp, loop);
    if (L == NULL)
        return NULL;
    ListenerObject *l = (ListenerObject *)tp->tp_alloc(tp, 0);
    if (l == NULL)
        return NULL;
    l->loop = (LoopObject *)Py_NewRef(loop);
    l->callback = Py_NewRef(callback);
    l->fd = -1;
    /* Accepts are dispatched in a copy of the context the server was started
     * in, as asyncio's accept handle is (so the protocol factory, and the
     * transports made in it, see the caller's context variables). */
    l->context = PyContext_CopyCurrent();
    if (l->context == NULL) {
        l->closing = 1;
        Py_DECREF(l);
        return NULL;
    }
    /* Our own descriptor: the server may close its socket object whenever it
     * likes, and the worker still never sees a recycled number. */
    l->fd = fcntl(fd, F_DUPFD_CLOEXEC, 0);
    if (l->fd < 0) {
        PyErr_SetFromErrno(PyExc_OSError);
        l->closing = 1;
        Py_DECREF(l);
        return NULL;
    }
    if (aio_stream_open_owned(L, l->fd, AIO_STREAM_LISTENER, ACCEPT_CREDITS,
                              &aio_listener_stream_ops, (PyObject *)l, &l->stream) < 0) {
        l->closing = 1;
        Py_DECREF(l);
        return NULL;
    }
    return (PyObject *)l;
}

static PyObject *ls_resume(ListenerObject *l, PyObject *Py_UNUSED(ignored))
{
    if (aio_loop_check_thread(l->loop) < 0)
        return NULL;
    int err;
    if (!l->closing && l->stream != NULL &&
        (err = aio_stream_resume(l->loop->engine, l->stream)) < 0)
        return aio_set_errno_error(-err), NULL;
    Py_RETURN_NONE;
}

static PyObject *ls_pause(ListenerObject *l, PyObject *Py_UNUSED(ignored))
{
    if (aio_loop_check_thread(l->loop) < 0)
        return NULL;
    if (l->stream != NULL)
        aio_stream_pause(l->stream);
    Py_RETURN_NONE;
}

static PyObject *ls_close(ListenerObject *l, PyObject *Py_UNUSED(ignored))
{
    if (aio_loop_check_thread(l->loop) < 0)
        return NULL;
    if (l->closing)
        Py_RETURN_NONE;
    l->closing = 1;
    if (l->stream != NULL) {
        /* The server expects the port closed when close() returns, but the
         * worker may still be looking at our descriptor: put a socket that
         * never listens in its place (same number, so nothing else can get
         * it) and close the real one now.  CLOSE frees the placeholder. */
        aio_stream_pause(l->stream);
        /* CLOSE first: a completion-based backend cancels the accept in flight at
         * once, which holds its own reference to the socket. */
        aio_stream_close(l->loop->engine, l->stream);   /* never fails */
        int ph = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (ph >= 0) {
            dup3(ph, l->fd, O_CLOEXEC);
            close(ph);
        }
    }
    Py_RETURN_NONE;
}

static int is_fatal_base(PyObject *exc)
{
    return PyErr_GivenExceptionMatches(exc, PyExc_SystemExit) ||
           PyErr_GivenExceptionMatches(exc, PyExc_KeyboardInterrupt);
}

/* The accept (or what the loop makes of it: the descriptor's objects, the
 * socket, the next accept's submission) failed with the raised exception:
 * stop accepting and hand callback(None, exc) the error; the loop reports
 * it through the exception handler and resumes the listener after a delay,
 * as asyncio does when accept() runs out of a resource.  The server lives
 * on.  Returns 0, or -1 when SystemExit or KeyboardInterrupt must
 * propagate. */
static int accept_failed(ListenerObject *l)
{
    PyObject *exc = aio_err_fetch();
    if (exc != NULL && is_fatal_base(exc)) {
        aio_err_restore(exc);
        return -1;
    }
    if (l->stream != NULL)
        aio_stream_pause(l->stream);
    PyObject *res = exc ? PyObject_CallFunctionObjArgs(l->callback, Py_None, exc, NULL) : NULL;
    Py_XDECREF(exc);
    if (res != NULL) {
        Py_DECREF(res);
        return 0;
    }
    /* Not even the report went through: say so, and go on accepting (no
     * retry was scheduled to resume us). */
    exc = aio_err_fetch();
    if (exc != NULL && is_fatal_base(exc)) {
        aio_err_restore(exc);
        return -1;
    }
    if (exc != NULL) {
        aio_err_restore(exc);
        PyErr_WriteUnraisable((PyObject *)l);
    }
    if (l->stream != NULL && !l->closing)
        (void)aio_stream_resume(l->loop->engine, l->stream);
    return 0;
}

/* accept_failed() for an engine error (-errno, passed as errno). */
static int report_error(ListenerObject *l, int err)
{
    PyObject *exc = aio_oserror(err);
    if (exc != NULL)
        aio_err_restore(exc);
    return accept_failed(l);
}

static int listener_completion(PyObject *owner, aio_req *r, int deliver)
{
    ListenerObject *l = (ListenerObject *)owner;
    int rc = 0;
    if (r->op == AIO_OP_STREAM_CLOSE) {
        aio_stream *s = l->stream;
        l->stream = NULL;
        close(l->fd);
        l->fd = -1;
        aio_req_free(r);
        aio_stream_unlink_free(l->loop, s);   /* may drop the last reference to l */
        return 0;
    }
    if (r->op != AIO_OP_STREAM_ACCEPT) {   /* START */
        if (r->result < 0 && deliver && !l->closing)
            rc = report_error(l, -r->result);
        aio_req_free(r);
        return rc;
    }
    int fd = r->result;
    if (!deliver || l->closing) {
        if (fd >= 0)
            close(fd);
    } else if (fd < 0) {
        /* Out of descriptors or buffers: stop accepting until the server
         * resumes us (after a delay, as asyncio does). */
        rc = report_error(l, -fd);
    } else {
        /* The accepted connection's objects (a fault site): when they
         * cannot be made, or the callback could not make the socket, the
         * descriptor is closed and the error reported as an accept's. */
        PyObject *fdo = aio_fault_hit(AIO_FAULT_PYOBJ) ? PyErr_NoMemory() : PyLong_FromLong(fd);
        PyObject *addr = fdo ? aio_sockaddr_to_py((struct sockaddr *)&r->u.acc.addr,
                                                  r->u.acc.addrlen)
                             : NULL;
        if (addr == NULL)
            close(fd);   /* else the callback owns it, failing or not */
        PyObject *res = addr ? PyObject_CallFunctionObjArgs(l->callback, fdo, addr, NULL) : NULL;
        Py_XDECREF(fdo);
        Py_XDECREF(addr);
        if (res == NULL)
            rc = accept_failed(l);
        Py_XDECREF(res);
    }
    aio_req_free(r);
    int err;
    if (deliver && l->stream != NULL &&
        (err = aio_stream_release(l->loop->engine, l->stream, 1)) < 0 && rc == 0)
        rc = report_error(l, -err);
    return rc;
}

static int ls_traverse(ListenerObject *l, visitproc visit, void *arg)
{
    Py_VISIT(Py_TYPE(l));
    Py_VISIT(l->loop);
    Py_VISIT(l->callback);
    Py_VISIT(l->context);
    return 0;
}

static int ls_clear(ListenerObject *l)
{
    Py_CLEAR(l->callback);
    Py_CLEAR(l->context);
    return 0;
}

static void ls_dealloc(ListenerObject *l)
{
    PyTypeObject *tp = Py_TYPE(l);
    PyObject_GC_UnTrack(l);
    ls_clear(l);
    if (l->fd >= 0 && l->stream == NULL)
        close(l->fd);
    Py_CLEAR(l->loop);
    tp->tp_free(l);
    Py_DECREF(tp);
}

static PyMethodDef ls_methods[] = {
    {"resume", (PyCFunction)ls_resume, METH_NOARGS, "Start or go on accepting."},
    {"pause", (PyCFunction)ls_pause, METH_NOARGS, "Stop accepting for now."},
    {"close", (PyCFunction)ls_close, METH_NOARGS, "Stop for good and close our descriptor."},
    {NULL, NULL, 0, NULL},
};

static PyType_Slot ls_slots[] = {
    {Py_tp_doc, "Accepts connections on a completion thread."},
    {Py_tp_new, ls_new},
    {Py_tp_dealloc, ls_dealloc},
    {Py_tp_traverse, ls_traverse},
    {Py_tp_clear, ls_clear},
    {Py_tp_methods, ls_methods},
    {0, NULL},
};

PyType_Spec aio_listener_spec = {
    .name = "aioloop._core.Listener",
    .basicsize = sizeof(ListenerObject),
    .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC,
    .slots = ls_slots,
};

int aio_listener_completion(PyObject *owner, aio_req *r, int deliver)
{
    return aio_in_context(((ListenerObject *)owner)->context, listener_completion, owner, r,
                          deliver);
}

/* The engine stopped: drop the stream without calling Python code. */
void aio_listener_engine_gone(PyObject *owner)
{
    ListenerObject *l = (ListenerObject *)owner;
    l->stream = NULL;
    l->closing = 1;
    close(l->fd);
    l->fd = -1;
}
