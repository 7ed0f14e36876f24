/* Stream transports, the type itself: construction and lifetime, the
 * protocol, extra info, and the dispatch of the stream's completions to
 * the read, write and close paths (transport_read.c, transport_write.c,
 * transport_close.c).  The layout and how a connection is served:
 * transport.h. */
#include "transport.h"
#include "tls.h"

#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <sys/un.h>
#include <unistd.h>

#define READ_CREDITS 4            /* unconsumed read completions per stream */

/* "sockname" of an accepted connection is looked up on first use (most
 * servers never ask: one tuple less per idle connection), at the latest
 * just before the socket closes, so it stays available afterwards as on
 * asyncio.  Call only while t->sock is open.  Returns 0, or -1 with an
 * exception set. */
int fill_sockname(TransportObject *t)
{
    if (t->extra_slot == NULL || !PyDict_Check(t->extra_slot))
        return 0;
    int has = PyDict_Contains(t->extra_slot, tr_state(t)->str_sockname);
    if (has != 0)
        return has < 0 ? -1 : 0;
    struct sockaddr_storage ss;
    socklen_t len = sizeof ss;
    PyObject *addr = NULL;
    if (getsockname(t->fd, (struct sockaddr *)&ss, &len) == 0)
        addr = aio_sockaddr_to_py((struct sockaddr *)&ss, len);
    if (addr == NULL) {
        PyErr_Clear();
        addr = Py_NewRef(Py_None);
    }
    int rc = PyDict_SetItem(t->extra_slot, tr_state(t)->str_sockname, addr);
    Py_DECREF(addr);
    return rc;
}

/* extra["socket"]: asyncio's TransportSocket over t->sock, made on first
 * use.  Returns 0, or -1 with an exception set. */
static int fill_socket_info(TransportObject *t)
{
    PyObject *mod = PyImport_ImportModule("asyncio.trsock");
    if (mod == NULL)
        return -1;
    PyObject *ts = PyObject_CallMethod(mod, "TransportSocket", "O", t->sock);
    Py_DECREF(mod);
    if (ts == NULL)
        return -1;
    int rc = PyDict_SetItemString(t->extra_slot, "socket", ts);
    Py_DECREF(ts);
    t->sock_private = 0;   /* given out: whoever holds it may look at it */
    return rc;
}

/* The one argument of a method whose asyncio signature is f(self, name):
 * given by position or by keyword, as Python binds it.  Returns it
 * (borrowed), or NULL with TypeError set. */
PyObject *one_arg(PyObject *const *args, size_t nargsf, PyObject *kwnames,
                  const char *method, const char *name)
{
    Py_ssize_t nargs = PyVectorcall_NARGS(nargsf);
    Py_ssize_t nk = kwnames != NULL ? PyTuple_GET_SIZE(kwnames) : 0;
    if (nargs + nk == 1) {
        if (nk == 0)
            return args[0];
        PyObject *key = PyTuple_GET_ITEM(kwnames, 0);
        if (PyUnicode_CompareWithASCIIString(key, name) == 0)
            return args[0];
        PyErr_Format(PyExc_TypeError, "%s() got an unexpected keyword argument %R", method, key);
        return NULL;
    }
    PyErr_Format(PyExc_TypeError, "%s() takes exactly one argument (%zd given)", method,
                 nargs + nk);
    return NULL;
}

/* asyncio's BaseTransport.get_extra_info(name, default=None). */
static PyObject *tr_get_extra_info(TransportObject *t, PyObject *args, PyObject *kw)
{
    static char *kwlist[] = {"name", "default", NULL};
    PyObject *name, *dflt = Py_None;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "O|O:get_extra_info", kwlist, &name, &dflt))
        return NULL;
    if (t->extra_slot != NULL && PyDict_Check(t->extra_slot)) {
        PyObject *v = PyDict_GetItemWithError(t->extra_slot, name);
        if (v != NULL)
            return Py_NewRef(v);
        if (PyErr_Occurred())
            return NULL;
        /* "sockname" and "socket" of an accepted connection are made on
         * first use and kept (most servers never ask: a tuple and an
         * object less per connection). */
        int (*fill)(TransportObject *) = NULL;
        if (PyUnicode_Check(name) && t->sock != NULL) {
            if (PyUnicode_CompareWithASCIIString(name, "socket") == 0)
                fill = fill_socket_info;
            else if (PyUnicode_CompareWithASCIIString(name, "sockname") == 0)
                fill = fill_sockname;
        }
        if (fill != NULL) {
            if (fill(t) < 0)
                return NULL;
            v = PyDict_GetItemWithError(t->extra_slot, name);
            if (v != NULL)
                return Py_NewRef(v);
            if (PyErr_Occurred())
                return NULL;
        }
    }
    return Py_NewRef(dflt);
}

static PyObject *tr_get_protocol(TransportObject *t, PyObject *Py_UNUSED(ignored))
{
    return Py_NewRef(t->protocol ? t->protocol : Py_None);
}

static int set_protocol(TransportObject *t, PyObject *protocol)
{
    int b = PyObject_IsInstance(protocol, tr_state(t)->BufferedProtocol);
    if (b < 0)
        return -1;
    t->buffered = (char)b;
    t->tls = (char)aio_tls_is_protocol(tr_state(t), protocol);
    Py_XSETREF(t->protocol, Py_NewRef(protocol));
    return 0;
}

static PyObject *tr_set_protocol(TransportObject *t, PyObject *const *args, size_t nargsf,
                                 PyObject *kwnames)
{
    ON_LOOP_THREAD(t);
    PyObject *protocol = one_arg(args, nargsf, kwnames, "set_protocol", "protocol");
    if (protocol == NULL)
        return NULL;
    if (set_protocol(t, protocol) < 0)
        return NULL;
    /* The new protocol was never told to pause, so it must not be told to
     * resume (asyncio's SSLProtocol asserts on that): it starts unpaused and
     * gets pause_writing() from the next write() above the mark.  Writes
     * stay queued on the worker for longer than on asyncio's loop, so the
     * buffer is more often above the mark when start_tls() swaps protocols. */
    t->protocol_paused = 0;
    Py_RETURN_NONE;
}

static PyObject *tr_repr(TransportObject *t)
{
    const char *state = t->stream == NULL && tr_conn_lost(t) ? " closed"
                        : tr_closing(t)                      ? " closing"
                                                             : "";
    return PyUnicode_FromFormat("<aioloop.StreamTransport%s fd=%d read=%s write=<%s, bufsize=%zu>>",
                                state, t->fd, t->paused ? "paused" : "polling",
                                t->wq_len ? "polling" : "idle", t->buffer_size);
}

static PyObject *tr_new(PyTypeObject *tp, PyObject *args, PyObject *kw)
{
    static char *kwlist[] = {"loop", "sock", "protocol", "extra", "server", "private_sock", NULL};
    PyObject *loop, *sock, *protocol, *extra = Py_None, *server = Py_None;
    int private_sock = 0;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "OOO|OO$p:StreamTransport", kwlist, &loop, &sock,
                                     &protocol, &extra, &server, &private_sock))
        return NULL;
    LoopObject *L = aio_loop_arg(tp, loop);
    if (L == NULL)
        return NULL;
    PyObject *fdo = PyObject_CallMethod(sock, "fileno", NULL);
    if (fdo == NULL)
        return NULL;
    long lfd = PyLong_AsLong(fdo);
    Py_DECREF(fdo);
    if (lfd == -1 && PyErr_Occurred())
        return NULL;
    int fd = (int)lfd;
    if (lfd < 0 || lfd > INT_MAX) {
        PyErr_SetString(PyExc_ValueError, "the socket is closed");
        return NULL;
    }
    TransportObject *t = (TransportObject *)tp->tp_alloc(tp, 0);
    if (t == NULL)
        return NULL;
    t->loop = (LoopObject *)Py_NewRef(loop);
    t->held_fd = -1;
    /* As asyncio's transports do through their add_reader handles: every
     * protocol callback runs in a copy of the context the transport was
     * made in (create_connection's caller, or the server's accept). */
    t->context = PyContext_CopyCurrent();
    if (t->context == NULL)
        goto fail;
    t->sock = Py_NewRef(sock);
    t->server = Py_NewRef(server);
    t->sock_private = (char)private_sock;
    t->extra_slot = extra == Py_None ? PyDict_New() : Py_NewRef(extra);
    t->fd = fd;
    t->high = 64 * 1024;
    t->low = 16 * 1024;
    t->inline_min = L->inline_min;
    if (t->extra_slot == NULL || set_protocol(t, protocol) < 0)
        goto fail;
    if (aio_stream_open_owned(L, fd, AIO_STREAM_CONN, READ_CREDITS, &aio_transport_stream_ops,
                              (PyObject *)t, &t->stream) < 0)
        goto fail;
    return (PyObject *)t;
fail:
    t->state = TR_LOST_SCHEDULED;
    Py_DECREF(t);
    return NULL;
}

/* Everything happens in tr_new; this only stops BaseTransport.__init__. */
static int tr_init(PyObject *self, PyObject *args, PyObject *kw)
{
    (void)self;
    (void)args;
    (void)kw;
    return 0;
}

static int tr_traverse(TransportObject *t, visitproc visit, void *arg)
{
    Py_VISIT(Py_TYPE(t));
    Py_VISIT(t->extra_slot);
    for (int i = 0; i < 4; i++)
        Py_VISIT(t->base_slots[i]);
    Py_VISIT(t->empty_waiter);
    Py_VISIT(t->high_obj);
    Py_VISIT(t->low_obj);
    Py_VISIT(t->loop);
    Py_VISIT(t->sock);
    Py_VISIT(t->protocol);
    Py_VISIT(t->server);
    Py_VISIT(t->context);
    Py_VISIT(t->dict);
    for (size_t i = 0; i < t->wq_len; i++)
        Py_VISIT(t->wq[(t->wq_head + i) % t->wq_cap].obj);
    return 0;
}

static int tr_clear(TransportObject *t)
{
    Py_CLEAR(t->extra_slot);
    for (int i = 0; i < 4; i++)
        Py_CLEAR(t->base_slots[i]);
    Py_CLEAR(t->empty_waiter);
    Py_CLEAR(t->high_obj);
    Py_CLEAR(t->low_obj);
    Py_CLEAR(t->protocol);
    Py_CLEAR(t->server);
    Py_CLEAR(t->context);
    Py_CLEAR(t->dict);
    return 0;
}

static void tr_dealloc(TransportObject *t)
{
    PyTypeObject *tp = Py_TYPE(t);
    PyObject_GC_UnTrack(t);
    if (t->weakreflist != NULL)
        PyObject_ClearWeakRefs((PyObject *)t);
    /* A live stream keeps its transport referenced (the loop holds `owner`
     * through its stream list), so a transport freed here has no stream. */
    tr_clear(t);
    for (size_t i = 0; i < t->wq_len; i++)
        Py_XDECREF(t->wq[(t->wq_head + i) % t->wq_cap].obj);
    PyMem_Free(t->wq);
    stash_free(t->stash_first);
    Py_CLEAR(t->sock);
    Py_CLEAR(t->loop);
    tp->tp_free(t);
    Py_DECREF(tp);
}

/* `_sock` (asyncio's attribute; its sendfile reads it): whoever reads it
 * may keep it, so the socket is no longer private. */
static PyObject *tr_get_sock(TransportObject *t, void *closure)
{
    (void)closure;
    if (t->sock == NULL)
        Py_RETURN_NONE;
    t->sock_private = 0;
    return Py_NewRef(t->sock);
}

/* asyncio's _conn_lost: 0 while the connection is up, then 1 plus the
 * write()s made after it was lost. */
static PyObject *tr_get_conn_lost(TransportObject *t, void *closure)
{
    (void)closure;
    return PyLong_FromLong(tr_conn_lost(t) ? 1L + t->lost_writes : 0L);
}

static PyObject *tr_get_closing(TransportObject *t, void *closure)
{
    (void)closure;
    return PyBool_FromLong(tr_closing(t));
}

static PyMemberDef tr_members[] = {
    {"__weaklistoffset__", T_PYSSIZET, offsetof(TransportObject, weakreflist), READONLY, NULL},
    {"__dictoffset__", T_PYSSIZET, offsetof(TransportObject, dict), READONLY, NULL},
    {"_sock_fd", T_INT, offsetof(TransportObject, fd), READONLY, NULL},
    {"_paused", T_BOOL, offsetof(TransportObject, paused), READONLY, NULL},
    {"_protocol_paused", T_BOOL, offsetof(TransportObject, protocol_paused), READONLY, NULL},
    {"_eof", T_BOOL, offsetof(TransportObject, eof), READONLY, NULL},
    {"_loop", T_OBJECT, offsetof(TransportObject, loop), READONLY, NULL},
    {"_protocol", T_OBJECT, offsetof(TransportObject, protocol), READONLY, NULL},
    {"_server", T_OBJECT, offsetof(TransportObject, server), READONLY, NULL},
    {NULL, 0, 0, 0, NULL},
};

static PyGetSetDef tr_getset[] = {
    {"_sock", (getter)tr_get_sock, NULL, NULL, NULL},
    {"_conn_lost", (getter)tr_get_conn_lost, NULL, NULL, NULL},
    {"_closing", (getter)tr_get_closing, NULL, NULL, NULL},
    {"_high_water", (getter)tr_get_high_water, NULL, NULL, NULL},
    {"_low_water", (getter)tr_get_low_water, NULL, NULL, NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static PyMethodDef tr_methods[] = {
    {"write", (PyCFunction)(void (*)(void))tr_write, METH_FASTCALL | METH_KEYWORDS,
     "Write data; never blocks."},
    {"writelines", (PyCFunction)(void (*)(void))tr_writelines, METH_FASTCALL | METH_KEYWORDS,
     "Write an iterable of data."},
    {"write_eof", (PyCFunction)tr_write_eof, METH_NOARGS,
     "Close the write end after flushing buffered data."},
    {"can_write_eof", (PyCFunction)tr_can_write_eof, METH_NOARGS, NULL},
    {"close", (PyCFunction)tr_close, METH_NOARGS,
     "Close after flushing buffered data; connection_lost(None) follows."},
    {"abort", (PyCFunction)tr_abort, METH_NOARGS, "Close at once, dropping buffered data."},
    {"is_closing", (PyCFunction)tr_is_closing, METH_NOARGS, NULL},
    {"pause_reading", (PyCFunction)tr_pause_reading, METH_NOARGS, NULL},
    {"resume_reading", (PyCFunction)tr_resume_reading, METH_NOARGS, NULL},
    {"is_reading", (PyCFunction)tr_is_reading, METH_NOARGS, NULL},
    {"get_extra_info", (PyCFunction)(void (*)(void))tr_get_extra_info,
     METH_VARARGS | METH_KEYWORDS, NULL},
    {"get_protocol", (PyCFunction)tr_get_protocol, METH_NOARGS, NULL},
    {"set_protocol", (PyCFunction)(void (*)(void))tr_set_protocol,
     METH_FASTCALL | METH_KEYWORDS, NULL},
    {"get_write_buffer_size", (PyCFunction)tr_get_write_buffer_size, METH_NOARGS, NULL},
    {"get_write_buffer_limits", (PyCFunction)tr_get_write_buffer_limits, METH_NOARGS, NULL},
    {"set_write_buffer_limits", (PyCFunction)(void (*)(void))tr_set_write_buffer_limits,
     METH_VARARGS | METH_KEYWORDS, NULL},
    {"_start_reading", (PyCFunction)tr_start_reading, METH_NOARGS, NULL},
    {"_drain_stash", (PyCFunction)tr_drain_stash, METH_NOARGS, NULL},
    {"_call_connection_lost", (PyCFunction)tr_call_connection_lost, METH_O, NULL},
    {"_force_close", (PyCFunction)tr_force_close, METH_O, NULL},
    {"_fatal_error", (PyCFunction)tr_fatal_error, METH_VARARGS, NULL},
    {"_make_empty_waiter", (PyCFunction)tr_make_empty_waiter, METH_NOARGS, NULL},
    {"_reset_empty_waiter", (PyCFunction)tr_reset_empty_waiter, METH_NOARGS, NULL},
    {NULL, NULL, 0, NULL},
};

static PyType_Slot tr_slots[] = {
    {Py_tp_doc, "A TCP or Unix stream transport served by a completion thread."},
    {Py_tp_new, tr_new},
    {Py_tp_init, tr_init},
    {Py_tp_dealloc, tr_dealloc},
    {Py_tp_traverse, tr_traverse},
    {Py_tp_clear, tr_clear},
    {Py_tp_repr, tr_repr},
    {Py_tp_methods, tr_methods},
    {Py_tp_members, tr_members},
    {Py_tp_getset, tr_getset},
    {0, NULL},
};

PyType_Spec aio_transport_spec = {
    .name = "aioloop._core.StreamTransport",
    .basicsize = sizeof(TransportObject),
    .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC,
    .slots = tr_slots,
};

static int stream_completion_impl(TransportObject *t, aio_req *r, int deliver)
{
    switch (r->op) {
    case AIO_OP_STREAM_READ:
        return read_completed(t, r, deliver);
    case AIO_OP_STREAM_WRITE:
        return write_completed(t, r, deliver);
    case AIO_OP_STREAM_CLOSE:
        aio_req_free(r);
        return tr_close_completed(t, deliver);
    case AIO_OP_STREAM_START: {
        int result = r->result;
        aio_req_free(r);
        if (result < 0 && deliver) {
            PyObject *exc = oserror_from_errno(-result);
            if (exc == NULL)
                return -1;
            fatal_error(t, exc, "Fatal error registering the socket");
            Py_DECREF(exc);
        }
        return 0;
    }
    default:
        aio_req_free(r);
        return 0;
    }
}

/* One completion of the transport's stream.  Whatever fails in the loop's
 * own work for it (an object it could not make, a submission refused, a
 * waiter it could not settle) ends this connection as asyncio ends one
 * whose recv() or send() raised: the exception handler hears of it
 * (anything but an OSError) and connection_lost(exc) follows; the loop
 * goes on serving the others.  Only SystemExit and KeyboardInterrupt
 * propagate (-1), as they do out of asyncio's handles. */
static int stream_completion(PyObject *owner, aio_req *r, int deliver)
{
    TransportObject *t = (TransportObject *)owner;
    const char *message = r->op == AIO_OP_STREAM_WRITE  ? MSG_WRITE_ERROR
                          : r->op == AIO_OP_STREAM_READ ? MSG_READ_ERROR
                                                        : "Fatal error on transport";
    int rc = stream_completion_impl(t, r, deliver);
    if (rc < 0 && deliver)
        rc = callback_failed(t, message);
    return rc;
}

int aio_transport_stream_completion(PyObject *owner, aio_req *r, int deliver)
{
    return aio_in_context(((TransportObject *)owner)->context, stream_completion, owner, r,
                          deliver);
}
