/* The stream transport's write path: write()/writelines() queue the data
 * (or send it inline), WRITE requests hand it to the engine, their
 * completions release it; write flow control (the marks, pause_writing/
 * resume_writing), write_eof() and sendfile's empty waiter. */
#include "transport.h"

#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <sys/un.h>
#include <unistd.h>

#define MAX_WRITE_IOV 1024        /* buffers per WRITE request */

#define LOG_THRESHOLD_FOR_CONNLOST_WRITES 5

void wq_drop(TransportObject *t, size_t from)
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

/* protocol.pause_writing() or resume_writing(): a failure goes to the
 * exception handler as asyncio's "protocol.<name>() failed" (a
 * KeyboardInterrupt or SystemExit propagates). */
static int call_flow_callback(TransportObject *t, const char *name, const char *message)
{
    PyObject *r = PyObject_CallMethod(t->protocol, name, NULL);
    if (r != NULL) {
        Py_DECREF(r);
        return 0;
    }
    PyObject *exc = aio_err_fetch();
    if (is_fatal_base(exc)) {
        aio_err_restore(exc);
        return -1;
    }
    int rc = call_exception_handler(t, message, exc);
    Py_DECREF(exc);
    return rc;
}

static int maybe_pause_protocol(TransportObject *t)
{
    /* After connection_lost there is no protocol to tell (a write still in
     * flight keeps buffer_size up until it comes back). */
    if (t->buffer_size <= t->high || t->protocol_paused || t->protocol == NULL)
        return 0;
    t->protocol_paused = 1;
    return call_flow_callback(t, "pause_writing", "protocol.pause_writing() failed");
}

static int maybe_resume_protocol(TransportObject *t)
{
    if (!t->protocol_paused || t->buffer_size > t->low || t->protocol == NULL)
        return 0;
    t->protocol_paused = 0;
    return call_flow_callback(t, "resume_writing", "protocol.resume_writing() failed");
}

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

int settle_waiter(PyObject *fut, PyObject *exc)
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
    if (tr_closing(t)) {
        if (t->state == TR_CLOSING)
            begin_close(t, NULL);
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

int write_completed(TransportObject *t, aio_req *r, int deliver)
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
    if (tr_conn_lost(t))
        return 0;
    if (submit_write(t) < 0)
        return -1;
    if (maybe_resume_protocol(t) < 0)
        return -1;
    if (t->wq_len == 0 && t->wreq == NULL)
        return write_drained(t);
    return 0;
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
    if (1 + t->lost_writes >= LOG_THRESHOLD_FOR_CONNLOST_WRITES) {
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
    t->lost_writes++;
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
 * With nothing queued, a batch of at least t->inline_min bytes (the
 * engine's default; 0 in inline mode) is first offered to one non-blocking
 * sendmsg() on the loop thread while the bytes are in this core's cache;
 * smaller ones go to the engine, batched (measured in
 * docs/architecture.md).  What is left is queued and handed to
 * the engine as one WRITE.  Returns 0, or -1 with an exception set. */
static int queue_pieces(TransportObject *t, wpiece *p, size_t n, size_t total)
{
    size_t first = t->wq_len;
    if (wq_reserve(t, n) < 0)
        return -1;
    size_t sent = 0;
    if (total >= t->inline_min && t->wq_len == 0 && t->wreq == NULL &&
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
PyObject *tr_write(TransportObject *t, PyObject *const *args, size_t nargsf,
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
    if (tr_conn_lost(t)) {
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
PyObject *tr_writelines(TransportObject *t, PyObject *const *args, size_t nargsf,
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
    if (tr_conn_lost(t)) {
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

PyObject *tr_write_eof(TransportObject *t, PyObject *Py_UNUSED(ignored))
{
    ON_LOOP_THREAD(t);
    if (tr_closing(t) || t->eof)
        Py_RETURN_NONE;
    t->eof = 1;
    if (t->wq_len == 0 && t->wreq == NULL && shutdown(t->fd, SHUT_WR) < 0) {
        PyErr_SetFromErrno(PyExc_OSError);
        return NULL;
    }
    Py_RETURN_NONE;
}

PyObject *tr_can_write_eof(TransportObject *t, PyObject *Py_UNUSED(ignored))
{
    (void)t;
    Py_RETURN_TRUE;
}

PyObject *tr_make_empty_waiter(TransportObject *t, PyObject *Py_UNUSED(ignored))
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

PyObject *tr_reset_empty_waiter(TransportObject *t, PyObject *Py_UNUSED(ignored))
{
    ON_LOOP_THREAD(t);
    Py_CLEAR(t->empty_waiter);
    Py_RETURN_NONE;
}

/* What is queued and not yet taken by the kernel, as asyncio reports it:
 * the part of the WRITE in flight that the engine has already sent does not
 * count, even before its completion is dispatched (on io_uring the send
 * completes when the loop enters the ring, at the start of the next
 * iteration; on the threads engine when the completion thread gets to it). */
PyObject *tr_get_write_buffer_size(TransportObject *t, PyObject *Py_UNUSED(ignored))
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

PyObject *tr_get_write_buffer_limits(TransportObject *t, PyObject *Py_UNUSED(ignored))
{
    PyObject *low = mark_object(t->low_obj, t->low);
    PyObject *high = low ? mark_object(t->high_obj, t->high) : NULL;
    PyObject *r = high ? PyTuple_Pack(2, low, high) : NULL;
    Py_XDECREF(low);
    Py_XDECREF(high);
    return r;
}

PyObject *tr_get_high_water(TransportObject *t, void *closure)
{
    (void)closure;
    return mark_object(t->high_obj, t->high);
}

PyObject *tr_get_low_water(TransportObject *t, void *closure)
{
    (void)closure;
    return mark_object(t->low_obj, t->low);
}

PyObject *tr_set_write_buffer_limits(TransportObject *t, PyObject *args, PyObject *kw)
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
