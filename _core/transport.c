/* Stream transports: the loop-thread half of a connection whose reads and
 * writes are done by the engine (listeners: listener.c).
 *
 * StreamTransport is a C type whose base is asyncio's _FlowControlMixin (an
 * asyncio.Transport), so that isinstance() holds, asyncio code that reads
 * `_extra` keeps working, and sendfile's fallback accepts it.
 * Its behaviour follows asyncio's _SelectorSocketTransport method by method
 * (flow control, close/abort, write_eof, fatal errors); what differs is
 * where the syscalls run:
 *
 *   read:  the stream's worker recv()s into a pool buffer and pushes a READ
 *          completion; the loop builds one bytes object (or fills the
 *          BufferedProtocol's buffer) and releases the credit.
 *   write: write() queues the data and hands it to the worker as one
 *          WRITE of iovecs; later writes queue behind it and go out as the
 *          next WRITE when it completes.  In inline mode (measured slower
 *          here, see docs/architecture.md) it first tries one non-blocking
 *          send() on the loop thread when nothing is queued.
 *   close: a CLOSE request unregisters the socket on the worker and cancels
 *          its pending write; its completion schedules connection_lost and
 *          only then is the socket closed, so no worker ever touches a
 *          recycled descriptor. */
#include "loop.h"
#include "engine/aio_fault.h"

#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <sys/un.h>
#include <unistd.h>

#define INLINE_WRITE_MIN (32 * 1024)   /* see tr_write */
#define READ_CREDITS 4            /* unconsumed read completions per stream */
#define MAX_WRITE_IOV 1024        /* buffers per WRITE request */
#define LOG_THRESHOLD_FOR_CONNLOST_WRITES 5

/* asyncio's messages for a failed recv() and send(): a failure of the
 * loop's own work for a read or a write (an object it could not make, a
 * read it could not re-arm) is reported the same way. */
#define MSG_READ_ERROR "Fatal read error on socket transport"
#define MSG_WRITE_ERROR "Fatal write error on socket transport"

typedef struct wchunk {
    PyObject *obj;                /* bytes kept alive while queued */
    const char *ptr;
    size_t len;
} wchunk;

typedef struct TransportObject {
    PyObject_HEAD
    PyObject *extra_slot;         /* asyncio.BaseTransport's `_extra` slot */
    PyObject *base_slots[4];      /* _FlowControlMixin's slots; shadowed, unused */
    PyObject *weakreflist;
    PyObject *dict;               /* instance attributes: test doubles
                                     (mock.patch.object(transport, "write")) */
    PyObject *empty_waiter;       /* sendfile: set when the buffer drains */
    LoopObject *loop;
    PyObject *sock;
    PyObject *protocol;
    PyObject *server;
    aio_stream *stream;           /* NULL once CLOSE is back or the loop closed */
    aio_req *wreq;                /* the WRITE in flight */
    size_t wreq_chunks;
    wchunk *wq;                   /* queued chunks; the first wreq_chunks are in flight */
    size_t wq_head, wq_len, wq_cap;
    size_t buffer_size;           /* queued + in flight */
    size_t high, low;             /* the marks as compared with buffer_size */
    PyObject *high_obj, *low_obj; /* the marks as given, when not exact ints (or NULL) */
    aio_qnode *stash_first, *stash_last;   /* reads held while paused */
    PyObject *context;            /* protocol callbacks run in it (asyncio: the
                                     context the transport was made in) */
    int fd;
    int held_fd;                  /* a placeholder under fd, closed when CLOSE is back */
    int conn_lost;
    /* 1 while nobody but the transport can have the socket object: the
     * loop's accept made it and handed it over (private_sock=True), and
     * neither extra["socket"] nor `_sock` has been given out since.  Such a
     * socket cannot be seen open after connection_lost, so it is closed
     * when CLOSE is back, without the placeholder (hand_off_socket).  An
     * explicit flag, not the socket's reference count: a weak reference,
     * an immortal object or a free-threaded build's count says nothing of
     * who can see it. */
    char sock_private;
    char buffered, closing, paused, protocol_paused, eof, close_submitted,
        inline_writes, stash_scheduled, lost_called;
} TransportObject;

static aio_state *tr_state(TransportObject *t)
{
    return t->loop->st;
}

/* At the door of every method that touches the engine or the transport's
 * state: off the loop's thread while it runs, asyncio's RuntimeError
 * (aio_loop_check_thread). */
#define ON_LOOP_THREAD(t)                                  \
    do {                                                   \
        if (aio_loop_check_thread((t)->loop) < 0)          \
            return NULL;                                   \
    } while (0)

/* ---- helpers ---- */

static int call_exception_handler(TransportObject *t, const char *message, PyObject *exc)
{
    PyObject *ctx = Py_BuildValue("{s:s,s:O,s:O,s:O}", "message", message, "exception", exc,
                                  "transport", (PyObject *)t, "protocol",
                                  t->protocol ? t->protocol : Py_None);
    if (ctx == NULL)
        return -1;
    PyObject *r = PyObject_CallMethodOneArg((PyObject *)t->loop,
                                            tr_state(t)->str_call_exception_handler, ctx);
    Py_DECREF(ctx);
    if (r == NULL)
        return -1;
    Py_DECREF(r);
    return 0;
}

static int is_fatal_base(PyObject *exc)
{
    return PyErr_GivenExceptionMatches(exc, PyExc_SystemExit) ||
           PyErr_GivenExceptionMatches(exc, PyExc_KeyboardInterrupt);
}

static PyObject *oserror_from_errno(int err)
{
    return aio_oserror(err);
}

static void wq_drop(TransportObject *t, size_t from)
{
    /* Drops queued chunks from index `from` on (those not in flight). */
    while (t->wq_len > from) {
        size_t i = (t->wq_head + t->wq_len - 1) % t->wq_cap;
        t->buffer_size -= t->wq[i].len;
        Py_CLEAR(t->wq[i].obj);
        t->wq_len--;
    }
}

/* Makes room for `extra` more chunks, so that the pushes that follow
 * cannot fail.  0, or -1 with MemoryError set. */
static int wq_reserve(TransportObject *t, size_t extra)
{
    if (t->wq_len + extra <= t->wq_cap)
        return 0;
    size_t ncap = t->wq_cap ? t->wq_cap : 8;
    while (ncap < t->wq_len + extra)
        ncap *= 2;
    wchunk *n = PyMem_Malloc(ncap * sizeof *n);
    if (n == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    for (size_t i = 0; i < t->wq_len; i++)
        n[i] = t->wq[(t->wq_head + i) % t->wq_cap];
    PyMem_Free(t->wq);
    t->wq = n;
    t->wq_cap = ncap;
    t->wq_head = 0;
    return 0;
}

/* Appends a chunk (room reserved by wq_reserve); steals obj. */
static void wq_push(TransportObject *t, PyObject *obj, const char *ptr, size_t len)
{
    wchunk *c = &t->wq[(t->wq_head + t->wq_len) % t->wq_cap];
    c->obj = obj;
    c->ptr = ptr;
    c->len = len;
    t->wq_len++;
    t->buffer_size += len;
}

static void stash_free(aio_qnode *n)
{
    while (n != NULL) {
        aio_qnode *next = n->next;
        aio_req_free(AIO_REQ_OF(n));
        n = next;
    }
}

/* ---- closing ---- */

/* Submits CLOSE and schedules connection_lost(exc) for the next iteration,
 * as asyncio does.  The socket itself is closed only once both have
 * happened: after CLOSE no worker looks at the descriptor any more. */
static void begin_close(TransportObject *t, PyObject *exc)
{
    if (t->close_submitted)
        return;
    t->close_submitted = 1;
    if (t->stream != NULL) {
        aio_stream_pause(t->stream);
        /* Out of memory for a small request: the socket stays registered
         * until the loop closes; connection_lost still comes. */
        (void)aio_stream_control(t->loop->engine, t->stream, AIO_OP_STREAM_CLOSE);
    }
    PyObject *arg = exc ? exc : Py_None;
    PyObject *m = PyObject_GetAttrString((PyObject *)t, "_call_connection_lost");
    if (m == NULL || aio_loop_call_soon(t->loop, m, &arg, 1) < 0)
        PyErr_WriteUnraisable((PyObject *)t);
    Py_XDECREF(m);
}

/* "sockname" of an accepted connection is looked up on first use (most
 * servers never ask: one tuple less per idle connection), at the latest
 * just before the socket closes, so it stays available afterwards as on
 * asyncio.  Call only while t->sock is open.  Returns 0, or -1 with an
 * exception set. */
static int fill_sockname(TransportObject *t)
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

static void close_socket(TransportObject *t);

/* Closes the socket object once connection_lost ran and CLOSE is back. */
static void maybe_close_socket(TransportObject *t)
{
    if (!t->lost_called || t->stream != NULL || t->sock == NULL)
        return;
    close_socket(t);
}

static void close_socket(TransportObject *t)
{
    if (t->sock == NULL)
        return;
    if (fill_sockname(t) < 0)
        PyErr_WriteUnraisable((PyObject *)t);
    PyObject *sock = t->sock;
    t->sock = NULL;
    PyObject *r = PyObject_CallMethod(sock, "close", NULL);
    if (r == NULL)
        PyErr_WriteUnraisable(sock);
    Py_XDECREF(r);
    Py_DECREF(sock);
}

static void force_close(TransportObject *t, PyObject *exc)
{
    if (t->conn_lost)
        return;
    wq_drop(t, t->wreq ? t->wreq_chunks : 0);
    t->closing = 1;
    t->conn_lost++;
    begin_close(t, exc);
}

/* asyncio's _fatal_error: report what is not an OSError, then force-close. */
static void fatal_error(TransportObject *t, PyObject *exc, const char *message)
{
    if (!PyErr_GivenExceptionMatches(exc, PyExc_OSError)) {
        if (call_exception_handler(t, message, exc) < 0)
            PyErr_WriteUnraisable((PyObject *)t);
    }
    force_close(t, exc);
}

/* Handles the exception raised by a protocol callback: SystemExit and
 * KeyboardInterrupt propagate (-1), the rest are fatal for the connection. */
static int callback_failed(TransportObject *t, const char *message)
{
    PyObject *exc = aio_err_fetch();
    if (exc == NULL) {   /* a failure that set no exception: still fatal for the connection */
        force_close(t, NULL);
        return 0;
    }
    if (is_fatal_base(exc)) {
        aio_err_restore(exc);
        return -1;
    }
    fatal_error(t, exc, message);
    Py_DECREF(exc);
    return 0;
}

/* ---- flow control ---- */

static int maybe_pause_protocol(TransportObject *t)
{
    /* After connection_lost there is no protocol to tell (a write still in
     * flight keeps buffer_size up until it comes back). */
    if (t->buffer_size <= t->high || t->protocol_paused || t->protocol == NULL)
        return 0;
    t->protocol_paused = 1;
    PyObject *r = PyObject_CallMethod(t->protocol, "pause_writing", NULL);
    if (r != NULL) {
        Py_DECREF(r);
        return 0;
    }
    PyObject *exc = aio_err_fetch();
    if (is_fatal_base(exc)) {
        aio_err_restore(exc);
        return -1;
    }
    int rc = call_exception_handler(t, "protocol.pause_writing() failed", exc);
    Py_DECREF(exc);
    return rc;
}

static int maybe_resume_protocol(TransportObject *t)
{
    if (!t->protocol_paused || t->buffer_size > t->low || t->protocol == NULL)
        return 0;
    t->protocol_paused = 0;
    PyObject *r = PyObject_CallMethod(t->protocol, "resume_writing", NULL);
    if (r != NULL) {
        Py_DECREF(r);
        return 0;
    }
    PyObject *exc = aio_err_fetch();
    if (is_fatal_base(exc)) {
        aio_err_restore(exc);
        return -1;
    }
    int rc = call_exception_handler(t, "protocol.resume_writing() failed", exc);
    Py_DECREF(exc);
    return rc;
}

/* ---- writing ---- */

/* Hands the queued chunks (up to MAX_WRITE_IOV) to the worker as one WRITE. */
static int submit_write(TransportObject *t)
{
    if (t->wreq != NULL || t->wq_len == 0 || t->stream == NULL)
        return 0;
    size_t k = t->wq_len < MAX_WRITE_IOV ? t->wq_len : MAX_WRITE_IOV;
    aio_req *r = calloc(1, sizeof *r + k * sizeof(struct iovec));
    if (r == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    struct iovec *iov = (struct iovec *)(void *)(r + 1);
    for (size_t i = 0; i < k; i++) {
        wchunk *c = &t->wq[(t->wq_head + i) % t->wq_cap];
        iov[i].iov_base = (void *)c->ptr;
        iov[i].iov_len = c->len;
    }
    r->op = AIO_OP_STREAM_WRITE;
    r->u.wr.s = t->stream;
    r->u.wr.iov = iov;
    r->u.wr.iovcnt = (int)k;
    int rc = aio_stream_write(t->loop->engine, t->stream, r);
    if (rc < 0) {
        free(r);
        return aio_set_errno_error(-rc);
    }
    t->wreq = r;
    t->wreq_chunks = k;
    return 0;
}

static int settle_waiter(PyObject *fut, PyObject *exc)
{
    PyObject *done = PyObject_CallMethod(fut, "done", NULL);
    if (done == NULL)
        return -1;
    int d = PyObject_IsTrue(done);
    Py_DECREF(done);
    if (d)
        return d < 0 ? -1 : 0;
    PyObject *r = exc ? PyObject_CallMethod(fut, "set_exception", "O", exc)
                      : PyObject_CallMethod(fut, "set_result", "O", Py_None);
    Py_XDECREF(r);
    return r ? 0 : -1;
}

/* The buffer drained: finish a close() or write_eof() that waited for it. */
static int write_drained(TransportObject *t)
{
    if (t->empty_waiter != NULL && settle_waiter(t->empty_waiter, NULL) < 0)
        return -1;
    if (t->closing) {
        if (!t->conn_lost) {
            t->conn_lost++;
            begin_close(t, NULL);
        }
    } else if (t->eof) {
        if (shutdown(t->fd, SHUT_WR) < 0 && errno != ENOTCONN) {
            PyObject *exc = oserror_from_errno(errno);
            if (exc == NULL)
                return -1;
            fatal_error(t, exc, "Fatal error on shutdown");
            Py_DECREF(exc);
        }
    }
    return 0;
}

static int write_completed(TransportObject *t, aio_req *r, int deliver)
{
    size_t k = t->wreq_chunks;
    t->wreq = NULL;
    t->wreq_chunks = 0;
    for (size_t i = 0; i < k && t->wq_len > 0; i++) {
        wchunk *c = &t->wq[t->wq_head];
        t->buffer_size -= c->len;
        Py_CLEAR(c->obj);
        t->wq_head = (t->wq_head + 1) % t->wq_cap;
        t->wq_len--;
    }
    int result = r->result;
    aio_req_free(r);
    if (!deliver || result == -ECANCELED)
        return 0;
    if (result < 0) {
        PyObject *exc = oserror_from_errno(-result);
        if (exc == NULL)
            return -1;   /* made fatal for the connection by stream_completion */
        fatal_error(t, exc, MSG_WRITE_ERROR);
        Py_DECREF(exc);
        return 0;
    }
    if (t->conn_lost)
        return 0;
    if (submit_write(t) < 0)
        return -1;
    if (maybe_resume_protocol(t) < 0)
        return -1;
    if (t->wq_len == 0 && t->wreq == NULL)
        return write_drained(t);
    return 0;
}

/* The one argument of a method whose asyncio signature is f(self, name):
 * given by position or by keyword, as Python binds it.  Returns it
 * (borrowed), or NULL with TypeError set. */
static PyObject *one_arg(PyObject *const *args, size_t nargsf, PyObject *kwnames,
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

/* One piece of the data given to write() or writelines(), validated and
 * not yet queued.  An exact bytes object is immutable: it is referenced
 * (view.obj stays NULL).  Anything else is viewed now and copied when it is
 * queued, so what was passed is what is sent. */
typedef struct wpiece {
    PyObject *obj;                /* borrowed: the caller's object */
    Py_buffer view;               /* held when view.obj != NULL */
    const char *ptr;
    size_t len;
} wpiece;

#define WPIECES_ON_STACK 8

static void pieces_release(wpiece *p, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (p[i].view.obj != NULL)
            PyBuffer_Release(&p[i].view);
}

/* Takes a C-contiguous view of obj into *p.  Returns 0, or -1 with the
 * exception of PyObject_GetBuffer() set (BufferError for a non-contiguous
 * memoryview, TypeError for an object without the buffer protocol). */
static int piece_init(wpiece *p, PyObject *obj)
{
    p->obj = obj;
    p->view.obj = NULL;
    if (PyBytes_CheckExact(obj)) {
        p->ptr = PyBytes_AS_STRING(obj);
        p->len = (size_t)PyBytes_GET_SIZE(obj);
        return 0;
    }
    if (PyObject_GetBuffer(obj, &p->view, PyBUF_SIMPLE) < 0) {
        p->view.obj = NULL;
        return -1;
    }
    p->ptr = p->view.buf;
    p->len = (size_t)p->view.len;
    return 0;
}

/* asyncio's write() after the connection was lost: count, and warn from
 * the fifth call on.  Returns 0, or -1 with an exception set. */
static int write_after_lost(TransportObject *t)
{
    if (t->conn_lost >= LOG_THRESHOLD_FOR_CONNLOST_WRITES) {
        PyObject *mod = PyImport_ImportModule("asyncio.log");
        PyObject *logger = mod ? PyObject_GetAttrString(mod, "logger") : NULL;
        PyObject *r = logger ? PyObject_CallMethod(logger, "warning", "s",
                                                   "socket.send() raised exception.")
                             : NULL;
        Py_XDECREF(mod);
        Py_XDECREF(logger);
        if (r == NULL)
            return -1;
        Py_DECREF(r);
    }
    t->conn_lost++;
    return 0;
}

/* The data cannot be sent (a non-contiguous memoryview): asyncio's send()
 * raises BufferError inside its write path, which makes it a fatal error
 * of the transport -- reported, and the connection closed. */
static void write_unsendable(TransportObject *t)
{
    PyObject *exc = aio_err_fetch();
    fatal_error(t, exc, MSG_WRITE_ERROR);
    Py_DECREF(exc);
}

/* Sends and queues validated pieces, `total` > 0 bytes in all, as one
 * batch: all of it or (on MemoryError before anything went out) none.
 * With nothing queued, a large batch (any batch in inline mode) is first
 * offered to one non-blocking sendmsg() on the loop thread while the bytes
 * are in this core's cache; smaller ones go to the engine, batched
 * (measured in docs/benchmarks.md).  What is left is queued and handed to
 * the engine as one WRITE.  Returns 0, or -1 with an exception set. */
static int queue_pieces(TransportObject *t, wpiece *p, size_t n, size_t total)
{
    size_t first = t->wq_len;
    if (wq_reserve(t, n) < 0)
        return -1;
    size_t sent = 0;
    if ((t->inline_writes || total >= INLINE_WRITE_MIN) && t->wq_len == 0 && t->wreq == NULL &&
        t->stream != NULL) {
        struct iovec small[WPIECES_ON_STACK];
        size_t k = n < IOV_MAX ? n : IOV_MAX;
        struct iovec *iov = k <= WPIECES_ON_STACK ? small : PyMem_Malloc(k * sizeof *iov);
        if (iov == NULL) {
            PyErr_NoMemory();
            return -1;
        }
        for (size_t i = 0; i < k; i++) {
            iov[i].iov_base = (void *)p[i].ptr;
            iov[i].iov_len = p[i].len;
        }
        long r = aio_stream_send_now(t->loop->engine, t->stream, iov, (int)k);
        if (iov != small)
            PyMem_Free(iov);
        if (r < 0) {
            PyObject *exc = oserror_from_errno((int)-r);
            if (exc == NULL)
                return -1;
            fatal_error(t, exc, MSG_WRITE_ERROR);
            Py_DECREF(exc);
            return 0;
        }
        if (r > 0)
            sent = (size_t)r;
        if (sent == total)
            return 0;
    }
    /* Queue what is left: skip the pieces that went out whole, then the
     * sent part of the next one. */
    size_t skip = sent;
    for (size_t i = 0; i < n; i++) {
        if (skip >= p[i].len) {
            skip -= p[i].len;
            continue;
        }
        const char *ptr = p[i].ptr + skip;
        size_t len = p[i].len - skip;
        skip = 0;
        if (p[i].view.obj == NULL) {
            wq_push(t, Py_NewRef(p[i].obj), ptr, len);
            continue;
        }
        PyObject *copy = PyBytes_FromStringAndSize(ptr, (Py_ssize_t)len);
        if (copy == NULL) {
            wq_drop(t, first);
            if (sent > 0) {
                /* Part of the batch is on the wire and the rest cannot be
                 * queued: the byte stream is broken, so is the connection. */
                PyObject *exc = aio_err_fetch();
                force_close(t, exc);
                aio_err_restore(exc);
            }
            return -1;
        }
        wq_push(t, copy, PyBytes_AS_STRING(copy), len);
    }
    if (submit_write(t) < 0 || maybe_pause_protocol(t) < 0)
        return -1;
    return 0;
}

/* asyncio's _SelectorSocketTransport.write(): bytes, bytearray and
 * memoryview (subclasses too) are taken, anything else is a TypeError --
 * array.array included, which writelines() does take.  The checks come in
 * asyncio's order: type, write_eof(), sendfile, empty data, lost
 * connection; a memoryview that cannot be sent (not C-contiguous) is then a
 * fatal error of the transport, as asyncio's send() makes it. */
static PyObject *tr_write(TransportObject *t, PyObject *const *args, size_t nargsf,
                          PyObject *kwnames)
{
    ON_LOOP_THREAD(t);
    PyObject *data = one_arg(args, nargsf, kwnames, "write", "data");
    if (data == NULL)
        return NULL;
    int is_view = PyMemoryView_Check(data);
    if (!is_view && !PyBytes_Check(data) && !PyByteArray_Check(data)) {
        PyObject *name = PyType_GetName(Py_TYPE(data));
        if (name != NULL) {
            PyErr_Format(PyExc_TypeError,
                         "data argument must be a bytes-like object, not %R", name);
            Py_DECREF(name);
        }
        return NULL;
    }
    if (t->eof) {
        PyErr_SetString(PyExc_RuntimeError, "Cannot call write() after write_eof()");
        return NULL;
    }
    if (t->empty_waiter != NULL) {
        PyErr_SetString(PyExc_RuntimeError, "unable to write; sendfile is in progress");
        return NULL;
    }
    /* asyncio's "if not data": len() of the object (of a memoryview, its
     * first dimension; a released one raises ValueError). */
    int nonempty = is_view ? PyObject_IsTrue(data) : Py_SIZE(data) > 0;
    if (nonempty <= 0)
        return nonempty < 0 ? NULL : Py_NewRef(Py_None);
    if (t->conn_lost) {
        if (write_after_lost(t) < 0)
            return NULL;
        Py_RETURN_NONE;
    }
    wpiece p;
    if (piece_init(&p, data) < 0) {
        if (!PyErr_ExceptionMatches(PyExc_BufferError))
            return NULL;
        write_unsendable(t);
        Py_RETURN_NONE;
    }
    int rc = p.len > 0 ? queue_pieces(t, &p, 1, p.len) : 0;
    pieces_release(&p, 1);
    if (rc < 0)
        return NULL;
    Py_RETURN_NONE;
}

/* writelines(): every item is validated (and viewed) before anything is
 * queued, so a bad item leaves nothing sent; then the whole batch goes out
 * as one WRITE.  What is accepted and in which order the checks come is
 * asyncio's on the running Python:
 *   3.11   WriteTransport.writelines(): write(b''.join(list_of_data)):
 *          any C-contiguous buffer (array.array too) is an item; a
 *          non-iterable or an item that is not such a buffer (a
 *          non-contiguous memoryview included) is a TypeError; then
 *          write()'s checks.
 *   3.12+  _SelectorSocketTransport.writelines(): write_eof() and sendfile
 *          first, then "if not list_of_data: return", then memoryview() of
 *          every item (TypeError for a non-buffer); an item that cannot be
 *          sent (a non-contiguous memoryview) is a fatal error of the
 *          transport when the batch is sent. */
static PyObject *tr_writelines(TransportObject *t, PyObject *const *args, size_t nargsf,
                               PyObject *kwnames)
{
    ON_LOOP_THREAD(t);
    PyObject *lines = one_arg(args, nargsf, kwnames, "writelines", "list_of_data");
    if (lines == NULL)
        return NULL;
#if PY_VERSION_HEX >= 0x030C0000
    if (t->eof) {
        PyErr_SetString(PyExc_RuntimeError, "Cannot call writelines() after write_eof()");
        return NULL;
    }
    if (t->empty_waiter != NULL) {
        PyErr_SetString(PyExc_RuntimeError, "unable to writelines; sendfile is in progress");
        return NULL;
    }
    int truth = PyObject_IsTrue(lines);
    if (truth <= 0)
        return truth < 0 ? NULL : Py_NewRef(Py_None);
#endif
    PyObject *seq = PySequence_Fast(lines, "can only join an iterable");
    if (seq == NULL)
        return NULL;
    size_t n = (size_t)PySequence_Fast_GET_SIZE(seq);
    PyObject **items = PySequence_Fast_ITEMS(seq);
    wpiece small[WPIECES_ON_STACK];
    wpiece *p = n <= WPIECES_ON_STACK ? small : PyMem_Malloc(n * sizeof *p);
    if (p == NULL) {
        Py_DECREF(seq);
        return PyErr_NoMemory();
    }
    PyObject *result = NULL;
    size_t got = 0, total = 0;
    int unsendable = 0;
    for (; got < n; got++) {
        PyObject *item = items[got];
#if PY_VERSION_HEX >= 0x030C0000
        /* memoryview(item): its errors, then sendability. */
        if (!PyBytes_CheckExact(item) && !PyByteArray_CheckExact(item)) {
            PyObject *mv = PyMemoryView_FromObject(item);
            if (mv == NULL)
                goto done;
            Py_DECREF(mv);
        }
        if (piece_init(&p[got], item) < 0) {
            if (!PyErr_ExceptionMatches(PyExc_BufferError))
                goto done;
            /* Reported when the batch would be sent, after the checks. */
            PyErr_Clear();
            unsendable = 1;
            p[got].ptr = NULL;
            p[got].len = 0;
            continue;
        }
#else
        if (piece_init(&p[got], item) < 0) {
            PyErr_Format(PyExc_TypeError,
                         "sequence item %zu: expected a bytes-like object, %.80s found", got,
                         Py_TYPE(item)->tp_name);
            goto done;
        }
#endif
        if (p[got].len > (size_t)PY_SSIZE_T_MAX - total) {
            got++;
            PyErr_SetString(PyExc_OverflowError, "join() result is too long");
            goto done;
        }
        total += p[got].len;
    }
#if PY_VERSION_HEX < 0x030C0000
    /* write(joined)'s checks. */
    if (t->eof) {
        PyErr_SetString(PyExc_RuntimeError, "Cannot call write() after write_eof()");
        goto done;
    }
    if (t->empty_waiter != NULL) {
        PyErr_SetString(PyExc_RuntimeError, "unable to write; sendfile is in progress");
        goto done;
    }
#endif
    if (t->conn_lost) {
        if (total > 0 && write_after_lost(t) < 0)
            goto done;
    } else if (unsendable) {
        PyErr_SetString(PyExc_BufferError, "memoryview: underlying buffer is not C-contiguous");
        write_unsendable(t);
    } else if (total > 0 && queue_pieces(t, p, n, total) < 0) {
        goto done;
    }
    result = Py_NewRef(Py_None);
done:
    pieces_release(p, got);
    if (p != small)
        PyMem_Free(p);
    Py_DECREF(seq);
    return result;
}

static PyObject *tr_write_eof(TransportObject *t, PyObject *Py_UNUSED(ignored))
{
    ON_LOOP_THREAD(t);
    if (t->closing || t->eof)
        Py_RETURN_NONE;
    t->eof = 1;
    if (t->wq_len == 0 && t->wreq == NULL && shutdown(t->fd, SHUT_WR) < 0) {
        PyErr_SetFromErrno(PyExc_OSError);
        return NULL;
    }
    Py_RETURN_NONE;
}

static PyObject *tr_can_write_eof(TransportObject *t, PyObject *Py_UNUSED(ignored))
{
    (void)t;
    Py_RETURN_TRUE;
}

/* ---- reading ---- */

/* protocol.data_received(b); steals b. */
static int call_data_received(TransportObject *t, PyObject *b)
{
    PyObject *res = PyObject_CallMethodOneArg(t->protocol, tr_state(t)->str_data_received, b);
    Py_DECREF(b);
    if (res == NULL)
        return callback_failed(t, "Fatal error: protocol.data_received() call failed.");
    Py_DECREF(res);
    return 0;
}

/* The size hint given to get_buffer(): the one object the loop makes for a
 * read into a BufferedProtocol (a fault site, as the bytes of a plain
 * read are).  A new reference, or NULL with an exception set. */
static PyObject *read_hint(Py_ssize_t n)
{
    if (aio_fault_hit(AIO_FAULT_PYOBJ))
        return PyErr_NoMemory();
    return PyLong_FromSsize_t(n);
}

/* A BufferedProtocol's get_buffer(hint), exported writable into *view.
 * Returns 0, or callback_failed()'s result (view not filled). */
static int protocol_buffer(TransportObject *t, PyObject *hint, Py_buffer *view)
{
    if (hint == NULL)   /* the loop's own object: a read error, as asyncio's recv_into() */
        return callback_failed(t, MSG_READ_ERROR);
    PyObject *buf = PyObject_CallMethodOneArg(t->protocol, tr_state(t)->str_get_buffer, hint);
    Py_DECREF(hint);
    if (buf == NULL || PyObject_GetBuffer(buf, view, PyBUF_WRITABLE) < 0) {
        Py_XDECREF(buf);
        return callback_failed(t, "Fatal error: protocol.get_buffer() call failed.");
    }
    Py_DECREF(buf);   /* the export keeps the object alive */
    if (view->len == 0) {
        PyBuffer_Release(view);
        PyErr_SetString(PyExc_RuntimeError, "get_buffer() returned an empty buffer");
        return callback_failed(t, "Fatal error: protocol.get_buffer() call failed.");
    }
    return 1;
}

static int call_buffer_updated(TransportObject *t, size_t k)
{
    PyObject *nb = PyLong_FromSize_t(k);
    PyObject *res = nb ? PyObject_CallMethodOneArg(t->protocol, tr_state(t)->str_buffer_updated, nb)
                       : NULL;
    Py_XDECREF(nb);
    if (res == NULL)
        return callback_failed(t, "Fatal error: protocol.buffer_updated() call failed.");
    Py_DECREF(res);
    return 0;
}

static int deliver_data(TransportObject *t, aio_req *r, size_t *consumed)
{
    size_t n = (size_t)r->result;
    const char *data = r->u.rd.data;
    *consumed = 0;
    if (!t->buffered) {
        PyObject *b = aio_fault_hit(AIO_FAULT_PYOBJ) ? PyErr_NoMemory()
                                                     : PyBytes_FromStringAndSize(data, (Py_ssize_t)n);
        if (b == NULL)
            return callback_failed(t, MSG_READ_ERROR);
        *consumed = n;
        return call_data_received(t, b);
    }
    /* BufferedProtocol: copy into the protocol's buffers, as many rounds of
     * get_buffer()/buffer_updated() as the data needs; stop early if the
     * protocol paused reading or closed the transport meanwhile. */
    while (*consumed < n && !t->paused && !t->closing) {
        Py_buffer view;
        int got = protocol_buffer(t, read_hint((Py_ssize_t)(n - *consumed)), &view);
        if (got <= 0)
            return got;
        size_t k = n - *consumed;
        if ((size_t)view.len < k)
            k = (size_t)view.len;
        memcpy(view.buf, data + *consumed, k);
        PyBuffer_Release(&view);
        *consumed += k;
        if (call_buffer_updated(t, k) < 0)
            return -1;
    }
    return 0;
}

static int deliver_eof(TransportObject *t)
{
    PyObject *res = PyObject_CallMethod(t->protocol, "eof_received", NULL);
    if (res == NULL)
        return callback_failed(t, "Fatal error: protocol.eof_received() call failed.");
    int keep_open = PyObject_IsTrue(res);
    Py_DECREF(res);
    if (keep_open < 0)
        return callback_failed(t, "Fatal error: protocol.eof_received() call failed.");
    if (!keep_open) {
        PyObject *r = PyObject_CallMethod((PyObject *)t, "close", NULL);
        if (r == NULL)
            return -1;
        Py_DECREF(r);
    }
    return 0;
}

/* A direct read (rd.ready): the socket is read here, straight into the
 * bytes object given to data_received() or into the buffer get_buffer()
 * returned -- one copy, where a read through an engine buffer makes two.
 * Sized by the bytes queued in the socket, at most asyncio's 256 KiB. */
#define DIRECT_MAX (256 * 1024)
#define DIRECT_GUESS (64 * 1024)

static int deliver_read_result(TransportObject *t, long n)
{
    if (n == 0)
        return deliver_eof(t);
    if (n == -EAGAIN)
        return 0;
    PyObject *exc = oserror_from_errno((int)-n);
    if (exc == NULL)
        return callback_failed(t, MSG_READ_ERROR);
    fatal_error(t, exc, MSG_READ_ERROR);
    Py_DECREF(exc);
    return 0;
}

static int read_direct(TransportObject *t)
{
    aio_engine *e = t->loop->engine;
    aio_stream *s = t->stream;
    size_t avail = aio_stream_pending_bytes(s);
    size_t want = avail == 0 ? DIRECT_GUESS : avail > DIRECT_MAX ? DIRECT_MAX : avail;
    if (!t->buffered) {
        PyObject *b = aio_fault_hit(AIO_FAULT_PYOBJ) ? PyErr_NoMemory()
                                                     : PyBytes_FromStringAndSize(NULL, (Py_ssize_t)want);
        if (b == NULL) {
            (void)aio_stream_recv_now(e, s, NULL, 0);
            return callback_failed(t, MSG_READ_ERROR);
        }
        long n = aio_stream_recv_now(e, s, PyBytes_AS_STRING(b), want);
        if (n <= 0) {
            Py_DECREF(b);
            return deliver_read_result(t, n);
        }
        if ((size_t)n < want && _PyBytes_Resize(&b, (Py_ssize_t)n) < 0)
            return callback_failed(t, MSG_READ_ERROR);   /* the bytes read are lost: fatal */
        return call_data_received(t, b);
    }
    Py_buffer view;
    int got = protocol_buffer(t, read_hint(avail ? (Py_ssize_t)avail : -1), &view);
    if (got <= 0) {
        (void)aio_stream_recv_now(e, s, NULL, 0);
        return got;
    }
    /* The export is held across the recv, so the buffer cannot be resized
     * under it. */
    long n = aio_stream_recv_now(e, s, view.buf, (size_t)view.len);
    PyBuffer_Release(&view);
    if (n <= 0)
        return deliver_read_result(t, n);
    return call_buffer_updated(t, (size_t)n);
}

/* Reads held while reading is paused never keep a backend's scarce read
 * buffer: the other streams may need it to make progress. */
static aio_req *stash_own(aio_req *r)
{
    aio_req *copy = aio_read_detach(r);
    return copy != NULL ? copy : r;
}

static void stash_push_front(TransportObject *t, aio_req *r)
{
    r = stash_own(r);
    r->node.next = t->stash_first;
    t->stash_first = &r->node;
    if (t->stash_last == NULL)
        t->stash_last = &r->node;
}

static void stash_push_back(TransportObject *t, aio_req *r)
{
    r = stash_own(r);
    r->node.next = NULL;
    if (t->stash_last)
        t->stash_last->next = &r->node;
    else
        t->stash_first = &r->node;
    t->stash_last = &r->node;
}

/* Delivers one read completion, or keeps it while reading is paused.
 * Returns -1 only when SystemExit/KeyboardInterrupt must propagate (the
 * completion has been consumed or stashed either way). */
static int read_completed_impl(TransportObject *t, aio_req *r, int deliver, int draining)
{
    /* Keep order: while anything is stashed, newer data queues behind it
     * (the stash drains from a callback scheduled by resume_reading). */
    if (deliver && !t->closing && (t->paused || (t->stash_first != NULL && !draining))) {
        stash_push_back(t, r);
        return 0;
    }
    int rc = 0;
    if (r->u.rd.ready) {
        /* Not read while closing: the stream arms no further read then
         * (asyncio stops reading at close() too). */
        if (deliver && !t->closing && t->protocol != NULL && t->stream != NULL)
            rc = read_direct(t);
    } else if (deliver && !t->closing && t->protocol != NULL) {
        if (r->result > 0) {
            size_t consumed;
            rc = deliver_data(t, r, &consumed);
            if (rc == 0 && consumed < (size_t)r->result && t->paused && !t->closing) {
                /* Paused halfway through a buffered delivery: keep the rest. */
                r->u.rd.data += consumed;
                r->result -= (int)consumed;
                stash_push_front(t, r);
                return 0;
            }
        } else if (r->result == 0) {
            rc = deliver_eof(t);
        } else {
            PyObject *exc = oserror_from_errno(-r->result);
            if (exc == NULL) {
                rc = callback_failed(t, MSG_READ_ERROR);
            } else {
                fatal_error(t, exc, MSG_READ_ERROR);
                Py_DECREF(exc);
            }
        }
    }
    aio_req_free(r);
    /* On shutdown (deliver == 0) the workers are gone: nothing to restart.
     * A next read that cannot be armed ends the connection as a failed
     * recv() would (connection_lost(OSError)), never the loop. */
    int err;
    if (deliver && t->stream != NULL &&
        (err = aio_stream_release(t->loop->engine, t->stream, 1)) < 0 && rc == 0) {
        aio_set_errno_error(-err);
        rc = callback_failed(t, MSG_READ_ERROR);
    }
    return rc;
}

static int read_completed(TransportObject *t, aio_req *r, int deliver)
{
    return read_completed_impl(t, r, deliver, 0);
}

static PyObject *tr_drain_stash(TransportObject *t, PyObject *Py_UNUSED(ignored))
{
    ON_LOOP_THREAD(t);
    t->stash_scheduled = 0;
    while (t->stash_first != NULL && !t->paused) {
        aio_qnode *n = t->stash_first;
        t->stash_first = n->next;
        if (t->stash_first == NULL)
            t->stash_last = NULL;
        if (read_completed_impl(t, AIO_REQ_OF(n), 1, 1) < 0 &&
            callback_failed(t, MSG_READ_ERROR) < 0)
            return NULL;
    }
    Py_RETURN_NONE;
}

static int schedule_method(TransportObject *t, const char *name, PyObject *arg)
{
    PyObject *m = PyObject_GetAttrString((PyObject *)t, name);
    if (m == NULL)
        return -1;
    int rc = aio_loop_call_soon(t->loop, m, arg ? &arg : NULL, arg ? 1 : 0);
    Py_DECREF(m);
    return rc;
}

static PyObject *tr_pause_reading(TransportObject *t, PyObject *Py_UNUSED(ignored))
{
    ON_LOOP_THREAD(t);
    if (t->closing || t->paused)
        Py_RETURN_NONE;
    t->paused = 1;
    if (t->stream != NULL)
        aio_stream_pause(t->stream);
    Py_RETURN_NONE;
}

static PyObject *tr_resume_reading(TransportObject *t, PyObject *Py_UNUSED(ignored))
{
    ON_LOOP_THREAD(t);
    if (t->closing || !t->paused)
        Py_RETURN_NONE;
    t->paused = 0;
    if (t->stash_first != NULL && !t->stash_scheduled) {
        if (schedule_method(t, "_drain_stash", NULL) < 0)
            return NULL;
        t->stash_scheduled = 1;
    }
    int err;
    if (t->stream != NULL && (err = aio_stream_resume(t->loop->engine, t->stream)) < 0)
        return aio_set_errno_error(-err), NULL;
    Py_RETURN_NONE;
}

/* Scheduled after connection_made: from now on reads may be delivered. */
static PyObject *tr_start_reading(TransportObject *t, PyObject *Py_UNUSED(ignored))
{
    ON_LOOP_THREAD(t);
    if (t->closing || t->paused || t->stream == NULL)
        Py_RETURN_NONE;
    int err = aio_stream_resume(t->loop->engine, t->stream);
    if (err < 0)
        return aio_set_errno_error(-err), NULL;
    Py_RETURN_NONE;
}

static PyObject *tr_is_reading(TransportObject *t, PyObject *Py_UNUSED(ignored))
{
    return PyBool_FromLong(!t->paused && !t->closing);
}

/* ---- completions ---- */


/* The engine let go of the stream: the placeholder that kept its descriptor
 * number taken (hand_off_socket) can go. */
static void release_held_fd(TransportObject *t)
{
    if (t->held_fd >= 0) {
        close(t->held_fd);
        t->held_fd = -1;
    }
}

static int tr_close_completed(TransportObject *t, int deliver)
{
    aio_stream *s = t->stream;
    t->stream = NULL;
    release_held_fd(t);
    stash_free(t->stash_first);
    t->stash_first = t->stash_last = NULL;
    if (deliver)
        maybe_close_socket(t);
    else if (t->closing)
        /* The loop is closing: connection_lost will never run, so the
         * socket of a transport the user closed is closed now (as on the
         * streams loop.close() finds still open). */
        close_socket(t);
    aio_stream_unlink_free(t->loop, s);   /* may drop the last reference to t */
    return 0;
}

/* connection_lost ran while the engine may still use the descriptor number:
 * put a socket that never connects under the number (as Server.close() does
 * for listeners) and detach the user's socket object from it, so that the
 * object reads closed (fileno() == -1) as on asyncio, and its __del__ can
 * never close a number recycled by then.  The placeholder is closed when
 * CLOSE is back. */
static void hand_off_socket(TransportObject *t)
{
    int ph = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (ph < 0)
        return;   /* keep the socket; it is closed when CLOSE is back */
    if (fill_sockname(t) < 0)
        PyErr_WriteUnraisable((PyObject *)t);
    if (dup3(ph, t->fd, O_CLOEXEC) < 0) {
        close(ph);
        return;
    }
    close(ph);
    t->held_fd = t->fd;
    PyObject *sock = t->sock;
    t->sock = NULL;
    PyObject *r = PyObject_CallMethod(sock, "detach", NULL);
    if (r == NULL)
        PyErr_WriteUnraisable(sock);
    Py_XDECREF(r);
    Py_DECREF(sock);
}

static PyObject *tr_call_connection_lost(TransportObject *t, PyObject *exc)
{
    ON_LOOP_THREAD(t);
    if (t->lost_called)
        Py_RETURN_NONE;
    t->lost_called = 1;
    PyObject *protocol = t->protocol, *server = t->server;
    t->protocol = NULL;
    t->server = NULL;
    PyObject *res = protocol ? PyObject_CallMethodOneArg(protocol,
                                                         tr_state(t)->str_connection_lost, exc)
                             : Py_NewRef(Py_None);
    PyObject *err = res == NULL ? aio_err_fetch() : NULL;
    Py_XDECREF(res);
    if (t->stream != NULL && t->sock != NULL) {
        /* CLOSE is not back yet, so the descriptor number must stay taken;
         * shut the connection down now so the peer sees it closed at once,
         * whether or not the loop runs again.  A socket object nobody but
         * the transport can have (sock_private: an accepted connection
         * nobody asked for) cannot be seen open by anyone: it is closed
         * when CLOSE is back, without the placeholder's two syscalls. */
        shutdown(t->fd, SHUT_RDWR);
        if (!t->sock_private)
            hand_off_socket(t);
    }
    maybe_close_socket(t);
    if (server != NULL && server != Py_None) {
#if PY_VERSION_HEX >= 0x030D0000
        PyObject *r = PyObject_CallMethod(server, "_detach", "O", (PyObject *)t);
#else
        PyObject *r = PyObject_CallMethod(server, "_detach", NULL);
#endif
        if (r == NULL)
            PyErr_WriteUnraisable(server);
        Py_XDECREF(r);
    }
    Py_XDECREF(protocol);
    Py_XDECREF(server);
    if (t->empty_waiter != NULL) {
        PyObject *e = PyObject_CallFunction(PyExc_ConnectionError, "s",
                                            "Connection is closed by peer");
        if (e == NULL || settle_waiter(t->empty_waiter, e) < 0)
            PyErr_WriteUnraisable((PyObject *)t);
        Py_XDECREF(e);
    }
    if (err != NULL) {
        aio_err_restore(err);
        return NULL;
    }
    Py_RETURN_NONE;
}

static PyObject *tr_close(TransportObject *t, PyObject *Py_UNUSED(ignored))
{
    ON_LOOP_THREAD(t);
    if (t->closing)
        Py_RETURN_NONE;
    t->closing = 1;
    if (t->stream != NULL)
        aio_stream_pause(t->stream);
    if (t->wq_len == 0 && t->wreq == NULL) {
        t->conn_lost++;
        begin_close(t, NULL);
    }
    Py_RETURN_NONE;
}

static PyObject *tr_abort(TransportObject *t, PyObject *Py_UNUSED(ignored))
{
    ON_LOOP_THREAD(t);
    force_close(t, NULL);
    Py_RETURN_NONE;
}

static PyObject *tr_fatal_error(TransportObject *t, PyObject *args)
{
    ON_LOOP_THREAD(t);
    PyObject *exc;
    const char *message = "Fatal error on transport";
    if (!PyArg_ParseTuple(args, "O|s:_fatal_error", &exc, &message))
        return NULL;
    fatal_error(t, exc, message);
    Py_RETURN_NONE;
}

static PyObject *tr_force_close(TransportObject *t, PyObject *exc)
{
    ON_LOOP_THREAD(t);
    force_close(t, exc);
    Py_RETURN_NONE;
}

/* ---- sendfile support (asyncio's _sendfile_native) ---- */

static PyObject *tr_make_empty_waiter(TransportObject *t, PyObject *Py_UNUSED(ignored))
{
    ON_LOOP_THREAD(t);
    if (t->empty_waiter != NULL) {
        PyErr_SetString(PyExc_RuntimeError, "Empty waiter is already set");
        return NULL;
    }
    t->empty_waiter = PyObject_CallMethod((PyObject *)t->loop, "create_future", NULL);
    if (t->empty_waiter == NULL)
        return NULL;
    if (t->wq_len == 0 && t->wreq == NULL && settle_waiter(t->empty_waiter, NULL) < 0)
        return NULL;
    return Py_NewRef(t->empty_waiter);
}

static PyObject *tr_reset_empty_waiter(TransportObject *t, PyObject *Py_UNUSED(ignored))
{
    ON_LOOP_THREAD(t);
    Py_CLEAR(t->empty_waiter);
    Py_RETURN_NONE;
}

/* ---- the rest of asyncio.Transport ---- */

static PyObject *tr_is_closing(TransportObject *t, PyObject *Py_UNUSED(ignored))
{
    return PyBool_FromLong(t->closing);
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

/* What is queued and not yet taken by the kernel, as asyncio reports it:
 * the part of the WRITE in flight that the engine has already sent does not
 * count, even before its completion is dispatched (on io_uring the send
 * completes when the loop enters the ring, at the start of the next
 * iteration; on the threads engine when the completion thread gets to it). */
static PyObject *tr_get_write_buffer_size(TransportObject *t, PyObject *Py_UNUSED(ignored))
{
    size_t n = t->buffer_size;
    if (t->wreq != NULL) {
        size_t sent = aio_write_progress(t->wreq);
        n = sent < n ? n - sent : 0;
    }
    return PyLong_FromSize_t(n);
}

/* A mark that passed asyncio's check (>= 0) as the size_t that
 * buffer_size is compared with: sizes are whole bytes, so "size <= mark"
 * holds exactly when "size <= floor(mark)"; a mark beyond SIZE_MAX (inf, a
 * huge int) is never reached.  Returns 0, or -1 with an exception set. */
static int mark_to_size(PyObject *mark, size_t *out)
{
    PyObject *n;
    if (PyLong_Check(mark)) {
        n = Py_NewRef(mark);
    } else if (PyFloat_Check(mark)) {
        double d = PyFloat_AS_DOUBLE(mark);
        if (d >= 18446744073709551616.0) {   /* 2**64, inf */
            *out = SIZE_MAX;
            return 0;
        }
        *out = (size_t)d;
        return 0;
    } else {
        n = PyNumber_Long(mark);   /* floor for the non-negative: Decimal, Fraction */
        if (n == NULL) {
            if (!PyErr_ExceptionMatches(PyExc_OverflowError))
                return -1;
            PyErr_Clear();   /* Decimal('Infinity') */
            *out = SIZE_MAX;
            return 0;
        }
    }
    size_t v = PyLong_AsSize_t(n);
    Py_DECREF(n);
    if (v == (size_t)-1 && PyErr_Occurred()) {
        if (!PyErr_ExceptionMatches(PyExc_OverflowError))
            return -1;
        PyErr_Clear();
    }
    *out = v;
    return 0;
}

/* asyncio's _FlowControlMixin._set_write_buffer_limits(), with Python's own
 * arithmetic and comparisons so that every value it takes is taken here
 * (floats, inf, huge ints) and every value it refuses raises the same
 * exception (NaN and negatives: ValueError; a str: TypeError):
 *     if high is None: high = 64 KiB if low is None else 4 * low
 *     if low is None: low = high // 4
 *     if not high >= low >= 0: raise ValueError(...) */
static int set_limits(TransportObject *t, PyObject *high_o, PyObject *low_o)
{
    PyObject *high = NULL, *low = NULL, *k = NULL;
    int rc = -1;
    if (high_o == Py_None) {
        k = PyLong_FromLong(low_o == Py_None ? 64 * 1024 : 4);
        if (k == NULL)
            goto done;
        high = low_o == Py_None ? Py_NewRef(k) : PyNumber_Multiply(k, low_o);
    } else {
        high = Py_NewRef(high_o);
    }
    if (high == NULL)
        goto done;
    if (low_o == Py_None) {
        Py_XSETREF(k, PyLong_FromLong(4));
        low = k ? PyNumber_FloorDivide(high, k) : NULL;
    } else {
        low = Py_NewRef(low_o);
    }
    if (low == NULL)
        goto done;
    Py_XSETREF(k, PyLong_FromLong(0));
    if (k == NULL)
        goto done;
    int ok = PyObject_RichCompareBool(high, low, Py_GE);
    if (ok > 0)
        ok = PyObject_RichCompareBool(low, k, Py_GE);
    if (ok < 0)
        goto done;
    if (!ok) {
        PyErr_Format(PyExc_ValueError, "high (%R) must be >= low (%R) must be >= 0", high, low);
        goto done;
    }
    size_t hs, ls;
    if (mark_to_size(high, &hs) < 0 || mark_to_size(low, &ls) < 0)
        goto done;
    t->high = hs;
    t->low = ls;
    /* Keep what was given unless the size says it all (an exact int that fits). */
    Py_XSETREF(t->high_obj, PyLong_CheckExact(high) && hs != SIZE_MAX ? NULL : Py_NewRef(high));
    Py_XSETREF(t->low_obj, PyLong_CheckExact(low) && ls != SIZE_MAX ? NULL : Py_NewRef(low));
    rc = 0;
done:
    Py_XDECREF(high);
    Py_XDECREF(low);
    Py_XDECREF(k);
    return rc;
}

/* A mark as asyncio reports it: the value that was given. */
static PyObject *mark_object(PyObject *obj, size_t v)
{
    return obj != NULL ? Py_NewRef(obj) : PyLong_FromSize_t(v);
}

static PyObject *tr_get_write_buffer_limits(TransportObject *t, PyObject *Py_UNUSED(ignored))
{
    PyObject *low = mark_object(t->low_obj, t->low);
    PyObject *high = low ? mark_object(t->high_obj, t->high) : NULL;
    PyObject *r = high ? PyTuple_Pack(2, low, high) : NULL;
    Py_XDECREF(low);
    Py_XDECREF(high);
    return r;
}

static PyObject *tr_get_high_water(TransportObject *t, void *closure)
{
    (void)closure;
    return mark_object(t->high_obj, t->high);
}

static PyObject *tr_get_low_water(TransportObject *t, void *closure)
{
    (void)closure;
    return mark_object(t->low_obj, t->low);
}

static PyObject *tr_set_write_buffer_limits(TransportObject *t, PyObject *args, PyObject *kw)
{
    ON_LOOP_THREAD(t);
    static char *kwlist[] = {"high", "low", NULL};
    PyObject *high = Py_None, *low = Py_None;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "|OO:set_write_buffer_limits", kwlist, &high,
                                     &low))
        return NULL;
    if (set_limits(t, high, low) < 0 || maybe_pause_protocol(t) < 0)
        return NULL;
    Py_RETURN_NONE;
}

static PyObject *tr_repr(TransportObject *t)
{
    const char *state = t->stream == NULL && t->close_submitted ? " closed"
                        : t->closing                            ? " closing"
                                                                : "";
    return PyUnicode_FromFormat("<aioloop.StreamTransport%s fd=%d read=%s write=<%s, bufsize=%zu>>",
                                state, t->fd, t->paused ? "paused" : "polling",
                                t->wq_len ? "polling" : "idle", t->buffer_size);
}

/* ---- construction and lifetime ---- */


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
    t->inline_writes = L->inline_writes;
    if (t->extra_slot == NULL || set_protocol(t, protocol) < 0)
        goto fail;
    t->stream = aio_stream_new(L->engine, fd, AIO_STREAM_CONN, READ_CREDITS, t);
    if (t->stream == NULL) {
        PyErr_NoMemory();
        goto fail;
    }
    int rc = aio_stream_control(L->engine, t->stream, AIO_OP_STREAM_START);
    if (rc < 0) {
        free(t->stream);
        t->stream = NULL;
        errno = -rc;
        PyErr_SetFromErrno(PyExc_OSError);
        goto fail;
    }
    aio_stream_link(L, t->stream);
    return (PyObject *)t;
fail:
    t->closing = 1;
    t->close_submitted = 1;
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

static PyMemberDef tr_members[] = {
    {"__weaklistoffset__", T_PYSSIZET, offsetof(TransportObject, weakreflist), READONLY, NULL},
    {"__dictoffset__", T_PYSSIZET, offsetof(TransportObject, dict), READONLY, NULL},
    {"_sock_fd", T_INT, offsetof(TransportObject, fd), READONLY, NULL},
    {"_conn_lost", T_INT, offsetof(TransportObject, conn_lost), READONLY, NULL},
    {"_closing", T_BOOL, offsetof(TransportObject, closing), READONLY, NULL},
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

/* ---- the stream registry's calls (streams.c) ---- */

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

/* The engine stopped: drop the stream without calling Python code. */
void aio_transport_engine_gone(PyObject *owner)
{
    TransportObject *t = (TransportObject *)owner;
    release_held_fd(t);
    /* A write parked in the engine is freed with the stream. */
    if (t->wreq != NULL) {
        t->wreq = NULL;
        t->wreq_chunks = 0;
    }
    t->stream = NULL;
    /* A transport the user closed gets its socket closed now, as asyncio's
     * would have been once connection_lost ran: the engine's CLOSE that was
     * to do it will never come back. */
    if (t->closing)
        close_socket(t);
    t->closing = 1;
    t->close_submitted = 1;
    if (!t->conn_lost)
        t->conn_lost = 1;
    stash_free(t->stash_first);
    t->stash_first = t->stash_last = NULL;
}
