/* Named memory-ordering helpers for the engine.
 *
 * Every ordering point in the engine goes through one of these, with a comment
 * at the call site saying what the other side must see.  Plain C11 atomics:
 * no compiler builtins. */
#ifndef AIO_ATOMIC_H
#define AIO_ATOMIC_H

#include <stdatomic.h>

#define aio_load_relaxed(p)      atomic_load_explicit((p), memory_order_relaxed)
#define aio_load_acquire(p)      atomic_load_explicit((p), memory_order_acquire)
#define aio_store_relaxed(p, v)  atomic_store_explicit((p), (v), memory_order_relaxed)
#define aio_store_release(p, v)  atomic_store_explicit((p), (v), memory_order_release)
#define aio_xchg_acq_rel(p, v)   atomic_exchange_explicit((p), (v), memory_order_acq_rel)
#define aio_add_relaxed(p, v)    atomic_fetch_add_explicit((p), (v), memory_order_relaxed)
#define aio_sub_relaxed(p, v)    atomic_fetch_sub_explicit((p), (v), memory_order_relaxed)
/* A full barrier: stores before it are visible to any thread before loads
 * after it are performed (the store-load ordering a Dekker handshake needs). */
#define aio_smp_mb()             atomic_thread_fence(memory_order_seq_cst)

#endif
