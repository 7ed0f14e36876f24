/* Fault injection: make the Nth call at a site fail, to walk error paths.
 *
 * Every allocation, thread creation and submission the engine and the
 * binding make can fail; a test arms one site ("fail the 3rd stream
 * allocation from now") and checks that the failure ends in a clean error
 * for that connection.  The anchors are SQLite's malloc-failure tests and
 * CPython's _testcapi.set_nomemory, narrowed to one site at a time so that
 * the rest of the program runs normally.
 *
 * Always compiled in: a disarmed site costs one relaxed atomic load of a
 * global that stays 0.  Any thread may pass a site; arming is for tests
 * (the loop thread, with nothing else arming at the same time). */
#ifndef AIO_FAULT_H
#define AIO_FAULT_H

#include <stdatomic.h>

enum aio_fault_site {
    AIO_FAULT_STREAM = 0,   /* engine: a stream's allocation (aio_stream_open) */
    AIO_FAULT_REQ,          /* engine: a request's allocation (a stream's START and
                               CLOSE at open, REARM, accept, read header) */
    AIO_FAULT_THREAD,       /* engine: a worker thread's creation */
    AIO_FAULT_SUBMIT,       /* engine: a submission to a worker, or an SQE of the ring */
    AIO_FAULT_CLOSE,        /* engine: a CLOSE submission; CLOSE never fails, so a
                               hit defers it to the next flush (the path a
                               backend takes when it cannot submit now) */
    AIO_FAULT_PYOBJ,        /* binding: a Python object made for a completion
                               (read bytes, accepted socket, ...) */
    AIO_FAULT_CONTEXT,      /* binding: a handle's own copy of a shared context
                               snapshot, made when it runs (handle.c) */
    AIO_FAULT_NSITES
};

/* Nonzero while any site is armed: the fast path's only load. */
extern _Atomic int aio_fault_armed;

/* 1 when this call at `site` must fail (the caller then fails as the real
 * error would: ENOMEM, EAGAIN, ...); counts the call while armed. */
int aio_fault_hit_slow(int site);

static inline int aio_fault_hit(int site)
{
    if (__builtin_expect(atomic_load_explicit(&aio_fault_armed, memory_order_relaxed) == 0, 1))
        return 0;
    return aio_fault_hit_slow(site);
}

/* Arms `site`: counting from 1 at this call, calls nth .. nth+count-1 fail
 * (count < 0: every call from nth on).  nth <= 0 disarms the site and
 * resets its count.  Returns 0, or -EINVAL for an unknown site. */
int aio_fault_set(int site, long nth, long count);
/* Calls counted at `site` since it was armed; -1 for an unknown site. */
long aio_fault_calls(int site);
/* Failures injected at `site` since it was armed. */
long aio_fault_failed(int site);
/* Disarms every site. */
void aio_fault_reset(void);
/* The site's name ("stream", "req", "thread", "submit", "close", "pyobj",
 * "context"),
 * or NULL; aio_fault_site_named returns the index or -1. */
const char *aio_fault_site_name(int site);
int aio_fault_site_named(const char *name);

#endif
