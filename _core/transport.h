/* Stream transports (transport*.c): the loop-thread half of a connection
 * whose reads and writes are done by the engine (listeners: listener.c).
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
#ifndef AIO_TRANSPORT_H
#define AIO_TRANSPORT_H

#include "loop.h"
#include "engine/aio_fault.h"

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

/* Where a transport is in its close; each state implies the ones before
 * (one field instead of asyncio's _closing, _conn_lost and the rest).
 *   TR_OPEN            reading and writing.
 *   TR_CLOSING         close() or a fatal error: nothing more is read; a
 *                      close() waits here for the queued writes to drain
 *                      (asyncio's _closing).
 *   TR_LOST_SCHEDULED  CLOSE submitted and connection_lost scheduled
 *                      (asyncio's _conn_lost > 0): writes are counted,
 *                      not sent.
 *   TR_LOST            connection_lost ran; the socket object is closed
 *                      (or was handed off) once CLOSE is back. */
typedef enum tr_close_state {
    TR_OPEN = 0,
    TR_CLOSING,
    TR_LOST_SCHEDULED,
    TR_LOST,
} tr_close_state;

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
    tr_close_state state;
    int lost_writes;              /* write()s after the connection was lost
                                     (asyncio's _conn_lost is 1 + this) */
    /* 1 while nobody but the transport can have the socket object: the
     * loop's accept made it and handed it over (private_sock=True), and
     * neither extra["socket"] nor `_sock` has been given out since.  Such a
     * socket cannot be seen open after connection_lost, so it is closed
     * when CLOSE is back, without the placeholder (hand_off_socket).  An
     * explicit flag, not the socket's reference count: a weak reference,
     * an immortal object or a free-threaded build's count says nothing of
     * who can see it. */
    char sock_private;
    char buffered, paused, protocol_paused, eof, stash_scheduled;
    size_t inline_min;          /* the loop's: writes this large try a send() first */
    char tls;                     /* the protocol is aioloop's TLS protocol (tls.h) */
} TransportObject;

/* close() or a fatal error happened: asyncio's is_closing(). */
static inline int tr_closing(const TransportObject *t)
{
    return t->state >= TR_CLOSING;
}

/* connection_lost is scheduled or ran: asyncio's "if self._conn_lost". */
static inline int tr_conn_lost(const TransportObject *t)
{
    return t->state >= TR_LOST_SCHEDULED;
}

static inline aio_state *tr_state(TransportObject *t)
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

static inline PyObject *oserror_from_errno(int err)
{
    return aio_oserror(err);
}

/* transport_close.c */
int call_exception_handler(TransportObject *t, const char *message, PyObject *exc);
int is_fatal_base(PyObject *exc);
void begin_close(TransportObject *t, PyObject *exc);
void force_close(TransportObject *t, PyObject *exc);
void fatal_error(TransportObject *t, PyObject *exc, const char *message);
int callback_failed(TransportObject *t, const char *message);
int tr_close_completed(TransportObject *t, int deliver);
PyObject *tr_call_connection_lost(TransportObject *t, PyObject *exc);
PyObject *tr_close(TransportObject *t, PyObject *Py_UNUSED(ignored));
PyObject *tr_abort(TransportObject *t, PyObject *Py_UNUSED(ignored));
PyObject *tr_fatal_error(TransportObject *t, PyObject *args);
PyObject *tr_force_close(TransportObject *t, PyObject *exc);
PyObject *tr_is_closing(TransportObject *t, PyObject *Py_UNUSED(ignored));

/* transport_write.c */
void wq_drop(TransportObject *t, size_t from);
int settle_waiter(PyObject *fut, PyObject *exc);
int write_completed(TransportObject *t, aio_req *r, int deliver);
PyObject *tr_write(TransportObject *t, PyObject *const *args, size_t nargsf,
                   PyObject *kwnames);
PyObject *tr_writelines(TransportObject *t, PyObject *const *args, size_t nargsf,
                        PyObject *kwnames);
PyObject *tr_write_eof(TransportObject *t, PyObject *Py_UNUSED(ignored));
PyObject *tr_can_write_eof(TransportObject *t, PyObject *Py_UNUSED(ignored));
PyObject *tr_make_empty_waiter(TransportObject *t, PyObject *Py_UNUSED(ignored));
PyObject *tr_reset_empty_waiter(TransportObject *t, PyObject *Py_UNUSED(ignored));
PyObject *tr_get_write_buffer_size(TransportObject *t, PyObject *Py_UNUSED(ignored));
PyObject *tr_get_write_buffer_limits(TransportObject *t, PyObject *Py_UNUSED(ignored));
PyObject *tr_get_high_water(TransportObject *t, void *closure);
PyObject *tr_get_low_water(TransportObject *t, void *closure);
PyObject *tr_set_write_buffer_limits(TransportObject *t, PyObject *args, PyObject *kw);

/* transport_read.c */
void stash_free(aio_qnode *n);
int read_completed(TransportObject *t, aio_req *r, int deliver);
PyObject *tr_drain_stash(TransportObject *t, PyObject *Py_UNUSED(ignored));
PyObject *tr_pause_reading(TransportObject *t, PyObject *Py_UNUSED(ignored));
PyObject *tr_resume_reading(TransportObject *t, PyObject *Py_UNUSED(ignored));
PyObject *tr_start_reading(TransportObject *t, PyObject *Py_UNUSED(ignored));
PyObject *tr_is_reading(TransportObject *t, PyObject *Py_UNUSED(ignored));

/* transport.c */
int fill_sockname(TransportObject *t);
PyObject *one_arg(PyObject *const *args, size_t nargsf, PyObject *kwnames,
                  const char *method, const char *name);

#endif
