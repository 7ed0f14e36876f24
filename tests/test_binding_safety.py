"""The binding's safety rules (the CPython binding layer, _core/*.c):

- a failure of the loop's own work for one connection (a MemoryError making
  the bytes of a read, the accepted socket's objects) ends that connection
  as asyncio ends one whose recv() raised, and never the loop;
- engine-touching methods refuse to run off the loop's thread while it runs;
- Handle/TimerHandle subclasses, and no reference leaked per Handle();
- a loop dropped unclosed frees its descriptors and threads;
- whether the transport hands its socket off is an explicit flag.

Faults are injected with _core._fault_set("pyobj", n): the nth Python
object the completion handlers make fails with MemoryError.  On asyncio the
same failure is made by a recv()/recv_into() that raises MemoryError."""
import ast
import asyncio
import gc
import os
import socket
import subprocess
import sys
import textwrap
import threading
import weakref

import pytest

import aioloop
from aioloop import _core
from conftest import ENGINES, FACTORIES

LOOPS = sorted(FACTORIES)
AIOLOOPS = [name for name in LOOPS if name != "asyncio"]


@pytest.fixture(autouse=True)
def _no_fault_left_armed():
    yield
    _core._fault_reset()


def _arm_read_failure(loop, monkeypatch, server_sock):
    """Makes the next read of the server's connection fail with MemoryError."""
    if isinstance(loop, aioloop.Loop):
        _core._fault_set("pyobj", 1)
        return
    fd = server_sock.fileno()
    armed = [True]
    for name in ("recv", "recv_into"):
        orig = getattr(socket.socket, name)

        def failing(self, *args, _orig=orig):
            if armed and self.fileno() == fd:
                armed.clear()
                raise MemoryError
            return _orig(self, *args)

        monkeypatch.setattr(socket.socket, name, failing)


class _Echo(asyncio.Protocol):
    def __init__(self, log):
        self.log = log

    def connection_made(self, transport):
        self.transport = transport
        self.log.append(self)
        self.lost = asyncio.get_running_loop().create_future()

    def data_received(self, data):
        self.transport.write(data)

    def connection_lost(self, exc):
        self.lost.set_result(exc)


class _BufferedEcho(asyncio.BufferedProtocol, _Echo):
    def get_buffer(self, hint):
        self.buf = bytearray(64 * 1024)
        return self.buf

    def buffer_updated(self, n):
        self.transport.write(bytes(self.buf[:n]))


async def _echo_once(port, payload=b"hello"):
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(payload)
        return await asyncio.wait_for(reader.readexactly(len(payload)), 10)
    finally:
        writer.close()


@pytest.mark.parametrize("kind", ["data", "buffered"])
@pytest.mark.parametrize("name", LOOPS)
def test_failed_read_object_ends_that_connection_only(name, kind, monkeypatch):
    """Item 3: the bytes of a read (or a BufferedProtocol's size hint) that
    cannot be made: asyncio's 'Fatal read error on socket transport' goes to
    the exception handler, connection_lost(MemoryError) follows, and the
    server goes on echoing for the next connection.  Before: the
    MemoryError came out of run_until_complete."""
    loop = FACTORIES[name]()
    errors = []
    loop.set_exception_handler(lambda lp, ctx: errors.append(ctx))
    protos = []
    proto = _Echo if kind == "data" else _BufferedEcho

    async def main():
        server = await loop.create_server(lambda: proto(protos), "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        while not protos:
            await asyncio.sleep(0.01)
        first = protos[0]
        _arm_read_failure(loop, monkeypatch, first.transport.get_extra_info("socket"))
        writer.write(b"x")
        exc = await asyncio.wait_for(first.lost, 10)
        try:
            await asyncio.wait_for(reader.read(), 10)   # closed by the server
        except ConnectionResetError:
            pass
        writer.close()
        assert await _echo_once(port) == b"hello"
        server.close()
        await server.wait_closed()
        return exc

    try:
        exc = loop.run_until_complete(main())
    finally:
        loop.close()
    assert isinstance(exc, MemoryError)
    fatal = [c for c in errors if c["message"] == "Fatal read error on socket transport"]
    assert len(fatal) == 1, errors
    assert isinstance(fatal[0]["exception"], MemoryError)
    assert fatal[0]["protocol"] is protos[0]


@pytest.mark.parametrize("engine", ENGINES)
def test_failed_accept_object_keeps_the_server(engine):
    """Item 3: the accepted connection's objects cannot be made: the
    exception handler hears 'socket.accept() out of system resource' with
    the MemoryError, that connection is closed, and the server accepts the
    next one (after asyncio's retry delay).  Before: run_until_complete
    raised MemoryError."""
    loop = aioloop.new_event_loop(engine=engine)
    errors = []
    loop.set_exception_handler(lambda lp, ctx: errors.append(ctx))
    protos = []

    async def main():
        server = await loop.create_server(lambda: _Echo(protos), "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        _core._fault_set("pyobj", 1)
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            assert await asyncio.wait_for(reader.read(), 10) == b""
        except ConnectionResetError:
            pass
        writer.close()
        assert _core._fault_failed("pyobj") == 1
        assert await asyncio.wait_for(_echo_once(port), 20) == b"hello"
        server.close()
        await server.wait_closed()

    try:
        loop.run_until_complete(main())
    finally:
        loop.close()
    assert [c["message"] for c in errors] == ["socket.accept() out of system resource"]
    assert isinstance(errors[0]["exception"], MemoryError)
    assert len(protos) == 1   # the failed connection never got a protocol


# ---- item 4: one thread rule -------------------------------------------------

THREAD_MSG = "Non-thread-safe operation invoked on an event loop other than the current one"

OFF_THREAD_CALLS = {
    "write": lambda loop, tr, rsock: tr.write(b"from another thread"),
    "writelines": lambda loop, tr, rsock: tr.writelines([b"from another thread"]),
    "write_eof": lambda loop, tr, rsock: tr.write_eof(),
    "close": lambda loop, tr, rsock: tr.close(),
    "abort": lambda loop, tr, rsock: tr.abort(),
    "pause_reading": lambda loop, tr, rsock: tr.pause_reading(),
    "set_write_buffer_limits": lambda loop, tr, rsock: tr.set_write_buffer_limits(10),
    "add_reader": lambda loop, tr, rsock: loop.add_reader(rsock, print),
    "remove_reader": lambda loop, tr, rsock: loop.remove_reader(rsock),
    "listener.pause": lambda loop, tr, rsock: next(iter(loop._listeners.values())).pause(),
    "resolver": lambda loop, tr, rsock: loop._getaddrinfo(b"localhost", b"80", 0, 0, 0, 0),
}


@pytest.mark.parametrize("call", sorted(OFF_THREAD_CALLS))
@pytest.mark.parametrize("engine", ENGINES)
def test_engine_methods_refuse_other_threads(engine, call):
    """Item 4: transport.write() (and every other engine-touching method)
    called from a second thread while the loop runs raises asyncio's
    RuntimeError and changes nothing: the bytes the loop thread writes
    arrive once each, in order, and the connection stays open.  Before:
    the call went through, racing the loop thread in the engine."""
    loop = aioloop.new_event_loop(engine=engine)
    received = bytearray()
    lost = []

    class Sink(asyncio.Protocol):
        def data_received(self, data):
            received.extend(data)

        def connection_lost(self, exc):
            lost.append(exc)

    rsock, wsock = socket.socketpair()

    async def main():
        server = await loop.create_server(Sink, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        tr, _ = await loop.create_connection(asyncio.Protocol, "127.0.0.1", port)
        outcome = []

        def other_thread():
            try:
                OFF_THREAD_CALLS[call](loop, tr, rsock)
                outcome.append(None)
            except BaseException as exc:  # noqa: BLE001 - the outcome is the test
                outcome.append(exc)

        th = threading.Thread(target=other_thread)
        th.start()
        while th.is_alive():
            await asyncio.sleep(0.001)   # the loop runs (and waits) meanwhile
        payload = bytes(range(256)) * 64
        for i in range(0, len(payload), 1024):
            tr.write(payload[i:i + 1024])
        while len(received) < len(payload) and not lost:
            await asyncio.sleep(0.01)
        assert not tr.is_closing()
        tr.close()
        server.close()
        await server.wait_closed()
        return outcome, payload

    try:
        outcome, payload = loop.run_until_complete(main())
    finally:
        loop.close()
        rsock.close()
        wsock.close()
    assert len(outcome) == 1
    assert isinstance(outcome[0], RuntimeError), outcome
    assert str(outcome[0]) == THREAD_MSG
    assert bytes(received) == payload


@pytest.mark.parametrize("engine", ENGINES)
def test_a_loop_not_running_may_be_used_from_another_thread(engine):
    """asyncio's rule: the thread is checked only while the loop runs."""
    loop = aioloop.new_event_loop(engine=engine)
    rsock, wsock = socket.socketpair()
    errors = []

    def other_thread():
        try:
            loop.add_reader(rsock, print)
            loop.remove_reader(rsock)
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)

    try:
        th = threading.Thread(target=other_thread)
        th.start()
        th.join()
    finally:
        loop.close()
        rsock.close()
        wsock.close()
    assert errors == []


# ---- item 8: Handle and TimerHandle subclasses -------------------------------

@pytest.mark.parametrize("name", LOOPS)
def test_handle_subclasses_are_made_and_initialised(name):
    """Item 8: MyHandle(...) is a MyHandle whose __init__ ran, as on
    asyncio.  Before: a plain Handle, __init__ never called."""
    loop = FACTORIES[name]()
    base = (aioloop if isinstance(loop, aioloop.Loop) else asyncio)
    ran = []

    class MyHandle(base.Handle):
        def __init__(self, callback, args, loop, tag):
            super().__init__(callback, args, loop)
            self.tag = tag

    class MyTimer(base.TimerHandle):
        def __init__(self, when, callback, args, loop):
            super().__init__(when, callback, args, loop)
            self.tag = "timer"

    try:
        h = MyHandle(ran.append, ("h",), loop, "mine")
        t = MyTimer(5.0, ran.append, ("t",), loop)
        assert type(h) is MyHandle and h.tag == "mine"
        assert type(t) is MyTimer and t.tag == "timer" and t.when() == 5.0
        h._run()
        t._run()
        assert ran == ["h", "t"]
        assert repr(h).startswith("<MyHandle")
    finally:
        loop.close()


@pytest.mark.skipif(sys.version_info >= (3, 12), reason="() is immortal from 3.12 on")
def test_handle_with_no_args_leaks_no_reference():
    """Item 8: Handle(cb, None, loop) took one reference to () and never
    gave it back (10,000 handles: +10,000 on the refcount of ())."""
    loop = aioloop.new_event_loop()
    try:
        before = sys.getrefcount(())
        for _ in range(10000):
            aioloop.Handle(print, None, loop)
            aioloop.TimerHandle(1.0, print, None, loop)
        grown = sys.getrefcount(()) - before
    finally:
        loop.close()
    assert grown < 100


# ---- item 9: a loop dropped unclosed -----------------------------------------

_DROPPED_LOOPS = textwrap.dedent("""
    import asyncio, gc, os, socket, sys, time, warnings
    import aioloop
    from aioloop import _core
    engine, kind = sys.argv[1], sys.argv[2]
    warnings.simplefilter("ignore", ResourceWarning)

    def counts():
        return len(os.listdir("/proc/self/fd")), len(os.listdir("/proc/self/task"))

    gc.collect()
    before = counts()
    for _ in range(5):
        loop = _core.Loop(engine=engine) if kind == "core" else aioloop.new_event_loop(engine=engine)
        srv = socket.socket()
        srv.bind(("127.0.0.1", 0))
        srv.listen()
        srv.setblocking(False)
        listener = _core.Listener(loop, srv.fileno(), lambda *a: None)
        listener.resume()
        a, b = socket.socketpair()
        a.setblocking(False)
        transport = _core.StreamTransport(loop, a, asyncio.Protocol())
        srv.close()
        b.close()
        del loop, listener, transport, a
    gc.collect()
    # A joined thread's /proc entry may outlive pthread_join() a moment.
    deadline = time.monotonic() + 5
    while counts() != before and time.monotonic() < deadline:
        time.sleep(0.05)
        gc.collect()
    print([before, counts()])
""")


@pytest.mark.parametrize("kind", ["core", "aioloop"])
@pytest.mark.parametrize("engine", ENGINES)
def test_dropped_loop_frees_descriptors_and_threads(engine, kind):
    """Item 9: five loops, each with a listener and a transport, dropped
    without close(): after gc.collect() no descriptor and no thread is left
    (the core's finalizer closes it, as asyncio's __del__ does).  Before, a
    bare _core.Loop kept them all: uring +40 descriptors, threads +45 and
    5 threads."""
    out = subprocess.run([sys.executable, "-c", _DROPPED_LOOPS, engine, kind],
                         capture_output=True, text=True, timeout=120,
                         env=dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path)))
    assert out.returncode == 0, out.stderr
    (fds, threads), (fds_after, threads_after) = ast.literal_eval(out.stdout.strip())
    assert (fds_after, threads_after) == (fds, threads)


@pytest.mark.parametrize("engine", ENGINES)
def test_dropped_loop_warns_as_asyncio_does(engine):
    loop = _core.Loop(engine=engine)
    with pytest.warns(ResourceWarning, match="unclosed event loop"):
        del loop
        gc.collect()


# ---- item 10: who can see the socket is a flag, not a reference count ---------

@pytest.mark.parametrize("name", LOOPS)
def test_socket_seen_through_a_weak_reference_is_closed_with_the_connection(name):
    """Item 10: a server's connection whose socket object someone took from
    `transport._sock` and keeps only weakly: right after connection_lost the
    socket reads closed, as on asyncio.  Before, the transport judged by
    Py_REFCNT(sock) > 1 that nobody could see it and left it open until the
    engine's CLOSE came back."""
    loop = FACTORIES[name]()
    seen = []

    class Closer(asyncio.Protocol):
        def connection_made(self, transport):
            self.transport = transport
            self.sock_ref = weakref.ref(transport._sock)

        def data_received(self, data):
            self.transport.close()
            # Runs right after the _call_connection_lost that close() scheduled.
            loop.call_soon(self.look)

        def look(self):
            sock = self.sock_ref()
            seen.append(-1 if sock is None else sock.fileno())

    async def main():
        server = await loop.create_server(Closer, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"bye")
        assert await asyncio.wait_for(reader.read(), 10) == b""
        writer.close()
        while not seen:
            await asyncio.sleep(0.01)
        server.close()
        await server.wait_closed()

    try:
        loop.run_until_complete(main())
    finally:
        loop.close()
    assert seen == [-1]


@pytest.mark.parametrize("engine", ENGINES)
def test_private_socket_of_an_accepted_connection_is_closed(engine):
    """The accept path's own socket (nobody asked for it) is still closed
    once the connection is lost, without the placeholder."""
    loop = aioloop.new_event_loop(engine=engine)
    transports = []

    class Closer(asyncio.Protocol):
        def connection_made(self, transport):
            transports.append(transport)
            self.lost = loop.create_future()

        def data_received(self, data):
            transports[0].close()

        def connection_lost(self, exc):
            self.lost.set_result(None)

    async def main():
        protos = []
        server = await loop.create_server(lambda: protos.append(Closer()) or protos[-1],
                                          "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"bye")
        assert await asyncio.wait_for(reader.read(), 10) == b""
        writer.close()
        await protos[0].lost
        for _ in range(100):   # CLOSE comes back within a few iterations
            if transports[0]._sock is None:
                break
            await asyncio.sleep(0.01)
        server.close()
        await server.wait_closed()

    try:
        loop.run_until_complete(main())
    finally:
        loop.close()
    assert transports[0]._sock is None
