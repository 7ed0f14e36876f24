/* aioloop completion engine: pure C11, never includes Python.h.
 *
 * Threads and ownership
 *   - The loop thread owns an aio_engine.  It is the only thread that submits
 *     requests and the only thread that flushes completions.
 *   - Completion threads (aio_worker) each own one submission queue and one
 *     epoll instance.  They execute requests (syscalls into C memory) and push
 *     the finished request onto the engine's completion queue.
 *   - A request (aio_req) is one allocation that travels loop -> worker -> loop:
 *     the submission and its completion are the same object.  Between submit
 *     and flush the worker owns it; the `owner` cookie is never dereferenced
 *     outside the loop thread.
 *
 * Errors are negative errno values; 0 or a positive count is success. */
#ifndef AIO_ENGINE_H
#define AIO_ENGINE_H

#include <pthread.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>
#include <sys/uio.h>

#include "aio_atomic.h"

/* Invariants checked in debug builds (AIOLOOP_DEBUG=1, the sanitizer builds
 * and the engine's C tests define AIO_DEBUG); free in release builds. */
#ifdef AIO_DEBUG
#include <assert.h>
#define AIO_DEBUG_ASSERT(cond) assert(cond)
#else
#define AIO_DEBUG_ASSERT(cond) ((void)0)
#endif

/* ---- intrusive MPSC queue (Treiber stack, flushed in one exchange) ---- */

typedef struct aio_qnode {
    struct aio_qnode *next;
} aio_qnode;

typedef struct aio_mpsc {
    _Atomic(aio_qnode *) head;   /* newest first (LIFO) until flushed */
} aio_mpsc;

void aio_mpsc_init(aio_mpsc *q);
/* Pushes one node.  Any thread.  Returns 1 if the queue was empty before. */
int aio_mpsc_push(aio_mpsc *q, aio_qnode *n);
/* Pushes a chain first..last (linked through next, FIFO) in one operation. */
int aio_mpsc_push_chain(aio_mpsc *q, aio_qnode *first, aio_qnode *last);
/* Takes every queued node in one atomic exchange and returns them oldest
 * first.  Only the single consumer may call it. */
aio_qnode *aio_mpsc_flush(aio_mpsc *q);
int aio_mpsc_empty(aio_mpsc *q);

/* ---- coalesced eventfd wakeup ---- */

enum { AIO_AWAKE = 0, AIO_SLEEPING = 1, AIO_SIGNALLED = 2 };

typedef struct aio_wakeup {
    int fd;                      /* eventfd, non-blocking, close-on-exec */
    _Atomic int state;           /* AIO_AWAKE / AIO_SLEEPING / AIO_SIGNALLED */
    _Atomic uint64_t writes;     /* eventfd writes performed (stats, tests) */
} aio_wakeup;

/* Returns 0 or -errno. */
int aio_wakeup_init(aio_wakeup *w);
void aio_wakeup_close(aio_wakeup *w);
/* Producer side, any thread, after publishing work: writes the eventfd only
 * if the consumer sleeps and no other producer has written since it fell
 * asleep, so N producers cause at most one write per sleep. */
void aio_wakeup_signal(aio_wakeup *w);
/* Consumer side: announce the intent to sleep.  After this returns the
 * consumer must re-check its queues; any work published after the re-check
 * is guaranteed to produce a write. */
void aio_wakeup_sleep_begin(aio_wakeup *w);
/* Consumer side: back awake.  Returns 1 if a producer signalled. */
int aio_wakeup_sleep_end(aio_wakeup *w);
/* Consumer side: consume the eventfd counter (non-blocking). */
void aio_wakeup_drain(aio_wakeup *w);

/* ---- buffer pool: fixed-size buffers on a lock-free free list ---- */

#define AIO_POOL_CHUNK_SHIFT 6          /* 64 buffers per chunk */
#define AIO_POOL_MAX_CHUNKS  4096       /* at most 262144 buffers */

typedef struct aio_pool {
    size_t bufsize;                      /* usable bytes per buffer */
    size_t stride;                       /* header + bufsize, rounded */
    _Atomic uint64_t head;               /* (tag << 32) | (index + 1); 0 = empty */
    _Atomic uint32_t nchunks;            /* chunks published so far */
    char *chunks[AIO_POOL_MAX_CHUNKS];   /* append-only, published by nchunks */
    pthread_mutex_t grow_lock;           /* growth only; get/put never lock */
    _Atomic int64_t outstanding;         /* handed out and not yet returned */
} aio_pool;

int aio_pool_init(aio_pool *p, size_t bufsize);
/* Frees every chunk.  Buffers still outstanding become invalid. */
void aio_pool_destroy(aio_pool *p);
/* Returns a buffer of p->bufsize bytes, or NULL when the pool is at its cap
 * or memory is exhausted.  Any thread. */
void *aio_pool_get(aio_pool *p);
/* Returns a buffer obtained from aio_pool_get.  Any thread. */
void aio_pool_put(aio_pool *p, void *buf);

/* ---- requests ---- */

enum aio_op {
    AIO_OP_NOP = 0,          /* completes immediately; tests and wake-ups */
    AIO_OP_GETADDRINFO,      /* blocking: runs on a resolver worker */
    AIO_OP_GETNAMEINFO,      /* blocking: runs on a resolver worker */
    AIO_OP_STREAM_START,     /* register a stream with its worker's epoll */
    AIO_OP_STREAM_REARM,     /* the loop made room: go on reading/accepting */
    AIO_OP_STREAM_WRITE,     /* send every iovec, waiting for EPOLLOUT as needed */
    AIO_OP_STREAM_CLOSE,     /* cancel the pending write, unregister; last op */
    AIO_OP_STREAM_READ,      /* completion only: data, 0 = EOF, or -errno */
    AIO_OP_STREAM_ACCEPT,    /* completion only: a new descriptor, or -errno */
};

struct addrinfo;
struct aio_stream;
struct aio_pool;

typedef struct aio_req {
    aio_qnode node;          /* link in a submission or completion queue */
    int op;                  /* enum aio_op */
    int result;              /* >= 0 success, < 0 -errno (EAI_* for resolver ops) */
    void *owner;             /* the submitter's cookie; opaque to the engine */
    union {
        struct {
            char *host;              /* NUL-terminated or NULL; owned by req */
            char *serv;              /* NUL-terminated or NULL; owned by req */
            int family, socktype, protocol, flags;
            struct addrinfo *res;    /* on success; freeaddrinfo() by consumer */
            int sys_errno;           /* errno when result is EAI_SYSTEM */
        } gai;
        struct {
            struct sockaddr_storage *addr;   /* owned by req */
            socklen_t addrlen;
            int flags;
            char *host;              /* NI_MAXHOST bytes, owned by req */
            char *serv;              /* NI_MAXSERV bytes, owned by req */
            int sys_errno;
        } gni;
        struct {
            uint64_t tag;
        } nop;
        struct {                     /* START, REARM, CLOSE */
            struct aio_stream *s;
        } ctl;
        struct {                     /* WRITE; the iovecs follow the request */
            struct aio_stream *s;
            struct iovec *iov;       /* advanced in place as bytes go out */
            int iovcnt, iovpos;
            size_t sent;
            struct msghdr msg;       /* uring: the sendmsg in the ring */
        } wr;
        struct {                     /* READ: lives in a pool buffer, data after it */
            struct aio_stream *s;
            struct aio_pool *pool;   /* threads: the buffer's pool, or NULL */
            char *data;
            size_t cap;
            struct aio_uring *ring;  /* uring: the provided buffer's ring, or NULL */
            unsigned bid;
        } rd;
        struct {                     /* ACCEPT: result is the new descriptor */
            struct aio_stream *s;
            socklen_t addrlen;
            struct sockaddr_storage addr;
        } acc;
    } u;
} aio_req;

#define AIO_REQ_OF(n) ((aio_req *)(void *)(n))

/* Releases what a request owns (strings, addrinfo results) and the request. */
void aio_req_free(aio_req *r);

/* ---- completion threads and the engine ---- */

typedef struct aio_engine aio_engine;
struct aio_worker;

/* ---- streams: a socket served by one completion thread ----
 *
 * A stream is shared C memory.  The loop thread creates it, submits START,
 * WRITE, REARM and finally CLOSE to the stream's worker (in that order, on
 * one submission queue, so the worker sees them in order), and frees it after
 * the CLOSE completion: the worker never touches a stream after completing
 * CLOSE, and every completion it pushed for the stream before comes first.
 *
 * Reads and accepts are driven by the worker (edge-triggered epoll).  The
 * loop bounds them with credits: `unconsumed` counts completions pushed and
 * not yet released; at `credits`, or while `paused`, the worker parks.  Who
 * restarts a parked worker is settled by a Dekker handshake on `parked`
 * (worker: store parked, re-check; loop: change the condition, load parked),
 * so exactly one side resumes and no wakeup is lost. */
enum aio_stream_kind { AIO_STREAM_CONN = 0, AIO_STREAM_LISTENER = 1 };

typedef struct aio_stream {
    int fd;
    int kind;                /* enum aio_stream_kind */
    int credits;             /* most unconsumed completions at once */
    struct aio_worker *worker;
    void *owner;             /* the loop's object; never dereferenced here */
    struct aio_stream *lprev, *lnext;   /* the loop's list; loop thread only */
    _Atomic int unconsumed;
    _Atomic int paused;
    _Atomic int parked;
    /* Worker-private from START on. */
    int registered;          /* in the worker's epoll */
    int readable;            /* an edge arrived and was not drained yet */
    int hup;                 /* the peer's FIN or an error was reported */
    int done_reading;        /* EOF or error delivered */
    aio_req *wreq;           /* a write waiting for EPOLLOUT (uring: in the ring) */
    /* uring backend: loop thread only. */
    int u_armed;             /* a recv or accept is in the ring */
    int u_inflight;          /* operations of this stream in the ring */
    int u_starved;           /* on the ring's list of streams out of buffers */
    aio_req *u_close;        /* CLOSE waiting for the in-flight operations */
    aio_req *u_acc;          /* the accept in the ring */
    struct aio_stream *u_next_starved, *u_prev_starved;
} aio_stream;

typedef struct aio_worker {
    aio_engine *engine;
    pthread_t tid;
    int started;             /* loop thread only */
    int blocking;            /* 1: runs blocking calls (resolver) */
    int epfd;                /* readiness for this worker's sockets */
    aio_mpsc sq;             /* submissions from the loop thread */
    aio_wakeup wake;         /* wakes this worker */
    _Atomic int stop;
    _Atomic uint64_t executed;
} aio_worker;

struct aio_engine {
    aio_mpsc cq;             /* completions, any worker -> loop thread */
    aio_wakeup cq_wake;      /* wakes the loop thread */
    int nio;
    aio_worker *io;          /* socket I/O workers */
    int nblocking;
    aio_worker *blocking;    /* resolver workers */
    unsigned rr_io;
    unsigned rr_blocking;
    aio_pool pool;           /* read buffers */
    _Atomic int64_t inflight;/* submitted and not yet flushed */
    int stopped;             /* loop thread only: aio_engine_stop ran */
    struct aio_uring *uring; /* the io_uring backend, or NULL for threads */
};

/* Number of I/O workers when AIOLOOP_THREADS is unset: half the cores,
 * at least 1, at most 8. */
int aio_default_threads(void);

/* Workers start lazily on their first submission.  Returns 0 or -errno. */
int aio_engine_init(aio_engine *e, int nio, int nblocking, size_t bufsize);
/* Hands a request to a given worker.  Returns 0 or -errno. */
int aio_engine_submit_to(aio_engine *e, aio_worker *w, aio_req *r);
/* Hands a request to a worker (resolver ops go to the blocking group).
 * Loop thread only.  Returns 0 or -errno (the request stays the caller's). */
int aio_engine_submit(aio_engine *e, aio_req *r);
/* Returns every finished request, oldest first, linked through node.next. */
aio_qnode *aio_engine_flush(aio_engine *e);
/* Stops and joins every worker.  Requests that were never executed are
 * completed with -ECANCELED, so after a final aio_engine_flush every
 * submitted request has come back exactly once. */
void aio_engine_stop(aio_engine *e);
/* Frees what aio_engine_init allocated; call after aio_engine_stop and a
 * final flush. */
void aio_engine_destroy(aio_engine *e);

/* A batch of completions a worker collects before one push. */
typedef struct aio_chain {
    aio_qnode *first, *last;
} aio_chain;

static inline void aio_chain_add(aio_chain *c, aio_req *r)
{
    r->node.next = NULL;
    if (c->last)
        c->last->next = &r->node;
    else
        c->first = &r->node;
    c->last = &r->node;
}

/* Executes one request on the calling worker.  Returns 1 when the request is
 * finished (the caller completes it), 0 when the stream kept it (a write
 * waiting for EPOLLOUT).  Completions the request produced go to `out`. */
int aio__execute(aio_worker *w, aio_req *r, aio_chain *out);

/* ---- streams, loop side ---- */

/* Creates a stream for fd served by the next I/O worker, paused (no read or
 * accept completions until aio_stream_resume).  NULL on ENOMEM. */
aio_stream *aio_stream_new(aio_engine *e, int fd, int kind, int credits, void *owner);
/* Frees a stream after its CLOSE came back (or the engine stopped). */
void aio_stream_free(aio_stream *s);
/* Submits a request to the stream's worker.  Returns 0 or -errno. */
int aio_stream_submit(aio_engine *e, aio_stream *s, aio_req *r);
/* Submits a control request (START, REARM, CLOSE). Returns 0 or -errno. */
int aio_stream_control(aio_engine *e, aio_stream *s, int op);
/* The loop consumed n completions of the stream. Returns 0 or -errno. */
int aio_stream_release(aio_engine *e, aio_stream *s, int n);
void aio_stream_pause(aio_stream *s);
/* Returns 0 or -errno (a REARM could not be submitted). */
int aio_stream_resume(aio_engine *e, aio_stream *s);
int aio__stream_execute(aio_worker *w, aio_req *r, aio_chain *out);
/* Worker side: handles an epoll event of a stream. */
void aio__stream_event(aio_worker *w, aio_stream *s, uint32_t events, aio_chain *out);
/* Bytes of payload a read completion can carry. */
size_t aio_read_capacity(aio_engine *e);

/* ---- the io_uring backend (uring.c) ----
 *
 * The loop thread owns one ring and reaps it itself: streams' reads
 * (recv into a provided-buffer ring), accepts and writes (sendmsg of the
 * queued iovecs) are submissions; completions become the same aio_req
 * completions the threads backend pushes, so transports do not know which
 * backend runs.  Submissions are batched and entered once per loop
 * iteration, in aio_uring_wait. */
struct aio_uring;
/* 1 when this build has io_uring support. */
int aio_uring_compiled(void);
/* Sets up a ring for e (after aio_engine_init) with nbufs provided read
 * buffers (a power of two) of the pool's buffer size.  Returns 0 or -errno:
 * -ENOSYS when the build lacks io_uring, or what the kernel refused. */
int aio_engine_use_uring(aio_engine *e, int watch_fd, unsigned nbufs);
/* Enters the ring at most once: submits what is queued and waits up to
 * timeout_ms (-1: forever, 0: not at all) for a completion; before sleeping
 * it arms a read of the engine's wakeup eventfd and, when watch_epoll, a poll
 * of watch_fd (the loop's epoll).  Completions are turned into requests on
 * the engine's completion queue.  Returns 1 when watch_fd was reported
 * readable, 0 if not, or -errno (-EINTR on a signal, -ECHILD in a forked
 * child). */
int aio_uring_wait(aio_engine *e, int timeout_ms, int watch_epoll);
/* 1 when submissions are queued or completions wait to be reaped. */
int aio_uring_pending(aio_engine *e);
/* Moves what the ring completed to the engine's completion queue. */
void aio_uring_reap(aio_engine *e);
void aio_uring_stop(aio_engine *e);
void aio_uring_destroy(aio_engine *e);
/* A read completion that holds a provided buffer, copied into memory of its
 * own so the buffer can go back (used for reads held while a transport is
 * paused).  NULL when there is nothing to detach or memory is short. */
aio_req *aio_read_detach(aio_req *r);
/* A read completion's provided buffer goes back to its ring. */
void aio_uring_buf_put(struct aio_uring *u, aio_req *r);
int aio_uring_stream_control(aio_engine *e, aio_stream *s, aio_req *r);
int aio_uring_stream_write(aio_engine *e, aio_stream *s, aio_req *r);
int aio_uring_stream_kick(aio_engine *e, aio_stream *s);
/* ENOBUFS starvations, io_uring_enter calls, SQ-full submits, buffers held. */
void aio_uring_counters(aio_engine *e, uint64_t out[4]);
/* Advances a write request's iovecs past n sent bytes. */
void aio_iov_advance(aio_req *r, size_t n);

#endif
