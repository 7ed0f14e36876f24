/* The `threads` backend: completion threads over epoll do the socket
 * syscalls.  Each stream is served by one I/O worker (round robin), which
 * registers it edge-triggered in its own epoll and reads, accepts and writes
 * as stream.c describes; reads land in the engine's buffer pool.  The loop
 * thread waits in the loop's epoll, where the completion queue's eventfd is
 * registered, so one epoll_wait covers completions and the readiness API. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "engine_internal.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <time.h>
#include <unistd.h>

int aio__threads_unpark(aio_engine *e, aio_stream *s);

static int th_setup(aio_engine *e, const aio_engine_config *cfg)
{
    int n = cfg->threads > 0 ? cfg->threads : aio_default_threads();
    int rc = aio_pool_init(&e->pool, cfg->bufsize ? cfg->bufsize : 256 * 1024);
    if (rc < 0)
        return rc;
    rc = aio__workers_init(e, &e->io, n, 0);
    if (rc < 0) {
        aio_pool_destroy(&e->pool);
        return rc;
    }
    e->nio = n;
    return 0;
}

static void th_stream_init(aio_engine *e, aio_stream *s)
{
    s->b.t.worker = &e->io[e->rr_io++ % (unsigned)e->nio];
    atomic_init(&s->b.t.parked, 0);
}

static int th_stream_submit(aio_engine *e, aio_stream *s, aio_req *r)
{
    return aio__worker_submit(e, s->b.t.worker, r);
}

/* The stream's worker runs (START went to it), so CLOSE cannot fail. */
static void th_stream_close(aio_engine *e, aio_stream *s, aio_req *r)
{
    aio__worker_push(e, s->b.t.worker, r);
}

static void th_stream_fini(aio_engine *e, aio_stream *s)
{
    (void)e;
    (void)s;
}

static int th_poll_pending(aio_engine *e)
{
    (void)e;
    return 0;
}

static void maybe_trim(aio_engine *e);

static int th_wait(aio_engine *e, int timeout_ms, int watching, struct epoll_event *events,
                   int maxevents)
{
    maybe_trim(e);
    (void)watching;   /* the loop's epoll is where this backend sleeps anyway */
    aio_wakeup *w = &e->cq_wake;
    /* The loop announced the sleep (aio_engine_sleep_begin) before a
     * nonzero timeout; re-check after it: completions pushed before that
     * point are seen here, later ones write the eventfd. */
    if (timeout_ms != 0 && !aio_mpsc_empty(&e->cq))
        timeout_ms = 0;
    int n = epoll_wait(e->watch_fd, events, maxevents, timeout_ms);
    int err = errno;
    if (aio_wakeup_sleep_end(w) || n > 0)
        aio_wakeup_drain(w);
    return n < 0 ? -err : n;
}

/* Read buffers kept hot however long the loop idles. */
#define TRIM_KEEP 8
/* How often, at most, the loop looks for cold read buffers (ns). */
#define TRIM_INTERVAL_NS 1000000000LL

/* Once per interval, from the loop thread's wait: gives back the read
 * buffers no one used since the last look (a burst's memory, issue item
 * 7), keeping those in use hot. */
static void maybe_trim(aio_engine *e)
{
    struct timespec ts;
    if (atomic_load_explicit(&e->pool.nchunks, memory_order_relaxed) == 0 ||
        clock_gettime(CLOCK_MONOTONIC_COARSE, &ts) < 0)
        return;
    long long now = (long long)ts.tv_sec * 1000000000LL + ts.tv_nsec;
    if (now - e->last_trim_ns < TRIM_INTERVAL_NS)
        return;
    e->last_trim_ns = now;
    aio_pool_trim(&e->pool, TRIM_KEEP);
}

static void th_reap(aio_engine *e)
{
    (void)e;   /* workers push their completions themselves */
}

static void th_stop(aio_engine *e)
{
    aio__workers_stop(e->io, e->nio);
}

static void th_destroy(aio_engine *e)
{
    aio__workers_free(e->io, e->nio);
    e->io = NULL;
    e->nio = 0;
    aio_pool_destroy(&e->pool);
}

static void th_stats(aio_engine *e, aio_engine_stats *out)
{
    out->buffers_in_use = atomic_load(&e->pool.outstanding);
    for (int i = 0; i < e->nio; i++)
        out->threads_started += e->io[i].started;
}

const aio_backend aio__backend_threads = {
    .name = "threads",
    .inline_min = AIO_HANDOVER_INLINE_MIN,
    .setup = th_setup,
    .stream_init = th_stream_init,
    .stream_start = th_stream_submit,
    .stream_close = th_stream_close,
    .stream_write = th_stream_submit,
    .stream_kick = aio__threads_unpark,
    .stream_fini = th_stream_fini,
    .poll_pending = th_poll_pending,
    .wait = th_wait,
    .reap = th_reap,
    .stop = th_stop,
    .destroy = th_destroy,
    .stats = th_stats,
};
