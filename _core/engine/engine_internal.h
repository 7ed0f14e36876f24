/* The engine's inside: what the backends share and the table each fills.
 * Only engine/ and the engine's C tests include this; the binding uses
 * aio_engine.h.  No file here but engine.c names a backend. */
#ifndef AIO_ENGINE_INTERNAL_H
#define AIO_ENGINE_INTERNAL_H

#include "aio_engine.h"
#include "aio_atomic.h"
#include "aio_fault.h"

#include <pthread.h>
#include <sys/types.h>

/* Invariants checked in debug builds (AIOLOOP_DEBUG=1, the sanitizer builds
 * and the engine's C tests define AIO_DEBUG); free in release builds. */
#ifdef AIO_DEBUG
#include <assert.h>
#define AIO_DEBUG_ASSERT(cond) assert(cond)
#else
#define AIO_DEBUG_ASSERT(cond) ((void)0)
#endif

/* ---- the backend's part of a request (opaque in aio_engine.h) ---- */

/* A read completion's buffer: who lent it and how it goes back. */
struct aio_rd_engine {
    /* Gives the buffer back to the backend that lent it (NULL: the
     * request is plain heap memory). */
    void (*release)(aio_req *r);
    void *buf_owner;         /* the backend's pool or ring */
    unsigned bid;            /* a ring buffer's id */
    int scarce;              /* 1: from a fixed set (io_uring's ring) */
};
_Static_assert(sizeof(struct aio_rd_engine) <= sizeof(((aio_req *)0)->u.rd.engine),
               "aio_req's read area is too small");
_Static_assert(sizeof(struct msghdr) <= sizeof(((aio_req *)0)->u.wr.engine),
               "aio_req's write area is too small");
/* The request is allocated memory (a pool or ring buffer, or the heap), so
 * its engine area takes these types when written. */
#define AIO_RD(r) ((struct aio_rd_engine *)(void *)(r)->u.rd.engine)
#define AIO_WR_MSG(r) ((struct msghdr *)(void *)(r)->u.wr.engine)

/* ---- intrusive MPSC queue (Treiber stack, flushed in one exchange) ---- */

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
    _Atomic uint32_t puts;               /* buffers put back, ever (wraps) */
    uint32_t trim_mark;                  /* puts at the last aio_pool_trim */
} aio_pool;

int aio_pool_init(aio_pool *p, size_t bufsize);
/* Frees every chunk.  Buffers still outstanding become invalid. */
void aio_pool_destroy(aio_pool *p);
/* Returns a buffer of p->bufsize bytes, or NULL when the pool is at its cap
 * or memory is exhausted.  Any thread. */
void *aio_pool_get(aio_pool *p);
/* Returns a buffer obtained from aio_pool_get.  Any thread. */
void aio_pool_put(aio_pool *p, void *buf);
/* Gives back the pages of free buffers nobody took since the last call,
 * but for the last `keep` put back (the hottest).  One thread at a time
 * (the loop thread); get and put may run meanwhile.  Returns the bytes
 * dropped. */
size_t aio_pool_trim(aio_pool *p, unsigned keep);

/* ---- completion threads ---- */

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

/* Sets up a worker group (stopped; each starts on its first submission).
 * Returns 0 or -errno. */
int aio__workers_init(aio_engine *e, aio_worker **out, int n, int blocking);
/* Stops and joins a group; what was never executed comes back cancelled. */
void aio__workers_stop(aio_worker *ws, int n);
void aio__workers_free(aio_worker *ws, int n);
/* Hands a request to one worker, starting its thread first if needed.
 * Returns 0 or -errno (-EAGAIN: no thread; the request stays the caller's). */
int aio__worker_submit(aio_engine *e, aio_worker *w, aio_req *r);
/* Hands a request to a worker whose thread runs already: cannot fail. */
void aio__worker_push(aio_engine *e, aio_worker *w, aio_req *r);
/* Executes one request on the calling worker.  Returns 1 when the request is
 * finished (the caller completes it), 0 when a stream kept it (a write
 * waiting for EPOLLOUT).  Completions it produced go to `out`. */
int aio__execute(aio_worker *w, aio_req *r, aio_chain *out);

/* ---- streams ---- */

/* The threads backend's part of a stream: its worker's, from START on. */
struct aio_threads_stream {
    struct aio_worker *worker;
    _Atomic int parked;      /* Dekker handshake with the loop, see stream.c */
    int readable;            /* an edge arrived and was not drained yet */
    int hup;                 /* the peer's FIN or an error was reported */
};

/* The uring backend's part of a stream: loop thread only. */
struct aio_uring_stream {
    int armed;               /* a recv or accept is in the ring */
    int inflight;            /* operations of this stream in the ring */
    int starved;             /* on the ring's list of streams out of buffers */
    aio_req *close;          /* CLOSE waiting for the in-flight operations */
    aio_req *acc;            /* the accept in the ring */
    struct aio_stream *next_starved, *prev_starved;
    /* Direct reads (large ones): a poll instead of a recv is armed, and the
     * loop reads the socket itself when it fires (rd.ready). */
    int retry;               /* an arm or a cancel waits for an SQE (see uring.c) */
    int direct;              /* the next arm is a poll */
    int polling;             /* the operation in the ring is that poll */
    int ready_out;           /* a rd.ready completion awaits the loop's recv */
};

struct aio_stream {
    int fd;
    int kind;                /* enum aio_stream_kind */
    int credits;             /* most unconsumed completions at once */
    void *owner;             /* the loop's object; never dereferenced here */
    const aio_stream_ops *ops;          /* the owner's callbacks */
    struct aio_stream *lprev, *lnext;   /* the engine's list of open streams */
    aio_req *close_req;      /* CLOSE, allocated at open; NULL once submitted */
    struct aio_stream *close_next;      /* on the engine's deferred CLOSEs */
    int close_deferred;      /* CLOSE waits on that list (fault injection) */
    _Atomic int unconsumed;
    _Atomic int paused;
    /* The backend's (the worker's on threads, the loop thread's on uring). */
    int registered;          /* START done, CLOSE not yet */
    int done_reading;        /* EOF or error delivered */
    long last_recv;          /* aio_stream_recv_now's last result */
    aio_req *wreq;           /* the write in flight */
    union {
        struct aio_threads_stream t;
        struct aio_uring_stream u;
    } b;
};

/* ---- backends ---- */

/* What each backend implements; engine.c holds the only references to the
 * tables.  Every function runs on the loop thread. */
typedef struct aio_backend {
    const char *name;
    /* By default, a write of at least this many bytes (with nothing queued)
     * is first offered to a send() on the loop thread; smaller ones are
     * handed to the engine.  On io_uring (no SQPOLL) the engine's sendmsg
     * runs on the loop thread anyway, inside io_uring_enter, where the
     * iteration's small writes go out together but a large one's bytes
     * have gone cold; a completion thread takes the send's TCP work off the
     * loop thread (docs/architecture.md, "Why writes go to the completion
     * thread"). */
    size_t inline_min;
    /* Sets up the backend's state (e->backend_data); 0 or -errno. */
    int (*setup)(aio_engine *e, const aio_engine_config *cfg);
    /* Binds a new stream (picks its worker, ...). */
    void (*stream_init)(aio_engine *e, aio_stream *s);
    /* Takes START: 0, or -errno and the request is the caller's again and
     * nothing of the stream was registered or completed. */
    int (*stream_start)(aio_engine *e, aio_stream *s, aio_req *r);
    /* Takes CLOSE; cannot fail (what it cannot submit now, it queues). */
    void (*stream_close)(aio_engine *e, aio_stream *s, aio_req *r);
    int (*stream_write)(aio_engine *e, aio_stream *s, aio_req *r);
    /* aio_stream_recv_now read (res as it returns); NULL: never called,
     * the backend sends no rd.ready completions. */
    void (*recv_done)(aio_engine *e, aio_stream *s, long res);
    /* The loop made room (released credits, resumed): deliver again. */
    int (*stream_kick)(aio_engine *e, aio_stream *s);
    /* Frees what the backend holds for a stream being freed. */
    void (*stream_fini)(aio_engine *e, aio_stream *s);
    int (*poll_pending)(aio_engine *e);
    /* Waits as aio_engine_wait describes (the sleep handshake included). */
    int (*wait)(aio_engine *e, int timeout_ms, int watching, struct epoll_event *events,
                int maxevents);
    /* Moves finished work to the completion queue (before a flush). */
    void (*reap)(aio_engine *e);
    void (*stop)(aio_engine *e);
    void (*destroy)(aio_engine *e);
    void (*stats)(aio_engine *e, aio_engine_stats *out);
} aio_backend;

extern const aio_backend aio__backend_threads;
#ifdef AIO_HAVE_URING
extern const aio_backend aio__backend_uring;
/* Whether a ring can be set up here (for "auto"); 0 or -errno. */
int aio__uring_probe(void);
#endif

struct aio_engine {
    const aio_backend *backend;
    void *backend_data;      /* the backend's own state */
    aio_mpsc cq;             /* completions -> loop thread */
    aio_wakeup cq_wake;      /* wakes the loop thread */
    int watch_fd;            /* the loop's epoll descriptor */
    int nio;
    aio_worker *io;          /* threads backend: socket I/O workers */
    int nblocking;
    aio_worker *blocking;    /* resolver workers (both backends) */
    unsigned rr_io, rr_blocking;
    aio_pool pool;           /* threads backend: read buffers */
    long long last_trim_ns;  /* threads backend: the pool's last trim */
    size_t bufsize;
    _Atomic int64_t inflight;/* submitted and not yet flushed */
    int stopped;             /* aio_engine_stop ran */
    pid_t pid;               /* the process that created the engine: a forked
                                child owns none of its threads, and its
                                epoll and eventfd registrations are shared
                                with the parent, so the child never touches
                                them (aio__engine_forked) */
    unsigned fork_gen;       /* the fork generation then (engine.c) */
    aio_stream *streams;     /* open streams, newest first */
    aio_stream *close_later; /* CLOSEs deferred, submitted at the next flush */
    int64_t nstreams;
    uint64_t n_completions, n_submissions, bytes_in, bytes_out;
};

/* 1 in a child forked after the engine was created. */
int aio__engine_forked(const aio_engine *e);
/* A request of the engine's own, zeroed; NULL when memory is short (or the
 * "req" fault site fires). */
aio_req *aio__req_alloc(size_t extra);

/* Pushes one completion produced on the loop thread. */
void aio__complete(aio_engine *e, aio_req *r);
/* Advances a write request's iovecs past n sent bytes. */
void aio__iov_advance(aio_req *r, size_t n);
/* Bytes of a read completion's header in its buffer. */
#define AIO_READ_HDR ((sizeof(aio_req) + 15u) & ~(size_t)15u)

/* threads backend internals shared by threads.c and stream.c */
int aio__stream_execute(aio_worker *w, aio_req *r, aio_chain *out);
void aio__stream_event(aio_worker *w, aio_stream *s, uint32_t events, aio_chain *out);

#endif
