/* Buffer pool: fixed-size buffers recycled through a lock-free free list.
 *
 * Buffers live in chunks of 64 that are never freed before the pool is
 * destroyed, so a buffer's header stays readable even while another thread
 * owns the buffer.  The free list links buffers by index; its head packs a
 * 32-bit tag with the index so that a pop racing with pop+push of the same
 * buffer (ABA) fails its compare-exchange instead of corrupting the list.
 * Growth takes a mutex; get and put never do.
 *
 * Memory taken for a burst is given back after it (aio_pool_trim): a free
 * buffer that nobody took for a whole trim interval has its payload pages
 * dropped (madvise MADV_DONTNEED; the chunks are private anonymous
 * mappings, so the pages come back zeroed on the next touch).  Buffers in
 * use keep being reused from the top of the free list, so they stay hot and
 * are never trimmed.  A buffer's state word keeps a taker from writing into
 * it while the trimmer drops its pages. */
#include "engine_internal.h"

#include <errno.h>
#include <sched.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

enum { BUF_FREE = 0, BUF_USED = 1, BUF_TRIMMING = 2, BUF_TRIMMED = 3 };

typedef struct aio_buf_hdr {
    _Atomic uint32_t next;      /* index + 1 of the next free buffer, 0 = end */
    uint32_t index;
    _Atomic uint32_t state;     /* BUF_*: taken, free (dirty), being trimmed, trimmed */
    _Atomic uint32_t stamp;     /* the pool's put count when last put back */
} aio_buf_hdr;

#define CHUNK_BUFS (1u << AIO_POOL_CHUNK_SHIFT)

static aio_buf_hdr *pool_slot(aio_pool *p, uint32_t index)
{
    char *chunk = p->chunks[index >> AIO_POOL_CHUNK_SHIFT];
    return (aio_buf_hdr *)(void *)(chunk + (size_t)(index & (CHUNK_BUFS - 1)) * p->stride);
}

int aio_pool_init(aio_pool *p, size_t bufsize)
{
    memset(p->chunks, 0, sizeof p->chunks);
    p->bufsize = bufsize;
    p->stride = (sizeof(aio_buf_hdr) + bufsize + 15u) & ~(size_t)15u;
    atomic_init(&p->head, 0);
    atomic_init(&p->nchunks, 0);
    atomic_init(&p->outstanding, 0);
    atomic_init(&p->puts, 0);
    p->trim_mark = 0;
    int rc = pthread_mutex_init(&p->grow_lock, NULL);
    return rc ? -rc : 0;
}

void aio_pool_destroy(aio_pool *p)
{
    uint32_t n = aio_load_acquire(&p->nchunks);
    for (uint32_t i = 0; i < n; i++) {
        munmap(p->chunks[i], p->stride * CHUNK_BUFS);
        p->chunks[i] = NULL;
    }
    atomic_store(&p->nchunks, 0);
    atomic_store(&p->head, 0);
    pthread_mutex_destroy(&p->grow_lock);
}

static void pool_push(aio_pool *p, aio_buf_hdr *h)
{
    uint64_t old = aio_load_relaxed(&p->head);
    uint64_t new;
    do {
        atomic_store_explicit(&h->next, (uint32_t)old, memory_order_relaxed);
        new = (((old >> 32) + 1) << 32) | (uint64_t)(h->index + 1);
        /* Release: a popper that acquires this head sees h->next. */
    } while (!atomic_compare_exchange_weak_explicit(
                 &p->head, &old, new, memory_order_release,
                 memory_order_relaxed));
}

/* Adds one chunk unless another thread did while we waited for the lock.
 * Returns 0 when the free list may have buffers now, -ENOMEM otherwise. */
static int pool_grow(aio_pool *p)
{
    int rc = 0;
    pthread_mutex_lock(&p->grow_lock);
    if ((uint32_t)aio_load_acquire(&p->head) != 0)
        goto out;                               /* someone refilled it */
    uint32_t n = aio_load_relaxed(&p->nchunks);
    if (n >= AIO_POOL_MAX_CHUNKS) {
        rc = -ENOMEM;
        goto out;
    }
    /* A mapping of its own: its pages can be dropped (aio_pool_trim). */
    char *chunk = mmap(NULL, p->stride * CHUNK_BUFS, PROT_READ | PROT_WRITE,
                       MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (chunk == MAP_FAILED) {
        rc = -ENOMEM;
        goto out;
    }
    p->chunks[n] = chunk;
    /* Release: readers that see the new count see the chunk pointer. */
    aio_store_release(&p->nchunks, n + 1);
    for (uint32_t i = 0; i < CHUNK_BUFS; i++) {
        aio_buf_hdr *h = (aio_buf_hdr *)(void *)(chunk + (size_t)i * p->stride);
        h->index = (n << AIO_POOL_CHUNK_SHIFT) | i;
        atomic_init(&h->next, 0);
        atomic_init(&h->state, BUF_TRIMMED);   /* never touched yet */
        atomic_init(&h->stamp, 0);
        pool_push(p, h);
    }
out:
    pthread_mutex_unlock(&p->grow_lock);
    return rc;
}

void *aio_pool_get(aio_pool *p)
{
    for (;;) {
        /* Acquire: pairs with pool_push's release (h->next) and, through it,
         * with pool_grow's publication of the chunk. */
        uint64_t old = aio_load_acquire(&p->head);
        uint32_t idx1 = (uint32_t)old;
        if (idx1 == 0) {
            if (pool_grow(p) < 0)
                return NULL;
            continue;
        }
        aio_buf_hdr *h = pool_slot(p, idx1 - 1);
        uint32_t next = atomic_load_explicit(&h->next, memory_order_relaxed);
        uint64_t new = (((old >> 32) + 1) << 32) | next;
        if (atomic_compare_exchange_weak_explicit(&p->head, &old, new,
                                                  memory_order_acquire,
                                                  memory_order_relaxed)) {
            /* Ours now; wait while the trimmer drops its pages (a madvise
             * call: rare and short).  Acquire: its pages are dropped before
             * we write them. */
            uint32_t st = atomic_load_explicit(&h->state, memory_order_acquire);
            for (;;) {
                if (st == BUF_TRIMMING) {
                    sched_yield();
                    st = atomic_load_explicit(&h->state, memory_order_acquire);
                    continue;
                }
                if (atomic_compare_exchange_weak_explicit(&h->state, &st, BUF_USED,
                                                          memory_order_acquire,
                                                          memory_order_acquire))
                    break;
            }
            aio_add_relaxed(&p->outstanding, 1);
            return (char *)h + sizeof *h;
        }
    }
}

void aio_pool_put(aio_pool *p, void *buf)
{
    aio_buf_hdr *h = (aio_buf_hdr *)(void *)((char *)buf - sizeof *h);
    aio_sub_relaxed(&p->outstanding, 1);
    uint32_t stamp = atomic_fetch_add_explicit(&p->puts, 1, memory_order_relaxed) + 1;
    atomic_store_explicit(&h->stamp, stamp, memory_order_relaxed);
    /* Release: the owner's last writes happen before a trimmer's drop. */
    atomic_store_explicit(&h->state, BUF_FREE, memory_order_release);
    pool_push(p, h);
}

size_t aio_pool_trim(aio_pool *p, unsigned keep)
{
    uint32_t puts = atomic_load_explicit(&p->puts, memory_order_relaxed);
    /* A buffer put back since the last pass has an age below this. */
    uint32_t since_last = puts - p->trim_mark;
    p->trim_mark = puts;
    long page = sysconf(_SC_PAGESIZE);
    uintptr_t pmask = (uintptr_t)(page > 0 ? page : 4096) - 1;
    size_t dropped = 0;
    uint32_t n = aio_load_acquire(&p->nchunks);
    for (uint32_t c = 0; c < n; c++) {
        char *chunk = p->chunks[c];
        for (uint32_t i = 0; i < CHUNK_BUFS; i++) {
            aio_buf_hdr *h = (aio_buf_hdr *)(void *)(chunk + (size_t)i * p->stride);
            uint32_t age = puts - atomic_load_explicit(&h->stamp, memory_order_relaxed);
            if (age < since_last || age < keep)
                continue;   /* used lately, or one of the last `keep` put back */
            uint32_t st = BUF_FREE;
            if (!atomic_compare_exchange_strong_explicit(&h->state, &st, BUF_TRIMMING,
                                                         memory_order_acquire,
                                                         memory_order_relaxed))
                continue;   /* in use, or trimmed already */
            /* Whole pages inside the payload only: the next buffer's
             * header shares the last page. */
            uintptr_t lo = ((uintptr_t)h + sizeof *h + pmask) & ~pmask;
            uintptr_t hi = ((uintptr_t)h + p->stride) & ~pmask;
            if (hi > lo && madvise((void *)lo, hi - lo, MADV_DONTNEED) == 0)
                dropped += hi - lo;
            atomic_store_explicit(&h->state, BUF_TRIMMED, memory_order_release);
        }
    }
    return dropped;
}
