/* The stream transport's read path: READ completions (engine buffers and
 * direct reads) to data_received() or a BufferedProtocol's buffers, EOF,
 * read errors, and pause/resume_reading with the completions held while
 * paused. */
#include "transport.h"
#include "tls.h"

#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <sys/un.h>
#include <unistd.h>

void stash_free(aio_qnode *n)
{
    while (n != NULL) {
        aio_qnode *next = n->next;
        aio_req_free(AIO_REQ_OF(n));
        n = next;
    }
}

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
        PyObject *b = aio_fault_hit(AIO_FAULT_PYOBJ)   /* the read's bytes: a fault site */
                          ? PyErr_NoMemory()
                          : PyBytes_FromStringAndSize(data, (Py_ssize_t)n);
        if (b == NULL)
            return callback_failed(t, MSG_READ_ERROR);
        *consumed = n;
        return call_data_received(t, b);
    }
    if (t->tls) {
        /* aioloop's TLS protocol in its steady state: the ciphertext goes
         * to the TLS layer with no get_buffer()/buffer_updated() round. */
        PyObject *pump = aio_tls_fast_pump(t);
        if (pump != NULL) {
            *consumed = n;
            int rc = aio_tls_feed(t, pump, data, n);
            Py_DECREF(pump);
            return rc < 0 ? callback_failed(t, "Fatal error: protocol.buffer_updated() call failed.")
                          : 0;
        }
    }
    /* BufferedProtocol: copy into the protocol's buffers, as many rounds of
     * get_buffer()/buffer_updated() as the data needs; stop early if the
     * protocol paused reading or closed the transport meanwhile. */
    while (*consumed < n && !t->paused && !tr_closing(t)) {
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
    if (!t->buffered) {
        /* FIONREAD sizes the bytes object exactly (no resize, no slack). */
        size_t avail = aio_stream_pending_bytes(s);
        size_t want = avail == 0 ? DIRECT_GUESS : avail > DIRECT_MAX ? DIRECT_MAX : avail;
        PyObject *b = aio_fault_hit(AIO_FAULT_PYOBJ)   /* the read's bytes: a fault site */
                          ? PyErr_NoMemory()
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
    PyObject *pump = t->tls ? aio_tls_fast_pump(t) : NULL;
    if (pump != NULL) {
        /* aioloop's TLS protocol (see deliver_data): recv into its scratch. */
        size_t cap;
        char *buf = aio_tls_scratch(pump, &cap);
        if (buf != NULL) {
            long n = aio_stream_recv_now(e, s, buf, cap);
            int rc = n <= 0 ? deliver_read_result(t, n) : aio_tls_feed(t, pump, buf, (size_t)n);
            Py_DECREF(pump);
            if (rc < 0 && n > 0)
                return callback_failed(t, "Fatal error: protocol.buffer_updated() call failed.");
            return rc;
        }
        Py_DECREF(pump);
    }
    /* asyncio's selector transport asks get_buffer(-1): no FIONREAD for a
     * hint (a syscall per read). */
    Py_buffer view;
    int got = protocol_buffer(t, read_hint(-1), &view);
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
    if (deliver && !tr_closing(t) && (t->paused || (t->stash_first != NULL && !draining))) {
        stash_push_back(t, r);
        return 0;
    }
    int rc = 0;
    if (r->u.rd.ready) {
        /* Not read while closing: the stream arms no further read then
         * (asyncio stops reading at close() too). */
        if (deliver && !tr_closing(t) && t->protocol != NULL && t->stream != NULL)
            rc = read_direct(t);
    } else if (deliver && !tr_closing(t) && t->protocol != NULL) {
        if (r->result > 0) {
            size_t consumed;
            rc = deliver_data(t, r, &consumed);
            if (rc == 0 && consumed < (size_t)r->result && t->paused && !tr_closing(t)) {
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

int read_completed(TransportObject *t, aio_req *r, int deliver)
{
    return read_completed_impl(t, r, deliver, 0);
}

PyObject *tr_drain_stash(TransportObject *t, PyObject *Py_UNUSED(ignored))
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

PyObject *tr_pause_reading(TransportObject *t, PyObject *Py_UNUSED(ignored))
{
    ON_LOOP_THREAD(t);
    if (tr_closing(t) || t->paused)
        Py_RETURN_NONE;
    t->paused = 1;
    if (t->stream != NULL)
        aio_stream_pause(t->stream);
    Py_RETURN_NONE;
}

PyObject *tr_resume_reading(TransportObject *t, PyObject *Py_UNUSED(ignored))
{
    ON_LOOP_THREAD(t);
    if (tr_closing(t) || !t->paused)
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
PyObject *tr_start_reading(TransportObject *t, PyObject *Py_UNUSED(ignored))
{
    ON_LOOP_THREAD(t);
    if (tr_closing(t) || t->paused || t->stream == NULL)
        Py_RETURN_NONE;
    int err = aio_stream_resume(t->loop->engine, t->stream);
    if (err < 0)
        return aio_set_errno_error(-err), NULL;
    Py_RETURN_NONE;
}

PyObject *tr_is_reading(TransportObject *t, PyObject *Py_UNUSED(ignored))
{
    return PyBool_FromLong(!t->paused && !tr_closing(t));
}
