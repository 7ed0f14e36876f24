/* The io_uring backend of the completion engine (liburing).
 *
 * One ring per loop, owned and reaped by the loop thread: the kernel does the
 * reads and writes and hands back completions, so no completion thread and no
 * cross-thread hop sits between a socket and data_received.
 *
 *   - Reads: one IORING_OP_RECV per stream with IOSQE_BUFFER_SELECT from a
 *     provided-buffer ring.  Each provided buffer starts with room for an
 *     aio_req, so a read completion is built in place, as the threads
 *     backend builds it in a pool buffer: no allocation per read.  A recv is
 *     armed only while the stream may deliver (not paused, under its
 *     credits), so flow control works as on the threads backend.
 *   - -ENOBUFS (every buffer is held by unconsumed reads): the stream joins a
 *     starved list and is re-armed when a buffer comes back.  Nothing is lost:
 *     the data stays in the socket.  A read that lands on a paused stream
 *     (the transport holds it until resume_reading) is copied out of the
 *     ring at once, so paused streams never hold ring buffers.
 *   - Accepts: one IORING_OP_ACCEPT at a time per listener into a
 *     preallocated request that carries the peer address.
 *   - Writes: the transport's one write request in flight becomes a sendmsg
 *     of all its iovecs; a short send is resubmitted for the rest.
 *   - Close: IORING_OP_ASYNC_CANCEL of everything on the descriptor; the
 *     CLOSE completion is delivered once the stream's last operation is back.
 *   - The loop's own epoll descriptor (readiness API, the eventfd that
 *     resolver threads and call_soon_threadsafe write) is watched by a poll
 *     in the ring, so one io_uring_enter per loop iteration both submits and
 *     waits.  The poll is one-shot, re-armed after each event: a multishot
 *     poll on an epoll descriptor was seen here (kernel 6.18) to miss the
 *     wakeup of a descriptor added while it was armed.
 *   - Submission queue full: io_uring_get_sqe returns NULL; the queue is
 *     submitted at once and the SQE taken again.  When there is still none
 *     (or the "submit" fault site fires), an arm or a close's cancels are
 *     marked on the stream and retried before the next enter: nothing a
 *     stream needs is ever dropped, and CLOSE never fails.  CQ overflow: the kernel
 *     keeps overflowed completions (IORING_FEAT_NODROP, required) and hands
 *     them out on the next enter.
 *   - fork: a child never touches the parent's ring (pid check); its loop
 *     refuses new stream operations. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "engine_internal.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#ifdef AIO_HAVE_URING

#include <liburing.h>
#include <limits.h>
#include <poll.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <pthread.h>
#include <unistd.h>

#define READ_HDR AIO_READ_HDR
#define U(e) ((struct aio_uring *)(e)->backend_data)
#define RING_ENTRIES 1024
#define BGID 1
#define RING_TARGET_MIN 8u
#define RING_DECAY_READS 4096u
/* The ring's hot working set: target x the average read stays near this
 * (the L2 cache of the machines measured: 512 KiB to 2 MiB per core).  A
 * stream that finds the ring dry is read from the loop thread into the next
 * buffer that comes back (buf_return), the hottest there is. */
#define RING_HOT_BYTES (512u * 1024u)

/* user_data: a pointer with the operation in its low bits. */
enum { TAG_WRITE = 0, TAG_RECV = 1, TAG_ACCEPT = 2, TAG_OTHER = 3 };
#define TAG_MASK 3u
#define UD(p, tag) ((uint64_t)(uintptr_t)(p) | (tag))
#define UD_EPOLL UD(NULL, TAG_OTHER)
#define UD_IGNORE (UD(NULL, TAG_OTHER) | 4u)
#define UD_EVENTFD (UD(NULL, TAG_OTHER) | 8u)

struct aio_uring {
    struct io_uring ring;
    int ring_ok;               /* ring set up and not yet torn down */
    unsigned fork_gen;         /* fork_generation when the ring was set up */
    int watch_fd;              /* the loop's epoll descriptor */
    int watch_armed;
    int watch_ready;
    int efd;                   /* the engine's wakeup eventfd, read by the ring */
    int efd_armed;
    uint64_t efd_value;        /* where the ring's read of the eventfd lands */
    struct io_uring_buf_ring *br;
    size_t br_size;
    char *bufs;                /* nbufs buffers of `stride` bytes */
    size_t stride, cap;
    unsigned nbufs;            /* provided buffers, a power of two */
    int64_t outstanding;       /* buffers held by read completions */
    /* Most-recently-used first: the buffers neither held nor in the ring
     * wait on a stack, and the ring holds only `target` of them, refilled
     * from the top.  The kernel takes ring entries in order, so a ring of
     * all nbufs buffers would hand every recv the buffer used longest ago:
     * memory out of the caches.  target adapts to the working
     * set: it doubles when the ring ran dry while buffers waited on the
     * stack (an ENOBUFS that a larger ring would have avoided) and decays
     * by a quarter after RING_DECAY_READS reads without one.
     * outstanding + in_ring + nfree == nbufs. */
    unsigned *free_bids;
    unsigned nfree, in_ring, target;
    unsigned reads_since_dry;
    size_t avg_read;           /* moving average of recv sizes, bytes */
    size_t direct_min;         /* a recv this large switches its stream to
                                  direct reads (0: never) */
    int dead;                  /* destroyed while buffers were outstanding */
    aio_engine *engine;
    /* Streams whose recv found no free buffer, oldest first.  Invariant: the
     * list is non-empty only while every buffer is held by a read
     * completion (outstanding == nbufs), because a buffer coming back is
     * offered to the starved streams before it returns to the ring (see
     * buf_return).  Debug builds assert it. */
    aio_stream *starved, *starved_tail;
    uint64_t n_enobufs, n_enters, n_sq_full;   /* counters for _engine_stats */
    int defer;                 /* DEFER_TASKRUN: completions only post on enter */
    int epoll_hot;             /* the loop's epoll had events last time: look again */
    int stopping;              /* aio_uring_stop runs: arm nothing new */
    int nretry;                /* streams with an arm or cancels to retry */
    int64_t ops;               /* stream operations (recv, accept, send) in the ring */
};

/* Bumped in every child after fork: a ring set up before belongs to the
 * parent (its memory is shared with it) and is never used again. */
static _Atomic unsigned fork_generation;
static pthread_once_t atfork_once = PTHREAD_ONCE_INIT;

static void on_fork_child(void)
{
    atomic_fetch_add(&fork_generation, 1);
}

static void register_atfork(void)
{
    pthread_atfork(NULL, NULL, on_fork_child);
}

static int forked(struct aio_uring *u)
{
    return atomic_load_explicit(&fork_generation, memory_order_relaxed) != u->fork_gen;
}

/* An SQE, submitting the queue first if it is full. */
static struct io_uring_sqe *get_sqe(struct aio_uring *u)
{
    if (aio_fault_hit(AIO_FAULT_SUBMIT))
        return NULL;
    struct io_uring_sqe *sqe = io_uring_get_sqe(&u->ring);
    if (sqe == NULL) {
        u->n_sq_full++;
        io_uring_submit(&u->ring);
        sqe = io_uring_get_sqe(&u->ring);
    }
    return sqe;
}

static void complete(aio_engine *e, aio_req *r)
{
    aio__complete(e, r);
}

static int may_read(aio_stream *s)
{
    return !atomic_load_explicit(&s->paused, memory_order_relaxed) &&
           atomic_load_explicit(&s->unconsumed, memory_order_relaxed) < s->credits;
}

/* The engine's wakeup eventfd (call_soon_threadsafe, resolver threads) is
 * read by the ring itself: the read both wakes the loop and consumes the
 * counter, so a cross-thread wakeup costs no extra syscall. */
static int arm_eventfd(struct aio_uring *u)
{
    struct io_uring_sqe *sqe = get_sqe(u);
    if (sqe == NULL)
        return -EBUSY;
    io_uring_prep_read(sqe, u->efd, &u->efd_value, sizeof u->efd_value, 0);
    io_uring_sqe_set_data64(sqe, UD_EVENTFD);
    u->efd_armed = 1;
    return 0;
}

static int arm_watch(struct aio_uring *u)
{
    struct io_uring_sqe *sqe = get_sqe(u);
    if (sqe == NULL)
        return -EBUSY;
    io_uring_prep_poll_add(sqe, u->watch_fd, POLLIN);
    io_uring_sqe_set_data64(sqe, UD_EPOLL);
    u->watch_armed = 1;
    return 0;
}

enum { RETRY_ARM = 1, RETRY_CANCEL = 2 };

/* What could not be submitted now is retried before the next enter. */
static void retry_later(struct aio_uring *u, aio_stream *s, int what)
{
    if (s->b.u.retry == 0)
        u->nretry++;
    s->b.u.retry |= what;
}

/* Arms a recv or an accept when the stream may deliver and has none.
 * Returns 0: an arm that cannot be submitted now is retried later. */
static int arm(aio_engine *e, aio_stream *s)
{
    struct aio_uring *u = U(e);
    if (s->b.u.armed || s->b.u.close != NULL || s->done_reading || s->b.u.starved || !s->registered ||
        s->b.u.ready_out || !may_read(s) || !u->ring_ok || u->stopping)
        return 0;
    if (s->kind == AIO_STREAM_LISTENER && s->b.u.acc == NULL &&
        (s->b.u.acc = aio__req_alloc(0)) == NULL) {
        retry_later(u, s, RETRY_ARM);
        return 0;
    }
    struct io_uring_sqe *sqe = get_sqe(u);
    if (sqe == NULL) {
        retry_later(u, s, RETRY_ARM);
        return 0;
    }
    if (s->kind == AIO_STREAM_LISTENER) {
        aio_req *r = s->b.u.acc;
        r->op = AIO_OP_STREAM_ACCEPT;
        r->u.acc.s = s;
        r->u.acc.addrlen = sizeof r->u.acc.addr;
        io_uring_prep_accept(sqe, s->fd, (struct sockaddr *)&r->u.acc.addr, &r->u.acc.addrlen,
                             SOCK_NONBLOCK | SOCK_CLOEXEC);
        io_uring_sqe_set_data64(sqe, UD(s, TAG_ACCEPT));
    } else if (s->b.u.direct) {
        io_uring_prep_poll_add(sqe, s->fd, POLLIN);
        io_uring_sqe_set_data64(sqe, UD(s, TAG_RECV));
        s->b.u.polling = 1;
    } else {
        io_uring_prep_recv(sqe, s->fd, NULL, u->cap, 0);
        sqe->flags |= IOSQE_BUFFER_SELECT;
        sqe->buf_group = BGID;
        io_uring_sqe_set_data64(sqe, UD(s, TAG_RECV));
    }
    s->b.u.armed = 1;
    s->b.u.inflight++;
    u->ops++;
    e->n_submissions++;
    return 0;
}

static void buf_add(struct aio_uring *u, unsigned bid)
{
    io_uring_buf_ring_add(u->br, u->bufs + (size_t)bid * u->stride + READ_HDR, (unsigned)u->cap,
                          (unsigned short)bid, io_uring_buf_ring_mask(u->nbufs), 0);
    io_uring_buf_ring_advance(u->br, 1);
    u->in_ring++;
}

/* Tops the ring up to target from the top of the free stack (the buffers
 * used last, still in the caches). */
static void ring_refill(struct aio_uring *u)
{
    while (u->in_ring < u->target && u->nfree > 0)
        buf_add(u, u->free_bids[--u->nfree]);
}

/* The ring ran dry while buffers waited on the stack: offer more at once. */
static void ring_grow(struct aio_uring *u)
{
    u->reads_since_dry = 0;
    size_t hot = RING_HOT_BYTES / (u->avg_read ? u->avg_read : 1);
    unsigned limit = hot < RING_TARGET_MIN ? RING_TARGET_MIN : hot > u->nbufs ? u->nbufs : (unsigned)hot;
    if (u->target < limit)
        u->target = u->target * 2 < limit ? u->target * 2 : limit;
    ring_refill(u);
}

static void free_buffers(struct aio_uring *u)
{
    if (u->br != NULL)
        munmap(u->br, u->br_size);
    if (u->bufs != NULL)
        munmap(u->bufs, u->stride * u->nbufs);
    free(u->free_bids);
    free(u);
}

static void starve(struct aio_uring *u, aio_stream *s)
{
    s->b.u.starved = 1;
    s->b.u.next_starved = NULL;
    s->b.u.prev_starved = u->starved_tail;
    if (u->starved_tail != NULL)
        u->starved_tail->b.u.next_starved = s;
    else
        u->starved = s;
    u->starved_tail = s;
    AIO_DEBUG_ASSERT(u->outstanding == (int64_t)u->nbufs);
}

static void unstarve(struct aio_uring *u, aio_stream *s)
{
    if (s->b.u.prev_starved != NULL)
        s->b.u.prev_starved->b.u.next_starved = s->b.u.next_starved;
    else
        u->starved = s->b.u.next_starved;
    if (s->b.u.next_starved != NULL)
        s->b.u.next_starved->b.u.prev_starved = s->b.u.prev_starved;
    else
        u->starved_tail = s->b.u.prev_starved;
    s->b.u.next_starved = s->b.u.prev_starved = NULL;
    s->b.u.starved = 0;
}

static void ring_release(aio_req *r);

/* The read completion that lives in provided buffer bid. */
static aio_req *read_req_at(struct aio_uring *u, unsigned bid)
{
    aio_req *r = (aio_req *)(void *)(u->bufs + (size_t)bid * u->stride);
    AIO_RD(r)->release = ring_release;
    AIO_RD(r)->buf_owner = u;
    AIO_RD(r)->bid = bid;
    AIO_RD(r)->scarce = 1;
    r->u.rd.data = (char *)r + READ_HDR;
    r->u.rd.cap = u->cap;
    r->u.rd.ready = 0;
    return r;
}

static void deliver_read(aio_engine *e, aio_stream *s, aio_req *r, int res)
{
    r->op = AIO_OP_STREAM_READ;
    r->owner = NULL;
    r->u.rd.s = s;
    r->result = res;
    if (res <= 0)
        s->done_reading = 1;
    atomic_fetch_add(&s->unconsumed, 1);
    complete(e, r);
}

/* A buffer came back from a read completion.  Before it returns to the ring
 * it is offered to the starved streams, oldest first: a non-blocking recv()
 * on the loop thread straight into it.  A stream with data (or EOF, or an
 * error) takes the buffer and is read at once; a stream without data is
 * armed again (its recv waits in the kernel holding no buffer) and the next
 * starved stream is tried.  So no stream stays starved while a buffer is
 * free: an ENOBUFS says only that the ring was empty when the recv was
 * issued, not that the socket had data, and handing the buffer to one
 * starved stream that turns out to have none would leave it idle in the
 * ring while others wait with data. */
static void buf_return(struct aio_uring *u, unsigned bid)
{
    aio_engine *e = u->engine;
    while (u->starved != NULL && u->ring_ok) {
        aio_stream *s = u->starved;
        unstarve(u, s);
        if (!may_read(s) || s->b.u.close != NULL || s->done_reading || !s->registered)
            continue;   /* resume_reading or the credit's release arms it */
        aio_req *r = read_req_at(u, bid);
        ssize_t n;
        do {
            n = recv(s->fd, r->u.rd.data, r->u.rd.cap, MSG_DONTWAIT);
        } while (n < 0 && errno == EINTR);
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            (void)arm(e, s);
            continue;
        }
        u->outstanding++;
        deliver_read(e, s, r, n < 0 ? -errno : (int)n);
        (void)arm(e, s);
        return;
    }
    u->free_bids[u->nfree++] = bid;
    ring_refill(u);
}

static void buf_put(struct aio_uring *u, aio_req *r)
{
    u->outstanding--;
    if (u->dead) {
        if (u->outstanding == 0)
            free_buffers(u);
        return;
    }
    buf_return(u, AIO_RD(r)->bid);
}

/* A read completion's provided buffer comes back (aio_req_free). */
static void ring_release(aio_req *r)
{
    buf_put(AIO_RD(r)->buf_owner, r);
}

static void maybe_close(aio_engine *e, aio_stream *s)
{
    if (s->b.u.close != NULL && s->b.u.inflight == 0) {
        aio_req *r = s->b.u.close;
        s->b.u.close = NULL;
        complete(e, r);
    }
}

/* The poll of a stream on direct reads fired: the loop reads the socket
 * itself (straight into the bytes object or the protocol's buffer: one copy
 * where a ring buffer costs two, and into memory the loop's allocator just
 * handed back, in the caches).  No new operation is armed until that recv
 * (aio_stream_recv_now) and the completion's release. */
static void on_poll(aio_engine *e, aio_stream *s, struct io_uring_cqe *cqe)
{
    s->b.u.polling = 0;
    if (s->b.u.close != NULL || cqe->res == -ECANCELED) {
        maybe_close(e, s);
        return;
    }
    aio_req *r = aio__req_alloc(0);
    if (r == NULL) {
        (void)arm(e, s);   /* try again: the data stays in the socket */
        return;
    }
    r->op = AIO_OP_STREAM_READ;
    r->u.rd.s = s;
    r->u.rd.ready = 1;
    s->b.u.ready_out = 1;
    atomic_fetch_add(&s->unconsumed, 1);
    complete(e, r);
}

/* Direct reads pay a syscall per read to save a copy: worth it for large
 * reads only.  A stream goes back to ring reads when they turn small. */
static void ur_recv_done(aio_engine *e, aio_stream *s, long res)
{
    struct aio_uring *u = U(e);
    s->b.u.ready_out = 0;
    if (u != NULL && res >= 0 && (size_t)res < u->direct_min / 4)
        s->b.u.direct = 0;
}

static void on_recv(aio_engine *e, aio_stream *s, struct io_uring_cqe *cqe)
{
    struct aio_uring *u = U(e);
    s->b.u.armed = 0;
    s->b.u.inflight--;
    U(e)->ops--;
    if (s->b.u.polling) {
        on_poll(e, s, cqe);
        return;
    }
    aio_req *r = NULL;
    if (cqe->flags & IORING_CQE_F_BUFFER) {
        r = read_req_at(u, cqe->flags >> IORING_CQE_BUFFER_SHIFT);
        u->outstanding++;
        u->in_ring--;
        if (cqe->res > 0) {
            size_t n = (size_t)cqe->res;
            u->avg_read = n > u->avg_read ? u->avg_read + (n - u->avg_read) / 8
                                          : u->avg_read - (u->avg_read - n) / 8;
        }
        if (++u->reads_since_dry >= RING_DECAY_READS) {
            u->reads_since_dry = 0;
            if (u->target > RING_TARGET_MIN)
                u->target -= (u->target - RING_TARGET_MIN + 3) / 4;
        }
    }
    int res = cqe->res;
    if (res == -ENOBUFS && r == NULL && s->b.u.close == NULL) {
        u->n_enobufs++;
        if (u->outstanding < (int64_t)u->nbufs) {
            /* A buffer is in the ring (it came back since the recv was
             * issued, or is about to be reaped with another completion) or
             * waits on the stack: try again, with a larger ring when the
             * stack had some. */
            if (u->nfree > 0)
                ring_grow(u);
            (void)arm(e, s);
            return;
        }
        /* Every buffer is held by a read completion: wait for one. */
        starve(u, s);
        return;
    }
    if (s->b.u.close != NULL || (res == -ECANCELED && r == NULL)) {
        /* Cancelled by close (or the data arrived as it was cancelled:
         * the transport no longer wants it). */
        if (r != NULL)
            buf_put(u, r);
        maybe_close(e, s);
        return;
    }
    if (r != NULL && res > 0 && atomic_load_explicit(&s->paused, memory_order_relaxed)) {
        /* The transport will hold this read until it resumes: move the data
         * out of the ring, so that paused streams cannot starve the others
         * of buffers. */
        r->op = AIO_OP_STREAM_READ;
        r->result = res;
        aio_req *copy = aio_read_detach(r);
        if (copy != NULL)
            r = copy;
    }
    if (r == NULL) {
        r = aio__req_alloc(0);
        if (r == NULL) {
            (void)arm(e, s);   /* try again; the data or error stays in the socket */
            return;
        }
    }
    if (u->direct_min != 0 && res > 0 && (size_t)res >= u->direct_min)
        s->b.u.direct = 1;
    deliver_read(e, s, r, res);
    (void)arm(e, s);
}

static void on_accept(aio_engine *e, aio_stream *s, struct io_uring_cqe *cqe)
{
    s->b.u.armed = 0;
    s->b.u.inflight--;
    U(e)->ops--;
    aio_req *r = s->b.u.acc;
    int res = cqe->res;
    if (s->b.u.close != NULL || res == -ECANCELED) {
        if (res >= 0)
            close(res);
        maybe_close(e, s);
        return;
    }
    if (res == -ECONNABORTED || res == -EPROTO || res == -EINTR) {
        (void)arm(e, s);   /* the peer gave up before we took it */
        return;
    }
    s->b.u.acc = NULL;
    r->result = res;
    atomic_fetch_add(&s->unconsumed, 1);
    complete(e, r);
    if (res >= 0)
        (void)arm(e, s);
    /* An error (EMFILE, ...) is reported once; the loop pauses the listener
     * and resumes it after a delay, which re-arms. */
}

static int submit_send(struct aio_uring *u, aio_stream *s, aio_req *r)
{
    struct io_uring_sqe *sqe = get_sqe(u);
    if (sqe == NULL)
        return -EBUSY;
    memset(AIO_WR_MSG(r), 0, sizeof(struct msghdr));
    AIO_WR_MSG(r)->msg_iov = r->u.wr.iov + r->u.wr.iovpos;
    int cnt = r->u.wr.iovcnt - r->u.wr.iovpos;
    AIO_WR_MSG(r)->msg_iovlen = (size_t)(cnt > IOV_MAX ? IOV_MAX : cnt);
    io_uring_prep_sendmsg(sqe, s->fd, AIO_WR_MSG(r), MSG_NOSIGNAL);
    io_uring_sqe_set_data64(sqe, UD(r, TAG_WRITE));
    s->b.u.inflight++;
    u->ops++;
    u->engine->n_submissions++;
    return 0;
}

static void on_write(aio_engine *e, aio_req *r, struct io_uring_cqe *cqe)
{
    aio_stream *s = r->u.wr.s;
    s->b.u.inflight--;
    U(e)->ops--;
    int res = cqe->res;
    if (res > 0) {
        aio__iov_advance(r, (size_t)res);
        if (r->u.wr.iovpos < r->u.wr.iovcnt && s->b.u.close == NULL && !U(e)->stopping) {
            if (submit_send(U(e), s, r) == 0)
                return;
            res = -EBUSY;
        }
    }
    s->wreq = NULL;
    if (res == -EAGAIN || res == -EINTR) {
        if (s->b.u.close == NULL && !U(e)->stopping && submit_send(U(e), s, r) == 0) {
            s->wreq = r;
            return;
        }
    }
    r->result = (s->b.u.close != NULL || U(e)->stopping) && r->u.wr.iovpos < r->u.wr.iovcnt
                    ? -ECANCELED
                : (res < 0 ? res : 0);
    complete(e, r);
    maybe_close(e, s);
}

static void ur_reap(aio_engine *e)
{
    struct aio_uring *u = U(e);
    if (u == NULL || !u->ring_ok)
        return;
    for (;;) {
        struct io_uring_cqe *cqes[64];
        unsigned n = io_uring_peek_batch_cqe(&u->ring, cqes, 64);
        if (n == 0)
            break;
        for (unsigned i = 0; i < n; i++) {
            struct io_uring_cqe *cqe = cqes[i];
            uint64_t ud = cqe->user_data;
            void *p = (void *)(uintptr_t)(ud & ~(uint64_t)TAG_MASK);
            switch (ud & TAG_MASK) {
            case TAG_WRITE:
                on_write(e, p, cqe);
                break;
            case TAG_RECV:
                on_recv(e, p, cqe);
                break;
            case TAG_ACCEPT:
                on_accept(e, p, cqe);
                break;
            default:
                if (ud == UD_EPOLL) {
                    u->watch_ready = 1;
                    u->watch_armed = 0;
                } else if (ud == UD_EVENTFD) {
                    u->efd_armed = 0;
                }
                break;
            }
        }
        io_uring_cq_advance(&u->ring, n);
    }
}

static int ur_poll_pending(aio_engine *e)
{
    struct aio_uring *u = U(e);
    return u->epoll_hot ||
           (u->ring_ok && (u->defer || io_uring_sq_ready(&u->ring) || io_uring_cq_ready(&u->ring)));
}

static void run_retries(aio_engine *e);

static int ring_enter(aio_engine *e, int timeout_ms, int watch_epoll)
{
    struct aio_uring *u = U(e);
    if (forked(u) || !u->ring_ok)
        return -ECHILD;
    if (u->nretry > 0)
        run_retries(e);
    int rc = 0;
    if (timeout_ms == 0) {
        /* A loop that never sleeps (completions every iteration) must still
         * see its readiness descriptors: the watch rides along with this
         * submit, and its completion makes ur_wait read the epoll. */
        if (watch_epoll && !u->watch_armed)
            (void)arm_watch(u);
        if (u->defer) {
            u->n_enters++;
            rc = io_uring_submit_and_get_events(&u->ring);
        } else if (io_uring_sq_ready(&u->ring)) {
            u->n_enters++;
            rc = io_uring_submit(&u->ring);
        }
    } else {
        /* About to sleep: whatever can wake the loop must be in the ring. */
        if (!u->efd_armed)
            (void)arm_eventfd(u);
        if (watch_epoll && !u->watch_armed)
            (void)arm_watch(u);
        u->n_enters++;
        struct io_uring_cqe *cqe;
        /* Always a timeout, even for "forever" (a day; the loop just waits
         * again): without one, liburing's submit-and-wait enters the kernel
         * again when a signal ended a wait that had submitted something, so
         * a Ctrl-C on an idle loop was never seen.  With one, it returns and
         * the loop runs the Python-level signal handlers (loop_poll). */
        struct __kernel_timespec ts = {.tv_sec = timeout_ms < 0 ? 86400 : timeout_ms / 1000,
                                       .tv_nsec = timeout_ms < 0 ? 0
                                                  : (long long)(timeout_ms % 1000) * 1000000};
        rc = io_uring_submit_and_wait_timeout(&u->ring, &cqe, 1, &ts, NULL);
        if (rc == -ETIME)
            rc = 0;
    }
    if (rc < 0 && rc != -EINTR && rc != -EAGAIN && rc != -EBUSY)
        return rc;
    u->watch_ready = 0;
    ur_reap(e);
    int ready = u->watch_ready;
    return rc == -EINTR ? -EINTR : ready;
}

static int cancel(struct aio_uring *u, uint64_t ud)
{
    struct io_uring_sqe *sqe = get_sqe(u);
    if (sqe == NULL)
        return -EBUSY;
    io_uring_prep_cancel64(sqe, ud, 0);
    io_uring_sqe_set_data64(sqe, UD_IGNORE);
    return 0;
}

/* A closing stream's operations in the ring are cancelled by user_data, not
 * by descriptor: the owner may already have put another file under the
 * number.  Returns 0, or -EBUSY when a cancel found no SQE (retry). */
static int cancel_stream(struct aio_uring *u, aio_stream *s)
{
    int rc = 0;
    if (s->b.u.armed &&
        cancel(u, UD(s, s->kind == AIO_STREAM_LISTENER ? TAG_ACCEPT : TAG_RECV)) < 0)
        rc = -EBUSY;
    if (s->wreq != NULL && cancel(u, UD(s->wreq, TAG_WRITE)) < 0)
        rc = -EBUSY;
    return rc;
}

/* Arms and cancels that found no SQE before, oldest state first. */
static void run_retries(aio_engine *e)
{
    struct aio_uring *u = U(e);
    for (aio_stream *s = e->streams; s != NULL && u->nretry > 0; s = s->lnext) {
        int what = s->b.u.retry;
        if (what == 0)
            continue;
        s->b.u.retry = 0;
        u->nretry--;
        if ((what & RETRY_CANCEL) && s->b.u.inflight > 0 && cancel_stream(u, s) < 0)
            retry_later(u, s, RETRY_CANCEL);
        if (what & RETRY_ARM)
            (void)arm(e, s);
    }
}

static int ur_stream_start(aio_engine *e, aio_stream *s, aio_req *r)
{
    struct aio_uring *u = U(e);
    if (!u->ring_ok || forked(u) || u->stopping)
        return -ESHUTDOWN;
    /* Nothing to register: the first arm (on resume) is the start. */
    s->registered = 1;
    r->result = 0;
    complete(e, r);
    (void)arm(e, s);
    return 0;
}

static void ur_stream_close(aio_engine *e, aio_stream *s, aio_req *r)
{
    struct aio_uring *u = U(e);
    r->u.ctl.s = s;
    r->result = 0;
    s->registered = 0;
    if (s->b.u.starved)
        unstarve(u, s);
    s->b.u.close = r;
    if (s->b.u.inflight > 0 && u->ring_ok && !forked(u)) {
        /* Entered now, so the ring drops its reference to the socket before
         * close() returns (a closed server must refuse connections at
         * once). */
        if (cancel_stream(u, s) < 0)
            retry_later(u, s, RETRY_CANCEL);
        io_uring_submit(&u->ring);
    }
    maybe_close(e, s);
}

static int ur_stream_write(aio_engine *e, aio_stream *s, aio_req *r)
{
    r->u.wr.s = s;
    if (s->wreq != NULL || s->b.u.close != NULL || !s->registered || !U(e)->ring_ok) {
        r->result = s->wreq != NULL ? -EBUSY : -EBADF;
        complete(e, r);
        return 0;
    }
    int rc = submit_send(U(e), s, r);
    if (rc < 0)
        return rc;
    s->wreq = r;
    return 0;
}

static int ur_stream_kick(aio_engine *e, aio_stream *s)
{
    return arm(e, s);
}

static void ur_stats(aio_engine *e, aio_engine_stats *out)
{
    struct aio_uring *u = U(e);
    if (u == NULL)
        return;
    out->starved = u->n_enobufs;
    out->enters = u->n_enters;
    out->buffers_in_use = u->outstanding;
}

/* 0 when the ring offers every operation the streams use, else
 * -EOPNOTSUPP (the kernel is too old: the threads backend then). */
static int ops_supported(struct io_uring *ring)
{
    struct io_uring_probe *probe = io_uring_get_probe_ring(ring);
    int ok = probe != NULL && io_uring_opcode_supported(probe, IORING_OP_RECV) &&
             io_uring_opcode_supported(probe, IORING_OP_SENDMSG) &&
             io_uring_opcode_supported(probe, IORING_OP_ACCEPT) &&
             io_uring_opcode_supported(probe, IORING_OP_ASYNC_CANCEL) &&
             io_uring_opcode_supported(probe, IORING_OP_POLL_ADD);
    if (probe != NULL)
        io_uring_free_probe(probe);
    return ok ? 0 : -EOPNOTSUPP;
}

static int ur_setup(aio_engine *e, const aio_engine_config *cfg)
{
    unsigned nbufs = cfg->ring_buffers ? cfg->ring_buffers : 256;
    int watch_fd = e->watch_fd;
    if (nbufs > 32768 || (nbufs & (nbufs - 1)) != 0)
        return -EINVAL;
    struct aio_uring *u = calloc(1, sizeof *u);
    if (u == NULL)
        return -ENOMEM;
    u->nbufs = nbufs;
    u->engine = e;
    pthread_once(&atfork_once, register_atfork);
    u->fork_gen = atomic_load(&fork_generation);
    u->efd = e->cq_wake.fd;
    u->watch_fd = watch_fd;
    struct io_uring_params p;
    memset(&p, 0, sizeof p);
    /* AIOLOOP_URING_SETUP (a measurement knob, see docs/benchmarks.md):
     * "none", or any of "coop", "single", "defer"; the default is "coop". */
    const char *setup = getenv("AIOLOOP_URING_SETUP");
    if (setup == NULL || *setup == '\0')
        setup = "coop";
    p.flags = IORING_SETUP_CLAMP;
    if (strstr(setup, "coop"))
        p.flags |= IORING_SETUP_COOP_TASKRUN;
    if (strstr(setup, "single"))
        p.flags |= IORING_SETUP_SINGLE_ISSUER;
    if (strstr(setup, "defer")) {
        p.flags |= IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN;
        u->defer = 1;
    }
    int rc = io_uring_queue_init_params(RING_ENTRIES, &u->ring, &p);
    if (rc == -EINVAL) {   /* older kernel: no COOP_TASKRUN */
        memset(&p, 0, sizeof p);
        rc = io_uring_queue_init_params(RING_ENTRIES, &u->ring, &p);
    }
    if (rc < 0) {
        free(u);
        return rc;
    }
    u->ring_ok = 1;
    if (!(p.features & IORING_FEAT_NODROP) || !(p.features & IORING_FEAT_EXT_ARG)) {
        rc = -EOPNOTSUPP;
        goto fail;
    }
    u->cap = cfg->bufsize ? cfg->bufsize : 64 * 1024;
    /* AIOLOOP_DIRECT_MIN (a measurement knob, see docs/benchmarks.md):
     * the read size that switches a stream to direct reads, 0 = never. */
    const char *dm = getenv("AIOLOOP_DIRECT_MIN");
    u->direct_min = dm != NULL && *dm != '\0' ? (size_t)strtoul(dm, NULL, 10) : 8 * 1024;
    u->stride = (READ_HDR + u->cap + 63u) & ~(size_t)63u;
    u->bufs = mmap(NULL, u->stride * u->nbufs, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    u->br_size = u->nbufs * sizeof(struct io_uring_buf);
    u->br = mmap(NULL, u->br_size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (u->bufs == MAP_FAILED || u->br == MAP_FAILED) {
        if (u->bufs == MAP_FAILED)
            u->bufs = NULL;
        if (u->br == MAP_FAILED)
            u->br = NULL;
        rc = -ENOMEM;
        goto fail;
    }
    u->free_bids = malloc(u->nbufs * sizeof *u->free_bids);
    if (u->free_bids == NULL) {
        rc = -ENOMEM;
        goto fail;
    }
    io_uring_buf_ring_init(u->br);
    struct io_uring_buf_reg reg;
    memset(&reg, 0, sizeof reg);
    reg.ring_addr = (uint64_t)(uintptr_t)u->br;
    reg.ring_entries = u->nbufs;
    reg.bgid = BGID;
    rc = io_uring_register_buf_ring(&u->ring, &reg, 0);
    if (rc < 0)
        goto fail;
    /* Buffer 0 on top of the stack. */
    for (unsigned i = 0; i < u->nbufs; i++)
        u->free_bids[u->nfree++] = u->nbufs - 1 - i;
    u->target = u->nbufs < RING_TARGET_MIN ? u->nbufs : RING_TARGET_MIN;
    ring_refill(u);
    /* Probe the operations the streams use: a kernel without one falls
     * back to the threads backend as a whole. */
    if ((rc = ops_supported(&u->ring)) < 0)
        goto fail;
    e->backend_data = u;
    return 0;
fail:
    io_uring_queue_exit(&u->ring);
    free_buffers(u);
    return rc;
}

static void ur_stop(aio_engine *e)
{
    struct aio_uring *u = U(e);
    if (u == NULL || !u->ring_ok)
        return;
    if (!forked(u)) {
        /* Cancel everything in the ring and reap until the stream
         * operations are back: an accept the kernel finished (or finishes
         * while it is cancelled) has installed a descriptor that only its
         * completion names, and the handlers close it (the stream is
         * closing) or hand it to the loop's final drain, which closes it.
         * Writes come back -ECANCELED to their transports the same way.
         * Bounded: a kernel that never answers costs 1 s, not a hang. */
        u->stopping = 1;
        struct io_uring_sqe *sqe = get_sqe(u);
        if (sqe != NULL) {
            io_uring_prep_cancel64(sqe, 0, IORING_ASYNC_CANCEL_ANY);
            io_uring_sqe_set_data64(sqe, UD_IGNORE);
        }
        for (int i = 0; i < 100 && u->ops > 0; i++) {
            struct io_uring_cqe *cqe;
            struct __kernel_timespec ts = {.tv_sec = 0, .tv_nsec = 10 * 1000000};
            int rc = io_uring_submit_and_wait_timeout(&u->ring, &cqe, 1, &ts, NULL);
            if (rc < 0 && rc != -ETIME && rc != -EINTR && rc != -EAGAIN && rc != -EBUSY)
                break;
            ur_reap(e);
        }
        ur_reap(e);
    }
    /* Tearing the ring down cancels what is still in flight; nothing
     * completes after this, and the loop frees what the streams still hold. */
    io_uring_queue_exit(&u->ring);
    u->ring_ok = 0;
    u->starved = u->starved_tail = NULL;
}

static void ur_destroy(aio_engine *e)
{
    struct aio_uring *u = U(e);
    if (u == NULL)
        return;
    ur_stop(e);
    e->backend_data = NULL;
    if (u->outstanding > 0)
        u->dead = 1;   /* read completions still held: freed with the last */
    else
        free_buffers(u);
}


/* The loop thread's wait: one io_uring_enter submits what the iteration
 * queued and sleeps; the loop's epoll descriptor is watched from inside the
 * ring and read without blocking when it fired (or fired last time:
 * readiness is level-triggered and the ring only sees new wakeups). */
static int ur_wait(aio_engine *e, int timeout_ms, int watching, struct epoll_event *events,
                   int maxevents)
{
    struct aio_uring *u = U(e);
    int rc, n = 0;
    if (timeout_ms == 0 || u->epoll_hot) {
        rc = ring_enter(e, 0, watching && !u->epoll_hot);
        if (timeout_ms != 0)
            (void)aio_wakeup_sleep_end(&e->cq_wake);   /* announced, not slept */
    } else {
        /* The loop announced the sleep (aio_engine_sleep_begin); re-check
         * after it (see the threads backend). */
        if (!aio_mpsc_empty(&e->cq))
            timeout_ms = 0;
        rc = ring_enter(e, timeout_ms, watching);
        /* The ring's read of the eventfd consumed the counter. */
        (void)aio_wakeup_sleep_end(&e->cq_wake);
    }
    if (rc > 0 || u->epoll_hot) {
        n = epoll_wait(e->watch_fd, events, maxevents, 0);
        u->epoll_hot = n > 0;
    }
    if (rc < 0)
        return rc;
    return n > 0 ? n : 0;
}

static void ur_stream_init(aio_engine *e, aio_stream *s)
{
    (void)e;
    (void)s;   /* calloc'd: nothing armed, nothing in the ring */
}

static void ur_stream_fini(aio_engine *e, aio_stream *s)
{
    struct aio_uring *u = U(e);
    if (s->b.u.retry && u != NULL)
        u->nretry--;
    free(s->b.u.acc);
    free(s->b.u.close);
}

int aio__uring_probe(void)
{
    struct io_uring ring;
    int rc = io_uring_queue_init(2, &ring, 0);
    if (rc < 0)
        return rc;
    rc = ops_supported(&ring);
    io_uring_queue_exit(&ring);
    return rc;
}

const aio_backend aio__backend_uring = {
    .name = "uring",
    .inline_min = 8 * 1024,
    .setup = ur_setup,
    .stream_init = ur_stream_init,
    .stream_start = ur_stream_start,
    .stream_close = ur_stream_close,
    .stream_write = ur_stream_write,
    .recv_done = ur_recv_done,
    .stream_kick = ur_stream_kick,
    .stream_fini = ur_stream_fini,
    .poll_pending = ur_poll_pending,
    .wait = ur_wait,
    .reap = ur_reap,
    .stop = ur_stop,
    .destroy = ur_destroy,
    .stats = ur_stats,
};

#endif
