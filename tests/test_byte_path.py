"""The read path at every size, on every way aioloop reads: the threads
engine's pool buffers, io_uring's provided-buffer ring (direct reads off),
io_uring's direct reads (the loop's recv straight into the bytes object or
the protocol's buffer; on for every read, and at the default threshold),
and asyncio's own loop for reference.  Every byte arrives once, in order
(sha256), through Protocol and BufferedProtocol (with buffers smaller than
a read, so direct reads are partial), under pause/resume, and a peer reset
in the middle of a large transfer is one connection_lost."""
import asyncio
import hashlib
import random
import socket

import pytest

import aioloop
from conftest import ENGINES

VARIANTS = ["asyncio"] + [f"aioloop-{e}" for e in ENGINES if e != "uring"]
if "uring" in ENGINES:
    VARIANTS += ["aioloop-uring", "aioloop-uring-ring-only", "aioloop-uring-direct-always"]
DIRECT_MIN = {"aioloop-uring-ring-only": "0", "aioloop-uring-direct-always": "1"}
SIZES = [1024, 16 * 1024, 100 * 1024, 1024 * 1024, 4 * 1024 * 1024]


@pytest.fixture(params=VARIANTS)
def variant_loop(request, monkeypatch):
    name = request.param
    if name == "asyncio":
        loop = asyncio.SelectorEventLoop()
    else:
        monkeypatch.setenv("AIOLOOP_DIRECT_MIN", DIRECT_MIN.get(name, "32768"))
        loop = aioloop.new_event_loop(engine=name.split("-")[1])
    errors = []
    loop.set_exception_handler(lambda lp, ctx: errors.append(ctx))
    yield loop
    loop.close()
    assert not errors, errors


class Sink(asyncio.Protocol):
    """Hashes what it receives; pauses reading now and then."""

    def __init__(self, loop, total, pauses):
        self.loop, self.total, self.pauses = loop, total, pauses
        self.digest = hashlib.sha256()
        self.received = 0
        self.done = loop.create_future()
        self.lost = loop.create_future()
        self.rnd = random.Random(3)

    def connection_made(self, transport):
        self.transport = transport

    def got(self, data):
        self.digest.update(data)
        self.received += len(data)
        if self.received >= self.total and not self.done.done():
            self.done.set_result(None)
        elif self.pauses and self.rnd.random() < 0.1:
            self.transport.pause_reading()
            self.loop.call_later(0.001, self.transport.resume_reading)

    def data_received(self, data):
        assert type(data) is bytes
        self.got(data)

    def connection_lost(self, exc):
        if not self.lost.done():
            self.lost.set_result(exc)


class BufferedSink(Sink, asyncio.BufferedProtocol):
    def __init__(self, loop, total, pauses, bufsize):
        super().__init__(loop, total, pauses)
        self.buf = bytearray(bufsize)
        self.hints = []

    def get_buffer(self, sizehint):
        self.hints.append(sizehint)
        return self.buf

    def buffer_updated(self, nbytes):
        assert 0 < nbytes <= len(self.buf)
        self.got(bytes(self.buf[:nbytes]))


def run_transfer(loop, make_protocol, size, chunk=256 * 1024):
    payload = random.Random(size).randbytes(size)

    async def main():
        made = loop.create_future()

        def factory():
            proto = make_protocol()
            made.set_result(proto)
            return proto

        server = await loop.create_server(factory, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        _, writer = await asyncio.open_connection("127.0.0.1", port)
        for i in range(0, size, chunk):
            writer.write(payload[i:i + chunk])
            await writer.drain()
        proto = await asyncio.wait_for(made, 10)
        await asyncio.wait_for(proto.done, 60)
        writer.close()
        await writer.wait_closed()
        await asyncio.wait_for(proto.lost, 10)
        server.close()
        await server.wait_closed()
        return proto

    proto = loop.run_until_complete(main())
    assert proto.received == size
    assert proto.digest.hexdigest() == hashlib.sha256(payload).hexdigest()
    return proto


@pytest.mark.parametrize("size", SIZES, ids=[f"{s // 1024}KiB" for s in SIZES])
@pytest.mark.parametrize("pauses", [False, True], ids=["steady", "pausing"])
def test_protocol_receives_every_byte(variant_loop, size, pauses):
    run_transfer(variant_loop, lambda: Sink(variant_loop, size, pauses), size)


@pytest.mark.parametrize("bufsize", [1000, 64 * 1024, 1024 * 1024])
@pytest.mark.parametrize("pauses", [False, True], ids=["steady", "pausing"])
def test_buffered_protocol_receives_every_byte(variant_loop, bufsize, pauses):
    size = 4 * 1024 * 1024
    proto = run_transfer(variant_loop,
                         lambda: BufferedSink(variant_loop, size, pauses, bufsize), size)
    assert proto.hints and all(h == -1 or h > 0 for h in proto.hints)


def test_peer_reset_mid_transfer_is_one_connection_lost(variant_loop):
    loop = variant_loop
    total = 64 * 1024 * 1024   # far more than is ever sent

    async def main():
        made = loop.create_future()
        lost_calls = []

        class Counting(Sink):
            def connection_lost(self, exc):
                lost_calls.append(exc)
                super().connection_lost(exc)

        def factory():
            proto = Counting(loop, total, False)
            made.set_result(proto)
            return proto

        server = await loop.create_server(factory, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        s = socket.create_connection(("127.0.0.1", port))
        s.setblocking(False)
        chunk = b"z" * (512 * 1024)
        for _ in range(8):
            try:
                await loop.sock_sendall(s, chunk)
            except OSError:
                break
            await asyncio.sleep(0)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
        s.close()   # RST: the server's reads end in ECONNRESET (or EOF)
        proto = await asyncio.wait_for(made, 10)
        exc = await asyncio.wait_for(proto.lost, 10)
        await asyncio.sleep(0.05)
        server.close()
        await server.wait_closed()
        return exc, lost_calls, proto.received

    exc, lost_calls, received = loop.run_until_complete(main())
    assert len(lost_calls) == 1
    assert exc is None or isinstance(exc, ConnectionError)
    assert received <= 8 * 512 * 1024


@pytest.mark.parametrize("kind", ["asyncio"] + ENGINES)
def test_write_then_close_just_before_the_loop_closes_is_sent(kind):
    """write() then close() without waiting, and the loop closes right after
    (asyncio.Runner): asyncio's loop has sent the bytes at once.  The threads
    engine used to cancel the WRITE still queued for its completion thread
    (5 in 200 lost under load); stopping now executes queued writes once."""
    import threading

    def once():
        lsock = socket.create_server(("127.0.0.1", 0))
        port = lsock.getsockname()[1]
        got = []

        def client():
            with socket.create_connection(("127.0.0.1", port)) as c:
                c.settimeout(10)
                data = b""
                while chunk := c.recv(100):
                    data += chunk
                got.append(data)

        t = threading.Thread(target=client)
        t.start()

        async def main():
            done = asyncio.Event()

            def on_conn(reader, writer):
                writer.write(b"bye\n")
                writer.close()
                done.set()

            srv = await asyncio.start_server(on_conn, sock=lsock)
            await done.wait()
            srv.close()

        factory = (asyncio.SelectorEventLoop if kind == "asyncio"
                   else lambda: aioloop.new_event_loop(engine=kind))
        with asyncio.Runner(loop_factory=factory) as runner:
            runner.run(main())
        t.join(10)
        return got[0] if got else None

    results = [once() for _ in range(200)]
    assert results.count(b"bye\n") == len(results), results


@pytest.mark.parametrize("failure", ["raises", "empty"])
def test_buffered_protocol_get_buffer_failure_is_fatal(variant_loop, failure):
    """A get_buffer() that raises or returns an empty buffer is a fatal error
    of the transport, as on asyncio: connection_lost(exc), on every read path
    (direct reads included: the payload is large)."""
    loop = variant_loop

    class Bad(asyncio.BufferedProtocol):
        def __init__(self):
            self.lost = loop.create_future()

        def get_buffer(self, sizehint):
            if failure == "raises":
                raise ValueError("no buffer")
            return bytearray()

        def buffer_updated(self, nbytes):
            raise AssertionError("never called")

        def connection_lost(self, exc):
            self.lost.set_result(exc)

    async def main():
        made = loop.create_future()

        def factory():
            proto = Bad()
            made.set_result(proto)
            return proto

        server = await loop.create_server(factory, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        _, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"x" * (512 * 1024))
        proto = await asyncio.wait_for(made, 10)
        exc = await asyncio.wait_for(proto.lost, 10)
        writer.close()
        server.close()
        await server.wait_closed()
        return exc

    loop.set_exception_handler(lambda lp, ctx: None)   # the fatal error is reported there
    exc = loop.run_until_complete(main())
    assert isinstance(exc, ValueError if failure == "raises" else RuntimeError), exc
