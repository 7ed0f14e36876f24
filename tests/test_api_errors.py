"""Bad input to the loop and to the stream transports gets what asyncio's own
loop gives: the same exception type, at the same point, or the same
acceptance.  Every async test runs on both aioloop engines and on
asyncio.SelectorEventLoop (conftest.py); the synchronous ones take
`any_loop`.  The differences aioloop keeps on purpose are listed in
docs/compatibility.md ("Bad input: deliberate differences from asyncio")."""
import asyncio
import decimal
import fractions
import math
import os
import socket
import subprocess
import sys

import pytest

import aioloop
from conftest import FACTORIES


def noop(*args):
    pass


# ---- the readiness API's descriptor argument ---------------------------------

class NoFileno:
    pass


class FilenoRaises:
    def fileno(self):
        raise ValueError("closed")


class FilenoNotInt:
    def fileno(self):
        return "x"


class FilenoAs:
    """fileno() gives something int() takes, as selectors accepts."""

    def __init__(self, value):
        self.value = value

    def fileno(self):
        return self.value


def test_readiness_descriptor_arguments(any_loop):
    loop = any_loop
    add = (loop.add_reader, loop.add_writer)
    remove = (loop.remove_reader, loop.remove_writer)
    for fd in (2**31, 2**64, 2**200, FilenoAs(2**64)):
        # Nothing can be registered under such a number: removing is False,
        # adding fails where epoll.register() does.
        for m in remove:
            assert m(fd) is False
        for m in add:
            with pytest.raises(OverflowError):
                m(fd, noop)
    bad = (-1, -2**64, NoFileno(), FilenoRaises(), FilenoNotInt(), FilenoAs(-1), FilenoAs(None),
           "3", 1.5, None)
    for fd in bad:
        for m in remove:
            with pytest.raises(ValueError):
                m(fd)
        for m in add:
            with pytest.raises(ValueError):
                m(fd, noop)
    a, b = socket.socketpair()
    try:
        for m in add:
            m(FilenoAs(str(a.fileno())), noop)
        assert loop.remove_reader(a) is True
        assert loop.remove_writer(a.fileno()) is True
        assert loop.remove_reader(a) is False
    finally:
        a.close()
        b.close()


@pytest.mark.parametrize("kind", sorted(FACTORIES))
def test_add_reader_far_descriptor_does_not_hang(kind):
    # aioloop grew its descriptor table by doubling an int: a number near
    # 2**31 overflowed it and add_reader() never returned.  Such numbers are
    # not open descriptors: OSError(EBADF), as epoll says on asyncio.
    factory = ("asyncio.SelectorEventLoop()" if kind == "asyncio"
               else f"aioloop.new_event_loop(engine={kind.split('-')[1]!r})")
    code = (
        "import asyncio, aioloop\n"
        f"loop = {factory}\n"
        "for fd in (2**31 - 2, 2**30 + 5, 10**6):\n"
        "    try:\n"
        "        loop.add_reader(fd, print)\n"
        "    except OSError as e:\n"
        "        print(type(e).__name__, e.errno)\n"
        "loop.close()\n"
    )
    root = os.path.dirname(os.path.dirname(aioloop.__file__))
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=30,
                       env=dict(os.environ, PYTHONPATH=root))
    assert p.returncode == 0, p.stderr
    assert p.stdout.split("\n") == ["OSError 9"] * 3 + [""]


# ---- timers: NaN, infinities, big numbers, Python's arithmetic ------------------

def _run_one_iteration(loop):
    loop.call_soon(loop.stop)
    loop.run_forever()


def test_timer_deadlines_nan_infinities_and_big_ints(any_loop):
    loop = any_loop
    # asyncio 3.13's run loop raises ValueError on a NaN deadline at the top
    # of its heap (aioloop runs it at once on every version).
    run_nan = not (isinstance(loop, asyncio.SelectorEventLoop) and sys.version_info >= (3, 13))
    at_once = [
        (loop.call_later, math.nan), (loop.call_at, math.nan),
        (loop.call_later, -math.inf), (loop.call_at, -math.inf), (loop.call_at, -2**1100),
        (loop.call_later, -1e308), (loop.call_at, decimal.Decimal(-5)),
    ]
    never = [(loop.call_later, math.inf), (loop.call_at, math.inf), (loop.call_at, 2**1100),
             (loop.call_later, 1e308), (loop.call_at, decimal.Decimal(10**20))]
    for method, when in at_once + never:
        ran = []
        handle = method(when, ran.append, "ran")
        if isinstance(when, float) and math.isnan(when) and not run_nan:
            handle.cancel()
            continue
        _run_one_iteration(loop)
        handle.cancel()
        assert ran == (["ran"] if (method, when) in at_once else []), (method.__name__, when)


def test_call_later_adds_the_delay_as_python_does(any_loop):
    loop = any_loop
    with pytest.raises(TypeError):
        loop.call_later(decimal.Decimal(1), noop)   # float + Decimal
    with pytest.raises(TypeError):
        loop.call_later("1", noop)
    with pytest.raises(TypeError):
        loop.call_later(None, noop)
    with pytest.raises(OverflowError):
        loop.call_later(2**1100, noop)
    loop.call_later(fractions.Fraction(1, 2), noop).cancel()
    loop.call_later(True, noop).cancel()
    with pytest.raises(TypeError):
        loop.call_at(None, noop)


def test_closed_loop_is_checked_before_the_deadline(any_loop):
    loop = any_loop
    loop.close()
    for when in ("x", math.nan, 2**1100, object()):
        with pytest.raises(RuntimeError):
            loop.call_at(when, noop)
    with pytest.raises(TypeError):   # time() + "x" comes first, as on asyncio
        loop.call_later("x", noop)


def test_callback_and_deadline_by_keyword(any_loop):
    loop = any_loop
    ran = []
    loop.call_soon(callback=ran.append)   # called with no argument: fails, reported
    loop.call_soon(ran.append, "soon", context=None)
    loop.call_soon_threadsafe(callback=noop)
    loop.call_later(delay=0, callback=noop)
    loop.call_at(when=loop.time(), callback=noop)
    loop.call_later(0, callback=noop)
    _run_one_iteration(loop)
    _run_one_iteration(loop)
    assert ran == ["soon"]
    assert len(loop.unexpected_errors) == 1   # ran.append() without its argument
    with pytest.raises(TypeError):
        loop.call_soon(noop, callback=noop)
    with pytest.raises(TypeError):
        loop.call_later(0)
    with pytest.raises(TypeError):
        loop.call_at(callback=noop)
    with pytest.raises(TypeError):
        loop.call_soon(noop, bogus=1)


# ---- a closed loop is checked first ------------------------------------------

def first_step(coro):
    """What a coroutine raises before it first suspends ("suspended" if it
    does not raise, "done" if it finishes)."""
    try:
        coro.send(None)
    except StopIteration:
        return "done"
    except BaseException as exc:   # noqa: B902 - the outcome is the point
        return exc
    finally:
        coro.close()
    return "suspended"


def test_closed_loop_coroutines_refuse_before_looking_at_arguments(any_loop):
    loop = any_loop
    loop.close()
    calls = [
        loop.getaddrinfo("127.0.0.1", "no-such-service"),
        loop.getaddrinfo("127.0.0.1", 80),
        loop.getaddrinfo(None, None, family="x"),
        loop.getnameinfo(5),
        loop.getnameinfo(("127.0.0.1", 80)),
        loop.create_connection(asyncio.Protocol, "127.0.0.1", "no-such-service"),
    ]
    for coro in calls:
        outcome = first_step(coro)
        assert isinstance(outcome, RuntimeError), (coro, outcome)
        assert str(outcome) == "Event loop is closed"


async def test_resolution_after_default_executor_shutdown_is_refused():
    # asyncio resolves in the default executor and refuses once it was shut
    # down; aioloop's resolver threads follow the same rule.
    loop = asyncio.get_running_loop()
    await loop.shutdown_default_executor()
    with pytest.raises(RuntimeError):
        await loop.getaddrinfo("127.0.0.1", 80)
    with pytest.raises(RuntimeError):
        await loop.getnameinfo(("127.0.0.1", 80))
