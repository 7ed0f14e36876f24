/* Fault injection (aio_fault.h): per-site counters, read and written with
 * atomics because worker threads pass sites too. */
#include "aio_fault.h"

#include <errno.h>
#include <string.h>

_Atomic int aio_fault_armed = 0;

typedef struct fault_site {
    _Atomic long calls;     /* calls seen since armed */
    _Atomic long failed;    /* failures injected since armed */
    _Atomic long nth;       /* first call to fail; 0: disarmed */
    _Atomic long count;     /* how many fail; < 0: all from nth on */
} fault_site;

static fault_site sites[AIO_FAULT_NSITES];

static const char *const names[AIO_FAULT_NSITES] = {
    [AIO_FAULT_STREAM] = "stream",
    [AIO_FAULT_REQ] = "req",
    [AIO_FAULT_THREAD] = "thread",
    [AIO_FAULT_SUBMIT] = "submit",
    [AIO_FAULT_CLOSE] = "close",
    [AIO_FAULT_PYOBJ] = "pyobj",
    [AIO_FAULT_CONTEXT] = "context",
};

int aio_fault_hit_slow(int site)
{
    if (site < 0 || site >= AIO_FAULT_NSITES)
        return 0;
    fault_site *f = &sites[site];
    long nth = atomic_load(&f->nth);
    if (nth <= 0)
        return 0;
    long k = atomic_fetch_add(&f->calls, 1) + 1;
    long count = atomic_load(&f->count);
    if (k < nth || (count >= 0 && k >= nth + count))
        return 0;
    atomic_fetch_add(&f->failed, 1);
    return 1;
}

static void recount_armed(void)
{
    int armed = 0;
    for (int i = 0; i < AIO_FAULT_NSITES; i++)
        armed |= atomic_load(&sites[i].nth) > 0;
    atomic_store(&aio_fault_armed, armed);
}

int aio_fault_set(int site, long nth, long count)
{
    if (site < 0 || site >= AIO_FAULT_NSITES)
        return -EINVAL;
    fault_site *f = &sites[site];
    atomic_store(&f->nth, 0);
    atomic_store(&f->calls, 0);
    atomic_store(&f->failed, 0);
    atomic_store(&f->count, count);
    if (nth > 0)
        atomic_store(&f->nth, nth);
    recount_armed();
    return 0;
}

long aio_fault_calls(int site)
{
    if (site < 0 || site >= AIO_FAULT_NSITES)
        return -1;
    return atomic_load(&sites[site].calls);
}

long aio_fault_failed(int site)
{
    if (site < 0 || site >= AIO_FAULT_NSITES)
        return -1;
    return atomic_load(&sites[site].failed);
}

void aio_fault_reset(void)
{
    for (int i = 0; i < AIO_FAULT_NSITES; i++)
        atomic_store(&sites[i].nth, 0);
    atomic_store(&aio_fault_armed, 0);
}

const char *aio_fault_site_name(int site)
{
    return site >= 0 && site < AIO_FAULT_NSITES ? names[site] : NULL;
}

int aio_fault_site_named(const char *name)
{
    for (int i = 0; i < AIO_FAULT_NSITES; i++)
        if (strcmp(names[i], name) == 0)
            return i;
    return -1;
}
