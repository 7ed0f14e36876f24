/* The stream transport's close path: close(), abort() and fatal errors,
 * CLOSE requests and their completions, connection_lost, and handing the
 * socket off or closing it; asyncio's _SelectorSocketTransport order. */
#include "transport.h"

#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <sys/un.h>
#include <unistd.h>

int call_exception_handler(TransportObject *t, const char *message, PyObject *exc)
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

int is_fatal_base(PyObject *exc)
{
    return PyErr_GivenExceptionMatches(exc, PyExc_SystemExit) ||
           PyErr_GivenExceptionMatches(exc, PyExc_KeyboardInterrupt);
}

/* Submits CLOSE and schedules connection_lost(exc) for the next iteration,
 * as asyncio does.  The socket itself is closed only once both have
 * happened: after CLOSE no worker looks at the descriptor any more. */
void begin_close(TransportObject *t, PyObject *exc)
{
    if (tr_conn_lost(t))
        return;
    t->state = TR_LOST_SCHEDULED;
    if (t->stream != NULL) {
        aio_stream_pause(t->stream);
        /* Never fails: its CLOSE was allocated with the stream. */
        aio_stream_close(t->loop->engine, t->stream);
    }
    PyObject *arg = exc ? exc : Py_None;
    PyObject *m = PyObject_GetAttrString((PyObject *)t, "_call_connection_lost");
    if (m == NULL || aio_loop_call_soon(t->loop, m, &arg, 1) < 0)
        PyErr_WriteUnraisable((PyObject *)t);
    Py_XDECREF(m);
}

static void close_socket(TransportObject *t);

/* Closes the socket object once connection_lost ran and CLOSE is back. */
static void maybe_close_socket(TransportObject *t)
{
    if (t->state != TR_LOST || t->stream != NULL || t->sock == NULL)
        return;
    close_socket(t);
}

/* The transport lets go of its socket object with sock.<method>()
 * ("close" or "detach"); a failure is reported as unraisable. */
static void release_socket(TransportObject *t, const char *method)
{
    PyObject *sock = t->sock;
    t->sock = NULL;
    PyObject *r = PyObject_CallMethod(sock, method, NULL);
    if (r == NULL)
        PyErr_WriteUnraisable(sock);
    Py_XDECREF(r);
    Py_DECREF(sock);
}

static void close_socket(TransportObject *t)
{
    if (t->sock == NULL)
        return;
    if (fill_sockname(t) < 0)
        PyErr_WriteUnraisable((PyObject *)t);
    release_socket(t, "close");
}

void force_close(TransportObject *t, PyObject *exc)
{
    if (tr_conn_lost(t))
        return;
    wq_drop(t, t->wreq ? t->wreq_chunks : 0);
    begin_close(t, exc);
}

/* asyncio's _fatal_error: report what is not an OSError, then force-close. */
void fatal_error(TransportObject *t, PyObject *exc, const char *message)
{
    if (!PyErr_GivenExceptionMatches(exc, PyExc_OSError)) {
        if (call_exception_handler(t, message, exc) < 0)
            PyErr_WriteUnraisable((PyObject *)t);
    }
    force_close(t, exc);
}

/* Handles the exception raised by a protocol callback: SystemExit and
 * KeyboardInterrupt propagate (-1), the rest are fatal for the connection. */
int callback_failed(TransportObject *t, const char *message)
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

/* The engine let go of the stream: the placeholder that kept its descriptor
 * number taken (hand_off_socket) can go. */
static void release_held_fd(TransportObject *t)
{
    if (t->held_fd >= 0) {
        close(t->held_fd);
        t->held_fd = -1;
    }
}

int tr_close_completed(TransportObject *t, int deliver)
{
    aio_stream *s = t->stream;
    t->stream = NULL;
    release_held_fd(t);
    stash_free(t->stash_first);
    t->stash_first = t->stash_last = NULL;
    if (deliver)
        maybe_close_socket(t);
    else if (tr_closing(t))
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
    release_socket(t, "detach");
}

PyObject *tr_call_connection_lost(TransportObject *t, PyObject *exc)
{
    ON_LOOP_THREAD(t);
    if (t->state == TR_LOST)
        Py_RETURN_NONE;
    t->state = TR_LOST;
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

PyObject *tr_close(TransportObject *t, PyObject *Py_UNUSED(ignored))
{
    ON_LOOP_THREAD(t);
    if (tr_closing(t))
        Py_RETURN_NONE;
    t->state = TR_CLOSING;
    if (t->stream != NULL)
        aio_stream_pause(t->stream);
    if (t->wq_len == 0 && t->wreq == NULL)
        begin_close(t, NULL);
    Py_RETURN_NONE;
}

PyObject *tr_abort(TransportObject *t, PyObject *Py_UNUSED(ignored))
{
    ON_LOOP_THREAD(t);
    force_close(t, NULL);
    Py_RETURN_NONE;
}

PyObject *tr_fatal_error(TransportObject *t, PyObject *args)
{
    ON_LOOP_THREAD(t);
    PyObject *exc;
    const char *message = "Fatal error on transport";
    if (!PyArg_ParseTuple(args, "O|s:_fatal_error", &exc, &message))
        return NULL;
    fatal_error(t, exc, message);
    Py_RETURN_NONE;
}

PyObject *tr_force_close(TransportObject *t, PyObject *exc)
{
    ON_LOOP_THREAD(t);
    force_close(t, exc);
    Py_RETURN_NONE;
}

PyObject *tr_is_closing(TransportObject *t, PyObject *Py_UNUSED(ignored))
{
    return PyBool_FromLong(tr_closing(t));
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
    if (tr_closing(t))
        close_socket(t);
    if (t->state < TR_LOST_SCHEDULED)
        t->state = TR_LOST_SCHEDULED;
    stash_free(t->stash_first);
    t->stash_first = t->stash_last = NULL;
}
