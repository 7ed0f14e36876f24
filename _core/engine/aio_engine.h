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

#include "aio_atomic.h"

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
};

struct addrinfo;

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
    } u;
} aio_req;

#define AIO_REQ_OF(n) ((aio_req *)(void *)(n))

/* Releases what a request owns (strings, addrinfo results) and the request. */
void aio_req_free(aio_req *r);

/* ---- completion threads and the engine ---- */

typedef struct aio_engine aio_engine;

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
};

/* Number of I/O workers when AIOLOOP_THREADS is unset: half the cores,
 * at least 1, at most 8. */
int aio_default_threads(void);

/* Workers start lazily on their first submission.  Returns 0 or -errno. */
int aio_engine_init(aio_engine *e, int nio, int nblocking, size_t bufsize);
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

/* Executes one request on the calling thread (used by workers). */
void aio__execute(aio_worker *w, aio_req *r);

#endif
