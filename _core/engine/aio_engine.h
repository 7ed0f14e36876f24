/* aioloop completion engine: the API the binding uses.  Pure C11, never
 * includes Python.h.
 *
 * The engine runs one backend, chosen once when it is created:
 *   - "threads": completion threads over epoll do the socket syscalls
 *     (threads.c, stream.c);
 *   - "uring": the kernel does them through an io_uring the loop thread
 *     reaps (uring.c), where the build has liburing and the kernel allows it.
 * The binding never knows which: it creates streams, submits requests,
 * waits, and flushes completions through the functions below
 * (engine.c dispatches them to the backend's table, engine_internal.h).
 *
 * Threads and ownership
 *   - The loop thread owns an aio_engine.  It is the only thread that submits
 *     requests and the only thread that flushes completions.
 *   - A request (aio_req) is one allocation that travels loop -> engine ->
 *     loop: the submission and its completion are the same object.  Between
 *     submit and flush the engine owns it; the `owner` cookie is never
 *     dereferenced by the engine.
 *
 * Errors are negative errno values; 0 or a positive count is success. */
#ifndef AIO_ENGINE_H
#define AIO_ENGINE_H

#include <stddef.h>
#include <stdint.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/uio.h>

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

typedef struct aio_qnode {
    struct aio_qnode *next;
} aio_qnode;

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
            _Atomic size_t sent;     /* bytes gone out; the loop may read it
                                        while the engine sends (aio_write_progress) */
            void *engine[7];         /* the backend's (engine_internal.h) */
        } wr;
        struct {                     /* READ: lives in a backend buffer, data after it */
            struct aio_stream *s;
            void *engine[3];         /* the backend's: who lent the buffer
                                        (engine_internal.h); aio_req_free
                                        gives it back */
            /* 1: no data, the socket is readable: the loop reads it itself
             * (aio_stream_recv_now) straight into the object it hands the
             * protocol.  The backend sends these for streams whose reads
             * are large, where a copy through a backend buffer costs more
             * than the syscall (io_uring; see aio_stream_recv_now). */
            int ready;
            char *data;
            size_t cap;
        } rd;
        struct {                     /* ACCEPT: result is the new descriptor */
            struct aio_stream *s;
            socklen_t addrlen;
            struct sockaddr_storage addr;
        } acc;
    } u;
} aio_req;

#define AIO_REQ_OF(n) ((aio_req *)(void *)(n))

/* Releases what a request owns (strings, addrinfo results, a backend's read
 * buffer) and the request. */
void aio_req_free(aio_req *r);

typedef struct aio_engine aio_engine;
typedef struct aio_stream aio_stream;

/* ---- the engine ---- */

typedef struct aio_engine_config {
    const char *backend;     /* "auto", "threads" or "uring" */
    int threads;             /* completion threads (threads backend), 0 (the
                                default) or 1..AIO_MAX_THREADS */
    int resolver_threads;    /* threads for getaddrinfo/getnameinfo, 0 (the
                                default, 2) or 1..AIO_MAX_THREADS */
    size_t bufsize;          /* bytes per read buffer; 0: the backend's default
                                (threads: 256 KiB, one read per asyncio-sized
                                chunk; io_uring: 64 KiB, large reads go direct) */
    unsigned ring_buffers;   /* uring provided buffers, a power of two */
    int watch_fd;            /* the loop's epoll descriptor, waited on with the engine */
} aio_engine_config;

/* The most threads of either group: each costs an eventfd, an epoll
 * descriptor and a stack; more than this many cannot help a loop that
 * dispatches on one thread.  aio_engine_new refuses more with -EINVAL. */
#define AIO_MAX_THREADS 64

/* The names aio_backend_resolve accepts, for messages. */
#define AIO_ENGINE_NAMES "'auto', 'threads' or 'uring'"

/* Number of completion threads when none is asked for: half the cores, at
 * least 1, at most 8. */
int aio_default_threads(void);
/* The backend "auto" stands for on this machine: "uring" when the build has
 * it and a ring can be set up (probed once per process, cached), else
 * "threads".  Any other name is returned as is if valid, or NULL. */
const char *aio_backend_resolve(const char *name);
/* 1 when this build has the io_uring backend. */
int aio_uring_compiled(void);

/* Creates an engine on the named backend.  Returns 0 or -errno: -EINVAL for
 * an unknown name or a bad configuration, -ENOSYS when the build lacks the
 * backend, or what the kernel refused.  The engine registers its wakeup with
 * cfg->watch_fd (epoll data 0). */
int aio_engine_new(aio_engine **out, const aio_engine_config *cfg);
/* "threads" or "uring". */
const char *aio_engine_backend(const aio_engine *e);
/* The smallest write that write() first offers to a send() on the loop
 * thread, by default (Loop(inline_writes=None)); with inline_writes=False
 * it is AIO_HANDOVER_INLINE_MIN, the threads engine's default. */
#define AIO_HANDOVER_INLINE_MIN (32 * 1024)
size_t aio_engine_inline_min(const aio_engine *e);
/* Hands a resolver request (GETADDRINFO, GETNAMEINFO, NOP) to a worker.
 * Returns 0 or -errno (the request stays the caller's). */
int aio_engine_submit(aio_engine *e, aio_req *r);
/* 1 when completions wait to be flushed. */
int aio_engine_has_completions(aio_engine *e);
/* Returns every finished request, oldest first, linked through node.next. */
aio_qnode *aio_engine_flush(aio_engine *e);
/* Wakes the loop thread from aio_engine_wait; any thread, coalesced. */
void aio_engine_wake(aio_engine *e);
/* 1 when the backend has work for aio_engine_wait even with a zero timeout
 * (submissions to enter, completions in a ring, readiness seen last time). */
int aio_engine_poll_pending(aio_engine *e);
/* Announces that the loop thread is about to sleep in aio_engine_wait with
 * a nonzero timeout.  Call it after the loop's last look at its own queues
 * and while still holding what producers of those queues must take (the
 * GIL, for call_soon_threadsafe's ready queue): a producer that publishes
 * afterwards sees the loop asleep and writes the eventfd, so no wakeup is
 * lost.  aio_engine_wait with a nonzero timeout requires it first. */
void aio_engine_sleep_begin(aio_engine *e);
/* The loop thread's wait: up to timeout_ms (-1: forever, 0: not at all) for
 * completions, a wake, or readiness on watch_fd (looked at when `watching`).
 * Ready events of watch_fd (other than the engine's own, data 0) land in
 * events.  Returns how many, or -errno (-EINTR on a signal).  Called without
 * the GIL when it may sleep. */
int aio_engine_wait(aio_engine *e, int timeout_ms, int watching,
                    struct epoll_event *events, int maxevents);
/* Stops every thread and the backend.  Requests never executed come back
 * with -ECANCELED, so after a final flush every submitted request has come
 * back exactly once. */
void aio_engine_stop(aio_engine *e);
/* Frees the engine and every stream still open (call after stop and a
 * final flush).  Read completions still held stay valid until freed. */
void aio_engine_free(aio_engine *e);

typedef struct aio_engine_stats {
    uint64_t completions;      /* requests flushed to the loop */
    uint64_t wakeups;          /* eventfd writes that woke the loop */
    uint64_t submissions;      /* requests handed to a thread or the ring */
    uint64_t bytes_in;         /* payload of read completions */
    uint64_t bytes_out;        /* bytes written by the engine or sent inline */
    int64_t buffers_in_use;    /* read buffers held by completions */
    int64_t streams_open;      /* streams created and not yet freed */
    int64_t inflight;          /* submitted and not yet flushed */
    uint64_t enters;           /* uring: io_uring_enter calls */
    uint64_t starved;          /* uring: recvs that found no free buffer */
    int threads_started;       /* completion and resolver threads running */
    int io_threads;            /* completion threads for sockets (threads backend) */
    int resolver_threads;      /* threads for getaddrinfo/getnameinfo */
} aio_engine_stats;

void aio_engine_get_stats(aio_engine *e, aio_engine_stats *out);

/* ---- streams: a connected socket or a listener served by the engine ----
 *
 * A stream has one owner (a transport, a listener, the TLS layer) and one
 * life: aio_stream_open gives a started stream or nothing, the loop
 * WRITEs and lets it read, and aio_stream_close ends it; the owner's
 * completion callback sees the CLOSE completion last, after every other
 * completion of the stream, and then frees the stream (aio_stream_free).
 * The engine allocates every request of a stream itself (START and CLOSE
 * with the stream, at open: closing cannot run out of memory, as libuv's
 * uv_close cannot fail); the loop releases each completion it flushed with
 * aio_req_free, the one way a completion goes back.
 *
 * Reads and accepts are bounded by credits: at most `credits` completions
 * unconsumed (not yet released) at once, and none while paused. */
enum aio_stream_kind { AIO_STREAM_CONN = 0, AIO_STREAM_LISTENER = 1 };

/* What the loop calls for a stream's owner, given at open and kept in the
 * stream, so that no one switches on the kind of owner (as libuv's uv__io_t
 * carries its callback). */
typedef struct aio_stream_ops {
    /* A flushed completion of the stream (START, READ, ACCEPT, WRITE,
     * CLOSE); deliver=0 while the loop closes (release memory, call nothing
     * of the user).  Returns 0, or -1 when an exception must propagate. */
    int (*completion)(void *owner, aio_req *r, int deliver);
    /* The engine stopped with the stream open: forget it (the loop frees
     * it right after); no completion of it will come. */
    void (*engine_gone)(void *owner);
} aio_stream_ops;

/* Opens a stream for fd, paused (no read or accept completions until
 * aio_stream_resume): allocates it and its requests, links it into the
 * engine's list and submits START.  Returns 0 with *out the started stream,
 * or -errno with *out NULL and nothing left behind (-ENOMEM, -EAGAIN when a
 * completion thread could not start, -ESHUTDOWN after aio_engine_stop,
 * -ECHILD in a forked child).  START comes back as a completion whose
 * result says whether the backend took the descriptor. */
int aio_stream_open(aio_engine *e, int fd, int kind, int credits, const aio_stream_ops *ops,
                    void *owner, aio_stream **out);
/* Ends the stream: cancels its pending write and its reads, unregisters it,
 * and completes CLOSE once nothing of the stream is in flight.  Never
 * fails: what cannot be submitted now is queued and submitted later.  A
 * second call does nothing. */
void aio_stream_close(aio_engine *e, aio_stream *s);
/* Frees a stream after its CLOSE came back (or the engine stopped), with any
 * request the engine still held for it. */
void aio_stream_free(aio_engine *e, aio_stream *s);
void *aio_stream_owner(const aio_stream *s);
const aio_stream_ops *aio_stream_ops_of(const aio_stream *s);
int aio_stream_kind(const aio_stream *s);
/* The engine's open streams, newest first (loop thread). */
aio_stream *aio_engine_streams(aio_engine *e);
aio_stream *aio_stream_next(const aio_stream *s);
/* Submits a WRITE (one in flight per stream).  Returns 0 or -errno. */
int aio_stream_write(aio_engine *e, aio_stream *s, aio_req *r);
/* One non-blocking send from the loop thread, for a write with nothing
 * queued.  Returns bytes sent (maybe 0) or -errno (never -EAGAIN). */
long aio_stream_send_now(aio_engine *e, aio_stream *s, const struct iovec *iov, int iovcnt);
/* After a READ completion with rd.ready: one non-blocking recv() on the
 * loop thread into buf.  Returns the bytes read, 0 at EOF, -EAGAIN when
 * there was nothing after all, or -errno; the engine arms the stream's
 * next read when the completion is released.  len 0 reads nothing (the loop
 * could not take the data now): call it so for every rd.ready completion
 * that is not read. */
long aio_stream_recv_now(aio_engine *e, aio_stream *s, void *buf, size_t len);
/* Bytes waiting in the socket's receive queue (FIONREAD); 0 when unknown. */
size_t aio_stream_pending_bytes(const aio_stream *s);
/* The loop consumed n completions of the stream. Returns 0 or -errno. */
int aio_stream_release(aio_engine *e, aio_stream *s, int n);
void aio_stream_pause(aio_stream *s);
/* Returns 0 or -errno (a REARM could not be submitted). */
int aio_stream_resume(aio_engine *e, aio_stream *s);
/* Bytes of a WRITE in flight that the kernel has taken so far (any thread
 * may be sending it: a relaxed atomic read). */
size_t aio_write_progress(const aio_req *r);
/* A read completion held for long (reading paused) copied into memory of its
 * own, so that a backend buffer it holds goes back at once; NULL when there
 * is nothing to detach or memory is short. */
aio_req *aio_read_detach(aio_req *r);

#endif
