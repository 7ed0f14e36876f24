"""The TLS byte path in C (aioloop/_tls.py, _core/tls.c) against asyncio's.

Every async test here runs on asyncio's loop and on each aioloop engine
(conftest.py), so each observation is asyncio's.  The paths under test are
the ones the C layer takes over or hands back: reads into data_received(),
write() and writelines() (with pieces coalesced), a paused application,
errors raised by the application or by OpenSSL, close_notify.  The wider
TLS behaviour (every door, extra info, bad peers) is in tests/test_tls.py."""
import asyncio
import contextlib
import hashlib
import os
import socket
import ssl
import subprocess
import sys
import threading

import pytest



@pytest.fixture(scope="module")
def ctxs(tls_pair):
    return tls_pair


def on_aioloop():
    return type(asyncio.get_running_loop()).__module__.startswith("aioloop")


class Recorder(asyncio.Protocol):
    def __init__(self):
        self.data = bytearray()
        self.events = []
        self.lost = asyncio.get_running_loop().create_future()
        self.got = asyncio.Event()
        self.want = None

    def connection_made(self, transport):
        self.transport = transport

    def data_received(self, data):
        self.data += data
        if self.want is not None and len(self.data) >= self.want:
            self.got.set()

    def eof_received(self):
        self.events.append("eof")

    def connection_lost(self, exc):
        self.events.append("lost")
        if not self.lost.done():
            self.lost.set_result(exc)


async def serve(ctxs, factory):
    loop = asyncio.get_running_loop()
    server = await loop.create_server(factory, "127.0.0.1", 0, ssl=ctxs[0])
    return server, server.sockets[0].getsockname()[1]


async def serve_recorded(ctxs, cls=Recorder):
    """A TLS server whose protocols (of cls) are collected in a list."""
    protos = []
    server, port = await serve(ctxs, lambda: protos.append(cls()) or protos[-1])
    return server, port, protos


async def connect(port, ctxs):
    return await asyncio.open_connection("127.0.0.1", port, ssl=ctxs[1],
                                         server_hostname="localhost")


async def recorded_client(port, ctxs):
    """A TLS client connection whose protocol is a Recorder: (transport, it)."""
    client = Recorder()
    tr, _ = await asyncio.get_running_loop().create_connection(
        lambda: client, "127.0.0.1", port, ssl=ctxs[1], server_hostname="localhost")
    return tr, client


@contextlib.contextmanager
def reported_errors():
    """What reaches the running loop's exception handler, as a list."""
    loop = asyncio.get_running_loop()
    reported = []
    loop.set_exception_handler(lambda lp, ctx: reported.append(ctx))
    try:
        yield reported
    finally:
        loop.set_exception_handler(None)


async def test_the_byte_path_is_in_c_once_established(ctxs):
    server, port, protos = await serve_recorded(ctxs)
    async with server:
        r, w = await connect(port, ctxs)
        w.write(b"x")
        await w.drain()
        async with asyncio.timeout(10):
            while not protos or not protos[0].data:
                await asyncio.sleep(0.01)
        assert isinstance(w.get_extra_info("ssl_object"), ssl.SSLObject)
        assert "ssl" in type(w.transport).__name__.lower()
        if on_aioloop():
            from aioloop import _tls
            if _tls.ENABLED:
                assert _tls._attrs_ok is True, "asyncio's SSLProtocol lacks an attribute tls.c reads"
                assert w.transport._ssl_protocol._aioloop_pump is not None
                assert protos[0].transport._ssl_protocol._aioloop_pump is not None
        w.close()
        await w.wait_closed()


@pytest.mark.parametrize("size", [1, 1000, 16 * 1024, 100 * 1024, 3 * 1024 * 1024])
async def test_echo_integrity_write_and_writelines(ctxs, size):
    class Echo(asyncio.Protocol):
        def connection_made(self, transport):
            self.transport = transport

        def data_received(self, data):
            # alternate the two write doors, with pieces of every kind
            if len(data) % 2:
                self.transport.write(data)
            else:
                h = len(data) // 2
                self.transport.writelines([data[:1], bytearray(data[1:h]), memoryview(data)[h:]])

    server, port = await serve(ctxs, Echo)
    async with server, asyncio.timeout(60):
        r, w = await connect(port, ctxs)
        payload = os.urandom(size)
        w.writelines([payload[:size // 3], payload[size // 3:]])
        got = await r.readexactly(size)
        assert hashlib.sha256(got).digest() == hashlib.sha256(payload).digest()
        w.close()
        await w.wait_closed()


async def test_write_refuses_what_asyncio_refuses(ctxs):
    server, port, protos = await serve_recorded(ctxs)
    async with server, asyncio.timeout(10):
        r, w = await connect(port, ctxs)
        with pytest.raises(TypeError, match="data: expecting a bytes-like instance, got str"):
            w.transport.write("text")
        with pytest.raises(TypeError, match="'int' object is not iterable"):
            w.transport.writelines(5)
        w.transport.write(b"")          # nothing, no error
        w.transport.writelines([])      # nothing, no error
        w.transport.writelines(iter([b""]))
        w.write(b"after")
        await w.drain()
        while not protos or bytes(protos[0].data) != b"after":
            await asyncio.sleep(0.01)
        w.close()
        await w.wait_closed()


async def test_writelines_with_a_bad_item_is_a_fatal_error_as_in_asyncio(ctxs):
    with reported_errors() as reported:
        server, port = await serve(ctxs, Recorder)
        async with server, asyncio.timeout(10):
            tr, client = await recorded_client(port, ctxs)
            tr.writelines([b"ok", "not bytes"])
            exc = await client.lost
            assert isinstance(exc, TypeError)
            assert [c["message"] for c in reported] == ["Fatal error on SSL protocol"]
            assert isinstance(reported[0]["exception"], TypeError)


async def test_data_received_raising_ends_that_connection_as_in_asyncio(ctxs):
    class Raises(Recorder):
        def data_received(self, data):
            raise ValueError("app bug")

    protos = []
    with reported_errors() as reported:
        server, port = await serve(ctxs, lambda: protos.append(Raises()) or protos[-1])
        async with server, asyncio.timeout(10):
            r, w = await connect(port, ctxs)
            w.write(b"boom")
            while not protos:
                await asyncio.sleep(0.01)
            exc = await protos[0].lost
            assert isinstance(exc, ValueError)
            assert [c["message"] for c in reported] == ["Fatal error on SSL protocol"]
            assert await r.read() == b""        # the client sees the connection end
            w.close()


async def test_paused_application_loses_nothing(ctxs):
    class Pausing(Recorder):
        def data_received(self, data):
            super().data_received(data)
            if not self.events:
                self.events.append("paused")
                self.transport.pause_reading()

    protos = []
    server, port = await serve(ctxs, lambda: protos.append(Pausing()) or protos[-1])
    async with server, asyncio.timeout(30):
        r, w = await connect(port, ctxs)
        payload = os.urandom(2 * 1024 * 1024)
        w.write(payload)
        while not protos or not protos[0].data:
            await asyncio.sleep(0.01)
        p = protos[0]
        assert not p.transport.is_reading()
        await asyncio.sleep(0.2)
        held = len(p.data)
        assert held < len(payload)
        p.want = len(payload)
        p.transport.resume_reading()
        assert p.transport.is_reading()
        await p.got.wait()
        assert bytes(p.data) == payload
        w.close()
        await w.wait_closed()


async def test_close_notify_from_the_client(ctxs):
    server, port, protos = await serve_recorded(ctxs)
    async with server, asyncio.timeout(10):
        r, w = await connect(port, ctxs)
        w.write(b"bye")
        await w.drain()
        while not protos or not protos[0].data:
            await asyncio.sleep(0.01)
        w.close()
        await w.wait_closed()
        assert await protos[0].lost is None
        assert protos[0].events == ["eof", "lost"]


async def test_garbage_record_after_the_handshake_is_an_ssl_error(ctxs):
    """OpenSSL's error goes back to asyncio's code, which raises it."""
    server, port, protos = await serve_recorded(ctxs)

    def client():
        ctx = ctxs[1]
        with socket.create_connection(("127.0.0.1", port)) as raw:
            s = ctx.wrap_socket(raw, server_hostname="localhost")
            s.sendall(b"hello")
            # an application-data record whose contents are noise
            os.write(s.fileno(), b"\x17\x03\x03\x00\x20" + os.urandom(32))
            try:
                s.recv(100)
            except (OSError, ssl.SSLError):
                pass

    async with server, asyncio.timeout(10):
        t = threading.Thread(target=client)
        t.start()
        try:
            while not protos:
                await asyncio.sleep(0.01)
            exc = await protos[0].lost
        finally:
            await asyncio.to_thread(t.join)
        if on_aioloop():
            # The records before the bad one are delivered, then the error.
            assert bytes(protos[0].data) == b"hello"
        else:
            # asyncio drops them when the bad record came in the same read
            # (its read loop raises before data_received() is called).
            assert bytes(protos[0].data) in (b"hello", b"")
        assert isinstance(exc, ssl.SSLError)


def test_python_byte_path_when_asked():
    """AIOLOOP_TLS=python keeps asyncio's Python byte path; TLS still works."""
    pytest.importorskip("trustme", reason="trustme is in the test extra")
    code = (
        "import asyncio, ssl, trustme, aioloop\n"
        "from aioloop import _tls\n"
        "assert not _tls.ENABLED\n"
        "ca = trustme.CA(); cert = ca.issue_cert('localhost')\n"
        "s = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH); cert.configure_cert(s)\n"
        "c = ssl.create_default_context(); ca.configure_trust(c)\n"
        "async def main():\n"
        "    async def h(r, w):\n"
        "        w.write(await r.readexactly(5)); await w.drain(); w.close()\n"
        "    srv = await asyncio.start_server(h, '127.0.0.1', 0, ssl=s)\n"
        "    port = srv.sockets[0].getsockname()[1]\n"
        "    r, w = await asyncio.open_connection('127.0.0.1', port, ssl=c, server_hostname='localhost')\n"
        "    assert w.transport._ssl_protocol._aioloop_pump is None\n"
        "    w.write(b'hello'); assert await r.readexactly(5) == b'hello'\n"
        "    w.close(); srv.close(); await srv.wait_closed()\n"
        "aioloop.run(main())\n"
        "print('ok')\n")
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                       env=dict(os.environ, AIOLOOP_TLS="python"))
    assert p.returncode == 0, p.stderr
    assert p.stdout.strip() == "ok"


@pytest.mark.parametrize("engine", __import__("conftest").ENGINES)
def test_memory_error_in_the_tls_layer_ends_that_connection_only(ctxs, engine):
    """An object the C TLS layer cannot make (fault site "pyobj"): asyncio's
    'Fatal error on SSL protocol' for that connection, and the server goes
    on serving TLS."""
    import aioloop
    from aioloop import _core, _tls
    if not _tls.ENABLED:
        pytest.skip("the C TLS layer is off here")
    loop = aioloop.new_event_loop(engine=engine)
    errors = []
    loop.set_exception_handler(lambda lp, ctx: errors.append(ctx))

    async def handler(r, w):
        try:
            while data := await r.read(65536):
                w.write(data)
        except (ConnectionError, MemoryError, ssl.SSLError):
            pass
        w.close()

    async def echo_once(port):
        r, w = await connect(port, ctxs)
        w.write(b"hello")
        got = await r.readexactly(5)
        w.close()
        return got

    async def main():
        server = await asyncio.start_server(handler, "127.0.0.1", 0, ssl=ctxs[0])
        port = server.sockets[0].getsockname()[1]
        r, w = await connect(port, ctxs)
        w.write(b"warm")
        assert await r.readexactly(4) == b"warm"
        _core._fault_set("pyobj", 1)
        try:
            w.write(b"x" * 1000)
            async with asyncio.timeout(10):
                try:
                    while await r.read(65536):
                        pass
                except (ConnectionError, MemoryError, ssl.SSLError):
                    pass
            failed = _core._fault_failed("pyobj")
        finally:
            _core._fault_reset()
        w.close()
        assert await asyncio.wait_for(echo_once(port), 10) == b"hello"
        server.close()
        await server.wait_closed()
        return failed

    try:
        assert loop.run_until_complete(main()) == 1
    finally:
        loop.close()
    fatal = [c for c in errors if c["message"] == "Fatal error on SSL protocol"]
    assert len(fatal) == 1, errors
    assert isinstance(fatal[0]["exception"], MemoryError)


@pytest.mark.parametrize("bufsize", [1, 16, 4096, 256 * 1024])
async def test_buffered_protocol_application(ctxs, bufsize):
    """A BufferedProtocol application over TLS: every byte, in order, through
    buffers of any size (a full buffer continues on the next iteration, as in
    asyncio), then eof_received and connection_lost(None)."""
    loop = asyncio.get_running_loop()

    class Buffered(asyncio.BufferedProtocol):
        def __init__(self):
            self.buf = bytearray(bufsize)
            self.data = bytearray()
            self.events = []
            self.lost = loop.create_future()
            self.hints = []

        def connection_made(self, transport):
            self.transport = transport

        def get_buffer(self, sizehint):
            self.hints.append(sizehint)
            # A memoryview: asyncio's own _do_read__buffered() slices the
            # buffer for a second read, and a slice of a bytearray is a copy
            # (its bytes would be lost there; aioloop's C path has no such
            # slice).
            return memoryview(self.buf)

        def buffer_updated(self, nbytes):
            assert 0 < nbytes <= bufsize
            self.data += self.buf[:nbytes]

        def eof_received(self):
            self.events.append("eof")

        def connection_lost(self, exc):
            self.events.append("lost")
            self.lost.set_result(exc)

    protos = []
    server, port = await serve(ctxs, lambda: protos.append(Buffered()) or protos[-1])
    size = 300_000 if bufsize > 1 else 20_000
    async with server, asyncio.timeout(60):
        r, w = await connect(port, ctxs)
        payload = os.urandom(size)
        w.write(payload)
        await w.drain()
        w.close()
        await w.wait_closed()
        while not protos:
            await asyncio.sleep(0.01)
        assert await protos[0].lost is None
        assert bytes(protos[0].data) == payload
        assert protos[0].events == ["eof", "lost"]
        assert all(isinstance(h, int) for h in protos[0].hints)


async def test_buffer_updated_raising_is_a_fatal_error_as_in_asyncio(ctxs):
    loop = asyncio.get_running_loop()

    class Raises(asyncio.BufferedProtocol):
        def __init__(self):
            self.buf = bytearray(1024)
            self.lost = loop.create_future()

        def get_buffer(self, sizehint):
            return self.buf

        def buffer_updated(self, nbytes):
            raise ValueError("app bug")

        def connection_lost(self, exc):
            self.lost.set_result(exc)

    protos = []
    with reported_errors() as reported:
        server, port = await serve(ctxs, lambda: protos.append(Raises()) or protos[-1])
        async with server, asyncio.timeout(10):
            r, w = await connect(port, ctxs)
            w.write(b"boom")
            while not protos:
                await asyncio.sleep(0.01)
            assert isinstance(await protos[0].lost, ValueError)
            assert [c["message"] for c in reported] == ["Fatal error on SSL protocol"]
            w.close()


@pytest.mark.parametrize("door", ["write", "writelines"])
async def test_a_non_contiguous_memoryview_fails_as_in_asyncio(ctxs, door):
    """asyncio's write() accepts any memoryview and fails in OpenSSL's write
    on one that is not contiguous: a fatal error of that connection."""
    with reported_errors() as reported:
        server, port = await serve(ctxs, Recorder)
        async with server, asyncio.timeout(10):
            tr, client = await recorded_client(port, ctxs)
            strided = memoryview(b"abcdefgh")[::2]
            if door == "write":
                tr.write(strided)
            else:
                tr.writelines([b"ok", strided])
            exc = await client.lost
            assert isinstance(exc, BufferError)
            assert [c["message"] for c in reported] == ["Fatal error on SSL protocol"]
