/* Completion threads: a worker sleeps in epoll_wait on its own epoll
 * instance, in which its wakeup eventfd is registered (the threads backend
 * adds its sockets to it).  On waking it takes its whole submission queue in
 * one flush, executes each request, and pushes the finished batch onto the
 * engine's completion queue in one operation, so one batch costs the loop
 * thread at most one wakeup.  Workers never touch Python objects.
 *
 * Two groups use them: the resolver (blocking getaddrinfo/getnameinfo, on
 * both backends) and the threads backend's socket I/O. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "engine_internal.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <unistd.h>

/* Pushes a FIFO batch of finished requests and wakes the loop if it sleeps. */
static void complete_batch(aio_engine *e, aio_qnode *first, aio_qnode *last)
{
    if (first == NULL)
        return;
    aio_mpsc_push_chain(&e->cq, first, last);
    aio_wakeup_signal(&e->cq_wake);
}

/* Executes (or, when stopping, cancels) every queued submission; finished
 * requests join `out`.  Stopping still executes WRITEs (one non-blocking
 * send: what the socket takes goes out, as asyncio's write() would have
 * sent it at once), the STARTs before them (a write needs its stream
 * registered) and CLOSEs: a write() then close() just before the loop
 * closes must not lose bytes that the socket had room for. */
static void run_submissions(aio_worker *w, int cancel, aio_chain *out)
{
    aio_qnode *n = aio_mpsc_flush(&w->sq);
    while (n != NULL) {
        aio_qnode *next = n->next;
        aio_req *r = AIO_REQ_OF(n);
        int finished = 1;
        if (cancel && r->op != AIO_OP_STREAM_WRITE && r->op != AIO_OP_STREAM_CLOSE &&
            r->op != AIO_OP_STREAM_START)
            r->result = -ECANCELED;
        else
            finished = aio__execute(w, r, out);
        aio_add_relaxed(&w->executed, 1);
        if (finished)
            aio_chain_add(out, r);
        n = next;
    }
}

static void *worker_main(void *arg)
{
    aio_worker *w = arg;
    struct epoll_event events[64];

    for (;;) {
        aio_wakeup_sleep_begin(&w->wake);
        int timeout = -1;
        /* Re-check after announcing the sleep (see queue.c's handshake). */
        if (!aio_mpsc_empty(&w->sq) || aio_load_acquire(&w->stop))
            timeout = 0;
        int n = epoll_wait(w->epfd, events, 64, timeout);
        int woken = aio_wakeup_sleep_end(&w->wake);
        if (aio_load_acquire(&w->stop))
            break;
        aio_chain out = {NULL, NULL};
        /* Socket events first, then submissions: a CLOSE submitted for a
         * stream must come after any event of this round that names it. */
        for (int i = 0; i < n; i++) {
            if (events[i].data.ptr == NULL)
                woken = 1;
            else
                aio__stream_event(w, events[i].data.ptr, events[i].events, &out);
        }
        if (woken)
            aio_wakeup_drain(&w->wake);
        run_submissions(w, 0, &out);
        complete_batch(w->engine, out.first, out.last);
    }
    /* Stopping: what was never executed comes back cancelled, but for
     * writes and closes (see run_submissions).  Writes parked on a stream
     * stay there; the engine frees them with the stream. */
    aio_chain out = {NULL, NULL};
    run_submissions(w, 1, &out);
    complete_batch(w->engine, out.first, out.last);
    return NULL;
}

static int worker_init(aio_worker *w, aio_engine *e, int blocking)
{
    memset(w, 0, sizeof *w);
    w->engine = e;
    w->blocking = blocking;
    w->epfd = -1;
    w->wake.fd = -1;
    aio_mpsc_init(&w->sq);
    atomic_init(&w->stop, 0);
    atomic_init(&w->executed, 0);
    int rc = aio_wakeup_init(&w->wake);
    if (rc < 0)
        return rc;
    w->epfd = epoll_create1(EPOLL_CLOEXEC);
    if (w->epfd < 0)
        return -errno;
    struct epoll_event ev = {.events = EPOLLIN, .data.ptr = NULL};
    if (epoll_ctl(w->epfd, EPOLL_CTL_ADD, w->wake.fd, &ev) < 0)
        return -errno;
    return 0;
}

static void worker_close(aio_worker *w)
{
    if (w->epfd >= 0)
        close(w->epfd);
    w->epfd = -1;
    aio_wakeup_close(&w->wake);
}

static int worker_start(aio_worker *w)
{
    if (w->started)
        return 0;
    pthread_attr_t attr;
    int rc = pthread_attr_init(&attr);
    if (rc)
        return -rc;
    /* Workers run C only: a small stack is plenty (getaddrinfo included). */
    pthread_attr_setstacksize(&attr, 256 * 1024);
    rc = aio_fault_hit(AIO_FAULT_THREAD) ? EAGAIN
                                         : pthread_create(&w->tid, &attr, worker_main, w);
    pthread_attr_destroy(&attr);
    if (rc)
        return -rc;
    w->started = 1;
    return 0;
}

int aio__workers_init(aio_engine *e, aio_worker **out, int n, int blocking)
{
    *out = NULL;
    if (n < 1)
        return -EINVAL;
    aio_worker *ws = calloc((size_t)n, sizeof *ws);
    if (ws == NULL)
        return -ENOMEM;
    for (int i = 0; i < n; i++) {
        int rc = worker_init(&ws[i], e, blocking);
        if (rc < 0) {
            aio__workers_free(ws, i + 1);
            return rc;
        }
    }
    *out = ws;
    return 0;
}

int aio__worker_submit(aio_engine *e, aio_worker *w, aio_req *r)
{
    if (e->stopped)
        return -ESHUTDOWN;   /* the workers were joined: nothing may start again */
    if (aio__engine_forked(e))
        return -ECHILD;      /* the parent's threads do not run here */
    int rc = worker_start(w);
    if (rc < 0)
        return rc;
    if (aio_fault_hit(AIO_FAULT_SUBMIT))
        return -EAGAIN;
    aio__worker_push(e, w, r);
    return 0;
}

void aio__worker_push(aio_engine *e, aio_worker *w, aio_req *r)
{
    AIO_DEBUG_ASSERT(w->started);
    aio_add_relaxed(&e->inflight, 1);
    e->n_submissions++;
    aio_mpsc_push(&w->sq, &r->node);
    aio_wakeup_signal(&w->wake);
}

void aio__workers_stop(aio_worker *ws, int n)
{
    if (n > 0 && aio__engine_forked(ws[0].engine)) {
        /* A forked child has none of these threads (only their memory):
         * nothing to wake or join, and the wakeup eventfds are the
         * parent's workers' too. */
        for (int i = 0; i < n; i++)
            ws[i].started = 0;
        return;
    }
    for (int i = 0; i < n; i++) {
        if (!ws[i].started)
            continue;
        aio_store_release(&ws[i].stop, 1);
        /* The worker may be asleep: force the write regardless of state. */
        uint64_t one = 1;
        ssize_t k;
        do {
            k = write(ws[i].wake.fd, &one, sizeof one);
        } while (k < 0 && errno == EINTR);
    }
    for (int i = 0; i < n; i++) {
        if (!ws[i].started)
            continue;
        pthread_join(ws[i].tid, NULL);
        ws[i].started = 0;
    }
}

void aio__workers_free(aio_worker *ws, int n)
{
    if (ws == NULL)
        return;
    for (int i = 0; i < n; i++)
        worker_close(&ws[i]);
    free(ws);
}
