/* The MPSC queue and the coalesced wakeup: how work crosses threads.
 *
 * The queue is a Treiber stack.  Producers push with one compare-exchange;
 * the single consumer takes the whole stack with one exchange ("interlocked
 * flush") and reverses it to restore FIFO order.  Pushes never wait for the
 * consumer and the consumer never waits for producers. */
#include "engine_internal.h"

#include <errno.h>
#include <stdint.h>
#include <sys/eventfd.h>
#include <unistd.h>

void aio_mpsc_init(aio_mpsc *q)
{
    atomic_init(&q->head, NULL);
}

int aio_mpsc_push_chain(aio_mpsc *q, aio_qnode *first, aio_qnode *last)
{
    /* The chain arrives FIFO (first oldest); the stack holds newest first, so
     * reverse it in place before publishing.  Only this thread sees it yet. */
    aio_qnode *prev = NULL, *cur = first, *stop = last->next;
    while (cur != stop) {
        aio_qnode *next = cur->next;
        cur->next = prev;
        prev = cur;
        cur = next;
    }
    /* Now `last` is the top and `first` the bottom of the chain. */
    aio_qnode *old = aio_load_relaxed(&q->head);
    do {
        first->next = old;
        /* Release on success: the consumer's acquire exchange in flush must
         * see every field the producer wrote into the chain's nodes.  The
         * seq_cst fence in aio_wakeup_signal orders this store before the
         * producer reads the consumer's sleep state. */
    } while (!atomic_compare_exchange_weak_explicit(
                 &q->head, &old, last, memory_order_release,
                 memory_order_relaxed));
    return old == NULL;
}

int aio_mpsc_push(aio_mpsc *q, aio_qnode *n)
{
    n->next = NULL;
    return aio_mpsc_push_chain(q, n, n);
}

aio_qnode *aio_mpsc_flush(aio_mpsc *q)
{
    /* Acquire: pairs with the producers' release, so the nodes' contents are
     * visible here. */
    aio_qnode *lifo = aio_xchg_acq_rel(&q->head, NULL);
    aio_qnode *fifo = NULL;
    while (lifo != NULL) {
        aio_qnode *next = lifo->next;
        lifo->next = fifo;
        fifo = lifo;
        lifo = next;
    }
    return fifo;
}

int aio_mpsc_empty(aio_mpsc *q)
{
    /* Called by the consumer after aio_wakeup_sleep_begin's full barrier. */
    return atomic_load_explicit(&q->head, memory_order_seq_cst) == NULL;
}

/* ---- wakeup ----
 *
 * The handshake is Dekker's: the consumer stores SLEEPING, full barrier, then
 * loads the queue head; a producer stores the queue head, full barrier, then
 * loads the state.  At least one of them sees the other's store, so either
 * the consumer notices the work and does not block, or the producer notices
 * the sleeper and writes the eventfd.  Only the producer that moves the state
 * from SLEEPING to SIGNALLED writes: that is the coalescing. */

int aio_wakeup_init(aio_wakeup *w)
{
    atomic_init(&w->state, AIO_AWAKE);
    atomic_init(&w->writes, 0);
    w->fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (w->fd < 0)
        return -errno;
    return 0;
}

void aio_wakeup_close(aio_wakeup *w)
{
    if (w->fd >= 0)
        close(w->fd);
    w->fd = -1;
}

void aio_wakeup_signal(aio_wakeup *w)
{
    aio_smp_mb();   /* the work this producer published is visible first */
    if (atomic_load_explicit(&w->state, memory_order_relaxed) != AIO_SLEEPING)
        return;
    if (atomic_exchange_explicit(&w->state, AIO_SIGNALLED,
                                 memory_order_acq_rel) != AIO_SLEEPING)
        return;     /* another producer already woke the consumer */
    uint64_t one = 1;
    ssize_t n;
    do {
        n = write(w->fd, &one, sizeof one);
    } while (n < 0 && errno == EINTR);
    /* EAGAIN means the counter is saturated: the consumer will wake anyway. */
    aio_add_relaxed(&w->writes, 1);
}

void aio_wakeup_sleep_begin(aio_wakeup *w)
{
    atomic_store_explicit(&w->state, AIO_SLEEPING, memory_order_relaxed);
    aio_smp_mb();   /* producers that come later must see SLEEPING */
}

int aio_wakeup_sleep_end(aio_wakeup *w)
{
    return aio_xchg_acq_rel(&w->state, AIO_AWAKE) == AIO_SIGNALLED;
}

void aio_wakeup_drain(aio_wakeup *w)
{
    uint64_t v;
    ssize_t n;
    do {
        n = read(w->fd, &v, sizeof v);
    } while (n < 0 && errno == EINTR);
}
