"""Behaviour of the loop core, checked on aioloop and on asyncio's loop."""
import asyncio
import contextvars
import decimal
import fractions
import gc
import logging
import os
import socket
import sys
import threading
import time
import weakref
from unittest import mock

import pytest

import aioloop
from conftest import ENGINES


# ---- call_soon / call_later / call_at ---------------------------------------

def test_call_soon_runs_in_fifo_order(any_loop):
    out = []
    for i in range(100):
        any_loop.call_soon(out.append, i)
    any_loop.call_soon(any_loop.stop)
    any_loop.run_forever()
    assert out == list(range(100))


def test_callbacks_scheduled_by_callbacks_wait_for_next_iteration(any_loop):
    out = []

    def first():
        out.append("first")
        any_loop.call_soon(out.append, "third")

    any_loop.call_soon(first)
    any_loop.call_soon(out.append, "second")
    any_loop.call_soon(any_loop.stop)
    any_loop.run_forever()
    assert out == ["first", "second"]
    any_loop.call_soon(any_loop.stop)
    any_loop.run_forever()
    assert out == ["first", "second", "third"]


def test_timers_fire_in_deadline_order_and_fifo_for_equal_deadlines(any_loop):
    out = []
    when = any_loop.time() + 0.02
    for i in range(50):
        any_loop.call_at(when, out.append, i)
    any_loop.call_later(0.01, out.append, "early")
    any_loop.call_later(0.03, any_loop.stop)
    any_loop.run_forever()
    assert out[0] == "early"
    if isinstance(any_loop, aioloop.Loop):
        # aioloop breaks deadline ties by scheduling order; asyncio's heapq
        # does not promise that, so there only the set is checked.
        assert out[1:] == list(range(50))
    else:
        assert sorted(out[1:]) == list(range(50))


def test_call_later_waits_at_least_the_delay(any_loop):
    t0 = any_loop.time()
    fired = []
    any_loop.call_later(0.05, lambda: (fired.append(any_loop.time()), any_loop.stop()))
    any_loop.run_forever()
    assert fired[0] - t0 >= 0.05 - any_loop._clock_resolution


def test_time_is_monotonic_clock(any_loop):
    a = time.monotonic()
    b = any_loop.time()
    c = time.monotonic()
    assert a <= b <= c


def test_cancelled_handles_do_not_run(any_loop):
    out = []
    h = any_loop.call_soon(out.append, 1)
    t = any_loop.call_later(0.001, out.append, 2)
    h.cancel()
    t.cancel()
    assert h.cancelled() and t.cancelled()
    any_loop.call_later(0.02, any_loop.stop)
    any_loop.run_forever()
    assert out == []


def test_cancelled_timers_are_released(any_loop):
    class Token:
        pass

    refs = []
    for _ in range(1000):
        tok = Token()
        refs.append(weakref.ref(tok))
        any_loop.call_later(3600, lambda t=tok: None).cancel()
    del tok
    any_loop.call_soon(any_loop.stop)
    any_loop.run_forever()
    gc.collect()
    assert sum(r() is not None for r in refs) == 0


def test_timer_handle_api(any_loop):
    when = any_loop.time() + 10
    t = any_loop.call_at(when, print)
    assert t.when() == when
    if hasattr(t, "get_context"):   # asyncio's handles have it from 3.12 on
        assert isinstance(t.get_context(), contextvars.Context)
    assert "when=" in repr(t)
    t2 = any_loop.call_at(when + 1, print)
    assert t < t2 and t2 > t and t != t2
    t.cancel()
    t2.cancel()
    assert "cancelled" in repr(t)


@pytest.mark.parametrize("kind", [int, fractions.Fraction, decimal.Decimal, float])
def test_call_at_keeps_the_deadline_as_given(any_loop, kind):
    """when() and _when are the object call_at() was given (asyncio keeps
    it as is); the timer still fires by its value."""
    when = kind(int(any_loop.time()) + 10)
    t = any_loop.call_at(when, print)
    assert type(t.when()) is kind and t.when() == when
    assert type(t._when) is kind
    assert hash(t) == hash(when)
    assert f"when={when}" in repr(t)
    t.cancel()
    # call_later() adds the delay to time(): a float whatever the delay is.
    assert type(any_loop.call_later(10, print).when()) is float
    # A deadline due now runs, whatever its type.
    out = []
    any_loop.call_at(kind(int(any_loop.time())), out.append, "due")
    any_loop.call_soon(any_loop.stop)
    any_loop.run_forever()
    any_loop.run_until_complete(asyncio.sleep(0.01))
    assert out == ["due"]


async def _spin(n=3):
    for _ in range(n):
        await asyncio.sleep(0)


async def test_patched_time_drives_the_timers():
    """mock.patch.object(loop, "time", ...) moves the clock the scheduler
    reads: call_later() adds to it and timers fire by it, as on asyncio."""
    loop = asyncio.get_running_loop()
    now = [loop.time()]
    fired = []
    with mock.patch.object(loop, "time", lambda: now[0]):
        t = loop.call_later(3600, fired.append, "later")
        assert t.when() == now[0] + 3600
        loop.call_at(now[0] + 7200, fired.append, "at")
        sleeper = asyncio.ensure_future(asyncio.sleep(60))
        await _spin()
        assert fired == [] and not sleeper.done()
        now[0] += 61
        await _spin()
        assert sleeper.done() and fired == []
        now[0] += 3540
        await _spin()
        assert fired == ["later"]
        now[0] += 3600
        await _spin()
        assert fired == ["later", "at"]
    # Unpatched: the real clock again.
    assert "time" not in vars(loop)
    t0 = time.monotonic()
    await asyncio.sleep(0.01)
    assert time.monotonic() - t0 >= 0.009


def test_patched_loop_class_time_drives_the_timers(any_loop):
    """Patching time() on the class (or overriding it in a subclass) moves
    the clock too, for loops that exist already."""
    now = [any_loop.time()]
    fired = []
    any_loop.call_later(3600, fired.append, "before")   # scheduled on the real clock
    with mock.patch.object(type(any_loop), "time", lambda self: now[0]):
        any_loop.call_later(10, fired.append, "fake")
        any_loop.run_until_complete(_spin())
        assert fired == []
        now[0] += 3601
        any_loop.run_until_complete(_spin())
        assert fired == ["fake", "before"]


@pytest.mark.parametrize("engine", ENGINES)
def test_subclass_time_drives_the_timers(engine):
    class FrozenLoop(aioloop.Loop):
        now = 1000.0

        def time(self):
            return self.now

    loop = FrozenLoop(engine=engine)
    try:
        fired = []
        loop.call_later(5, fired.append, 1)
        assert loop.call_later(5, print).when() == 1005.0
        loop.run_until_complete(_spin())
        assert fired == []
        loop.now = 1006.0
        loop.run_until_complete(_spin())
        assert fired == [1]
    finally:
        loop.close()


def test_timer_handle_made_directly_keeps_its_deadline(any_loop):
    cls = aioloop.TimerHandle if isinstance(any_loop, aioloop.Loop) else asyncio.TimerHandle
    t = cls(5, print, (), any_loop)
    assert type(t.when()) is int and t.when() == 5 and t._when == 5
    assert cls(5.5, print, (), any_loop).when() == 5.5


def test_callbacks_run_in_their_context(any_loop):
    var = contextvars.ContextVar("var", default="default")
    seen = []
    ctx = contextvars.copy_context()
    ctx.run(var.set, "in-ctx")
    any_loop.call_soon(lambda: seen.append(var.get()), context=ctx)
    var.set("outer")
    any_loop.call_soon(lambda: seen.append(var.get()))
    any_loop.call_later(0, lambda: seen.append(var.get()), context=ctx)
    any_loop.call_later(0.01, any_loop.stop)
    any_loop.run_forever()
    assert seen == ["in-ctx", "outer", "in-ctx"]


async def test_each_callback_gets_its_own_copy_of_the_context():
    """call_soon/call_later without context= copy the current context, one
    copy per handle, taken when the handle is made (aioloop shares one
    snapshot between handles while the context is unchanged and copies it
    when a handle runs or its context is asked for: none of that may show)."""
    loop = asyncio.get_running_loop()
    var = contextvars.ContextVar("var", default="unset")
    other = contextvars.ContextVar("other", default=0)
    seen = []

    def cb(tag):
        seen.append((tag, var.get(), other.get()))
        var.set(f"set-by-{tag}")            # stays in this callback's copy
        other.set(other.get() + 1)

    var.set("one")
    h1 = loop.call_soon(cb, 1)
    h2 = loop.call_soon(cb, 2)               # same context as h1's
    var.set("two")
    h3 = loop.call_soon(cb, 3)
    t4 = loop.call_later(0, cb, 4)
    token = var.set("three")
    var.reset(token)                          # back to "two", a new version
    h5 = loop.call_soon(cb, 5)
    ctx = contextvars.copy_context()
    ctx.run(var.set, "in-ctx")
    h6 = ctx.run(loop.call_soon, cb, 6)       # made inside another context
    h7 = loop.call_soon(cb, 7)
    h7_ctx = h7._context                      # asked for before it runs
    h7_ctx.run(var.set, "changed-through-get_context")
    await asyncio.sleep(0.05)
    assert seen == [(1, "one", 0), (2, "one", 0), (3, "two", 0), (5, "two", 0),
                    (6, "in-ctx", 0), (7, "changed-through-get_context", 0), (4, "two", 0)]
    # Each handle's context holds what its callback set, and only that.
    for h, tag in ((h1, 1), (h2, 2), (h3, 3), (t4, 4), (h5, 5), (h6, 6), (h7, 7)):
        c = h._context
        if sys.version_info >= (3, 12):
            assert c is h.get_context()
        assert c[var] == f"set-by-{tag}" and c[other] == 1
    assert len({id(h._context) for h in (h1, h2, h3, t4, h5, h6, h7)}) == 7
    assert var.get() == "two" and other.get() == 0
    assert ctx[var] == "in-ctx"


@pytest.mark.parametrize("engine", ENGINES)
def test_context_copy_that_fails_skips_that_callback_only(engine):
    """A handle whose own copy of the shared context cannot be made when it
    runs (fault site "context"): MemoryError goes to the exception handler as
    a failing callback's would, and the next callbacks run."""
    from aioloop import _core
    loop = aioloop.new_event_loop(engine=engine)
    errors, ran = [], []
    loop.set_exception_handler(lambda lp, ctx: errors.append(ctx))
    try:
        async def main():
            loop.call_soon(ran.append, 1)
            loop.call_soon(ran.append, 2)   # shares the first one's snapshot
            _core._fault_set("context", 1)
            try:
                await asyncio.sleep(0)
                await asyncio.sleep(0)
            finally:
                failed = _core._fault_failed("context")
                _core._fault_reset()
            loop.call_soon(ran.append, 3)
            await asyncio.sleep(0)
            return failed
        failed = loop.run_until_complete(main())
    finally:
        loop.close()
    assert failed == 1
    assert ran == [2, 3]
    assert len(errors) == 1 and isinstance(errors[0]["exception"], MemoryError)


# ---- bad input ---------------------------------------------------------------

@pytest.mark.parametrize("method", ["call_soon", "call_soon_threadsafe"])
def test_non_callable_is_a_type_error(any_loop, method):
    # asyncio checks callbacks in debug mode only; aioloop always does.
    any_loop.set_debug(True)
    with pytest.raises(TypeError):
        getattr(any_loop, method)(42)


def test_coroutine_function_is_refused(any_loop):
    any_loop.set_debug(True)
    async def coro():
        pass

    with pytest.raises(TypeError, match="coroutines cannot be used"):
        any_loop.call_soon(coro)
    with pytest.raises(TypeError, match="coroutines cannot be used"):
        any_loop.call_later(1, coro)


def test_call_later_bad_delay(any_loop):
    with pytest.raises(TypeError):
        any_loop.call_later(None, print)
    with pytest.raises(TypeError):
        any_loop.call_later("1", print)
    with pytest.raises(TypeError):
        any_loop.call_at(None, print)


def test_unknown_keyword_is_a_type_error(any_loop):
    with pytest.raises(TypeError):
        any_loop.call_soon(print, bogus=1)


# ---- readiness under load ------------------------------------------------------

async def test_reader_fires_while_callbacks_keep_the_loop_busy():
    """A loop that never sleeps (a callback chain, as a task looping on
    sleep(0) makes) still runs readiness callbacks: on io_uring the loop's
    epoll was only looked at before a sleep, so add_reader(), sock_connect()
    and asyncio's datagram transports starved while anything else was ready."""
    loop = asyncio.get_running_loop()
    busy = True

    def spin():
        if busy:
            loop.call_soon(spin)

    spin()
    a, b = socket.socketpair()
    try:
        a.setblocking(False)
        got = loop.create_future()
        loop.add_reader(a, lambda: got.done() or got.set_result(a.recv(16)))
        b.send(b"ping")
        assert await asyncio.wait_for(got, 10) == b"ping"
        # And a connect, which asyncio's create_connection() waits for
        # through add_writer().
        srv = await loop.create_server(asyncio.Protocol, "127.0.0.1", 0)
        tr, _ = await asyncio.wait_for(
            loop.create_connection(asyncio.Protocol, *srv.sockets[0].getsockname()), 10)
        tr.close()
        srv.close()
    finally:
        busy = False
        loop.remove_reader(a)
        a.close()
        b.close()


# ---- run / stop / close ------------------------------------------------------

def test_run_until_complete_returns_result(any_loop):
    async def main():
        await asyncio.sleep(0.001)
        return 42

    assert any_loop.run_until_complete(main()) == 42


def test_running_a_running_loop_is_refused(aloop):
    # aioloop only: on Python 3.13.0 asyncio's own loop hangs in this test.
    async def main():
        with pytest.raises(RuntimeError):
            aloop.run_forever()
        with pytest.raises(RuntimeError):
            aloop.run_until_complete(asyncio.sleep(0))
        assert aloop.is_running()
        with pytest.raises(RuntimeError):
            aloop.close()

    aloop.run_until_complete(main())
    assert not aloop.is_running()


def test_closed_loop_refuses_work(any_loop):
    any_loop.close()
    assert any_loop.is_closed()
    with pytest.raises(RuntimeError):
        any_loop.call_soon(print)
    with pytest.raises(RuntimeError):
        any_loop.call_soon_threadsafe(print)
    with pytest.raises(RuntimeError):
        any_loop.call_later(1, print)
    with pytest.raises(RuntimeError):
        any_loop.run_forever()
    with pytest.raises(RuntimeError):
        any_loop.run_until_complete(asyncio.sleep(0))
    any_loop.close()   # idempotent


def test_stop_before_run_runs_one_iteration(any_loop):
    out = []
    any_loop.call_soon(out.append, 1)
    any_loop.stop()
    any_loop.run_forever()
    assert out == [1]


# ---- exceptions ----------------------------------------------------------------

def test_callback_exception_goes_to_handler_and_loop_continues(any_loop):
    out = []

    def boom():
        raise ValueError("boom")

    any_loop.call_soon(boom)
    any_loop.call_soon(out.append, "after")
    any_loop.call_soon(any_loop.stop)
    any_loop.run_forever()
    assert out == ["after"]
    (ctx,) = any_loop.unexpected_errors
    assert isinstance(ctx["exception"], ValueError)
    assert ctx["message"].startswith("Exception in callback")
    assert ctx["handle"] is not None


def test_default_exception_handler_logs(any_loop, caplog):
    any_loop.set_exception_handler(None)

    def boom():
        raise ValueError("boom-logged")

    any_loop.call_soon(boom)
    any_loop.call_soon(any_loop.stop)
    with caplog.at_level(logging.ERROR, logger="asyncio"):
        any_loop.run_forever()
    assert "boom-logged" in caplog.text


def test_keyboard_interrupt_propagates_and_loop_is_reusable(any_loop):
    out = []

    def interrupt():
        raise KeyboardInterrupt

    any_loop.call_soon(interrupt)
    any_loop.call_soon(out.append, 1)
    with pytest.raises(KeyboardInterrupt):
        any_loop.run_forever()
    assert not any_loop.is_running()
    any_loop.call_soon(any_loop.stop)
    any_loop.run_forever()
    assert out == [1]


def test_exception_handler_api(any_loop):
    handler = lambda loop, ctx: None  # noqa: E731
    any_loop.set_exception_handler(handler)
    assert any_loop.get_exception_handler() is handler
    with pytest.raises(TypeError):
        any_loop.set_exception_handler(42)


# ---- threads -------------------------------------------------------------------

def test_call_soon_threadsafe_wakes_a_sleeping_loop(any_loop):
    results = []

    def worker():
        for i in range(200):
            any_loop.call_soon_threadsafe(results.append, i)
        any_loop.call_soon_threadsafe(any_loop.stop)

    # The loop has nothing to do but sleep until the other thread wakes it.
    any_loop.call_later(3600, print)
    t = threading.Timer(0.05, worker)
    t.start()
    t0 = time.monotonic()
    any_loop.run_forever()
    t.join()
    assert results == list(range(200))
    assert time.monotonic() - t0 < 10


def test_call_soon_threadsafe_from_many_threads(any_loop):
    n_threads, per_thread = 4, 1000
    got = []
    done = threading.Barrier(n_threads + 1)

    def worker(k):
        for i in range(per_thread):
            any_loop.call_soon_threadsafe(got.append, (k, i))
        done.wait()

    async def main():
        threads = [threading.Thread(target=worker, args=(k,)) for k in range(n_threads)]
        for t in threads:
            t.start()
        await any_loop.run_in_executor(None, done.wait)
        for t in threads:
            t.join()
        await asyncio.sleep(0.01)

    any_loop.run_until_complete(main())
    assert len(got) == n_threads * per_thread
    for k in range(n_threads):
        assert [i for kk, i in got if kk == k] == list(range(per_thread))


def _os_threads():
    return len(os.listdir("/proc/self/task"))


def test_close_joins_completion_threads(aloop):
    before = _os_threads()

    async def main():
        await aloop.getaddrinfo("localhost", 80)

    aloop.run_until_complete(main())
    assert aloop.stats()["threads_started"] >= 1
    aloop.run_until_complete(aloop.shutdown_default_executor())
    aloop.close()
    # shutdown_default_executor's own helper thread (3.12+) may still be on
    # its way out: give it a moment, then count.
    deadline = time.monotonic() + 5
    while _os_threads() > before and time.monotonic() < deadline:
        time.sleep(0.01)
    assert _os_threads() <= before


def test_loops_are_freed(aloop):
    aloop.close()
    ref = weakref.ref(aloop)
    del aloop
    loops = [aioloop.new_event_loop() for _ in range(20)]
    refs = [weakref.ref(lp) for lp in loops]
    for lp in loops:
        lp.run_until_complete(asyncio.sleep(0))
        lp.close()
    del loops, lp
    gc.collect()
    assert all(r() is None for r in refs)


def test_unclosed_loop_warns(recwarn):
    lp = aioloop.new_event_loop()
    del lp
    gc.collect()
    assert any("unclosed event loop" in str(w.message) for w in recwarn.list)


# ---- executors ---------------------------------------------------------------

async def test_run_in_executor():
    loop = asyncio.get_running_loop()
    assert await loop.run_in_executor(None, sum, [1, 2, 3]) == 6


async def test_set_default_executor_and_shutdown():
    import concurrent.futures
    loop = asyncio.get_running_loop()
    ex = concurrent.futures.ThreadPoolExecutor(2)
    loop.set_default_executor(ex)
    assert await loop.run_in_executor(None, threading.current_thread) is not None
    await loop.shutdown_default_executor()
    with pytest.raises(RuntimeError):
        loop.run_in_executor(None, print)


# ---- tasks -------------------------------------------------------------------

async def test_create_task_name_and_context():
    loop = asyncio.get_running_loop()
    var = contextvars.ContextVar("v", default=0)
    ctx = contextvars.copy_context()
    ctx.run(var.set, 7)

    async def read():
        return var.get()

    t = loop.create_task(read(), name="reader", context=ctx)
    assert t.get_name() == "reader"
    assert await t == 7


async def test_task_factory():
    loop = asyncio.get_running_loop()
    made = []

    def factory(lp, coro, **kw):
        made.append(coro)
        return asyncio.Task(coro, loop=lp, **kw)

    loop.set_task_factory(factory)
    assert loop.get_task_factory() is factory
    try:
        assert await loop.create_task(asyncio.sleep(0, "x")) == "x"
    finally:
        loop.set_task_factory(None)
    assert len(made) == 1
    with pytest.raises(TypeError):
        loop.set_task_factory(42)


async def test_taskgroup_timers_and_gather():
    async def work(i):
        await asyncio.sleep(0.001 * (i % 5))
        return i

    async with asyncio.TaskGroup() as tg:
        tasks = [tg.create_task(work(i)) for i in range(100)]
    assert [t.result() for t in tasks] == list(range(100))
    assert await asyncio.gather(*(work(i) for i in range(10))) == list(range(10))


async def test_wait_for_timeout():
    with pytest.raises(asyncio.TimeoutError):
        await asyncio.wait_for(asyncio.sleep(10), 0.01)


async def test_shutdown_asyncgens():
    loop = asyncio.get_running_loop()
    closed = []

    async def agen():
        try:
            yield 1
            yield 2
        finally:
            closed.append(True)

    g = agen()
    assert await g.__anext__() == 1
    await loop.shutdown_asyncgens()
    assert closed == [True]


# ---- debug mode ---------------------------------------------------------------

def test_debug_slow_callback_is_logged(any_loop, caplog):
    any_loop.set_debug(True)
    any_loop.slow_callback_duration = 0.01
    any_loop.call_soon(time.sleep, 0.03)
    any_loop.call_soon(any_loop.stop)
    with caplog.at_level(logging.WARNING, logger="asyncio"):
        any_loop.run_forever()
    assert "Executing" in caplog.text and "took" in caplog.text


def test_debug_handles_carry_source_traceback(any_loop):
    any_loop.set_debug(True)
    h = any_loop.call_soon(print)
    assert h._source_traceback
    assert h._source_traceback[-1][2] == "test_debug_handles_carry_source_traceback"
    h.cancel()


def _callback_part(text):
    # "<Handle f(1, 'two') at file:line created at file:line>" -> "f(1, 'two') at file:line"
    return text.split(" ", 1)[1].split(" created at ")[0].rstrip(">")


@pytest.mark.parametrize("debug", [False, True])
def test_handle_repr_and_error_message_show_arguments_as_asyncio(any_loop, debug):
    """Callback arguments in a handle's repr and in the "Exception in
    callback" message: asyncio 3.13 shows them in debug mode only
    (format_helpers gained a debug parameter); earlier versions always."""
    def boom(*args):
        raise ZeroDivisionError

    any_loop.set_debug(debug)
    theirs = asyncio.Handle(boom, (1, "two"), any_loop)
    ours = any_loop.call_soon(boom, 1, "two")
    assert _callback_part(repr(ours)) == _callback_part(repr(theirs))
    if debug or sys.version_info < (3, 13):
        assert "boom(1, 'two')" in repr(ours)
    seen = []
    any_loop.set_exception_handler(lambda lp, ctx: seen.append(ctx["message"]))
    theirs._run()
    any_loop.run_until_complete(asyncio.sleep(0))
    assert len(seen) == 2 and seen[0] == seen[1]


def test_debug_non_threadsafe_call_from_other_thread(any_loop):
    any_loop.set_debug(True)
    errors = []

    def other():
        try:
            any_loop.call_soon(print)
        except RuntimeError as exc:
            errors.append(exc)
        any_loop.call_soon_threadsafe(any_loop.stop)

    any_loop.call_soon(lambda: threading.Thread(target=other).start())
    any_loop.run_forever()
    assert errors and "Non-thread-safe" in str(errors[0])


# ---- name resolution ------------------------------------------------------------

@pytest.mark.parametrize("host,port,kw", [
    ("localhost", 80, {}),
    ("localhost", "http", {"type": socket.SOCK_STREAM}),
    ("127.0.0.1", 8080, {}),
    ("::1", 0, {"family": socket.AF_INET6}),
    (None, 0, {"flags": socket.AI_PASSIVE}),
    ("localhost", None, {"family": socket.AF_INET, "proto": socket.IPPROTO_TCP}),
    (b"localhost", b"80", {}),
])
async def test_getaddrinfo_matches_socket_module(host, port, kw):
    loop = asyncio.get_running_loop()
    expected = socket.getaddrinfo(host, port, **kw)
    assert await loop.getaddrinfo(host, port, **kw) == expected


async def test_getaddrinfo_errors_match_socket_module():
    loop = asyncio.get_running_loop()
    with pytest.raises(socket.gaierror) as real:
        socket.getaddrinfo("no-such-host.invalid", 80)
    with pytest.raises(socket.gaierror) as ours:
        await loop.getaddrinfo("no-such-host.invalid", 80)
    assert ours.value.errno == real.value.errno
    with pytest.raises(OSError):
        await loop.getaddrinfo("localhost", 1.5)


@pytest.mark.parametrize("sockaddr,flags", [
    (("127.0.0.1", 80), 0),
    (("127.0.0.1", 80), socket.NI_NUMERICHOST | socket.NI_NUMERICSERV),
    (("::1", 22, 0, 0), 0),
])
async def test_getnameinfo_matches_socket_module(sockaddr, flags):
    loop = asyncio.get_running_loop()
    assert await loop.getnameinfo(sockaddr, flags) == socket.getnameinfo(sockaddr, flags)


async def test_getnameinfo_bad_input():
    loop = asyncio.get_running_loop()
    with pytest.raises(TypeError):
        await loop.getnameinfo("127.0.0.1")


async def test_resolver_runs_concurrently_without_blocking_the_loop():
    loop = asyncio.get_running_loop()
    ticks = []
    tick = loop.call_later(0, ticks.append, 1)
    results = await asyncio.gather(*(loop.getaddrinfo("localhost", i) for i in range(50)))
    assert len(results) == 50 and ticks == [1]
    tick.cancel()


async def test_cancelled_resolution_is_dropped():
    loop = asyncio.get_running_loop()
    fut = asyncio.ensure_future(loop.getaddrinfo("localhost", 80))
    await asyncio.sleep(0)
    if not fut.cancel():
        # Already resolved: asyncio's executor thread can win this race (seen
        # once on 3.14 in CI); then there is nothing to drop.
        assert fut.result()
        return
    with pytest.raises(asyncio.CancelledError):
        await fut
    await asyncio.sleep(0.05)


def test_close_with_resolution_in_flight(aloop):
    async def main():
        # Raw resolver futures (no tasks, so nothing pending is reported).
        futs = [aloop._getaddrinfo(b"localhost", str(i).encode(), 0, 0, 0, 0)
                for i in range(20)]
        await asyncio.sleep(0)
        return futs

    aloop.run_until_complete(main())
    aloop.close()
    assert aloop.stats() == {}


# ---- the Python face ------------------------------------------------------------

def test_loop_is_an_abstract_event_loop(aloop):
    assert isinstance(aloop, asyncio.AbstractEventLoop)
    assert aloop.engine in ("threads", "uring")
    assert "Loop" in repr(aloop)


@pytest.mark.parametrize("engine", ENGINES)
def test_engine_survives_close(engine):
    """loop.engine names the engine the loop ran on, before and after close()."""
    loop = aioloop.new_event_loop(engine=engine)
    assert loop.engine == engine
    loop.run_until_complete(asyncio.sleep(0))
    loop.close()
    assert loop.engine == engine


def test_run_helper():
    async def main():
        loop = asyncio.get_running_loop()
        assert isinstance(loop, aioloop.Loop)
        await asyncio.sleep(0)
        return "ok"

    assert aioloop.run(main()) == "ok"
    # What asyncio.Runner raises for a non-awaitable: ValueError up to 3.13,
    # TypeError from 3.14 on.
    with pytest.raises(TypeError if sys.version_info >= (3, 14) else ValueError):
        aioloop.run(lambda: None)


def test_run_debug_and_loop_kwargs():
    async def main():
        loop = asyncio.get_running_loop()
        # Completion threads for sockets exist on the threads engine only.
        return loop.get_debug(), loop.stats()["threads"], loop.engine

    debug, threads, engine = aioloop.run(main(), debug=True, threads=3)
    assert debug is True and threads == (3 if engine == "threads" else 0)


def test_asyncio_run_with_loop_factory():
    async def main():
        return type(asyncio.get_running_loop())

    with asyncio.Runner(loop_factory=aioloop.new_event_loop) as r:
        assert r.run(main()) is aioloop.Loop
    if sys.version_info >= (3, 12):
        assert asyncio.run(main(), loop_factory=aioloop.new_event_loop) is aioloop.Loop


@pytest.mark.skipif(not hasattr(aioloop, "EventLoopPolicy"),
                    reason="this Python has no event loop policies (removed in 3.16)")
def test_policy_and_install():
    import warnings
    old = asyncio.get_event_loop_policy()
    try:
        asyncio.set_event_loop_policy(aioloop.EventLoopPolicy())
        loop = asyncio.new_event_loop()
        assert isinstance(loop, aioloop.Loop)
        loop.close()
        with warnings.catch_warnings(record=True) as w:
            warnings.simplefilter("always")
            aioloop.install()
        assert isinstance(asyncio.get_event_loop_policy(), aioloop.EventLoopPolicy)
        if sys.version_info >= (3, 12):
            assert any(issubclass(x.category, DeprecationWarning) for x in w)
    finally:
        asyncio.set_event_loop_policy(old)


def test_bad_thread_count():
    with pytest.raises(ValueError):
        aioloop.new_event_loop(threads=-1)
    with pytest.raises(TypeError):
        aioloop.new_event_loop(threads="two")
