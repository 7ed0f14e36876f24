/* The engine object: the completion queue and wakeup every backend shares,
 * the resolver threads, the list of open streams, and the one place that
 * picks a backend and dispatches to its table (as libuv's per-platform
 * files sit behind uv__io_poll, and mio picks one Selector per OS).  The
 * binding calls only what aio_engine.h declares. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "engine_internal.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

int aio_default_threads(void)
{
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    int t = (int)(n / 2);
    if (t < 1)
        t = 1;
    if (t > 8)
        t = 8;
    return t;
}

int aio_uring_compiled(void)
{
#ifdef AIO_HAVE_URING
    return 1;
#else
    return 0;
#endif
}

static const aio_backend *backend_named(const char *name)
{
    if (strcmp(name, aio__backend_threads.name) == 0)
        return &aio__backend_threads;
#ifdef AIO_HAVE_URING
    if (strcmp(name, aio__backend_uring.name) == 0)
        return &aio__backend_uring;
#endif
    return NULL;
}

/* "auto" is decided once per process: the probe sets up (and tears down) a
 * small ring, which costs a few syscalls. */
static pthread_once_t probe_once = PTHREAD_ONCE_INIT;
static const char *auto_choice = "threads";

static void probe_auto(void)
{
#ifdef AIO_HAVE_URING
    if (aio__uring_probe() == 0)
        auto_choice = aio__backend_uring.name;
#endif
}

const char *aio_backend_resolve(const char *name)
{
    if (name == NULL || strcmp(name, "auto") == 0) {
        pthread_once(&probe_once, probe_auto);
        return auto_choice;
    }
    if (strcmp(name, "threads") == 0)
        return "threads";
    if (strcmp(name, "uring") == 0)
        return "uring";
    return NULL;
}

/* fork() detection without a getpid() syscall per stream open and close:
 * a child handler bumps a process-wide generation (pthread_atfork, set up
 * once).  Where the handler could not be registered, getpid() decides. */
static _Atomic unsigned fork_gen;
static int atfork_ok;
static pthread_once_t atfork_once = PTHREAD_ONCE_INIT;

static void on_fork_child(void)
{
    atomic_fetch_add_explicit(&fork_gen, 1, memory_order_relaxed);
}

static void atfork_register(void)
{
    atfork_ok = pthread_atfork(NULL, NULL, on_fork_child) == 0;
}

int aio__engine_forked(const aio_engine *e)
{
    if (atfork_ok)
        return atomic_load_explicit(&fork_gen, memory_order_relaxed) != e->fork_gen;
    return getpid() != e->pid;
}

aio_req *aio__req_alloc(size_t extra)
{
    if (aio_fault_hit(AIO_FAULT_REQ))
        return NULL;
    return calloc(1, sizeof(aio_req) + extra);
}

static void engine_free_common(aio_engine *e)
{
    aio__workers_free(e->blocking, e->nblocking);
    e->blocking = NULL;
    if (e->cq_wake.fd >= 0) {
        /* In a forked child the loop's epoll is the parent's too (one open
         * file description): removing the eventfd there would remove the
         * parent's wakeup.  Closing our descriptor is all the child does. */
        if (e->watch_fd >= 0 && !aio__engine_forked(e))
            epoll_ctl(e->watch_fd, EPOLL_CTL_DEL, e->cq_wake.fd, NULL);
        aio_wakeup_close(&e->cq_wake);
    }
    free(e);
}

static int engine_create(aio_engine **out, const aio_backend *be, const aio_engine_config *cfg)
{
    aio_engine *e = calloc(1, sizeof *e);
    if (e == NULL)
        return -ENOMEM;
    e->backend = be;
    pthread_once(&atfork_once, atfork_register);
    e->pid = getpid();
    e->fork_gen = atomic_load_explicit(&fork_gen, memory_order_relaxed);
    e->cq_wake.fd = -1;
    e->watch_fd = cfg->watch_fd;
    e->bufsize = cfg->bufsize;
    aio_mpsc_init(&e->cq);
    atomic_init(&e->inflight, 0);
    int rc = aio_wakeup_init(&e->cq_wake);
    if (rc < 0)
        goto fail;
    /* The engine's own wakeup joins the loop's epoll with data 0, which the
     * loop's dispatch skips. */
    struct epoll_event ev = {.events = EPOLLIN, .data.u64 = 0};
    if (e->watch_fd >= 0 && epoll_ctl(e->watch_fd, EPOLL_CTL_ADD, e->cq_wake.fd, &ev) < 0) {
        rc = -errno;
        goto fail;
    }
    int nres = cfg->resolver_threads > 0 ? cfg->resolver_threads : 2;
    if ((rc = aio__workers_init(e, &e->blocking, nres, 1)) < 0)
        goto fail;
    e->nblocking = nres;
    if ((rc = be->setup(e, cfg)) < 0)
        goto fail;
    *out = e;
    return 0;
fail:
    engine_free_common(e);
    return rc;
}

int aio_engine_new(aio_engine **out, const aio_engine_config *cfg)
{
    *out = NULL;
    const char *name = aio_backend_resolve(cfg->backend);
    if (name == NULL || cfg->threads < 0 || cfg->threads > AIO_MAX_THREADS ||
        cfg->resolver_threads < 0 || cfg->resolver_threads > AIO_MAX_THREADS)
        return -EINVAL;
    const aio_backend *be = backend_named(name);
    if (be == NULL)
        return -ENOSYS;   /* a backend this build does not have */
    int rc = engine_create(out, be, cfg);
    if (rc < 0 && be != &aio__backend_threads && name != cfg->backend &&
        (cfg->backend == NULL || strcmp(cfg->backend, "auto") == 0) && rc != -EINVAL)
        /* "auto" chose a backend the probe allowed but this setup was
         * refused (a memlock limit, say): the portable one then. */
        rc = engine_create(out, &aio__backend_threads, cfg);
    return rc;
}

const char *aio_engine_backend(const aio_engine *e)
{
    return e->backend->name;
}

size_t aio_engine_inline_min(const aio_engine *e)
{
    return e->backend->inline_min;
}

int aio_engine_submit(aio_engine *e, aio_req *r)
{
    aio_worker *w = &e->blocking[e->rr_blocking++ % (unsigned)e->nblocking];
    return aio__worker_submit(e, w, r);
}

void aio__complete(aio_engine *e, aio_req *r)
{
    aio_add_relaxed(&e->inflight, 1);
    aio_mpsc_push(&e->cq, &r->node);
}

int aio_engine_has_completions(aio_engine *e)
{
    return !aio_mpsc_empty(&e->cq);
}

static void close_now(aio_engine *e, aio_stream *s, aio_req *r);

/* CLOSEs deferred by aio_stream_close go to the backend now. */
static void run_deferred_closes(aio_engine *e)
{
    aio_stream *s = e->close_later;
    e->close_later = NULL;
    while (s != NULL) {
        aio_stream *next = s->close_next;
        s->close_next = NULL;
        s->close_deferred = 0;
        aio_req *r = s->close_req;
        s->close_req = NULL;
        close_now(e, s, r);
        s = next;
    }
}

aio_qnode *aio_engine_flush(aio_engine *e)
{
    if (e->close_later != NULL && !e->stopped)
        run_deferred_closes(e);
    e->backend->reap(e);
    aio_qnode *first = aio_mpsc_flush(&e->cq);
    int64_t n = 0;
    for (aio_qnode *q = first; q != NULL; q = q->next) {
        aio_req *r = AIO_REQ_OF(q);
        if (r->op == AIO_OP_STREAM_READ && r->result > 0)
            e->bytes_in += (uint64_t)r->result;
        else if (r->op == AIO_OP_STREAM_WRITE)
            e->bytes_out += atomic_load_explicit(&r->u.wr.sent, memory_order_relaxed);
        n++;
    }
    if (n) {
        aio_sub_relaxed(&e->inflight, n);
        e->n_completions += (uint64_t)n;
    }
    return first;
}

void aio_engine_wake(aio_engine *e)
{
    aio_wakeup_signal(&e->cq_wake);
}

int aio_engine_poll_pending(aio_engine *e)
{
    return e->backend->poll_pending(e);
}

void aio_engine_sleep_begin(aio_engine *e)
{
    aio_wakeup_sleep_begin(&e->cq_wake);
}

int aio_engine_wait(aio_engine *e, int timeout_ms, int watching, struct epoll_event *events,
                    int maxevents)
{
    return e->backend->wait(e, timeout_ms, watching, events, maxevents);
}

void aio_engine_stop(aio_engine *e)
{
    /* Deferred CLOSEs first: the threads backend's workers still execute a
     * CLOSE while stopping (it unregisters the descriptor). */
    if (e->close_later != NULL)
        run_deferred_closes(e);
    e->stopped = 1;
    e->backend->stop(e);
    aio__workers_stop(e->blocking, e->nblocking);
}

void aio_engine_free(aio_engine *e)
{
    if (e == NULL)
        return;
    while (e->streams != NULL)
        aio_stream_free(e, e->streams);
    e->backend->destroy(e);
    engine_free_common(e);
}

void aio_engine_get_stats(aio_engine *e, aio_engine_stats *out)
{
    memset(out, 0, sizeof *out);
    out->completions = e->n_completions;
    out->wakeups = atomic_load(&e->cq_wake.writes);
    out->submissions = e->n_submissions;
    out->bytes_in = e->bytes_in;
    out->bytes_out = e->bytes_out;
    out->streams_open = e->nstreams;
    out->inflight = atomic_load(&e->inflight);
    out->io_threads = e->nio;
    out->resolver_threads = e->nblocking;
    for (int i = 0; i < e->nblocking; i++)
        out->threads_started += e->blocking[i].started;
    e->backend->stats(e, out);
}

/* ---- streams ---- */

int aio_stream_open(aio_engine *e, int fd, int kind, int credits, const aio_stream_ops *ops,
                    void *owner, aio_stream **out)
{
    *out = NULL;
    if (e->stopped)
        return -ESHUTDOWN;
    if (aio__engine_forked(e))
        return -ECHILD;   /* the parent's threads and ring: not ours */
    aio_stream *s = aio_fault_hit(AIO_FAULT_STREAM) ? NULL : calloc(1, sizeof *s);
    aio_req *start = s ? aio__req_alloc(0) : NULL;
    aio_req *close_req = start ? aio__req_alloc(0) : NULL;
    if (close_req == NULL) {
        free(start);
        free(s);
        return -ENOMEM;
    }
    s->fd = fd;
    s->kind = kind;
    s->credits = credits > 0 ? credits : 1;
    s->owner = owner;
    s->ops = ops;
    atomic_init(&s->unconsumed, 0);
    atomic_init(&s->paused, 1);
    close_req->op = AIO_OP_STREAM_CLOSE;
    close_req->u.ctl.s = s;
    s->close_req = close_req;
    start->op = AIO_OP_STREAM_START;
    start->u.ctl.s = s;
    e->backend->stream_init(e, s);
    int rc = e->backend->stream_start(e, s, start);
    if (rc < 0) {
        /* Nothing was registered or completed: the stream never existed. */
        e->backend->stream_fini(e, s);
        free(start);
        free(close_req);
        free(s);
        return rc;
    }
    s->lprev = NULL;
    s->lnext = e->streams;
    if (e->streams)
        e->streams->lprev = s;
    e->streams = s;
    e->nstreams++;
    *out = s;
    return 0;
}

static void close_now(aio_engine *e, aio_stream *s, aio_req *r)
{
    if (aio__engine_forked(e)) {
        /* No thread of the parent's runs here and its epoll is shared:
         * the stream is done as it is. */
        r->result = 0;
        aio__complete(e, r);
        return;
    }
    e->backend->stream_close(e, s, r);
}

void aio_stream_close(aio_engine *e, aio_stream *s)
{
    if (s->close_req == NULL || s->close_deferred)
        return;   /* closed already */
    if (e->stopped)
        return;   /* the loop frees the stream with the engine */
    atomic_store(&s->paused, 1);
    if (aio_fault_hit(AIO_FAULT_CLOSE)) {
        /* As if the backend could not take it now: queued, and submitted
         * at the next flush. */
        s->close_deferred = 1;
        s->close_next = e->close_later;
        e->close_later = s;
        return;
    }
    aio_req *r = s->close_req;
    s->close_req = NULL;
    close_now(e, s, r);
}

void aio_stream_free(aio_engine *e, aio_stream *s)
{
    if (s == NULL)
        return;
    if (s->lprev)
        s->lprev->lnext = s->lnext;
    else
        e->streams = s->lnext;
    if (s->lnext)
        s->lnext->lprev = s->lprev;
    e->nstreams--;
    if (s->close_deferred) {
        aio_stream **pp = &e->close_later;
        while (*pp != s)
            pp = &(*pp)->close_next;
        *pp = s->close_next;
    }
    e->backend->stream_fini(e, s);
    if (s->wreq != NULL)
        aio_req_free(s->wreq);   /* a write parked on a stopped engine */
    free(s->close_req);
    free(s);
}

void *aio_stream_owner(const aio_stream *s)
{
    return s->owner;
}

const aio_stream_ops *aio_stream_ops_of(const aio_stream *s)
{
    return s->ops;
}

int aio_stream_kind(const aio_stream *s)
{
    return s->kind;
}

aio_stream *aio_engine_streams(aio_engine *e)
{
    return e->streams;
}

aio_stream *aio_stream_next(const aio_stream *s)
{
    return s->lnext;
}

int aio_stream_write(aio_engine *e, aio_stream *s, aio_req *r)
{
    if (e->stopped)
        return -ESHUTDOWN;
    r->u.wr.s = s;
    return e->backend->stream_write(e, s, r);
}

long aio_stream_send_now(aio_engine *e, aio_stream *s, const struct iovec *iov, int iovcnt)
{
    struct msghdr m;
    memset(&m, 0, sizeof m);
    m.msg_iov = (struct iovec *)iov;
    m.msg_iovlen = (size_t)iovcnt;
    ssize_t n;
    do {
        n = sendmsg(s->fd, &m, MSG_NOSIGNAL | MSG_DONTWAIT);
    } while (n < 0 && errno == EINTR);
    if (n < 0)
        return errno == EAGAIN || errno == EWOULDBLOCK ? 0 : -errno;
    e->bytes_out += (uint64_t)n;
    return (long)n;
}

long aio_stream_recv_now(aio_engine *e, aio_stream *s, void *buf, size_t len)
{
    if (len == 0) {   /* the loop reads nothing this time */
        if (e->backend->recv_done != NULL)
            e->backend->recv_done(e, s, -EAGAIN);
        return -EAGAIN;
    }
    ssize_t n;
    do {
        n = recv(s->fd, buf, len, MSG_DONTWAIT);
    } while (n < 0 && errno == EINTR);
    long res = n >= 0 ? (long)n : (errno == EWOULDBLOCK ? -EAGAIN : -errno);
    s->last_recv = res;
    if (res == 0 || (res < 0 && res != -EAGAIN))
        s->done_reading = 1;
    if (n > 0)
        e->bytes_in += (uint64_t)n;
    if (e->backend->recv_done != NULL)
        e->backend->recv_done(e, s, res);
    return res;
}

size_t aio_stream_pending_bytes(const aio_stream *s)
{
    int n = 0;
    if (ioctl(s->fd, FIONREAD, &n) < 0 || n < 0)
        return 0;
    return (size_t)n;
}

int aio_stream_release(aio_engine *e, aio_stream *s, int n)
{
    atomic_fetch_sub(&s->unconsumed, n);
    return e->backend->stream_kick(e, s);
}

void aio_stream_pause(aio_stream *s)
{
    atomic_store(&s->paused, 1);
}

int aio_stream_resume(aio_engine *e, aio_stream *s)
{
    atomic_store(&s->paused, 0);
    return e->backend->stream_kick(e, s);
}

void aio__iov_advance(aio_req *r, size_t n)
{
    /* One writer at a time (the engine); the loop reads it for
     * get_write_buffer_size(): relaxed is enough, it is a count. */
    atomic_fetch_add_explicit(&r->u.wr.sent, n, memory_order_relaxed);
    while (n > 0 && r->u.wr.iovpos < r->u.wr.iovcnt) {
        struct iovec *v = &r->u.wr.iov[r->u.wr.iovpos];
        if (n >= v->iov_len) {
            n -= v->iov_len;
            v->iov_len = 0;
            r->u.wr.iovpos++;
        } else {
            v->iov_base = (char *)v->iov_base + n;
            v->iov_len -= n;
            n = 0;
        }
    }
    while (r->u.wr.iovpos < r->u.wr.iovcnt && r->u.wr.iov[r->u.wr.iovpos].iov_len == 0)
        r->u.wr.iovpos++;
}

size_t aio_write_progress(const aio_req *r)
{
    return atomic_load_explicit(&r->u.wr.sent, memory_order_relaxed);
}

aio_req *aio_read_detach(aio_req *r)
{
    /* Only buffers from a fixed set (io_uring's provided buffers) are worth
     * detaching; the threads backend's pool grows instead. */
    if (r->op != AIO_OP_STREAM_READ || AIO_RD(r)->release == NULL || !AIO_RD(r)->scarce ||
        r->result <= 0)
        return NULL;
    size_t n = (size_t)r->result;
    aio_req *copy = malloc(AIO_READ_HDR + n);
    if (copy == NULL)
        return NULL;
    memcpy(copy, r, sizeof *copy);
    memcpy((char *)copy + AIO_READ_HDR, r->u.rd.data, n);
    AIO_RD(copy)->release = NULL;
    AIO_RD(copy)->buf_owner = NULL;
    copy->u.rd.data = (char *)copy + AIO_READ_HDR;
    copy->u.rd.cap = n;
    AIO_RD(r)->release(r);
    return copy;
}
