/* The Loop core: ready queue, timer heap, the run loop and completion
 * dispatch.  aioloop.Loop (Python) subclasses this type together with
 * asyncio.BaseEventLoop, whose pure-Python orchestration (tasks, executors,
 * exception handler, async generators) sits on top of these methods.
 *
 * One iteration (loop_run_once) does, in order: drop cancelled timers at the
 * heap top, compute the timeout, sleep in epoll_wait without the GIL only
 * when there is nothing to do (readiness callbacks join the ready queue),
 * run exactly the callbacks that were ready then, flush the engine's
 * completion queue and turn each completion into Python, and run the timers
 * that were due at the poll: asyncio's order. */
#include "loop.h"

#include <errno.h>
#include <limits.h>
#include <math.h>
#include <netdb.h>
#include <arpa/inet.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

/* asyncio's thresholds for rebuilding a heap full of cancelled timers. */
#define MIN_SCHEDULED_TIMER_HANDLES 100
#define MIN_CANCELLED_TIMER_HANDLES_FRACTION 0.5
/* asyncio caps a select() timeout at one day. */
#define MAXIMUM_SELECT_TIMEOUT_MS (24 * 3600 * 1000)

static double mono_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* The time the scheduler goes by: the monotonic clock, or what loop.time()
 * returns when it is overridden (clock.c), as asyncio's scheduler calls
 * self.time().  Returns 0 (the clock was read), 1 (time() was called), or
 * -1 with an exception set. */
static inline int loop_now(LoopObject *L, double *now)
{
    int overridden = aio_loop_time_overridden(L);
    if (overridden == 0) {
        *now = mono_now();
        return 0;
    }
    if (overridden < 0 || aio_loop_time_call(L, now) < 0)
        return -1;
    return 1;
}

/* ---- ready queue ---- */

int aio_loop_ready_push(LoopObject *L, HandleObject *h)   /* steals h */
{
    if (L->ready_len == L->ready_cap) {
        size_t ncap = L->ready_cap ? L->ready_cap * 2 : 64;
        HandleObject **n = PyMem_Malloc(ncap * sizeof *n);
        if (n == NULL) {
            Py_DECREF(h);
            PyErr_NoMemory();
            return -1;
        }
        for (size_t i = 0; i < L->ready_len; i++)
            n[i] = L->ready[(L->ready_head + i) % L->ready_cap];
        PyMem_Free(L->ready);
        L->ready = n;
        L->ready_cap = ncap;
        L->ready_head = 0;
    }
    L->ready[(L->ready_head + L->ready_len) % L->ready_cap] = h;
    L->ready_len++;
    return 0;
}

static HandleObject *ready_pop(LoopObject *L)   /* new reference */
{
    HandleObject *h = L->ready[L->ready_head];
    L->ready_head = (L->ready_head + 1) % L->ready_cap;
    L->ready_len--;
    return h;
}

/* ---- timer heap ---- */

/* The deadline a timer is ordered by.  A NaN deadline (call_later(nan))
 * compares false with everything, which would leave the heap unordered
 * and the poll timeout undefined; asyncio runs such a timer at once (its
 * "when >= end_time" test is false), so it is ordered as -inf here. */
static inline double timer_key(const TimerHandleObject *t)
{
    return isnan(t->when) ? -INFINITY : t->when;
}

static int timer_less(TimerHandleObject *a, TimerHandleObject *b)
{
    double x = timer_key(a), y = timer_key(b);
    return x < y || (x == y && a->seq < b->seq);
}

static void heap_sift_up(LoopObject *L, size_t i)
{
    TimerHandleObject *t = L->heap[i];
    while (i > 0) {
        size_t p = (i - 1) / 2;
        if (!timer_less(t, L->heap[p]))
            break;
        L->heap[i] = L->heap[p];
        i = p;
    }
    L->heap[i] = t;
}

static void heap_sift_down(LoopObject *L, size_t i)
{
    TimerHandleObject *t = L->heap[i];
    size_t n = L->heap_len;
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= n)
            break;
        if (c + 1 < n && timer_less(L->heap[c + 1], L->heap[c]))
            c++;
        if (!timer_less(L->heap[c], t))
            break;
        L->heap[i] = L->heap[c];
        i = c;
    }
    L->heap[i] = t;
}

static int heap_push(LoopObject *L, TimerHandleObject *t)   /* steals t */
{
    if (L->heap_len == L->heap_cap) {
        size_t ncap = L->heap_cap ? L->heap_cap * 2 : 64;
        TimerHandleObject **n = PyMem_Realloc(L->heap, ncap * sizeof *n);
        if (n == NULL) {
            Py_DECREF(t);
            PyErr_NoMemory();
            return -1;
        }
        L->heap = n;
        L->heap_cap = ncap;
    }
    t->seq = L->timer_seq++;
    t->scheduled = 1;
    L->heap[L->heap_len++] = t;
    heap_sift_up(L, L->heap_len - 1);
    return 0;
}

static TimerHandleObject *heap_pop(LoopObject *L)   /* new reference */
{
    TimerHandleObject *top = L->heap[0];
    L->heap_len--;
    if (L->heap_len > 0) {
        L->heap[0] = L->heap[L->heap_len];
        heap_sift_down(L, 0);
    }
    top->scheduled = 0;
    return top;
}

/* Drops cancelled timers: all of them when they are the majority of a big
 * heap (asyncio's rule), otherwise only those at the top. */
static void heap_purge_cancelled(LoopObject *L)
{
    if (L->heap_len > MIN_SCHEDULED_TIMER_HANDLES &&
        (double)L->timer_cancelled / (double)L->heap_len > MIN_CANCELLED_TIMER_HANDLES_FRACTION) {
        size_t j = 0;
        for (size_t i = 0; i < L->heap_len; i++) {
            TimerHandleObject *t = L->heap[i];
            if (t->base.cancelled) {
                t->scheduled = 0;
                Py_DECREF(t);
            } else {
                L->heap[j++] = t;
            }
        }
        L->heap_len = j;
        for (size_t i = j / 2; i-- > 0;)
            heap_sift_down(L, i);
        L->timer_cancelled = 0;
        return;
    }
    while (L->heap_len > 0 && L->heap[0]->base.cancelled) {
        if (L->timer_cancelled > 0)
            L->timer_cancelled--;
        TimerHandleObject *t = heap_pop(L);
        Py_DECREF(t);
    }
}

/* ---- argument checks shared by call_soon / call_later / call_at ---- */

int aio_loop_check_closed(LoopObject *L)
{
    if (L->closed) {
        PyErr_SetString(PyExc_RuntimeError, "Event loop is closed");
        return -1;
    }
    return 0;
}

LoopObject *aio_loop_arg(PyTypeObject *tp, PyObject *loop)
{
    aio_state *st = aio_get_state_by_type(tp);
    if (st == NULL)
        return NULL;
    if (!PyObject_TypeCheck(loop, st->LoopType)) {
        PyErr_SetString(PyExc_TypeError, "loop must be an aioloop loop");
        return NULL;
    }
    LoopObject *L = (LoopObject *)loop;
    if (aio_loop_check_closed(L) < 0 || aio_loop_check_thread(L) < 0)
        return NULL;
    if (!L->engine_ready) {
        PyErr_SetString(PyExc_RuntimeError, "the loop was never initialized");
        return NULL;
    }
    return L;
}

int aio_loop_wrong_thread(void)
{
    PyErr_SetString(PyExc_RuntimeError,
                    "Non-thread-safe operation invoked on an event loop other "
                    "than the current one");
    return -1;
}

static int check_thread(LoopObject *L)
{
    return aio_loop_check_thread(L);
}

static int is_coroutine_function(PyObject *cb)
{
    if (PyMethod_Check(cb))
        cb = PyMethod_GET_FUNCTION(cb);
    if (PyFunction_Check(cb)) {
        PyCodeObject *code = (PyCodeObject *)PyFunction_GET_CODE(cb);
        return (code->co_flags & CO_COROUTINE) != 0;
    }
    return 0;
}

/* Refuses a coroutine, a coroutine function and a non-callable, in every
 * mode (asyncio: in debug mode only; docs/compatibility.md, B1).  Plain
 * functions, methods and builtins are recognised here; in debug mode any
 * other callable (a functools.partial of a coroutine function, a function
 * marked with inspect.markcoroutinefunction) also goes through asyncio's
 * own test, so that debug mode refuses exactly what asyncio's refuses. */
static int check_callback(LoopObject *L, PyObject *cb, const char *method)
{
    int coro = PyCoro_CheckExact(cb) || is_coroutine_function(cb);
    if (!coro && L->debug && !PyFunction_Check(cb) && !PyMethod_Check(cb) &&
        !PyCFunction_Check(cb)) {
        PyObject *helpers = aio_debug_helpers(L->st);
        PyObject *r = helpers ? PyObject_CallMethod(helpers, "is_coroutine_callback", "O", cb)
                              : NULL;
        if (r == NULL)
            return -1;
        coro = PyObject_IsTrue(r);
        Py_DECREF(r);
        if (coro < 0)
            return -1;
    }
    if (coro) {
        PyErr_Format(PyExc_TypeError, "coroutines cannot be used with %s()", method);
        return -1;
    }
    if (!PyCallable_Check(cb)) {
        PyErr_Format(PyExc_TypeError,
                     "a callable object was expected by %s(), got %R", method, cb);
        return -1;
    }
    return 0;
}

/* The arguments of call_soon(callback, *args, context=None) and
 * call_later/call_at(time, callback, *args, context=None) as asyncio's
 * Python signatures bind them: the named parameters may come by keyword
 * too (then *args is empty), and anything else is a TypeError. */
typedef struct {
    PyObject *param[2];           /* [callback] or [time, callback]; borrowed */
    PyObject *const *rest;        /* *args */
    Py_ssize_t nrest;
    PyObject *context;            /* NULL when not given */
} call_args;

static int parse_call(PyObject *const *args, Py_ssize_t nargs, PyObject *kwnames,
                      const char *const *names, Py_ssize_t nnames, const char *method,
                      call_args *out)
{
    out->context = NULL;
    out->param[0] = out->param[1] = NULL;
    Py_ssize_t npos = nargs < nnames ? nargs : nnames;
    for (Py_ssize_t i = 0; i < npos; i++)
        out->param[i] = args[i];
    out->rest = args + npos;
    out->nrest = nargs - npos;
    Py_ssize_t nk = kwnames != NULL ? PyTuple_GET_SIZE(kwnames) : 0;
    for (Py_ssize_t k = 0; k < nk; k++) {
        PyObject *key = PyTuple_GET_ITEM(kwnames, k);
        if (PyUnicode_CompareWithASCIIString(key, "context") == 0) {
            out->context = args[nargs + k];
            continue;
        }
        Py_ssize_t i = 0;
        while (i < nnames && PyUnicode_CompareWithASCIIString(key, names[i]) != 0)
            i++;
        if (i == nnames) {
            PyErr_Format(PyExc_TypeError, "%s() got an unexpected keyword argument %R",
                         method, key);
            return -1;
        }
        if (out->param[i] != NULL) {
            PyErr_Format(PyExc_TypeError, "%s() got multiple values for argument '%s'",
                         method, names[i]);
            return -1;
        }
        out->param[i] = args[nargs + k];
    }
    for (Py_ssize_t i = 0; i < nnames; i++) {
        if (out->param[i] == NULL) {
            PyErr_Format(PyExc_TypeError, "%s() missing required argument: '%s'", method,
                         names[i]);
            return -1;
        }
    }
    return 0;
}

/* asyncio copies the current context for every handle given none: a GC
 * object per call_soon/call_at, alive until the handle runs, which makes
 * the collector's work grow with the handles waiting (200,000 ready
 * callbacks: most of the time went to collections).  One copy is shared
 * instead while the current context holds the same variables.  A
 * context's variables are an immutable HAMT that every set/reset replaces,
 * and the snapshot holds its own reference to the HAMT it copied, so the
 * same pointer means the same contents.  The shared copy
 * is never entered nor handed out: a handle makes its own copy of it when
 * it runs or its context is asked for (aio_handle_own_context), so each
 * callback still gets a context of its own, as asyncio's do.
 *
 * The HAMT pointer is read from CPython's Context object, whose layout is
 * internal (Include/internal/pycore_context.h: the head, the context it
 * was entered from, the variables; the same from 3.7 to 3.15).  It is
 * checked once per process; where it does not hold, every handle gets its
 * own copy as before. */
#ifndef Py_GIL_DISABLED
typedef struct {
    PyObject_HEAD
    void *prev;
    PyObject *vars;
} ctx_layout;

static PyObject *ctx_vars(PyObject *ctx)
{
    return ((ctx_layout *)ctx)->vars;
}

/* 1 when ctx_vars() reads the variables: a copy shares them, a context with
 * a variable set has others than an empty one, and they are a "hamt". */
static int ctx_layout_holds(void)
{
    PyObject *var = PyContextVar_New("aioloop_layout_probe", NULL);
    PyObject *empty = PyContext_New(), *ctx = PyContext_New(), *copy = NULL;
    int ok = 0;
    if (var != NULL && empty != NULL && ctx != NULL && PyContext_Enter(ctx) == 0) {
        PyObject *tok = PyContextVar_Set(var, Py_None);
        Py_XDECREF(tok);
        if (PyContext_Exit(ctx) == 0 && tok != NULL && (copy = PyContext_Copy(ctx)) != NULL) {
            PyObject *v = ctx_vars(ctx);
            ok = v != NULL && v == ctx_vars(copy) && ctx_vars(empty) != NULL &&
                 ctx_vars(empty) != v && strcmp(Py_TYPE(v)->tp_name, "hamt") == 0 &&
                 Py_TYPE(ctx_vars(empty)) == Py_TYPE(v);
        }
    }
    PyErr_Clear();
    Py_XDECREF(copy);
    Py_XDECREF(ctx);
    Py_XDECREF(empty);
    Py_XDECREF(var);
    return ok;
}

#endif

/* A copy of the current context for a handle given none, and whether it
 * is the shared one (*shared = 1).  A new reference, or NULL with an
 * exception set. */
static PyObject *context_snapshot(LoopObject *L, int *shared)
{
    *shared = 0;
#ifndef Py_GIL_DISABLED
    static int layout = -1;   /* process-wide; set under the GIL */
    /* Any thread (call_soon_threadsafe, a loop not running yet): the GIL
     * orders these accesses, and equal variables mean an equal copy
     * whichever thread's context they are. */
    if (layout < 0)
        layout = ctx_layout_holds();
    PyObject *cur = PyThreadState_Get()->context;
    if (layout && cur != NULL && PyContext_CheckExact(cur)) {
        if (L->ctx_snap != NULL && L->ctx_snap_vars == ctx_vars(cur)) {
            *shared = 1;
            return Py_NewRef(L->ctx_snap);
        }
        PyObject *c = PyContext_CopyCurrent();
        if (c == NULL)
            return NULL;
        Py_XSETREF(L->ctx_snap, Py_NewRef(c));
        L->ctx_snap_vars = ctx_vars(c);
        *shared = 1;
        return c;
    }
#else
    (void)L;
#endif
    return PyContext_CopyCurrent();
}

HandleObject *aio_loop_handle_new(LoopObject *L, int timer, PyObject *callback,
                                  PyObject *const *args, Py_ssize_t nargs, PyObject *context)
{
    int shared = 0;
    PyObject *ctx = context != NULL && context != Py_None ? Py_NewRef(context)
                                                          : context_snapshot(L, &shared);
    if (ctx == NULL)
        return NULL;
    HandleObject *h = aio_handle_new(L->st, timer, callback, args, nargs, (PyObject *)L, ctx);
    Py_DECREF(ctx);
    if (h != NULL)
        h->ctx_shared = (char)shared;
    return h;
}

static const char *const SOON_NAMES[] = {"callback"};
static const char *const LATER_NAMES[] = {"delay", "callback"};
static const char *const AT_NAMES[] = {"when", "callback"};

static PyObject *schedule_soon(LoopObject *L, PyObject *const *args, Py_ssize_t nargs,
                               PyObject *kwnames, const char *method, int threadsafe)
{
    call_args a;
    if (parse_call(args, nargs, kwnames, SOON_NAMES, 1, method, &a) < 0)
        return NULL;
    if (aio_loop_check_closed(L) < 0)
        return NULL;
    if (L->debug && !threadsafe && check_thread(L) < 0)
        return NULL;
    if (check_callback(L, a.param[0], method) < 0)
        return NULL;
    HandleObject *h = aio_loop_handle_new(L, 0, a.param[0], a.rest, a.nrest, a.context);
    if (h == NULL)
        return NULL;
    if (L->debug && aio_handle_capture_traceback(L->st, h) < 0) {
        Py_DECREF(h);
        return NULL;
    }
    Py_INCREF(h);
    if (aio_loop_ready_push(L, h) < 0) {
        Py_DECREF(h);
        return NULL;
    }
    if (threadsafe && L->engine_ready)
        aio_engine_wake(L->engine);
    return (PyObject *)h;
}

int aio_loop_call_soon(LoopObject *L, PyObject *callback, PyObject *const *args,
                       Py_ssize_t nargs)
{
    HandleObject *h = aio_loop_handle_new(L, 0, callback, args, nargs, NULL);
    if (h == NULL)
        return -1;
    return aio_loop_ready_push(L, h);
}

static PyObject *loop_call_soon(LoopObject *L, PyObject *const *args, size_t nargsf,
                                PyObject *kwnames)
{
    return schedule_soon(L, args, PyVectorcall_NARGS(nargsf), kwnames, "call_soon", 0);
}

static PyObject *loop_call_soon_threadsafe(LoopObject *L, PyObject *const *args,
                                           size_t nargsf, PyObject *kwnames)
{
    return schedule_soon(L, args, PyVectorcall_NARGS(nargsf), kwnames,
                         "call_soon_threadsafe", 1);
}

/* What call_at() checks before it makes the handle, in asyncio's order:
 * closed loop, (debug) the calling thread, the callback. */
static int check_schedule(LoopObject *L, PyObject *callback, const char *method)
{
    if (aio_loop_check_closed(L) < 0)
        return -1;
    if (L->debug && check_thread(L) < 0)
        return -1;
    return check_callback(L, callback, method);
}

static PyObject *schedule_at(LoopObject *L, double when, PyObject *given, call_args *a)
{
    HandleObject *h = aio_loop_handle_new(L, 1, a->param[1], a->rest, a->nrest, a->context);
    if (h == NULL)
        return NULL;
    if (L->debug && aio_handle_capture_traceback(L->st, h) < 0) {
        Py_DECREF(h);
        return NULL;
    }
    aio_timer_set_when((TimerHandleObject *)h, when, given);
    Py_INCREF(h);
    if (heap_push(L, (TimerHandleObject *)h) < 0) {
        Py_DECREF(h);
        return NULL;
    }
    return (PyObject *)h;
}

/* The deadline of call_at(when) as a double.  asyncio keeps `when` as
 * given and only ever compares it with other deadlines, so any real number
 * works there: an int beyond a double's range is never due (or always
 * due), NaN and the infinities are kept as they are (see timer_key).  A
 * `when` that is not a real number is a TypeError here; asyncio accepts
 * it and fails later, in the heap push or the run loop (a deliberate
 * difference, docs/compatibility.md).  Returns 0, or -1 with an exception
 * set. */
static int when_as_double(PyObject *o, double *out)
{
    if (PyFloat_Check(o)) {
        *out = PyFloat_AS_DOUBLE(o);
        return 0;
    }
    if (PyLong_Check(o)) {
        double d = PyLong_AsDouble(o);
        if (d == -1.0 && PyErr_Occurred()) {
            if (!PyErr_ExceptionMatches(PyExc_OverflowError))
                return -1;
            PyErr_Clear();
            int overflow;
            (void)PyLong_AsLongAndOverflow(o, &overflow);
            d = overflow < 0 ? -INFINITY : INFINITY;
        }
        *out = d;
        return 0;
    }
    if (!PyComplex_Check(o) && PyNumber_Check(o)) {   /* Decimal, Fraction, ... */
        double d = PyFloat_AsDouble(o);
        if (d == -1.0 && PyErr_Occurred())
            return -1;
        *out = d;
        return 0;
    }
    PyErr_Format(PyExc_TypeError, "when must be a real number, not %.100s",
                 Py_TYPE(o)->tp_name);
    return -1;
}

/* call_later (relative=1) and call_at (relative=0): (time, callback, *args,
 * context=None).  call_later(delay) is call_at(time() + delay) as on
 * asyncio: the sum is Python's, so a delay that `+` refuses (a str, a
 * Decimal) raises what it raises there, before the loop is checked. */
static PyObject *schedule_timer(LoopObject *L, PyObject *const *args, size_t nargsf,
                                PyObject *kwnames, int relative)
{
    const char *method = relative ? "call_later" : "call_at";
    call_args a;
    if (parse_call(args, PyVectorcall_NARGS(nargsf), kwnames, relative ? LATER_NAMES : AT_NAMES,
                   2, method, &a) < 0)
        return NULL;
    PyObject *tval = a.param[0];
    if (tval == Py_None) {
        PyErr_SetString(PyExc_TypeError,
                        relative ? "delay must not be None" : "when cannot be None");
        return NULL;
    }
    PyObject *when_obj = NULL;   /* time() + delay when it is not a float */
    double when = 0.0;
    int have_when = 0;
    if (relative) {
        int overridden = aio_loop_time_overridden(L);
        if (overridden < 0)
            return NULL;
        if (!overridden && PyFloat_CheckExact(tval)) {
            when = mono_now() + PyFloat_AS_DOUBLE(tval);
            have_when = 1;
        } else if (!overridden && PyLong_CheckExact(tval)) {
            double d = PyLong_AsDouble(tval);   /* OverflowError, as float + int */
            if (d == -1.0 && PyErr_Occurred())
                return NULL;
            when = mono_now() + d;
            have_when = 1;
        } else {
            PyObject *now = overridden ? PyObject_CallMethodNoArgs((PyObject *)L, L->st->str_time)
                                       : PyFloat_FromDouble(mono_now());
            if (now == NULL)
                return NULL;
            when_obj = PyNumber_Add(now, tval);
            Py_DECREF(now);
            if (when_obj == NULL)
                return NULL;
            if (PyFloat_Check(when_obj)) {
                when = PyFloat_AS_DOUBLE(when_obj);
                have_when = 1;
            }
        }
    }
    PyObject *res = NULL;
    if (check_schedule(L, a.param[1], method) == 0 &&
        (have_when || when_as_double(when_obj ? when_obj : tval, &when) == 0))
        res = schedule_at(L, when, when_obj ? when_obj : relative ? NULL : tval, &a);
    Py_XDECREF(when_obj);
    return res;
}

static PyObject *loop_call_later(LoopObject *L, PyObject *const *args, size_t nargsf,
                                 PyObject *kwnames)
{
    return schedule_timer(L, args, nargsf, kwnames, 1);
}

static PyObject *loop_call_at(LoopObject *L, PyObject *const *args, size_t nargsf,
                              PyObject *kwnames)
{
    return schedule_timer(L, args, nargsf, kwnames, 0);
}

static PyObject *loop_time(LoopObject *L, PyObject *Py_UNUSED(ignored))
{
    (void)L;
    return PyFloat_FromDouble(mono_now());
}

static PyObject *loop_stop(LoopObject *L, PyObject *Py_UNUSED(ignored))
{
    L->stopping = 1;
    Py_RETURN_NONE;
}

static PyObject *loop_timer_handle_cancelled(LoopObject *L, PyObject *h)
{
    if (PyObject_TypeCheck(h, L->st->TimerHandleType) && ((TimerHandleObject *)h)->scheduled)
        L->timer_cancelled++;
    Py_RETURN_NONE;
}

static PyObject *loop_write_to_self(LoopObject *L, PyObject *Py_UNUSED(ignored))
{
    if (L->engine_ready)
        aio_engine_wake(L->engine);
    Py_RETURN_NONE;
}

static PyObject *loop_create_future_m(LoopObject *L, PyObject *Py_UNUSED(ignored))
{
    return aio_loop_create_future(L);
}

PyObject *aio_loop_create_future(LoopObject *L)
{
    PyObject *args[2] = {NULL, (PyObject *)L};
    return PyObject_Vectorcall(L->st->FutureType, args + 1, 0 | PY_VECTORCALL_ARGUMENTS_OFFSET,
                               L->st->kw_loop);
}

/* create_task(): asyncio's BaseEventLoop.create_task with its common case in
 * C -- no task factory, not in debug mode, at most name= and context= --
 * which is Task(coro, loop=self, name=..., context=...) after the closed
 * check, as asyncio's does on every Python.  Anything else (a task factory,
 * debug mode's traceback trimming, other keywords as 3.14 passes through)
 * goes to asyncio's own method, so each Python keeps its own rules. */
static PyObject *loop_create_task(LoopObject *L, PyObject *const *args, size_t nargsf,
                                  PyObject *kwnames)
{
    aio_state *st = L->st;
    Py_ssize_t nargs = PyVectorcall_NARGS(nargsf);
    Py_ssize_t nkw = kwnames ? PyTuple_GET_SIZE(kwnames) : 0;
    int fast = nargs == 1 && !L->debug && !L->closed && nkw <= 2;
    for (Py_ssize_t i = 0; fast && i < nkw; i++) {
        PyObject *k = PyTuple_GET_ITEM(kwnames, i);
        fast = k == st->str_name || k == st->str_context;   /* interned by the caller */
    }
    if (fast) {
        PyObject *factory = PyObject_GetAttr((PyObject *)L, st->str_task_factory);
        if (factory == NULL)
            return NULL;
        fast = factory == Py_None;
        Py_DECREF(factory);
    }
    if (!fast) {
        /* asyncio's method, self first. */
        PyObject *small[8];
        Py_ssize_t total = nargs + nkw;
        PyObject **full = total + 1 <= 8 ? small : PyMem_Malloc((size_t)(total + 1) * sizeof *full);
        if (full == NULL)
            return PyErr_NoMemory();
        full[0] = (PyObject *)L;
        for (Py_ssize_t i = 0; i < total; i++)
            full[i + 1] = args[i];
        PyObject *r = PyObject_Vectorcall(st->base_create_task, full, (size_t)nargs + 1, kwnames);
        if (full != small)
            PyMem_Free(full);
        return r;
    }
    /* Task(coro, loop=self, <the given keywords>) */
    PyObject *call[4] = {args[0], (PyObject *)L, nkw > 0 ? args[1] : NULL, nkw > 1 ? args[2] : NULL};
    if (nkw == 0)
        return PyObject_Vectorcall(st->TaskType, call, 1, st->kw_loop);
    PyObject *names = nkw == 1 ? PyTuple_Pack(2, st->str_loop, PyTuple_GET_ITEM(kwnames, 0))
                               : PyTuple_Pack(3, st->str_loop, PyTuple_GET_ITEM(kwnames, 0),
                                              PyTuple_GET_ITEM(kwnames, 1));
    if (names == NULL)
        return NULL;
    PyObject *r = PyObject_Vectorcall(st->TaskType, call, 1, names);
    Py_DECREF(names);
    return r;
}

static PyObject *loop_get_debug(LoopObject *L, PyObject *Py_UNUSED(ignored))
{
    return PyBool_FromLong(L->debug);
}

/* ---- completions ---- */

/* Takes every finished request and turns each into its Python result. An
 * error in one completion goes to the exception handler; the rest still run. */
static int drain_completions(LoopObject *L, int deliver)
{
    /* What a SystemExit/KeyboardInterrupt left undelivered comes first. */
    aio_qnode *n = L->backlog;
    L->backlog = NULL;
    aio_qnode *fresh = aio_engine_flush(L->engine);
    if (n == NULL) {
        n = fresh;
    } else {
        aio_qnode *tail = n;
        while (tail->next != NULL)
            tail = tail->next;
        tail->next = fresh;
    }
    while (n != NULL) {
        aio_qnode *next = n->next;
        aio_req *req = AIO_REQ_OF(n);
        if (req->op >= AIO_OP_STREAM_START) {
            /* Transports and listeners: the callbacks are the protocol's. */
            if (aio_stream_completion(L, req, deliver) < 0) {
                L->backlog = next;
                return -1;
            }
        } else {
            aio_resolver_completion(L, req, deliver);
        }
        n = next;
    }
    return 0;
}

/* ---- the run loop ---- */

/* 0 when the engine is there; else -1 with an exception set (a closed loop,
 * or a Loop whose __init__ never ran or failed). */
static int engine_ensure(LoopObject *L)
{
    if (L->engine_ready)
        return 0;
    if (aio_loop_check_closed(L) < 0)
        return -1;
    PyErr_SetString(PyExc_RuntimeError, "the loop was not initialized (Loop.__init__ failed)");
    return -1;
}

/* Waits for completions, a wake or readiness (the engine's backend decides
 * how) and queues the readiness callbacks that fired. */
static int loop_poll(LoopObject *L, int timeout_ms)
{
    struct epoll_event events[64];
    int n;
    if (timeout_ms != 0) {
        /* Announced while the GIL is held: call_soon_threadsafe needs the
         * GIL to queue its handle, so it then finds the loop asleep and
         * wakes it (announcing after releasing the GIL lost such wakeups). */
        aio_engine_sleep_begin(L->engine);
        Py_BEGIN_ALLOW_THREADS
        n = aio_engine_wait(L->engine, timeout_ms, L->nfds_watched > 0, events, 64);
        Py_END_ALLOW_THREADS
    } else {
        n = aio_engine_wait(L->engine, 0, L->nfds_watched > 0, events, 64);
    }
    if (n == -EINTR)
        return PyErr_CheckSignals();
    if (n < 0)
        return aio_set_errno_error(-n);
    /* A signal during a sleep does not always surface as EINTR: io_uring's
     * submit-and-wait returns the count it submitted when a signal ends the
     * wait, so a Ctrl-C on an idle uring loop went unnoticed until
     * something else woke it.  Run the Python-level handlers after every
     * sleep (a flag test when none is pending). */
    if (timeout_ms != 0 && PyErr_CheckSignals() < 0)
        return -1;
    return n > 0 ? aio_fd_dispatch(L, events, n) : 0;
}

static int run_ready_debug(LoopObject *L, HandleObject *h)
{
    if (PyObject_SetAttr((PyObject *)L, L->st->str_current_handle, (PyObject *)h) < 0)
        return -1;
    double t0 = mono_now();
    int rc = aio_handle_run(L->st, h);
    double dt = mono_now() - t0;
    PyObject *exc = rc < 0 ? aio_err_fetch() : NULL;
    if (PyObject_SetAttr((PyObject *)L, L->st->str_current_handle, Py_None) < 0)
        PyErr_Clear();
    if (rc == 0 && dt >= L->slow_callback_duration) {
        PyObject *helpers = aio_debug_helpers(L->st);
        PyObject *r = helpers ? PyObject_CallMethod(helpers, "log_slow_callback", "Od",
                                                    (PyObject *)h, dt) : NULL;
        if (r == NULL)
            return -1;
        Py_DECREF(r);
    }
    if (exc != NULL)
        aio_err_restore(exc);
    return rc;
}

static int loop_run_once(LoopObject *L)
{
    heap_purge_cancelled(L);

    int timeout_ms;
    if (L->ready_len > 0 || L->stopping) {
        timeout_ms = 0;
    } else if (L->heap_len > 0) {
        double now;
        if (loop_now(L, &now) < 0)
            return -1;
        double t = timer_key(L->heap[0]) - now;
        if (t <= 0)
            timeout_ms = 0;
        else if (t * 1000.0 >= MAXIMUM_SELECT_TIMEOUT_MS)
            timeout_ms = MAXIMUM_SELECT_TIMEOUT_MS;
        else
            timeout_ms = (int)ceil(t * 1000.0);
    } else {
        timeout_ms = -1;
    }
    /* With callbacks waiting there is nothing to sleep for, and completions
     * arrive through the queue, not through epoll: skip the syscall unless
     * readiness callbacks are registered (they must not starve). */
    if ((timeout_ms != 0 || L->nfds_watched > 0 || aio_engine_poll_pending(L->engine)) &&
        loop_poll(L, timeout_ms) < 0)
        return -1;
    /* The same order as asyncio's _run_once, whose ready list is [callbacks
     * scheduled before this iteration, I/O events, due timers]: run the
     * callbacks that are ready now, then dispatch the completions, then the
     * timers due at the poll.  So a callback scheduled before some I/O
     * arrived (a task woken by create_connection's waiter, say) runs before
     * the protocol sees that I/O, as on asyncio's loop.  What these
     * callbacks schedule waits for the next iteration. */
    /* Timers scheduled by this iteration's callbacks wait for the next one
     * (asyncio's end_time is taken before its callbacks run): with none
     * scheduled before, there is no clock to read -- unless time() is
     * overridden, which asyncio calls every iteration. */
    int timers = L->heap_len > 0;
    if (!timers && (timers = aio_loop_time_overridden(L)) < 0)
        return -1;
    double end = 0;
    int clock = timers ? loop_now(L, &end) : 0;
    if (clock < 0)
        return -1;
    end += L->clock_resolution;
    size_t ntodo = L->ready_len;
    for (size_t i = 0; i < ntodo; i++) {
        HandleObject *h = ready_pop(L);
        int rc = 0;
        if (!h->cancelled)
            rc = L->debug ? run_ready_debug(L, h) : aio_handle_run(L->st, h);
        Py_DECREF(h);
        if (rc < 0)
            return -1;
    }
    if ((L->backlog != NULL || aio_engine_has_completions(L->engine)) &&
        drain_completions(L, 1) < 0)
        return -1;
    /* A callback patched or unpatched time(): a timer it scheduled on the
     * new clock must not be judged by the old one (asyncio never runs a
     * timer in the iteration that scheduled it). */
    int now_clock = timers ? aio_loop_time_overridden(L) : clock;
    if (now_clock != clock) {
        if (now_clock < 0 || loop_now(L, &end) < 0)
            return -1;
        end += L->clock_resolution;
    }
    while (timers && L->heap_len > 0 && timer_key(L->heap[0]) < end) {
        TimerHandleObject *t = heap_pop(L);
        if (t->base.cancelled && L->timer_cancelled > 0)
            L->timer_cancelled--;
        int rc = 0;
        if (!t->base.cancelled)
            rc = L->debug ? run_ready_debug(L, (HandleObject *)t)
                          : aio_handle_run(L->st, (HandleObject *)t);
        Py_DECREF(t);
        if (rc < 0)
            return -1;
    }
    L->iterations++;
    return 0;
}

static PyObject *loop_py_run_once(LoopObject *L, PyObject *Py_UNUSED(ignored))
{
    if (engine_ensure(L) < 0 || aio_loop_check_closed(L) < 0 || aio_loop_check_thread(L) < 0)
        return NULL;
    if (loop_run_once(L) < 0)
        return NULL;
    Py_RETURN_NONE;
}

/* Runs iterations until stop(). The Python face does the asyncio set-up
 * (running loop, async generator hooks) around it. */
static PyObject *loop_run(LoopObject *L, PyObject *Py_UNUSED(ignored))
{
    if (engine_ensure(L) < 0)
        return NULL;
    if (L->running) {
        PyErr_SetString(PyExc_RuntimeError, "This event loop is already running");
        return NULL;
    }
    L->running = 1;
    L->thread_id = PyThread_get_thread_ident();
    int rc = 0;
    for (;;) {
        if ((rc = loop_run_once(L)) < 0)
            break;
        if (L->stopping)
            break;
    }
    L->running = 0;
    L->stopping = 0;
    if (rc < 0)
        return NULL;
    Py_RETURN_NONE;
}

/* ---- lifecycle ---- */

static void clear_queues(LoopObject *L)
{
    /* Detach first: a handle's destructor may run Python code that calls
     * back into this loop. */
    HandleObject **ready = L->ready;
    size_t cap = L->ready_cap, head = L->ready_head, len = L->ready_len;
    TimerHandleObject **heap = L->heap;
    size_t hlen = L->heap_len;
    L->ready = NULL;
    L->ready_cap = L->ready_head = L->ready_len = 0;
    L->heap = NULL;
    L->heap_len = L->heap_cap = 0;
    L->timer_cancelled = 0;
    for (size_t i = 0; i < len; i++)
        Py_DECREF(ready[(head + i) % cap]);
    for (size_t i = 0; i < hlen; i++) {
        heap[i]->scheduled = 0;
        Py_DECREF(heap[i]);
    }
    PyMem_Free(ready);
    PyMem_Free(heap);
}

/* Stops and joins the completion threads and releases every request in
 * flight without calling back into Python code of the user. */
static void shutdown_engine(LoopObject *L)
{
    if (!L->engine_ready)
        return;
    Py_BEGIN_ALLOW_THREADS
    aio_engine_stop(L->engine);
    Py_END_ALLOW_THREADS
    drain_completions(L, 0);
    aio_streams_shutdown(L);
    /* Nothing else can be in flight after the join. */
    aio_resolver_shutdown(L);
    aio_engine_free(L->engine);
    L->engine = NULL;
    L->engine_ready = 0;
    if (L->epfd >= 0)
        close(L->epfd);
    L->epfd = -1;
}

static PyObject *loop_close_core(LoopObject *L, PyObject *Py_UNUSED(ignored))
{
    if (L->running) {
        PyErr_SetString(PyExc_RuntimeError, "Cannot close a running event loop");
        return NULL;
    }
    L->closed = 1;
    clear_queues(L);
    aio_fd_clear(L);
    shutdown_engine(L);
    Py_RETURN_NONE;
}

static PyObject *loop_tp_new(PyTypeObject *tp, PyObject *args, PyObject *kwds)
{
    (void)args;
    (void)kwds;
    LoopObject *L = (LoopObject *)tp->tp_alloc(tp, 0);
    if (L == NULL)
        return NULL;
    L->st = aio_get_state_by_type(tp);
    L->epfd = -1;
    L->inflight.prev = L->inflight.next = &L->inflight;
    L->clock_resolution = 1e-9;
    L->slow_callback_duration = 0.1;
    {
        struct timespec res;
        if (clock_getres(CLOCK_MONOTONIC, &res) == 0)
            L->clock_resolution = (double)res.tv_sec + (double)res.tv_nsec * 1e-9;
    }
    return (PyObject *)L;
}

static int loop_init(LoopObject *L, PyObject *args, PyObject *kwds)
{
    static char *kwlist[] = {"threads", "resolver_threads", "buffer_size", "inline_writes",
                             "engine", "ring_buffers", NULL};
    int threads = 0, resolver = 0, ring_buffers = 256;
    PyObject *inline_o = Py_None;   /* None: the engine's default */
    Py_ssize_t bufsize = 0;   /* the engine's default */
    const char *engine = "auto";
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "|$iinOsi:Loop", kwlist, &threads, &resolver,
                                     &bufsize, &inline_o, &engine, &ring_buffers))
        return -1;
    if (aio_backend_resolve(engine) == NULL) {
        PyErr_Format(PyExc_ValueError, "engine must be " AIO_ENGINE_NAMES ", not '%s'", engine);
        return -1;
    }
    int inline_writes = inline_o == Py_None ? -1 : PyObject_IsTrue(inline_o);
    if (inline_o != Py_None && inline_writes < 0)
        return -1;
    if (L->engine_ready) {
        PyErr_SetString(PyExc_RuntimeError, "Loop is already initialized");
        return -1;
    }
    if (threads < 0 || resolver < 0 || (bufsize != 0 && bufsize < 1024) || bufsize > (1 << 24)) {
        PyErr_SetString(PyExc_ValueError, "threads and resolver_threads must be >= 0 and "
                                          "buffer_size between 1024 and 16 MiB");
        return -1;
    }
    if (threads > AIO_MAX_THREADS || resolver > AIO_MAX_THREADS) {
        /* Each thread costs an eventfd, an epoll descriptor and a stack at
         * loop creation; more cannot help one dispatching thread. */
        PyErr_Format(PyExc_ValueError,
                     "%s must be from 1 to %d (0: the default), not %d",
                     threads > AIO_MAX_THREADS ? "threads" : "resolver_threads", AIO_MAX_THREADS,
                     threads > AIO_MAX_THREADS ? threads : resolver);
        return -1;
    }
    if (ring_buffers < 0 || ring_buffers > 32768 || (ring_buffers & (ring_buffers - 1)) != 0) {
        /* The kernel takes at most 32,768 provided buffers per ring. */
        PyErr_Format(PyExc_ValueError,
                     "ring_buffers must be a power of two from 1 to 32768, not %d", ring_buffers);
        return -1;
    }
    L->epfd = epoll_create1(EPOLL_CLOEXEC);
    if (L->epfd < 0)
        return aio_set_errno_error(errno);
    aio_engine_config cfg = {
        .backend = engine,
        .threads = threads,
        .resolver_threads = resolver,
        .bufsize = (size_t)bufsize,
        .ring_buffers = (unsigned)ring_buffers,
        .watch_fd = L->epfd,
    };
    int rc = aio_engine_new(&L->engine, &cfg);
    if (rc < 0) {
        close(L->epfd);
        L->epfd = -1;
        if (strcmp(engine, "auto") != 0 && (rc == -ENOSYS || rc == -EOPNOTSUPP || rc == -EPERM ||
                                            rc == -EINVAL || rc == -ENOMEM))
            /* A backend asked for by name that this build or kernel refuses. */
            PyErr_Format(PyExc_OSError, "%s engine unavailable: %s%s", engine, strerror(-rc),
                         rc == -ENOSYS ? " (not in this build)" : "");
        else
            aio_set_errno_error(-rc);
        return -1;
    }
    L->engine_name = aio_engine_backend(L->engine);
    /* AIOLOOP_INLINE_MIN: a measurement knob for the engine's default
     * (docs/api.md). */
    const char *im = getenv("AIOLOOP_INLINE_MIN");
    size_t dflt = im != NULL && *im != '\0' ? (size_t)strtoull(im, NULL, 10)
                                            : aio_engine_inline_min(L->engine);
    L->inline_min = inline_writes < 0 ? dflt : inline_writes ? 0 : AIO_HANDOVER_INLINE_MIN;
    L->engine_ready = 1;
    return 0;
}

static PyObject *loop_engine_kind(LoopObject *L, PyObject *Py_UNUSED(ignored))
{
    /* What the loop ran on, closed or not (a string of the backend table). */
    return PyUnicode_FromString(L->engine_name != NULL ? L->engine_name : "none");
}

static int loop_traverse(LoopObject *L, visitproc visit, void *arg)
{
    Py_VISIT(Py_TYPE(L));
    for (size_t i = 0; i < L->ready_len; i++)
        Py_VISIT(L->ready[(L->ready_head + i) % L->ready_cap]);
    for (size_t i = 0; i < L->heap_len; i++)
        Py_VISIT(L->heap[i]);
    Py_VISIT(L->ctx_snap);
    if (aio_resolver_traverse(L, visit, arg) < 0)
        return -1;
    if (aio_streams_traverse(L, visit, arg) < 0)
        return -1;
    return aio_fd_traverse(L, visit, arg);
}

static int loop_clear(LoopObject *L)
{
    Py_CLEAR(L->ctx_snap);
    clear_queues(L);
    aio_fd_clear(L);
    return 0;
}

/* A loop dropped without close(), as asyncio's BaseEventLoop.__del__ does
 * it: ResourceWarning("unclosed event loop"), then close() unless it runs.
 * Python subclasses (aioloop.Loop) find this as their __del__, so their
 * close() runs; the bare core has none and closes its core.  Either way
 * the engine stops: its threads are joined and every stream's descriptor
 * closed.  This is also what breaks the cycle loop -> stream owner
 * (listener, transport) -> loop, which the collector alone cannot. */
static void loop_finalize(PyObject *self)
{
    LoopObject *L = (LoopObject *)self;
    if (L->closed && !L->engine_ready)
        return;
    PyObject *exc = aio_err_fetch();
    if (!L->closed &&
        PyErr_ResourceWarning(self, 1, "unclosed event loop %R", self) < 0)
        PyErr_WriteUnraisable(self);
    if (!L->running) {
        PyObject *close = PyObject_GetAttrString(self, "close");
        if (close == NULL) {
            PyErr_Clear();
        } else {
            PyObject *r = PyObject_CallNoArgs(close);
            Py_DECREF(close);
            if (r == NULL)
                PyErr_WriteUnraisable(self);
            Py_XDECREF(r);
        }
        /* The core's part, whatever close() did or failed to do. */
        if (!L->running) {
            L->closed = 1;
            clear_queues(L);
            aio_fd_clear(L);
            shutdown_engine(L);
        }
    }
    if (exc != NULL)
        aio_err_restore(exc);
}

static void loop_dealloc(LoopObject *L)
{
    PyTypeObject *tp = Py_TYPE(L);
    if (PyObject_CallFinalizerFromDealloc((PyObject *)L) < 0)
        return;   /* resurrected by the finalizer */
    PyObject_GC_UnTrack(L);
    loop_clear(L);
    shutdown_engine(L);
    tp->tp_free(L);
    Py_DECREF(tp);
}

/* ---- attributes read and written by asyncio.BaseEventLoop ---- */

#define FLAG_GETSET(name, field)                                              \
    static PyObject *get_##name(LoopObject *L, void *c)                       \
    {                                                                         \
        (void)c;                                                              \
        return PyBool_FromLong(L->field);                                     \
    }                                                                         \
    static int set_##name(LoopObject *L, PyObject *v, void *c)                \
    {                                                                         \
        (void)c;                                                              \
        int b = v ? PyObject_IsTrue(v) : 0;                                   \
        if (b < 0)                                                            \
            return -1;                                                        \
        L->field = (char)b;                                                   \
        return 0;                                                             \
    }

FLAG_GETSET(closed, closed)
FLAG_GETSET(stopping, stopping)
FLAG_GETSET(debug, debug)

static PyObject *get_thread_id(LoopObject *L, void *c)
{
    (void)c;
    if (!L->running)
        Py_RETURN_NONE;
    return PyLong_FromUnsignedLong(L->thread_id);
}

static int set_thread_id(LoopObject *L, PyObject *v, void *c)
{
    (void)c;
    /* BaseEventLoop assigns None at init and cleanup; the C run loop owns the
     * real value while it runs. */
    if (v == NULL || v == Py_None)
        return 0;
    unsigned long id = PyLong_AsUnsignedLong(v);
    if (id == (unsigned long)-1 && PyErr_Occurred())
        return -1;
    L->thread_id = id;
    return 0;
}

#define DOUBLE_GETSET(name, field)                                            \
    static PyObject *get_##name(LoopObject *L, void *c)                       \
    {                                                                         \
        (void)c;                                                              \
        return PyFloat_FromDouble(L->field);                                  \
    }                                                                         \
    static int set_##name(LoopObject *L, PyObject *v, void *c)                \
    {                                                                         \
        (void)c;                                                              \
        if (v == NULL) {                                                      \
            PyErr_SetString(PyExc_AttributeError, "cannot delete " #name);    \
            return -1;                                                        \
        }                                                                     \
        double d = PyFloat_AsDouble(v);                                       \
        if (d == -1.0 && PyErr_Occurred())                                    \
            return -1;                                                        \
        L->field = d;                                                         \
        return 0;                                                             \
    }

DOUBLE_GETSET(clock_resolution, clock_resolution)
DOUBLE_GETSET(slow_callback_duration, slow_callback_duration)

/* loop.stats(): the engine's counters, cheap enough to poll (no syscall,
 * no lock); documented in docs/api.md.  {} once the loop is closed. */
static PyObject *loop_stats(LoopObject *L, PyObject *Py_UNUSED(ignored))
{
    if (!L->engine_ready)
        return PyDict_New();
    aio_engine_stats st;
    aio_engine_get_stats(L->engine, &st);
    return Py_BuildValue(
        "{s:s,s:K,s:K,s:K,s:K,s:K,s:L,s:L,s:L,s:K,s:K,s:i,s:i,s:i,s:K}", "engine", L->engine_name,
        "completions", (unsigned long long)st.completions,
        "wakeups", (unsigned long long)st.wakeups,
        "submissions", (unsigned long long)st.submissions,
        "bytes_in", (unsigned long long)st.bytes_in,
        "bytes_out", (unsigned long long)st.bytes_out,
        "buffers_in_use", (long long)st.buffers_in_use,
        "streams_open", (long long)st.streams_open,
        "backlog", (long long)st.inflight,
        "ring_enters", (unsigned long long)st.enters,
        "starved_reads", (unsigned long long)st.starved,
        "threads_started", st.threads_started, "threads", st.io_threads,
        "resolver_threads", st.resolver_threads,
        "iterations", (unsigned long long)L->iterations);
}

static PyMethodDef loop_methods[] = {
    {"call_soon", (PyCFunction)(void (*)(void))loop_call_soon, METH_FASTCALL | METH_KEYWORDS,
     "Arrange for a callback to be called as soon as possible."},
    {"call_soon_threadsafe", (PyCFunction)(void (*)(void))loop_call_soon_threadsafe,
     METH_FASTCALL | METH_KEYWORDS, "Like call_soon(), but safe from any thread."},
    {"call_later", (PyCFunction)(void (*)(void))loop_call_later, METH_FASTCALL | METH_KEYWORDS,
     "Arrange for a callback to be called after a delay in seconds."},
    {"call_at", (PyCFunction)(void (*)(void))loop_call_at, METH_FASTCALL | METH_KEYWORDS,
     "Arrange for a callback to be called at an absolute loop.time()."},
    {"time", (PyCFunction)loop_time, METH_NOARGS, "The loop's monotonic clock."},
    {"stop", (PyCFunction)loop_stop, METH_NOARGS, "Stop after the current iteration."},
    {"create_future", (PyCFunction)loop_create_future_m, METH_NOARGS,
     "Create a Future attached to the loop."},
    {"create_task", (PyCFunction)(void (*)(void))loop_create_task, METH_FASTCALL | METH_KEYWORDS,
     "Schedule a coroutine object; return a Task (asyncio's create_task)."},
    {"get_debug", (PyCFunction)loop_get_debug, METH_NOARGS, "Whether debug mode is on."},
    {"_run", (PyCFunction)loop_run, METH_NOARGS, NULL},
    {"_run_once", (PyCFunction)loop_py_run_once, METH_NOARGS, NULL},
    {"_close_core", (PyCFunction)loop_close_core, METH_NOARGS, NULL},
    {"_timer_handle_cancelled", (PyCFunction)loop_timer_handle_cancelled, METH_O, NULL},
    {"_write_to_self", (PyCFunction)loop_write_to_self, METH_NOARGS, NULL},
    {"_getaddrinfo", (PyCFunction)aio_loop_getaddrinfo_raw, METH_VARARGS, NULL},
    {"_getnameinfo", (PyCFunction)aio_loop_getnameinfo_raw, METH_VARARGS, NULL},
    {"_add_reader", (PyCFunction)(void (*)(void))aio_loop_add_reader, METH_FASTCALL, NULL},
    {"_add_writer", (PyCFunction)(void (*)(void))aio_loop_add_writer, METH_FASTCALL, NULL},
    {"_remove_reader", (PyCFunction)aio_loop_remove_reader, METH_O, NULL},
    {"_remove_writer", (PyCFunction)aio_loop_remove_writer, METH_O, NULL},
    {"_fd_events", (PyCFunction)aio_loop_fd_events, METH_O, NULL},
    {"_engine_kind", (PyCFunction)loop_engine_kind, METH_NOARGS, NULL},
    {"stats", (PyCFunction)loop_stats, METH_NOARGS,
     "The engine's counters as a dict (see docs/api.md)."},
    {NULL, NULL, 0, NULL},
};

static PyGetSetDef loop_getset[] = {
    {"_closed", (getter)get_closed, (setter)set_closed, NULL, NULL},
    {"_stopping", (getter)get_stopping, (setter)set_stopping, NULL, NULL},
    {"_debug", (getter)get_debug, (setter)set_debug, NULL, NULL},
    {"_thread_id", (getter)get_thread_id, (setter)set_thread_id, NULL, NULL},
    {"_clock_resolution", (getter)get_clock_resolution, (setter)set_clock_resolution, NULL, NULL},
    {"slow_callback_duration", (getter)get_slow_callback_duration,
     (setter)set_slow_callback_duration, NULL, NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static PyType_Slot loop_slots[] = {
    {Py_tp_doc, "The C core of aioloop's event loop."},
    {Py_tp_new, loop_tp_new},
    {Py_tp_init, loop_init},
    {Py_tp_dealloc, loop_dealloc},
    {Py_tp_finalize, loop_finalize},
    {Py_tp_setattro, aio_loop_setattro},
    {Py_tp_traverse, loop_traverse},
    {Py_tp_clear, loop_clear},
    {Py_tp_methods, loop_methods},
    {Py_tp_getset, loop_getset},
    {0, NULL},
};

PyType_Spec aio_loop_spec = {
    .name = "aioloop._core.Loop",
    .basicsize = sizeof(LoopObject),
    .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_BASETYPE | Py_TPFLAGS_HAVE_GC,
    .slots = loop_slots,
};
