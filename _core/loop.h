/* The Loop object's layout and the helpers that transports, servers and the
 * readiness API share with the run loop.  GIL held everywhere. */
#ifndef AIO_LOOP_H
#define AIO_LOOP_H

#include "core.h"

#include <sys/epoll.h>

/* A request as the binding sees it: the engine's request plus the loop-side
 * list that lets the GC see (and close() release) every owner in flight.
 * The links and `owner` are touched only with the GIL held. */
typedef struct pyreq {
    aio_req req;             /* first: aio_req_free() frees the whole block */
    struct pyreq *prev, *next;
} pyreq;

typedef struct {
    PyObject_HEAD
    aio_state *st;
    /* Ready queue: a ring of strong references to handles. */
    HandleObject **ready;
    size_t ready_cap, ready_head, ready_len;
    /* Timer heap, ordered by (when, seq); strong references. */
    TimerHandleObject **heap;
    size_t heap_len, heap_cap;
    uint64_t timer_seq;
    size_t timer_cancelled;
    /* I/O */
    int epfd;
    /* Readiness API (add_reader/add_writer): one slot per descriptor. */
    struct aio_fdslot *fds;
    int nfds_cap;
    int nfds_watched;        /* descriptors registered in epfd */
    /* Transport completions that were flushed but not yet dispatched because
     * a callback raised SystemExit/KeyboardInterrupt. */
    aio_qnode *backlog;
    size_t inline_min;       /* write() of this many bytes tries one send() before queueing */
    /* The context snapshot that call_soon/call_at share while the running
     * thread's context holds the same variables (aio_loop_handle_new). */
    PyObject *ctx_snap;
    PyObject *ctx_snap_vars; /* its variables (borrowed: it holds them) */
    int engine_ready;
    aio_engine *engine;      /* NULL before init and after close */
    const char *engine_name; /* the backend it ran on; kept after close */
    pyreq inflight;          /* sentinel of the in-flight list */
    /* State read by asyncio.BaseEventLoop through the getsets below. */
    char closed, stopping, debug, running;
    unsigned long thread_id;
    double clock_resolution;
    double slow_callback_duration;
    uint64_t iterations;
    /* The clock (clock.c): whether an instance attribute overrides time(),
     * and the type version tag under which the type's time() was found to be
     * the core's (0: look again). */
    char time_override;
    unsigned int time_type_tag;
} LoopObject;


typedef struct aio_fdslot {
    HandleObject *reader;    /* strong, or NULL */
    HandleObject *writer;    /* strong, or NULL */
    uint32_t events;         /* mask registered in epfd */
} aio_fdslot;

/* Appends a handle to the ready queue (steals h).  0 or -1. */
int aio_loop_ready_push(LoopObject *L, HandleObject *h);
/* Schedules callback(*args) like call_soon (no context copy when context is
 * NULL: the current one is copied).  0 or -1. */
int aio_loop_call_soon(LoopObject *L, PyObject *callback, PyObject *const *args,
                       Py_ssize_t nargs);
/* The `loop` argument of a constructor of the core's types (streams,
 * listeners): an aioloop loop, open and initialized; else NULL with
 * TypeError or RuntimeError set. */
LoopObject *aio_loop_arg(PyTypeObject *tp, PyObject *loop);
int aio_loop_check_closed(LoopObject *L);

/* The one thread rule: a method that touches the engine (submits, pauses or
 * closes a stream, changes the loop's epoll set, runs an iteration) called
 * from a thread other than the one running the loop raises asyncio's
 * RuntimeError, in every mode (asyncio checks call_soon so in debug mode
 * only); call_soon_threadsafe is the way in.  A loop that is not running
 * may be used from any thread, as asyncio's _check_thread allows.  One
 * compare of thread ids.  Returns 0, or -1 with RuntimeError set. */
int aio_loop_wrong_thread(void);
static inline int aio_loop_check_thread(LoopObject *L)
{
    if (L->running && PyThread_get_thread_ident() != L->thread_id)
        return aio_loop_wrong_thread();
    return 0;
}

/* A handle (a TimerHandle when `timer`) of this loop: every handle the loop
 * makes comes from here.  Without a context (NULL or None) it runs in a
 * copy of the current one, shared with other handles until it runs or its
 * context is asked for (loop.c, context_snapshot; aio_handle_own_context).
 * A new reference, or NULL with an exception set. */
HandleObject *aio_loop_handle_new(LoopObject *L, int timer, PyObject *callback,
                                  PyObject *const *args, Py_ssize_t nargs, PyObject *context);

/* clock.c */
/* Looks again whether time() is overridden and records the answer: 1 when it
 * is, 0 when it is the core's, -1 with an exception set. */
int aio_loop_time_recheck(LoopObject *L);
/* Calls loop.time() through Python; 0, or -1 with an exception set. */
int aio_loop_time_call(LoopObject *L, double *now);
/* The Loop type's tp_setattro: notices an instance attribute "time". */
int aio_loop_setattro(PyObject *self, PyObject *name, PyObject *value);

/* Whether the scheduler must call loop.time() instead of reading the clock
 * itself (see clock.c): 1, 0, or -1 with an exception set. */
static inline int aio_loop_time_overridden(LoopObject *L)
{
    unsigned int tag = Py_TYPE(L)->tp_version_tag;
    if (!L->time_override && tag != 0 && tag == L->time_type_tag)
        return 0;
    return aio_loop_time_recheck(L);
}

/* transport.c */
int aio_stream_completion(LoopObject *L, aio_req *r, int deliver);
PyObject *aio_loop_create_future(LoopObject *L);
/* stream_registry.c */
/* Opens a started stream for owner (which it then holds a reference to):
 * 0, or -1 with MemoryError/OSError set and nothing left behind. */
int aio_stream_open_owned(LoopObject *L, int fd, int kind, int credits, const aio_stream_ops *ops,
                          PyObject *owner, aio_stream **out);
void aio_stream_unlink_free(LoopObject *L, aio_stream *s);
/* The owners' callback tables (transport.c and listener.c implement them). */
extern const aio_stream_ops aio_transport_stream_ops;
extern const aio_stream_ops aio_listener_stream_ops;
int aio_in_context(PyObject *ctx, int (*fn)(PyObject *, aio_req *, int), PyObject *owner,
                   aio_req *r, int deliver);
/* transport.c and listener.c, for stream_registry.c */
int aio_transport_stream_completion(PyObject *owner, aio_req *r, int deliver);
void aio_transport_engine_gone(PyObject *owner);
int aio_listener_completion(PyObject *owner, aio_req *r, int deliver);
void aio_listener_engine_gone(PyObject *owner);
/* resolver.c */
void aio_resolver_completion(LoopObject *L, aio_req *req, int deliver);
void aio_resolver_shutdown(LoopObject *L);
int aio_resolver_traverse(LoopObject *L, visitproc visit, void *arg);
PyObject *aio_loop_getaddrinfo_raw(LoopObject *L, PyObject *args);
PyObject *aio_loop_getnameinfo_raw(LoopObject *L, PyObject *args);
PyObject *aio_sockaddr_to_py(const struct sockaddr *sa, socklen_t len);
void aio_streams_shutdown(LoopObject *L);
int aio_streams_traverse(LoopObject *L, visitproc visit, void *arg);
PyObject *aio_sockaddr_to_py(const struct sockaddr *sa, socklen_t len);

/* readiness.c */
int aio_fd_dispatch(LoopObject *L, struct epoll_event *events, int n);
void aio_fd_clear(LoopObject *L);
int aio_fd_traverse(LoopObject *L, visitproc visit, void *arg);
PyObject *aio_loop_add_reader(LoopObject *L, PyObject *const *args, Py_ssize_t nargs);
PyObject *aio_loop_add_writer(LoopObject *L, PyObject *const *args, Py_ssize_t nargs);
PyObject *aio_loop_remove_reader(LoopObject *L, PyObject *fd);
PyObject *aio_loop_remove_writer(LoopObject *L, PyObject *fd);
PyObject *aio_loop_fd_events(LoopObject *L, PyObject *fd);

#endif
