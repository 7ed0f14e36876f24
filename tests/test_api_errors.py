"""Bad input to the loop and to the stream transports gets what asyncio's own
loop gives: the same exception type, at the same point, or the same
acceptance.  Every async test runs on both aioloop engines and on
asyncio.SelectorEventLoop (conftest.py); the synchronous ones take
`any_loop`.  The differences aioloop keeps on purpose are listed in
docs/compatibility.md ("Bad input: deliberate differences from asyncio")."""
import array
import asyncio
import decimal
import fractions
import functools
import gc
import math
import os
import socket
import subprocess
import sys

import pytest

import aioloop
from conftest import FACTORIES

PY312 = sys.version_info >= (3, 12)


def noop(*args):
    pass


async def coro_fn(*args):
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


def test_debug_mode_refuses_the_callbacks_asyncio_refuses(any_loop):
    # asyncio's debug mode refuses what asyncio.iscoroutinefunction() says
    # is a coroutine function, a partial of one included; aioloop looked at
    # plain functions only.  Outside debug mode asyncio checks nothing, and
    # aioloop does not look through partials either.
    loop = any_loop
    partial = functools.partial(coro_fn, 1)
    calls = (lambda cb: loop.call_soon(cb), lambda cb: loop.call_soon_threadsafe(cb),
             lambda cb: loop.call_later(10, cb), lambda cb: loop.call_at(loop.time() + 10, cb))
    for call in calls:
        call(partial).cancel()
    loop.set_debug(True)
    for call in calls:
        with pytest.raises(TypeError):
            call(partial)
        call(functools.partial(noop, 1)).cancel()


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


async def test_getaddrinfo_flags_reach_the_socket_module_as_given():
    # aioloop tries a numeric lookup first with AI_NUMERICHOST or-ed in: as
    # an AddressInfo flag that turned -1 into 2047 (a valid value), and a
    # non-int made a TypeError before the socket module's own checks.
    loop = asyncio.get_running_loop()
    with pytest.raises(socket.gaierror):
        await loop.getaddrinfo("127.0.0.1", None, flags=-1)
    with pytest.raises(OverflowError):   # type is parsed before flags
        await loop.getaddrinfo(None, b"80", type=2**200, flags=decimal.Decimal(1))
    with pytest.raises(TypeError):
        await loop.getaddrinfo("127.0.0.1", 80, flags=1.5)


# ---- stream transports: a client connected to a server on the same loop ---------

class Sink(asyncio.Protocol):
    """The server side: keeps every byte the peer receives."""

    def __init__(self, received):
        self.received = received

    def data_received(self, data):
        self.received += data


class Client(asyncio.Protocol):
    def __init__(self):
        self.lost = asyncio.get_running_loop().create_future()
        self.calls = []

    def pause_writing(self):
        self.calls.append("pause_writing")

    def resume_writing(self):
        self.calls.append("resume_writing")

    def connection_lost(self, exc):
        self.lost.set_result(exc)


class Connection:
    """A client transport connected to a Sink server on this loop."""

    async def __aenter__(self):
        loop = asyncio.get_running_loop()
        self.received = bytearray()
        self.server = await loop.create_server(lambda: Sink(self.received), "127.0.0.1", 0)
        port = self.server.sockets[0].getsockname()[1]
        self.tr, self.pr = await loop.create_connection(Client, "127.0.0.1", port)
        return self

    async def __aexit__(self, *exc):
        self.tr.abort()
        await self.pr.lost
        self.server.close()
        await self.server.wait_closed()

    async def receive(self, n, timeout=10.0):
        """Waits until the server got n bytes, then a little longer so that
        any byte too many shows."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while len(self.received) < n and loop.time() < deadline:
            await asyncio.sleep(0.005)
        await asyncio.sleep(0.05)
        return bytes(self.received)


def capture_errors(loop):
    errors = []
    loop.set_exception_handler(lambda lp, ctx: errors.append(ctx))
    return errors


async def test_protocol_without_connection_made_leaves_no_transport():
    # asyncio's transport fails (AttributeError) when it schedules
    # connection_made; aioloop's had already started its stream by then and
    # kept it, with the socket, until the loop closed.
    loop = asyncio.get_running_loop()
    listener = socket.create_server(("127.0.0.1", 0))
    try:
        port = listener.getsockname()[1]
        gc.collect()
        before = sum(isinstance(o, asyncio.Transport) for o in gc.get_objects())
        with pytest.raises(AttributeError):
            await loop.create_connection(lambda: None, "127.0.0.1", port)
        await asyncio.sleep(0.05)
        gc.collect()
        assert sum(isinstance(o, asyncio.Transport) for o in gc.get_objects()) == before
    finally:
        listener.close()


# ---- writelines / write: what they take, all or nothing ----------------------

async def test_writelines_takes_every_bytes_like_object():
    # asyncio and uvloop send all five bytes; aioloop sent three, then
    # raised TypeError on the array.
    items = [b"a", bytearray(b"b"), memoryview(b"c"), array.array("h", [1])]
    expected = b"abc" + array.array("h", [1]).tobytes()
    async with Connection() as c:
        assert c.tr.writelines(items) is None
        assert await c.receive(len(expected)) == expected
    async with Connection() as c:
        c.tr.writelines(iter(items))   # any iterable
        assert await c.receive(len(expected)) == expected


async def test_writelines_is_all_or_nothing():
    def failing():
        yield b"early"
        raise ZeroDivisionError

    if sys.version_info >= (3, 15) and not isinstance(asyncio.get_running_loop(), aioloop.Loop):
        pytest.skip("asyncio 3.15 buffers the items before a bad one (aioloop keeps "
                    "nothing of a writelines() that fails)")
    bad_lists = [[b"a", "text", b"c"], [b"a", 7], 5]
    if sys.version_info < (3, 14):
        bad_lists.append([bytearray(b"a"), None])   # 3.14+ skips false items
    async with Connection() as c:
        for bad in bad_lists:
            with pytest.raises(TypeError):
                c.tr.writelines(bad)
        with pytest.raises(ZeroDivisionError):
            c.tr.writelines(failing())
        c.tr.write(b"end")
        assert await c.receive(3) == b"end"
        assert not c.tr.is_closing()


@pytest.mark.skipif(sys.version_info < (3, 14), reason="3.14 made writelines() skip false items")
async def test_writelines_skips_false_items_and_ignores_a_lost_connection():
    async with Connection() as c:
        assert c.tr.writelines([b"", None, b"ab", 0, bytearray(b"c"), ""]) is None
        assert await c.receive(3) == b"abc"
        c.tr.abort()
        await c.pr.lost
        # Lost: only the argument's truth is looked at, as asyncio 3.14 does.
        for anything in ([b"x", "text"], 5, (x for x in [1 / 1, "y"])):
            assert c.tr.writelines(anything) is None


async def test_writelines_non_contiguous_memoryview():
    # 3.11: b''.join() refuses it (TypeError, nothing sent); 3.12+: the
    # batch fails when sent (BufferError: a fatal error of the transport).
    loop = asyncio.get_running_loop()
    errors = capture_errors(loop)
    strided = memoryview(b"abcdef")[::2]
    async with Connection() as c:
        if PY312:
            assert c.tr.writelines([b"x", strided]) is None
            assert isinstance(await c.pr.lost, BufferError)
            assert [type(e.get("exception")) for e in errors] == [BufferError]
            assert await c.receive(1, timeout=0.2) == b""
        else:
            with pytest.raises(TypeError):
                c.tr.writelines([b"x", strided])
            c.tr.write(b"ok")
            assert await c.receive(2) == b"ok"
            assert errors == []


async def test_write_non_contiguous_memoryview_is_a_fatal_error():
    # asyncio's send() raises BufferError inside write(): reported to the
    # exception handler, and the connection is closed with it.  aioloop
    # raised BufferError from write() and kept the connection.
    loop = asyncio.get_running_loop()
    errors = capture_errors(loop)
    async with Connection() as c:
        assert c.tr.write(memoryview(b"abcdef")[::2]) is None
        assert isinstance(await c.pr.lost, BufferError)
        assert len(errors) == 1
        assert errors[0]["message"] == "Fatal write error on socket transport"
        assert isinstance(errors[0]["exception"], BufferError)
        assert await c.receive(1, timeout=0.2) == b""


async def test_write_type_check_is_asyncios():
    async with Connection() as c:
        # write() takes bytes, bytearray and memoryview only (writelines()
        # takes any buffer).
        for bad in ("text", 12, None, array.array("h", [1]), [b"x"]):
            with pytest.raises(TypeError):
                c.tr.write(bad)
        c.tr.write(memoryview(array.array("h", [1, 2])))   # a view of one is fine
        assert await c.receive(4) == array.array("h", [1, 2]).tobytes()


# ---- keywords, get_extra_info, write buffer limits ---------------------------

async def test_one_argument_methods_take_it_by_keyword():
    async with Connection() as c:
        c.tr.write(data=b"k")
        c.tr.writelines(list_of_data=[b"l"])
        c.tr.set_protocol(protocol=c.pr)
        assert c.tr.get_protocol() is c.pr
        with pytest.raises(TypeError):
            c.tr.write(payload=b"x")
        with pytest.raises(TypeError):
            c.tr.write()
        with pytest.raises(TypeError):
            c.tr.write(b"x", b"y")
        assert await c.receive(2) == b"kl"


async def test_get_extra_info_default_keyword():
    async with Connection() as c:
        assert c.tr.get_extra_info("no-such-key", default=5) == 5
        assert c.tr.get_extra_info("no-such-key", 6) == 6
        assert c.tr.get_extra_info(name="peername") == c.tr.get_extra_info("peername")
        with pytest.raises(TypeError):
            c.tr.get_extra_info()
        with pytest.raises(TypeError):
            c.tr.get_extra_info([])   # unhashable


async def test_set_write_buffer_limits_takes_real_numbers():
    async with Connection() as c:
        tr = c.tr
        cases = [
            ((1000.7, 10.2), (10.2, 1000.7)),
            ((None, 3.5), (3.5, 14.0)),
            ((1.5,), (0.0, 1.5)),
            ((math.inf, 0), (0, math.inf)),
            ((math.inf, math.inf), (math.inf, math.inf)),
            ((2**70,), (2**68, 2**70)),
            ((fractions.Fraction(9, 2),), (fractions.Fraction(1), fractions.Fraction(9, 2))),
            ((), (16384, 65536)),
        ]
        for args, limits in cases:
            assert tr.set_write_buffer_limits(*args) is None
            assert tr.get_write_buffer_limits() == limits
        tr.set_write_buffer_limits(low=2.5, high=10.0)
        assert tr.get_write_buffer_limits() == (2.5, 10.0)


async def test_set_write_buffer_limits_refuses_what_asyncio_refuses():
    async with Connection() as c:
        tr = c.tr
        tr.set_write_buffer_limits(100, 10)
        nan = math.nan
        cases = [
            ((nan,), ValueError), ((None, nan), ValueError), ((nan, 1), ValueError),
            ((math.inf,), ValueError),   # low = inf // 4 is NaN
            ((1, nan), ValueError), ((-1,), ValueError), ((None, -1), ValueError),
            ((10, 20), ValueError), ((-math.inf,), ValueError), ((-0.5,), ValueError),
            (("a",), TypeError), ((None, "a"), TypeError), ((1j,), TypeError),
            (([1],), TypeError),
        ]
        for args, exc in cases:
            with pytest.raises(exc):
                tr.set_write_buffer_limits(*args)
            assert tr.get_write_buffer_limits() == (10, 100), args   # unchanged
        with pytest.raises(TypeError):
            tr.set_write_buffer_limits(1, 2, 3)
        with pytest.raises(TypeError):
            tr.set_write_buffer_limits(hi=1)


async def test_float_marks_drive_flow_control():
    # A high mark of 0.5 pauses the protocol as soon as one byte waits, and
    # a low mark of 0.25 resumes it only when nothing does.
    async with Connection() as c:
        c.tr.set_write_buffer_limits(high=0.5, low=0.25)
        payload = b"x" * (8 * 1024 * 1024)
        c.tr.write(payload)
        assert c.pr.calls == ["pause_writing"]
        assert len(await c.receive(len(payload), timeout=30)) == len(payload)
        assert c.pr.calls == ["pause_writing", "resume_writing"]
        assert c.tr.get_write_buffer_size() == 0


def test_core_types_refuse_a_loop_that_was_never_initialized():
    # The core's stream and listener types take their loop as an argument: a
    # Loop whose __init__ never ran is a RuntimeError (it used to return NULL
    # without an exception: SystemError), anything else a TypeError.
    from aioloop import _core
    raw = _core.Loop.__new__(_core.Loop)
    with socket.socket() as s:
        with pytest.raises(RuntimeError, match="never initialized"):
            _core.Listener(raw, s.fileno(), print)
        with pytest.raises(RuntimeError, match="never initialized"):
            _core.StreamTransport(raw, s, asyncio.Protocol())
        with pytest.raises(TypeError, match="aioloop loop"):
            _core.Listener(object(), s.fileno(), print)
