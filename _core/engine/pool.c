/* Buffer pool: fixed-size buffers recycled through a lock-free free list.
 *
 * Buffers live in chunks of 64 that are never freed before the pool is
 * destroyed, so a buffer's header stays readable even while another thread
 * owns the buffer.  The free list links buffers by index; its head packs a
 * 32-bit tag with the index so that a pop racing with pop+push of the same
 * buffer (ABA) fails its compare-exchange instead of corrupting the list.
 * Growth takes a mutex; get and put never do. */
#include "engine_internal.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

typedef struct aio_buf_hdr {
    _Atomic uint32_t next;      /* index + 1 of the next free buffer, 0 = end */
    uint32_t index;
    uint64_t pad;               /* keeps the payload 16-byte aligned */
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
    int rc = pthread_mutex_init(&p->grow_lock, NULL);
    return rc ? -rc : 0;
}

void aio_pool_destroy(aio_pool *p)
{
    uint32_t n = aio_load_acquire(&p->nchunks);
    for (uint32_t i = 0; i < n; i++) {
        free(p->chunks[i]);
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
    char *chunk = malloc(p->stride * CHUNK_BUFS);
    if (chunk == NULL) {
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
            aio_add_relaxed(&p->outstanding, 1);
            return (char *)h + sizeof *h;
        }
    }
}

void aio_pool_put(aio_pool *p, void *buf)
{
    aio_buf_hdr *h = (aio_buf_hdr *)(void *)((char *)buf - sizeof *h);
    aio_sub_relaxed(&p->outstanding, 1);
    pool_push(p, h);
}
