/* The readiness API: add_reader/add_writer/remove_reader/remove_writer.
 *
 * These are asyncio's level-triggered callbacks for descriptors the user
 * owns (and for the sock_* methods, pipes and signals built on them).  They
 * are served by the loop thread's own epoll instance, next to the completion
 * queue's eventfd: a readiness callback is a Python call on the loop thread
 * anyway, so handing it to a completion thread would add a hop and save
 * nothing.  Each watched descriptor has a slot holding at most one reader
 * and one writer handle; the epoll registration carries fd + 1 (0 is the
 * completion queue's eventfd). */
#include "loop.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <string.h>
#include <unistd.h>

/* Makes room for fd in the slot table.  Only an open descriptor gets a
 * slot (epoll would refuse any other with EBADF, as asyncio's selector
 * does), so the table never grows for a number nobody can watch; the size
 * is computed in size_t so that a number near INT_MAX cannot overflow it. */
static int slot_reserve(LoopObject *L, int fd)
{
    if (fd < L->nfds_cap)
        return 0;
    if (fcntl(fd, F_GETFD) < 0) {
        PyErr_SetFromErrno(PyExc_OSError);
        return -1;
    }
    size_t ncap = L->nfds_cap ? (size_t)L->nfds_cap : 64;
    while (ncap <= (size_t)fd)
        ncap *= 2;
    if (ncap > (size_t)INT_MAX)
        ncap = (size_t)INT_MAX;   /* > fd: INT_MAX is never an open descriptor */
    aio_fdslot *n = PyMem_Realloc(L->fds, ncap * sizeof *n);
    if (n == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    memset(n + L->nfds_cap, 0, (ncap - (size_t)L->nfds_cap) * sizeof *n);
    L->fds = n;
    L->nfds_cap = (int)ncap;
    return 0;
}

/* Brings the epoll registration of fd in line with its handles.  A stale
 * registration (the descriptor was closed and its number reused) shows as
 * ENOENT/EEXIST and is repaired by the other operation. */
static int slot_sync(LoopObject *L, int fd)
{
    aio_fdslot *s = &L->fds[fd];
    uint32_t want = (s->reader ? EPOLLIN : 0) | (s->writer ? EPOLLOUT : 0);
    if (want == s->events)
        return 0;
    struct epoll_event ev = {.events = want, .data.u64 = (uint64_t)fd + 1};
    int rc;
    if (want == 0) {
        rc = epoll_ctl(L->epfd, EPOLL_CTL_DEL, fd, &ev);
        if (rc < 0 && (errno == ENOENT || errno == EBADF))
            rc = 0;   /* closed already: the kernel dropped it */
        if (rc == 0)
            L->nfds_watched--;
    } else if (s->events == 0) {
        rc = epoll_ctl(L->epfd, EPOLL_CTL_ADD, fd, &ev);
        if (rc < 0 && errno == EEXIST)
            rc = epoll_ctl(L->epfd, EPOLL_CTL_MOD, fd, &ev);
        if (rc == 0)
            L->nfds_watched++;
    } else {
        rc = epoll_ctl(L->epfd, EPOLL_CTL_MOD, fd, &ev);
        if (rc < 0 && errno == ENOENT)
            rc = epoll_ctl(L->epfd, EPOLL_CTL_ADD, fd, &ev);
    }
    if (rc < 0) {
        PyErr_SetFromErrno(PyExc_OSError);
        return -1;
    }
    s->events = want;
    return 0;
}

static int cancel_handle(HandleObject *h)   /* steals h */
{
    PyObject *r = PyObject_CallMethod((PyObject *)h, "cancel", NULL);
    Py_DECREF(h);
    if (r == NULL)
        return -1;
    Py_DECREF(r);
    return 0;
}

/* asyncio's selectors._fileobj_to_fd: an int, or an object whose fileno()
 * gives something int() takes; a file object that does not is a
 * ValueError ("Invalid file object"), and so is a negative number.  A
 * number too large for an int is no descriptor anyone can have open: it
 * comes back as FD_TOO_BIG so that each caller answers as asyncio's
 * selector does (remove: False, add: OverflowError from epoll).  Returns
 * the descriptor, FD_TOO_BIG, or -1 with an exception set. */
#define FD_TOO_BIG (-2)

static int parse_fd(PyObject *o)
{
    PyObject *num;
    if (PyLong_Check(o)) {
        num = Py_NewRef(o);
    } else {
        PyObject *r = PyObject_CallMethod(o, "fileno", NULL);
        num = r != NULL ? PyNumber_Long(r) : NULL;
        Py_XDECREF(r);
        if (num == NULL) {
            if (PyErr_ExceptionMatches(PyExc_AttributeError) ||
                PyErr_ExceptionMatches(PyExc_TypeError) ||
                PyErr_ExceptionMatches(PyExc_ValueError)) {
                PyErr_Clear();
                PyErr_Format(PyExc_ValueError, "Invalid file object: %R", o);
            }
            return -1;
        }
    }
    int overflow;
    long v = PyLong_AsLongAndOverflow(num, &overflow);
    if (v == -1 && PyErr_Occurred()) {
        Py_DECREF(num);
        return -1;
    }
    if (overflow < 0 || (overflow == 0 && v < 0)) {
        PyErr_Format(PyExc_ValueError, "Invalid file descriptor: %S", num);
        Py_DECREF(num);
        return -1;
    }
    Py_DECREF(num);
    if (overflow > 0 || v > INT_MAX)
        return FD_TOO_BIG;
    return (int)v;
}

static PyObject *add_watch(LoopObject *L, PyObject *const *args, Py_ssize_t nargs, int write)
{
    if (nargs < 2) {
        PyErr_SetString(PyExc_TypeError, "expected (fd, callback, *args)");
        return NULL;
    }
    if (aio_loop_check_closed(L) < 0)
        return NULL;
    int fd = parse_fd(args[0]);
    if (fd == FD_TOO_BIG) {
        /* What epoll.register() says about such a number on asyncio. */
        PyErr_SetString(PyExc_OverflowError, "Python int too large to convert to C int");
        return NULL;
    }
    if (fd < 0 || slot_reserve(L, fd) < 0)
        return NULL;
    HandleObject *h = aio_loop_handle_new(L, 0, args[1], args + 2, nargs - 2, NULL);
    if (h == NULL)
        return NULL;
    aio_fdslot *s = &L->fds[fd];
    HandleObject **slot = write ? &s->writer : &s->reader;
    HandleObject *old = *slot;
    *slot = (HandleObject *)Py_NewRef(h);
    if (slot_sync(L, fd) < 0) {
        *slot = old;
        Py_DECREF(h);
        Py_DECREF(h);
        return NULL;
    }
    if (old != NULL && cancel_handle(old) < 0) {
        Py_DECREF(h);
        return NULL;
    }
    return (PyObject *)h;
}

static PyObject *remove_watch(LoopObject *L, PyObject *fdobj, int write)
{
    if (L->closed)
        Py_RETURN_FALSE;
    int fd = parse_fd(fdobj);
    if (fd == -1)
        return NULL;
    if (fd == FD_TOO_BIG || fd >= L->nfds_cap)
        Py_RETURN_FALSE;
    aio_fdslot *s = &L->fds[fd];
    HandleObject **slot = write ? &s->writer : &s->reader;
    HandleObject *old = *slot;
    if (old == NULL)
        Py_RETURN_FALSE;
    *slot = NULL;
    if (slot_sync(L, fd) < 0) {
        /* Keep the loop consistent: the handle is gone either way. */
        PyErr_Clear();
        s->events = (s->reader ? EPOLLIN : 0) | (s->writer ? EPOLLOUT : 0);
    }
    if (cancel_handle(old) < 0)
        return NULL;
    Py_RETURN_TRUE;
}

/* Each changes the loop's epoll set and slot table: loop thread only
 * (aio_loop_check_thread). */
PyObject *aio_loop_add_reader(LoopObject *L, PyObject *const *args, Py_ssize_t nargs)
{
    if (aio_loop_check_thread(L) < 0)
        return NULL;
    return add_watch(L, args, nargs, 0);
}

PyObject *aio_loop_add_writer(LoopObject *L, PyObject *const *args, Py_ssize_t nargs)
{
    if (aio_loop_check_thread(L) < 0)
        return NULL;
    return add_watch(L, args, nargs, 1);
}

PyObject *aio_loop_remove_reader(LoopObject *L, PyObject *fd)
{
    if (aio_loop_check_thread(L) < 0)
        return NULL;
    return remove_watch(L, fd, 0);
}

PyObject *aio_loop_remove_writer(LoopObject *L, PyObject *fd)
{
    if (aio_loop_check_thread(L) < 0)
        return NULL;
    return remove_watch(L, fd, 1);
}

/* Queues the handles of the descriptors epoll reported, as asyncio's
 * _process_events does: HUP and ERR wake both sides, and a handle found
 * cancelled is unregistered instead of run. */
int aio_fd_dispatch(LoopObject *L, struct epoll_event *events, int n)
{
    for (int i = 0; i < n; i++) {
        uint64_t key = events[i].data.u64;
        if (key == 0 || key > (uint64_t)L->nfds_cap)
            continue;
        int fd = (int)(key - 1);
        uint32_t ev = events[i].events;
        for (int side = 0; side < 2; side++) {
            aio_fdslot *s = &L->fds[fd];
            HandleObject *h = side ? s->writer : s->reader;
            int hit = side ? (ev & ~(uint32_t)EPOLLIN) != 0 : (ev & ~(uint32_t)EPOLLOUT) != 0;
            if (h == NULL || !hit)
                continue;
            if (h->cancelled) {
                PyObject *fdo = PyLong_FromLong(fd);
                PyObject *r = fdo ? remove_watch(L, fdo, side) : NULL;
                Py_XDECREF(fdo);
                if (r == NULL)
                    return -1;
                Py_DECREF(r);
                continue;
            }
            Py_INCREF(h);
            if (aio_loop_ready_push(L, h) < 0)
                return -1;
        }
    }
    return 0;
}

int aio_fd_traverse(LoopObject *L, visitproc visit, void *arg)
{
    for (int i = 0; i < L->nfds_cap; i++) {
        Py_VISIT(L->fds[i].reader);
        Py_VISIT(L->fds[i].writer);
    }
    return 0;
}

/* Drops every handle (the loop is closing or being collected). */
void aio_fd_clear(LoopObject *L)
{
    aio_fdslot *fds = L->fds;
    int cap = L->nfds_cap;
    L->fds = NULL;
    L->nfds_cap = 0;
    L->nfds_watched = 0;
    for (int i = 0; i < cap; i++) {
        Py_XDECREF(fds[i].reader);
        Py_XDECREF(fds[i].writer);
    }
    PyMem_Free(fds);
}

/* The registered interest of fd as selectors' mask (EVENT_READ 1,
 * EVENT_WRITE 2), 0 when none: what asyncio's transports read through
 * loop._selector in their repr. */
PyObject *aio_loop_fd_events(LoopObject *L, PyObject *fdobj)
{
    int fd = parse_fd(fdobj);
    if (fd == -1)
        return NULL;
    long mask = 0;
    if (fd >= 0 && fd < L->nfds_cap) {
        mask |= L->fds[fd].reader ? 1 : 0;
        mask |= L->fds[fd].writer ? 2 : 0;
    }
    return PyLong_FromLong(mask);
}
