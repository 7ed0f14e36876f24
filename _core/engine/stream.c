/* Streams on the `threads` backend: connected sockets and listeners served
 * by a completion thread.
 *
 * The worker registers each stream once, edge-triggered, for input and
 * output.  On an input edge it reads (or accepts) until the socket is
 * drained, the stream runs out of credits, or the loop paused it; each read
 * lands in a pool buffer that carries its own completion header, so a read
 * costs no allocation.  A short read means the socket was drained: on Linux
 * every later arrival raises a new edge.  Writes arrive as one request with
 * all queued buffers as iovecs; the worker sends what the socket takes and
 * finishes the rest on output edges. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "engine_internal.h"

#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <unistd.h>

static void pool_release(aio_req *r)
{
    aio_pool_put(AIO_RD(r)->buf_owner, r);
}

/* Loop side of the handshake: the condition was just made true (seq_cst
 * stores); if the worker parked, exactly one of us clears `parked`. */
static int may_deliver(aio_stream *s)
{
    return !atomic_load(&s->paused) && atomic_load(&s->unconsumed) < s->credits;
}

int aio__threads_unpark(aio_engine *e, aio_stream *s)
{
    if (!atomic_load(&s->b.t.parked) || !may_deliver(s))
        return 0;
    int one = 1;
    if (!atomic_compare_exchange_strong(&s->b.t.parked, &one, 0))
        return 0;
    aio_req *r = aio__req_alloc(0);
    int rc = -ENOMEM;
    if (r != NULL) {
        r->op = AIO_OP_STREAM_REARM;
        r->u.ctl.s = s;
        rc = aio__worker_submit(e, s->b.t.worker, r);
    }
    if (rc < 0) {
        /* Parked again: the next release or resume tries once more. */
        free(r);
        atomic_store(&s->b.t.parked, 1);
    }
    return rc;
}

/* ---- worker side ---- */

/* Worker side of the handshake.  Returns 1 if the worker may go on (the
 * condition turned true again and it took `parked` back), 0 if it parked:
 * then the loop submits REARM when it makes room. */
static int park(aio_stream *s)
{
    atomic_store(&s->b.t.parked, 1);
    if (!may_deliver(s))
        return 0;
    int one = 1;
    return atomic_compare_exchange_strong(&s->b.t.parked, &one, 0);
}

static void read_some(aio_worker *w, aio_stream *s, aio_chain *out)
{
    aio_pool *pool = &w->engine->pool;
    while (s->b.t.readable && !s->done_reading) {
        if (!may_deliver(s) && !park(s))
            return;
        aio_req *r = aio_pool_get(pool);
        ssize_t n;
        if (r == NULL) {
            n = -1;
            errno = ENOBUFS;
            r = aio__req_alloc(0);
            if (r == NULL)
                return;   /* retried on the next edge or REARM */
            AIO_RD(r)->release = NULL;
            r->u.rd.data = NULL;
            r->u.rd.cap = 0;
        } else {
            AIO_RD(r)->release = pool_release;
            AIO_RD(r)->buf_owner = pool;
            AIO_RD(r)->scarce = 0;
            r->u.rd.data = (char *)r + AIO_READ_HDR;
            r->u.rd.cap = pool->bufsize - AIO_READ_HDR;
            do {
                n = recv(s->fd, r->u.rd.data, r->u.rd.cap, 0);
            } while (n < 0 && errno == EINTR);
            if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
                s->b.t.readable = 0;
                aio_pool_put(pool, r);
                return;
            }
        }
        r->op = AIO_OP_STREAM_READ;
        r->owner = NULL;
        r->u.rd.s = s;
        r->u.rd.ready = 0;   /* pool memory is not zeroed */
        if (n < 0) {
            r->result = -errno;
            s->done_reading = 1;
        } else if (n == 0) {
            r->result = 0;
            s->done_reading = 1;
        } else {
            r->result = (int)n;
            /* A short read drained the socket and the next arrival raises
             * an edge -- unless the peer's FIN or an error was already
             * reported with this edge: then read on until recv() says so. */
            if ((size_t)n < r->u.rd.cap && !s->b.t.hup)
                s->b.t.readable = 0;
        }
        atomic_fetch_add(&s->unconsumed, 1);
        aio_add_relaxed(&w->engine->inflight, 1);
        aio_chain_add(out, r);
    }
}

static void accept_some(aio_worker *w, aio_stream *s, aio_chain *out)
{
    while (s->b.t.readable) {
        if (!may_deliver(s) && !park(s))
            return;
        aio_req *r = aio__req_alloc(0);
        if (r == NULL)
            return;   /* retried on the next edge or REARM */
        r->u.acc.addrlen = sizeof r->u.acc.addr;
        int fd;
        do {
            fd = accept4(s->fd, (struct sockaddr *)&r->u.acc.addr, &r->u.acc.addrlen,
                         SOCK_NONBLOCK | SOCK_CLOEXEC);
        } while (fd < 0 && errno == EINTR);
        if (fd < 0) {
            int err = errno;
            if (err == EAGAIN || err == EWOULDBLOCK) {
                s->b.t.readable = 0;
                free(r);
                return;
            }
            if (err == ECONNABORTED || err == EPROTO) {
                free(r);   /* the peer gave up before we took it */
                continue;
            }
            /* EMFILE, ENFILE, ENOBUFS, ...: report once, pause and park;
             * the loop resumes the listener after a delay.  Pausing here,
             * not only when the loop sees the report, keeps further edges
             * (more peers connecting) from reporting again meanwhile. */
            atomic_store(&s->paused, 1);
            r->op = AIO_OP_STREAM_ACCEPT;
            r->u.acc.s = s;
            r->result = -err;
            atomic_fetch_add(&s->unconsumed, 1);
            aio_add_relaxed(&w->engine->inflight, 1);
            aio_chain_add(out, r);
            atomic_store(&s->b.t.parked, 1);
            return;
        }
        r->op = AIO_OP_STREAM_ACCEPT;
        r->u.acc.s = s;
        r->result = fd;
        atomic_fetch_add(&s->unconsumed, 1);
        aio_add_relaxed(&w->engine->inflight, 1);
        aio_chain_add(out, r);
    }
}

/* Sends what the socket takes.  Returns 1 when the request is finished. */
static int write_some(aio_stream *s, aio_req *r)
{
    while (r->u.wr.iovpos < r->u.wr.iovcnt) {
        struct msghdr m;
        memset(&m, 0, sizeof m);
        m.msg_iov = r->u.wr.iov + r->u.wr.iovpos;
        int cnt = r->u.wr.iovcnt - r->u.wr.iovpos;
        m.msg_iovlen = (size_t)(cnt > IOV_MAX ? IOV_MAX : cnt);
        ssize_t n = sendmsg(s->fd, &m, MSG_NOSIGNAL | MSG_DONTWAIT);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            if (errno == EAGAIN || errno == EWOULDBLOCK)
                return 0;
            r->result = -errno;
            return 1;
        }
        aio__iov_advance(r, (size_t)n);
    }
    r->result = 0;
    return 1;
}

void aio__stream_event(aio_worker *w, aio_stream *s, uint32_t events, aio_chain *out)
{
    if (events & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR))
        s->b.t.readable = 1;
    if (events & (EPOLLRDHUP | EPOLLHUP | EPOLLERR))
        s->b.t.hup = 1;
    if (s->kind == AIO_STREAM_LISTENER) {
        accept_some(w, s, out);
        return;
    }
    read_some(w, s, out);
    if (s->wreq != NULL && (events & (EPOLLOUT | EPOLLHUP | EPOLLERR))) {
        aio_req *r = s->wreq;
        if (write_some(s, r)) {
            s->wreq = NULL;
            aio_chain_add(out, r);
        }
    }
}

/* Executes a stream request on its worker (see aio__execute). */
int aio__stream_execute(aio_worker *w, aio_req *r, aio_chain *out)
{
    aio_stream *s = r->u.ctl.s;
    switch (r->op) {
    case AIO_OP_STREAM_START: {
        struct epoll_event ev = {.data.ptr = s};
        ev.events = EPOLLIN | EPOLLET |
                    (s->kind == AIO_STREAM_CONN ? (EPOLLOUT | EPOLLRDHUP) : 0);
        r->result = epoll_ctl(w->epfd, EPOLL_CTL_ADD, s->fd, &ev) < 0 ? -errno : 0;
        s->registered = r->result == 0;
        return 1;
    }
    case AIO_OP_STREAM_REARM:
        r->result = 0;
        if (s->registered) {
            if (s->kind == AIO_STREAM_LISTENER)
                accept_some(w, s, out);
            else
                read_some(w, s, out);
        }
        return 1;
    case AIO_OP_STREAM_WRITE:
        r->u.wr.s = s;
        if (s->wreq != NULL) {   /* the loop keeps one write in flight */
            r->result = -EBUSY;
            return 1;
        }
        if (!s->registered) {
            r->result = -EBADF;
            return 1;
        }
        if (write_some(s, r))
            return 1;
        s->wreq = r;
        return 0;
    case AIO_OP_STREAM_CLOSE:
        if (s->wreq != NULL) {
            s->wreq->result = -ECANCELED;
            aio_chain_add(out, s->wreq);
            s->wreq = NULL;
        }
        if (s->registered) {
            struct epoll_event ev = {0};
            epoll_ctl(w->epfd, EPOLL_CTL_DEL, s->fd, &ev);
            s->registered = 0;
        }
        r->result = 0;
        return 1;
    default:
        r->result = -ENOSYS;
        return 1;
    }
}
