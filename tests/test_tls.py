"""TLS as an application sees it, on asyncio's loop and on each aioloop
engine (conftest.py runs every async test on each): every door into TLS
(create_server/create_connection, start_tls on both sides,
connect_accepted_socket, Unix sockets, streams, StreamWriter.start_tls),
data integrity at 1 B .. 8 MiB, get_extra_info, the handshake and shutdown
timeouts, close_notify both ways, flow control both ways, BufferedProtocol,
abort/close, bad peers (the server keeps serving), certificate errors, and
no descriptor left behind.

Only observable behaviour is checked -- what asyncio's own loop does, the
same test asserting it on every loop -- never how the TLS layer is built,
so the suite holds whatever carries the bytes (today asyncio's
sslproto.SSLProtocol on aioloop's transports)."""
import asyncio
import datetime
import gc
import hashlib
import logging
import os
import signal
import socket
import ssl
import time

import pytest

from conftest import ENGINES

trustme = pytest.importorskip(
    "trustme", reason="trustme is not installed (it is in the test extra: pip install -e .[test])")

KiB = 1024
MiB = 1024 * KiB
SIZES = [1, 16 * KiB, 1 * MiB, 8 * MiB]
T = 10   # seconds: a step that hangs fails after this, not after the suite's timeout


# --------------------------------------------------------------------------- certificates

class Certs:
    """A CA, a server certificate for localhost/127.0.0.1, an expired one, one
    for another host, a client certificate; contexts built from them."""

    def __init__(self, tmpdir):
        self.ca = trustme.CA()
        self.server = self.ca.issue_cert("localhost", "127.0.0.1")
        now = datetime.datetime.now(datetime.timezone.utc)
        self.expired = self.ca.issue_cert(
            "localhost", "127.0.0.1", not_before=now - datetime.timedelta(days=30),
            not_after=now - datetime.timedelta(days=1))
        self.wrong_host = self.ca.issue_cert("other.example")
        self.client = self.ca.issue_cert("client@example", common_name="client")
        self.cert_file = os.path.join(tmpdir, "server.pem")
        self.key_file = os.path.join(tmpdir, "server.key")
        self.server.cert_chain_pems[0].write_to_path(self.cert_file)
        self.server.private_key_pem.write_to_path(self.key_file)
        self.ca_file = os.path.join(tmpdir, "ca.pem")
        self.ca.cert_pem.write_to_path(self.ca_file)

    def server_ctx(self, leaf=None, *, client_auth=False, max_version=None):
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        (leaf or self.server).configure_cert(ctx)
        if client_auth:
            ctx.verify_mode = ssl.CERT_REQUIRED
            self.ca.configure_trust(ctx)
        if max_version is not None:
            ctx.maximum_version = max_version
        return ctx

    def client_ctx(self, *, client_cert=False, max_version=None):
        ctx = ssl.create_default_context()
        self.ca.configure_trust(ctx)
        if client_cert:
            self.client.configure_cert(ctx)
        if max_version is not None:
            ctx.maximum_version = max_version
        return ctx


@pytest.fixture(scope="module")
def certs(tmp_path_factory):
    return Certs(str(tmp_path_factory.mktemp("tls")))


@pytest.fixture
def server_ctx(certs):
    return certs.server_ctx()


@pytest.fixture
def client_ctx(certs):
    return certs.client_ctx()


# --------------------------------------------------------------------------- helpers

class Errors(list):
    """Exception handler contexts; `.event` is set at the first."""

    def __init__(self):
        super().__init__()
        self.event = asyncio.Event()

    def __call__(self, loop, context):
        self.append(context)
        self.event.set()


def record_errors():
    """The running loop's exception handler calls, recorded (asyncio routes
    some TLS failures there; each test asserts the same list on every loop)."""
    errors = Errors()
    asyncio.get_running_loop().set_exception_handler(errors)
    return errors


def kinds(errors):
    return [(type(c.get("exception")).__name__, c.get("message")) for c in errors]


def nfds():
    return len(os.listdir("/proc/self/fd"))


def payload(size):
    return os.urandom(size)


def sha(data):
    return hashlib.sha256(data).hexdigest()


class _Recording(asyncio.Protocol):
    """Records connection_made/eof_received/connection_lost in `calls`;
    `lost` is connection_lost's argument; `on_made(self)` runs when made."""

    on_made = None

    def __init__(self):
        self.transport = None
        self.calls = []
        self.lost = asyncio.get_running_loop().create_future()

    def connection_made(self, transport):
        self.transport = transport
        self.calls.append("made")
        if self.on_made:
            self.on_made(self)

    def eof_received(self):
        self.calls.append("eof")

    def connection_lost(self, exc):
        self.calls.append(("lost", exc))
        if not self.lost.done():
            self.lost.set_result(exc)


class Echo(_Recording):
    """Server side: echoes; records the calls it gets."""

    def data_received(self, data):
        self.transport.write(data)


class Collector(_Recording):
    """Client side: hashes what arrives; `wait(n)` until n bytes came."""

    def __init__(self):
        super().__init__()
        self.hash = hashlib.sha256()
        self.count = 0
        self._want = None
        self._got = None
        self.paused = self.resumed = 0
        self.resume_event = asyncio.Event()

    def data_received(self, data):
        self.hash.update(data)
        self.count += len(data)
        if self._want is not None and self.count >= self._want and not self._got.done():
            self._got.set_result(None)

    def connection_lost(self, exc):
        if self._got is not None and not self._got.done():
            self._got.set_exception(ConnectionError(f"lost after {self.count} bytes: {exc!r}"))
        super().connection_lost(exc)

    def pause_writing(self):
        self.paused += 1

    def resume_writing(self):
        self.resumed += 1
        self.resume_event.set()

    async def wait(self, n, timeout=T):
        if self.count < n:
            self._want = n
            self._got = asyncio.get_running_loop().create_future()
            await asyncio.wait_for(self._got, timeout)
        return self.count


async def echo_roundtrip(transport, proto, size):
    """Sends `size` random bytes, waits for them back, compares sha256."""
    data = payload(size)
    start = proto.count
    proto.hash = hashlib.sha256()
    transport.write(data)
    await proto.wait(start + size, timeout=T + size / MiB)
    assert proto.count == start + size
    assert proto.hash.hexdigest() == sha(data)


async def tls_server(server_ctx, factory=Echo, **kw):
    loop = asyncio.get_running_loop()
    protos = []
    made_queue = asyncio.Queue()

    def make():
        p = factory()
        p.on_made = made_queue.put_nowait
        protos.append(p)
        return p
    srv = await loop.create_server(make, "127.0.0.1", 0, ssl=server_ctx, **kw)
    srv.protos = protos
    srv.next_made = lambda: asyncio.wait_for(made_queue.get(), T)   # the next protocol told
    srv.port = srv.sockets[0].getsockname()[1]
    return srv


async def tls_client(port, client_ctx, factory=Collector, **kw):
    loop = asyncio.get_running_loop()
    kw.setdefault("server_hostname", "localhost")
    return await asyncio.wait_for(
        loop.create_connection(factory, "127.0.0.1", port, ssl=client_ctx, **kw), T)


def made(srv):
    """The server's protocols that got connection_made.  asyncio makes the
    application protocol when it accepts, before the handshake; one whose
    handshake fails is never told of its connection."""
    return [p for p in srv.protos if p.calls]


async def close_server(srv):
    srv.close()
    await asyncio.wait_for(srv.wait_closed(), T)


async def good_request(port, client_ctx):
    """One short TLS echo on a new connection, closed cleanly."""
    tr, pr = await tls_client(port, client_ctx)
    await echo_roundtrip(tr, pr, 100)
    tr.close()
    assert await asyncio.wait_for(pr.lost, T) is None


def client_hello(client_ctx):
    """The bytes of a real ClientHello for localhost."""
    inc, out = ssl.MemoryBIO(), ssl.MemoryBIO()
    obj = client_ctx.wrap_bio(inc, out, server_hostname="localhost")
    with pytest.raises(ssl.SSLWantReadError):
        obj.do_handshake()
    return out.read()


async def raw_connect(port, family=socket.AF_INET):
    loop = asyncio.get_running_loop()
    s = socket.socket(family, socket.SOCK_STREAM)
    s.setblocking(False)
    await asyncio.wait_for(loop.sock_connect(s, ("127.0.0.1", port)), T)
    return s


async def read_until_eof(sock, timeout=T):
    """What a raw peer gets until the other end closes: (bytes, how it ended)."""
    loop = asyncio.get_running_loop()
    got = b""
    async with asyncio.timeout(timeout):
        while True:
            try:
                chunk = await loop.sock_recv(sock, 65536)
            except ConnectionResetError:
                return got, "reset"
            if not chunk:
                return got, "eof"
            got += chunk


async def in_thread(fn, *args):
    """fn(*args) in the loop's executor: blocking calls of a peer that the
    loop does not drive, without blocking the loop."""
    return await asyncio.wait_for(asyncio.get_running_loop().run_in_executor(None, fn, *args), T)


def tls_thread_client(port, client_ctx):
    """A blocking TLS client made in a worker thread (a peer that the loop
    does not drive: it answers nothing unless told).  A TCP close without
    close_notify raises SSLEOFError in its recv(), a close_notify gives b''."""
    raw = socket.create_connection(("127.0.0.1", port), timeout=T)
    return client_ctx.wrap_socket(raw, server_hostname="localhost", suppress_ragged_eofs=False)


# --------------------------------------------------------------------------- 1. the doors

@pytest.mark.parametrize("size", SIZES, ids=["1B", "16KiB", "1MiB", "8MiB"])
async def test_create_server_create_connection(server_ctx, client_ctx, size):
    errors = record_errors()
    srv = await tls_server(server_ctx)
    tr, pr = await tls_client(srv.port, client_ctx)
    await echo_roundtrip(tr, pr, size)
    tr.close()
    assert await asyncio.wait_for(pr.lost, T) is None
    assert await asyncio.wait_for(srv.protos[0].lost, T) is None
    await close_server(srv)
    assert kinds(errors) == []


async def test_create_connection_hostname_from_host(server_ctx, client_ctx):
    """Without server_hostname the host is checked (127.0.0.1 is in the
    certificate); server_hostname='' turns the check off."""
    loop = asyncio.get_running_loop()
    srv = await tls_server(server_ctx)
    tr, pr = await asyncio.wait_for(loop.create_connection(
        Collector, "127.0.0.1", srv.port, ssl=client_ctx), T)
    assert tr.get_extra_info("ssl_object").server_hostname == "127.0.0.1"
    await echo_roundtrip(tr, pr, 16 * KiB)
    tr.close()
    await asyncio.wait_for(pr.lost, T)
    nocheck = ssl.create_default_context()
    nocheck.check_hostname = False
    nocheck.verify_mode = ssl.CERT_NONE
    tr, pr = await asyncio.wait_for(loop.create_connection(
        Collector, "127.0.0.1", srv.port, ssl=nocheck, server_hostname=""), T)
    await echo_roundtrip(tr, pr, 16 * KiB)
    tr.close()
    await asyncio.wait_for(pr.lost, T)
    await close_server(srv)


async def test_ssl_true_uses_default_context(server_ctx):
    """ssl=True: the default context, which does not trust our CA."""
    srv = await tls_server(server_ctx)
    with pytest.raises(ssl.SSLCertVerificationError) as ei:
        await tls_client(srv.port, True)
    assert ei.value.verify_code == 20   # unable to get local issuer certificate
    await close_server(srv)


class StartTlsServer(asyncio.Protocol):
    """Plain until the peer says STARTTLS; answers GO and upgrades with
    loop.start_tls(server_side=True); then echoes."""

    def __init__(self, ctx):
        self.ctx = ctx
        self.transport = None
        self.upgraded = asyncio.get_running_loop().create_future()
        self.lost = asyncio.get_running_loop().create_future()
        self.made = 0

    def connection_made(self, transport):
        self.made += 1
        self.transport = transport

    def data_received(self, data):
        if self.upgraded.done():
            self.transport.write(data)
            return
        assert data == b"STARTTLS\n"
        self.transport.write(b"GO\n")
        asyncio.get_running_loop().create_task(self.upgrade())

    async def upgrade(self):
        try:
            self.transport = await asyncio.get_running_loop().start_tls(
                self.transport, self, self.ctx, server_side=True)
        except BaseException as exc:
            self.upgraded.set_exception(exc)
            raise
        self.upgraded.set_result(self.transport)

    def connection_lost(self, exc):
        if not self.lost.done():
            self.lost.set_result(exc)


class PlainThenTls(Collector):
    def __init__(self):
        super().__init__()
        self.go = asyncio.get_running_loop().create_future()
        self.tls = False

    def data_received(self, data):
        if not self.tls:
            assert data == b"GO\n"
            self.go.set_result(None)
            return
        super().data_received(data)


@pytest.mark.parametrize("size", [1, 1 * MiB], ids=["1B", "1MiB"])
async def test_start_tls_both_sides(server_ctx, client_ctx, size):
    loop = asyncio.get_running_loop()
    errors = record_errors()
    protos = []
    srv = await loop.create_server(
        lambda: protos.append(StartTlsServer(server_ctx)) or protos[-1], "127.0.0.1", 0)
    port = srv.sockets[0].getsockname()[1]
    plain, pr = await loop.create_connection(PlainThenTls, "127.0.0.1", port)
    plain.write(b"STARTTLS\n")
    await asyncio.wait_for(pr.go, T)
    pr.tls = True
    tr = await asyncio.wait_for(
        loop.start_tls(plain, pr, client_ctx, server_hostname="localhost"), T)
    server_tr = await asyncio.wait_for(protos[0].upgraded, T)
    assert protos[0].made == 1 and pr.calls == ["made"]   # no second connection_made
    assert tr is not plain and server_tr.get_extra_info("ssl_object") is not None
    assert tr.get_extra_info("ssl_object").server_hostname == "localhost"
    await echo_roundtrip(tr, pr, size)
    await echo_roundtrip(tr, pr, 16 * KiB)
    tr.close()
    assert await asyncio.wait_for(pr.lost, T) is None
    assert await asyncio.wait_for(protos[0].lost, T) is None
    await close_server(srv)
    assert kinds(errors) == []


@pytest.mark.parametrize("size", [1, 1 * MiB], ids=["1B", "1MiB"])
async def test_connect_accepted_socket(server_ctx, client_ctx, size):
    loop = asyncio.get_running_loop()
    lsock = socket.socket()
    lsock.bind(("127.0.0.1", 0))
    lsock.listen()
    lsock.setblocking(False)
    port = lsock.getsockname()[1]
    try:
        client = asyncio.ensure_future(tls_client(port, client_ctx))
        conn, _ = await asyncio.wait_for(loop.sock_accept(lsock), T)
        str_, sp = await asyncio.wait_for(
            loop.connect_accepted_socket(Echo, conn, ssl=server_ctx), T)
        tr, pr = await client
        assert sp.calls == ["made"]
        assert str_.get_extra_info("sslcontext") is server_ctx
        await echo_roundtrip(tr, pr, size)
        tr.close()
        assert await asyncio.wait_for(sp.lost, T) is None
        assert await asyncio.wait_for(pr.lost, T) is None
    finally:
        lsock.close()


@pytest.mark.parametrize("size", [1, 1 * MiB], ids=["1B", "1MiB"])
async def test_unix_server_and_connection(server_ctx, client_ctx, size, tmp_path):
    loop = asyncio.get_running_loop()
    path = str(tmp_path / "tls.sock")
    protos = []
    srv = await loop.create_unix_server(lambda: protos.append(Echo()) or protos[-1], path,
                                        ssl=server_ctx)
    tr, pr = await asyncio.wait_for(loop.create_unix_connection(
        Collector, path, ssl=client_ctx, server_hostname="localhost"), T)
    assert tr.get_extra_info("socket").family == socket.AF_UNIX
    assert tr.get_extra_info("peername") == path
    await echo_roundtrip(tr, pr, size)
    tr.close()
    assert await asyncio.wait_for(pr.lost, T) is None
    assert await asyncio.wait_for(protos[0].lost, T) is None
    await close_server(srv)


async def test_unix_connection_needs_server_hostname(client_ctx, tmp_path):
    """asyncio: ssl= on a Unix socket without server_hostname is a ValueError."""
    loop = asyncio.get_running_loop()
    with pytest.raises(ValueError) as ei:
        await loop.create_unix_connection(Collector, str(tmp_path / "none"), ssl=client_ctx)
    assert str(ei.value) == "you have to pass server_hostname when using ssl"


async def stream_echo(reader, writer):
    try:
        while data := await reader.read(256 * KiB):
            writer.write(data)
            await writer.drain()
    finally:
        writer.close()


async def stream_roundtrip(reader, writer, size):
    data = payload(size)
    writer.write(data)

    async def drain():
        await writer.drain()
    drainer = asyncio.ensure_future(drain())
    got = await asyncio.wait_for(reader.readexactly(size), T + size / MiB)
    await drainer
    assert sha(got) == sha(data)


@pytest.mark.parametrize("size", SIZES, ids=["1B", "16KiB", "1MiB", "8MiB"])
async def test_streams(server_ctx, client_ctx, size):
    srv = await asyncio.start_server(stream_echo, "127.0.0.1", 0, ssl=server_ctx)
    port = srv.sockets[0].getsockname()[1]
    reader, writer = await asyncio.wait_for(asyncio.open_connection(
        "127.0.0.1", port, ssl=client_ctx, server_hostname="localhost"), T)
    await stream_roundtrip(reader, writer, size)
    writer.close()
    await asyncio.wait_for(writer.wait_closed(), T)
    await close_server(srv)


@pytest.mark.parametrize("size", [1, 1 * MiB], ids=["1B", "1MiB"])
async def test_stream_writer_start_tls(server_ctx, client_ctx, size):
    upgraded = asyncio.get_running_loop().create_future()

    async def handler(reader, writer):
        assert await reader.readline() == b"STARTTLS\n"
        writer.write(b"GO\n")
        await writer.drain()
        await writer.start_tls(server_ctx)
        upgraded.set_result(writer.get_extra_info("ssl_object"))
        await stream_echo(reader, writer)

    srv = await asyncio.start_server(handler, "127.0.0.1", 0)
    port = srv.sockets[0].getsockname()[1]
    reader, writer = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", port), T)
    assert writer.get_extra_info("ssl_object") is None
    writer.write(b"STARTTLS\n")
    assert await asyncio.wait_for(reader.readline(), T) == b"GO\n"
    await asyncio.wait_for(writer.start_tls(client_ctx, server_hostname="localhost"), T)
    assert isinstance(writer.get_extra_info("ssl_object"), ssl.SSLObject)
    assert isinstance(await asyncio.wait_for(upgraded, T), ssl.SSLObject)
    await stream_roundtrip(reader, writer, size)
    writer.close()
    await asyncio.wait_for(writer.wait_closed(), T)
    await close_server(srv)


async def test_tls12(certs):
    """TLS 1.2 (no post-handshake tickets, a different record flow)."""
    srv = await tls_server(certs.server_ctx(max_version=ssl.TLSVersion.TLSv1_2))
    tr, pr = await tls_client(srv.port, certs.client_ctx())
    assert tr.get_extra_info("ssl_object").version() == "TLSv1.2"
    await echo_roundtrip(tr, pr, 1 * MiB)
    tr.close()
    assert await asyncio.wait_for(pr.lost, T) is None
    assert await asyncio.wait_for(srv.protos[0].lost, T) is None
    await close_server(srv)


# --------------------------------------------------------------------------- 2. get_extra_info

@pytest.mark.parametrize("client_cert", [False, True], ids=["no-client-cert", "client-cert"])
async def test_extra_info(certs, client_cert):
    sctx = certs.server_ctx(client_auth=client_cert)
    cctx = certs.client_ctx(client_cert=client_cert)
    srv = await tls_server(sctx)
    tr, pr = await tls_client(srv.port, cctx)
    await echo_roundtrip(tr, pr, 10)   # the server side is made by now
    st = srv.protos[0].transport

    for side, t, ctx in (("client", tr, cctx), ("server", st, sctx)):
        obj = t.get_extra_info("ssl_object")
        assert isinstance(obj, ssl.SSLObject), side
        assert obj.version() in ("TLSv1.2", "TLSv1.3"), side
        assert t.get_extra_info("cipher") == obj.cipher() and obj.cipher()[1] == obj.version()
        assert t.get_extra_info("compression") == obj.compression()
        assert t.get_extra_info("sslcontext") is ctx, side
        assert t.get_extra_info("nonexistent") is None
        assert t.get_extra_info("nonexistent", 42) == 42
        sock = t.get_extra_info("socket")
        assert sock.family == socket.AF_INET and sock.type == socket.SOCK_STREAM
        assert sock.getsockname() == t.get_extra_info("sockname")
        assert sock.getpeername() == t.get_extra_info("peername")
        assert obj.server_side == (side == "server")

    assert tr.get_extra_info("peername") == ("127.0.0.1", srv.port)
    assert st.get_extra_info("peername") == tr.get_extra_info("sockname")
    cobj = tr.get_extra_info("ssl_object")
    assert cobj.server_hostname == "localhost"
    assert st.get_extra_info("ssl_object").server_hostname is None
    peercert = tr.get_extra_info("peercert")
    assert peercert == cobj.getpeercert()
    assert ("DNS", "localhost") in peercert["subjectAltName"]
    assert "subject" in peercert and "notAfter" in peercert
    sp = st.get_extra_info("peercert")
    if client_cert:
        assert isinstance(sp, dict) and "subject" in sp
        assert ((("commonName", "client"),)) in sp["subject"]
    else:
        assert sp is None
    tr.close()
    await asyncio.wait_for(pr.lost, T)
    await close_server(srv)


# --------------------------------------------------------------------------- 3. timeouts and bad values

async def test_handshake_timeout_client(client_ctx):
    """A server that accepts and never speaks: create_connection raises
    asyncio's ConnectionAbortedError after ssl_handshake_timeout."""
    errors = record_errors()
    loop = asyncio.get_running_loop()
    lsock = socket.socket()
    lsock.bind(("127.0.0.1", 0))
    lsock.listen()
    lsock.setblocking(False)
    try:
        t0 = time.monotonic()
        with pytest.raises(ConnectionAbortedError) as ei:
            await tls_client(lsock.getsockname()[1], client_ctx, ssl_handshake_timeout=0.5)
        took = time.monotonic() - t0
        assert str(ei.value) == ("SSL handshake is taking longer than 0.5 seconds: "
                                 "aborting the connection")
        assert 0.4 <= took < 5, took
        # The connection really went: the listener's side got the
        # ClientHello, then the close.
        conn, _ = await asyncio.wait_for(loop.sock_accept(lsock), T)
        conn.setblocking(False)
        with conn:
            got, how = await read_until_eof(conn)
        assert got[:1] == b"\x16" and how in ("eof", "reset")
    finally:
        lsock.close()
    assert kinds(errors) == []


async def test_handshake_timeout_server(server_ctx, client_ctx):
    """A client that connects and never speaks: the server drops it after
    ssl_handshake_timeout, no protocol is made, nothing is reported, and
    the server keeps serving."""
    errors = record_errors()
    srv = await tls_server(server_ctx, ssl_handshake_timeout=0.5)
    s = await raw_connect(srv.port)
    t0 = time.monotonic()
    got, how = await read_until_eof(s)
    took = time.monotonic() - t0
    s.close()
    assert got == b"" and how == "eof"
    assert 0.4 <= took < 5, took
    assert made(srv) == []
    await good_request(srv.port, client_ctx)
    await close_server(srv)
    assert kinds(errors) == []


async def test_handshake_timeout_stalled_mid_handshake(server_ctx, client_ctx):
    """A client that sends its ClientHello and then stalls."""
    errors = record_errors()
    srv = await tls_server(server_ctx, ssl_handshake_timeout=0.5)
    s = await raw_connect(srv.port)
    await asyncio.get_running_loop().sock_sendall(s, client_hello(client_ctx))
    t0 = time.monotonic()
    got, how = await read_until_eof(s)
    took = time.monotonic() - t0
    s.close()
    assert got[:1] == b"\x16"   # the ServerHello came, then the close
    assert how == "eof"
    assert 0.3 <= took < 5, took
    assert made(srv) == []
    await good_request(srv.port, client_ctx)
    await close_server(srv)
    assert kinds(errors) == []


async def test_shutdown_timeout(server_ctx):
    """The server closes; the peer never answers close_notify: the transport
    is closed after ssl_shutdown_timeout and connection_lost gets asyncio's
    TimeoutError('SSL shutdown timed out')."""
    errors = record_errors()
    srv = await tls_server(server_ctx, ssl_shutdown_timeout=0.5)
    cctx = ssl.create_default_context()
    cctx.check_hostname = False
    cctx.verify_mode = ssl.CERT_NONE
    peer = await in_thread(tls_thread_client, srv.port, cctx)
    try:
        await in_thread(peer.sendall, b"x")
        assert await in_thread(peer.recv, 1) == b"x"   # the echo: the server side is up
        proto = srv.protos[0]
        t0 = time.monotonic()
        proto.transport.close()
        exc = await asyncio.wait_for(proto.lost, T)
        took = time.monotonic() - t0
        assert type(exc) is asyncio.TimeoutError and str(exc) == "SSL shutdown timed out"
        assert 0.4 <= took < 5, took
        assert proto.calls[-1] == ("lost", exc) and proto.calls.count("eof") == 0
    finally:
        peer.close()
    await close_server(srv)
    assert kinds(errors) == []


def _plain_doors(loop, tmp_path):
    path = str(tmp_path / "s")
    return {
        "create_connection": lambda **kw: loop.create_connection(asyncio.Protocol, "127.0.0.1", 1, **kw),
        "create_server": lambda **kw: loop.create_server(asyncio.Protocol, "127.0.0.1", 0, **kw),
        "create_unix_connection": lambda **kw: loop.create_unix_connection(asyncio.Protocol, path, **kw),
        "create_unix_server": lambda **kw: loop.create_unix_server(asyncio.Protocol, path, **kw),
        "open_connection": lambda **kw: asyncio.open_connection("127.0.0.1", 1, **kw),
        "start_server": lambda **kw: asyncio.start_server(lambda r, w: None, "127.0.0.1", 0, **kw),
    }


@pytest.mark.parametrize("door", ["create_connection", "create_server", "create_unix_connection",
                                  "create_unix_server", "open_connection", "start_server"])
@pytest.mark.parametrize("option", ["ssl_handshake_timeout", "ssl_shutdown_timeout"])
async def test_timeout_without_ssl(door, option, tmp_path):
    loop = asyncio.get_running_loop()
    call = _plain_doors(loop, tmp_path)[door]
    with pytest.raises(ValueError) as ei:
        await call(**{option: 1.0})
    assert str(ei.value) == f"{option} is only meaningful with ssl"


async def test_connect_accepted_socket_timeout_without_ssl():
    loop = asyncio.get_running_loop()
    a, b = socket.socketpair()
    try:
        for option in ("ssl_handshake_timeout", "ssl_shutdown_timeout"):
            with pytest.raises(ValueError) as ei:
                await loop.connect_accepted_socket(asyncio.Protocol, a, **{option: 1.0})
            assert str(ei.value) == f"{option} is only meaningful with ssl"
    finally:
        a.close()
        b.close()


@pytest.mark.parametrize("value", [-1, 0])
@pytest.mark.parametrize("option", ["ssl_handshake_timeout", "ssl_shutdown_timeout"])
async def test_timeout_not_positive(server_ctx, client_ctx, option, value):
    """create_connection and start_tls: asyncio's ValueError, its message."""
    loop = asyncio.get_running_loop()
    srv = await tls_server(server_ctx)
    with pytest.raises(ValueError) as ei:
        await tls_client(srv.port, client_ctx, **{option: value})
    assert str(ei.value) == f"{option} should be a positive number, got {value}"
    gc.collect()   # asyncio leaves the connected socket to the collector
    tr, pr = await loop.create_connection(Collector, "127.0.0.1", srv.port)
    with pytest.raises(ValueError) as ei:
        await loop.start_tls(tr, pr, client_ctx, server_hostname="localhost", **{option: value})
    assert str(ei.value) == f"{option} should be a positive number, got {value}"
    tr.close()
    await close_server(srv)


async def test_start_tls_needs_a_context(client_ctx):
    loop = asyncio.get_running_loop()
    a, b = socket.socketpair()
    tr, pr = await loop.connect_accepted_socket(Collector, a)
    with pytest.raises(TypeError) as ei:
        await loop.start_tls(tr, pr, True)
    assert str(ei.value) == "sslcontext is expected to be an instance of ssl.SSLContext, got True"
    tr.close()
    b.close()


# --------------------------------------------------------------------------- 4. close_notify, write_eof

@pytest.mark.parametrize("closer", ["client", "server"])
async def test_close_notify(server_ctx, client_ctx, closer):
    """The closing side's close() sends close_notify: the other side's
    protocol gets eof_received() then connection_lost(None); so, once the
    answer comes, does the closing side's."""
    errors = record_errors()
    srv = await tls_server(server_ctx)
    tr, pr = await tls_client(srv.port, client_ctx)
    await echo_roundtrip(tr, pr, 100)
    sp = srv.protos[0]
    (tr if closer == "client" else sp.transport).close()
    assert await asyncio.wait_for(pr.lost, T) is None
    assert await asyncio.wait_for(sp.lost, T) is None
    other, closing = (sp, pr) if closer == "client" else (pr, sp)
    assert other.calls == ["made", "eof", ("lost", None)]
    # asyncio calls eof_received() on the closing side too, once the peer's
    # close_notify answers its own.
    assert closing.calls == ["made", "eof", ("lost", None)]
    assert tr.is_closing() and sp.transport.is_closing()
    await close_server(srv)
    assert kinds(errors) == []


class KeepOpen(Echo):
    def eof_received(self):
        super().eof_received()
        return True


async def test_eof_received_true_has_no_effect(server_ctx, client_ctx, caplog):
    """eof_received() returning True does not keep a TLS connection half
    open: asyncio logs a warning and closes."""
    srv = await tls_server(server_ctx, factory=KeepOpen)
    tr, pr = await tls_client(srv.port, client_ctx)
    await echo_roundtrip(tr, pr, 100)
    with caplog.at_level(logging.WARNING, logger="asyncio"):
        tr.close()
        assert await asyncio.wait_for(srv.protos[0].lost, T) is None
        assert await asyncio.wait_for(pr.lost, T) is None
    assert srv.protos[0].calls == ["made", "eof", ("lost", None)]
    msgs = [r.getMessage() for r in caplog.records if r.name == "asyncio"]
    assert msgs == ["returning true from eof_received() has no effect when using ssl"]
    await close_server(srv)


async def test_write_eof(server_ctx, client_ctx):
    """An SSL transport cannot half-close: can_write_eof() is False and
    write_eof() raises NotImplementedError; the connection still works."""
    srv = await tls_server(server_ctx)
    tr, pr = await tls_client(srv.port, client_ctx)
    assert tr.can_write_eof() is False
    with pytest.raises(NotImplementedError):
        tr.write_eof()
    await echo_roundtrip(tr, pr, 1000)
    assert srv.protos[0].transport.can_write_eof() is False
    tr.close()
    await asyncio.wait_for(pr.lost, T)
    await close_server(srv)


# --------------------------------------------------------------------------- 5. flow control

@pytest.mark.parametrize("writer", ["client", "server"])
async def test_pause_resume_writing(server_ctx, client_ctx, writer):
    """The writing side's pause_writing() fires once its buffer passes the
    high-water mark while the peer does not read; resume_writing() once the
    peer reads again; every byte arrives."""
    errors = record_errors()
    # (The reader pauses once both sides are up: an asyncio client that
    # pauses reading inside connection_made() holds back its last handshake
    # message until it reads or writes again, and the server waits for it.)
    srv = await tls_server(server_ctx, factory=Collector)
    tr, pr = await tls_client(srv.port, client_ctx)
    tr.write(b"x")
    sp = srv.protos[0]
    await sp.wait(1)
    sp.count = 0
    sp.hash = hashlib.sha256()
    w, r = (pr, sp) if writer == "client" else (sp, pr)
    r.transport.pause_reading()
    assert r.transport.is_reading() is False
    wt = w.transport
    assert wt.get_write_buffer_limits() == (128 * KiB, 512 * KiB)   # asyncio's SSL defaults
    with pytest.raises(ValueError) as ei:
        wt.set_write_buffer_limits(high=1, low=2)
    assert str(ei.value) == "high (1) must be >= low (2) must be >= 0"
    wt.set_write_buffer_limits(high=64 * KiB)
    assert wt.get_write_buffer_limits() == (16 * KiB, 64 * KiB)
    wt.set_write_buffer_limits(high=64 * KiB, low=8 * KiB)
    assert wt.get_write_buffer_limits() == (8 * KiB, 64 * KiB)
    assert wt.get_write_buffer_size() == 0
    # A first write larger than what the kernel's buffers and the reader's
    # TLS layer take in while it does not read (a few MiB), so that once
    # pause_writing() comes nothing can drain the writer until the reader
    # resumes.  (asyncio hands a write to the socket transport at once
    # while that one is not paused: the pause comes from later writes.)
    burst = payload(24 * MiB)
    wt.write(burst)
    h = hashlib.sha256(burst)
    total = len(burst)
    chunk = payload(64 * KiB)
    async with asyncio.timeout(T):
        while not w.paused:
            wt.write(chunk)
            h.update(chunk)
            total += len(chunk)
            assert total < 256 * MiB, "pause_writing never came"
            await asyncio.sleep(0)
    assert w.paused == 1 and w.resumed == 0
    assert wt.get_write_buffer_size() >= 64 * KiB
    assert r.count < total
    r.transport.resume_reading()
    await r.wait(total)
    assert r.count == total and r.hash.hexdigest() == h.hexdigest()
    await asyncio.wait_for(w.resume_event.wait(), T)
    assert w.paused == 1 and w.resumed == 1
    assert wt.get_write_buffer_size() <= 8 * KiB
    tr.close()
    await asyncio.wait_for(pr.lost, T)
    await asyncio.wait_for(sp.lost, T)
    await close_server(srv)
    assert kinds(errors) == []


class Pauser(Collector):
    """Pauses reading after the first data_received; counts calls while paused."""

    def __init__(self):
        super().__init__()
        self.while_paused = 0
        self.first = asyncio.get_running_loop().create_future()

    def data_received(self, data):
        if not self.transport.is_reading():
            self.while_paused += 1
        super().data_received(data)
        if not self.first.done():
            self.transport.pause_reading()
            self.first.set_result(self.count)


class Sender(Echo):
    def data_received(self, data):
        pass


async def test_pause_resume_reading(server_ctx, client_ctx):
    """pause_reading() on the TLS app transport stops data_received until
    resume_reading(); nothing is lost."""
    srv = await tls_server(server_ctx, factory=Sender)
    tr, pr = await tls_client(srv.port, client_ctx, factory=Pauser)
    sp = await srv.next_made()
    data = payload(2 * MiB)
    sp.transport.write(data)
    first = await asyncio.wait_for(pr.first, T)
    assert tr.is_reading() is False
    await asyncio.sleep(0.3)   # a stretch with data waiting: no data_received may come
    assert pr.count == first and pr.while_paused == 0
    tr.pause_reading()   # twice: no error
    tr.resume_reading()
    assert tr.is_reading() is True
    tr.resume_reading()   # twice: no error
    await pr.wait(len(data))
    assert pr.count == len(data) and pr.hash.hexdigest() == sha(data)
    assert pr.while_paused == 0
    tr.close()
    await asyncio.wait_for(pr.lost, T)
    await close_server(srv)


# --------------------------------------------------------------------------- 6. BufferedProtocol

class BufferedCollector(asyncio.BufferedProtocol):
    def __init__(self, bufsize):
        self.buf = bytearray(bufsize)
        self.hash = hashlib.sha256()
        self.count = 0
        self.sizes_asked = set()
        self.calls = []
        self.done = None
        self.want = None
        self.lost = asyncio.get_running_loop().create_future()

    def connection_made(self, transport):
        self.transport = transport
        self.calls.append("made")

    def get_buffer(self, sizehint):
        self.sizes_asked.add(sizehint)
        return memoryview(self.buf)

    def buffer_updated(self, nbytes):
        assert 0 < nbytes <= len(self.buf)
        self.hash.update(self.buf[:nbytes])
        self.count += nbytes
        if self.want is not None and self.count >= self.want and not self.done.done():
            self.done.set_result(None)

    def eof_received(self):
        self.calls.append("eof")

    def connection_lost(self, exc):
        self.calls.append(("lost", exc))
        self.lost.set_result(exc)


@pytest.mark.parametrize("bufsize,size", [(1, 64 * KiB), (16, 256 * KiB), (64 * KiB, 4 * MiB)],
                         ids=["1B-buffer", "16B-buffer", "64KiB-buffer"])
async def test_buffered_protocol(server_ctx, client_ctx, bufsize, size):
    srv = await tls_server(server_ctx)
    tr, pr = await tls_client(srv.port, client_ctx, factory=lambda: BufferedCollector(bufsize))
    data = payload(size)
    pr.want = size
    pr.done = asyncio.get_running_loop().create_future()
    tr.write(data)
    await asyncio.wait_for(pr.done, T + size / MiB)
    assert pr.count == size and pr.hash.hexdigest() == sha(data)
    tr.close()
    assert await asyncio.wait_for(pr.lost, T) is None
    assert pr.calls[0] == "made" and pr.calls[-1] == ("lost", None)
    await close_server(srv)


# --------------------------------------------------------------------------- 7. abort, close, write after close

async def test_abort(server_ctx, client_ctx):
    """abort(): connection_lost(None) at once on this side, no close_notify
    for the peer, which sees its connection end."""
    errors = record_errors()
    srv = await tls_server(server_ctx)
    tr, pr = await tls_client(srv.port, client_ctx)
    await echo_roundtrip(tr, pr, 100)
    tr.write(payload(1 * MiB))   # pending data is dropped
    t0 = time.monotonic()
    tr.abort()
    assert tr.is_closing()
    assert await asyncio.wait_for(pr.lost, T) is None
    assert time.monotonic() - t0 < 1
    sp = srv.protos[0]
    await asyncio.wait_for(sp.lost, T)
    assert "eof" not in sp.calls and "eof" not in pr.calls
    assert pr.calls[-1] == ("lost", None)
    tr.abort()   # again: nothing
    tr.close()
    await close_server(srv)
    assert kinds(errors) == []


async def test_peer_sees_close_notify_or_abort(server_ctx):
    """A strict TLS peer's view: abort() ends TCP without close_notify
    (SSLEOFError or a reset), close() sends close_notify (recv gives b'')."""
    srv = await tls_server(server_ctx)
    cctx = ssl.create_default_context()
    cctx.check_hostname = False
    cctx.verify_mode = ssl.CERT_NONE
    peer = await in_thread(tls_thread_client, srv.port, cctx)
    try:
        await in_thread(peer.sendall, b"x")
        assert await in_thread(peer.recv, 1) == b"x"
        srv.protos[0].transport.abort()
        assert await asyncio.wait_for(srv.protos[0].lost, T) is None

        def read():
            try:
                return peer.recv(100)
            except ssl.SSLEOFError:
                return "SSLEOFError"
            except ConnectionResetError:
                return "reset"
        got = await in_thread(read)
        assert got in ("SSLEOFError", "reset")
    finally:
        peer.close()
    peer = await in_thread(tls_thread_client, srv.port, cctx)
    try:
        await in_thread(peer.sendall, b"y")
        assert await in_thread(peer.recv, 1) == b"y"
        made(srv)[1].transport.close()
        assert await in_thread(peer.recv, 100) == b""
        await in_thread(peer.unwrap)   # answers the close_notify
        assert await asyncio.wait_for(made(srv)[1].lost, T) is None
    finally:
        peer.close()
    await close_server(srv)


async def test_close_twice(server_ctx, client_ctx):
    """close() twice: no error, one close_notify exchange, connection_lost
    once.  (asyncio's transport forgets its protocol on the second close(),
    after which write() raises AttributeError: not pinned here.)"""
    errors = record_errors()
    srv = await tls_server(server_ctx)
    tr, pr = await tls_client(srv.port, client_ctx)
    await echo_roundtrip(tr, pr, 100)
    tr.close()
    tr.close()
    assert tr.is_closing()
    assert await asyncio.wait_for(pr.lost, T) is None
    assert await asyncio.wait_for(srv.protos[0].lost, T) is None
    tr.close()
    assert pr.calls.count(("lost", None)) == 1
    assert srv.protos[0].calls == ["made", "eof", ("lost", None)]
    await close_server(srv)
    assert kinds(errors) == []


async def test_write_after_close(server_ctx, client_ctx, caplog):
    """Writes after close() are dropped (the peer gets none of them), and
    asyncio warns 'SSL connection is closed' from the sixth on; a str is
    still a TypeError."""
    srv = await tls_server(server_ctx)
    tr, pr = await tls_client(srv.port, client_ctx)
    await echo_roundtrip(tr, pr, 100)
    with caplog.at_level(logging.WARNING, logger="asyncio"):
        tr.close()
        for _ in range(10):
            tr.write(b"dropped")
        assert await asyncio.wait_for(pr.lost, T) is None
        assert await asyncio.wait_for(srv.protos[0].lost, T) is None
    msgs = [r.getMessage() for r in caplog.records if r.name == "asyncio"]
    assert msgs == ["SSL connection is closed"] * 5
    assert pr.count == 100   # nothing echoed: the server got none of it
    with pytest.raises(TypeError):
        tr.write("text")
    await close_server(srv)


# --------------------------------------------------------------------------- 8. bad peers

BAD_INPUT = {
    "garbage": b"\x00\x01garbage that is no ClientHello\r\n" * 4,
    "http": b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n",
}


@pytest.mark.parametrize("kind", ["garbage", "http", "truncated", "closed-mid-handshake"])
async def test_bad_client_server_keeps_serving(server_ctx, client_ctx, kind):
    """Each bad peer fails its own connection only: the server closes it,
    makes no protocol, reports nothing, and serves the next client."""
    loop = asyncio.get_running_loop()
    errors = record_errors()
    srv = await tls_server(server_ctx)
    s = await raw_connect(srv.port)
    hello = client_hello(client_ctx)
    if kind == "truncated":
        await loop.sock_sendall(s, hello[:len(hello) // 2])
        s.shutdown(socket.SHUT_WR)
    elif kind == "closed-mid-handshake":
        await loop.sock_sendall(s, hello)
        s.shutdown(socket.SHUT_WR)
    else:
        await loop.sock_sendall(s, BAD_INPUT[kind])
    got, how = await read_until_eof(s)
    s.close()
    # asyncio's server sends no alert: it closes.  A ClientHello it read
    # in full is answered (a handshake record, type 22) before the close.
    if kind == "closed-mid-handshake":
        if "threads" in type(loop).__name__.lower() or getattr(loop, "engine", "") == "threads":
            # The EOF fails the handshake and asyncio aborts the transport,
            # dropping what is still queued: asyncio's send() went out at
            # once, the threads engine's WRITE may still be on its
            # completion thread (docs/compatibility.md, write buffer size).
            assert got[:1] in (b"\x16", b""), got[:20]
        else:
            assert got[:1] == b"\x16", got[:20]
    else:
        assert got == b"", got[:20]
    assert how == "eof"
    assert made(srv) == []
    await good_request(srv.port, client_ctx)
    assert len(made(srv)) == 1   # only the good client's protocol was told
    assert made(srv)[0].calls == ["made", "eof", ("lost", None)]
    await close_server(srv)
    assert kinds(errors) == []


async def test_peer_closes_without_close_notify(server_ctx, client_ctx):
    """After the handshake the peer closes TCP without close_notify: the
    server's protocol gets eof_received() then connection_lost(None), as
    after a close_notify (asyncio's behaviour)."""
    errors = record_errors()
    srv = await tls_server(server_ctx)
    peer = await in_thread(tls_thread_client, srv.port, client_ctx)
    await in_thread(peer.sendall, b"x")
    assert await in_thread(peer.recv, 1) == b"x"
    peer.close()   # an SSLSocket's close() sends no close_notify
    exc = await asyncio.wait_for(srv.protos[0].lost, T)
    assert exc is None
    assert srv.protos[0].calls == ["made", "eof", ("lost", None)]
    await good_request(srv.port, client_ctx)
    await close_server(srv)
    assert kinds(errors) == []


@pytest.mark.parametrize("case", ["expired", "wrong-host", "untrusted"])
async def test_client_certificate_errors(certs, client_ctx, case):
    """The client rejects the server's certificate: SSLCertVerificationError
    out of create_connection with OpenSSL's verify code and message; the
    server keeps serving."""
    errors = record_errors()
    leaf = {"expired": certs.expired, "wrong-host": certs.wrong_host,
            "untrusted": trustme.CA().issue_cert("localhost")}[case]
    srv = await tls_server(certs.server_ctx(leaf))
    with pytest.raises(ssl.SSLCertVerificationError) as ei:
        await tls_client(srv.port, client_ctx)
    code, message = {
        "expired": (10, "certificate has expired"),
        "wrong-host": (62, "Hostname mismatch, certificate is not valid for 'localhost'."),
        "untrusted": (20, "unable to get local issuer certificate"),
    }[case]
    assert (ei.value.verify_code, ei.value.verify_message) == (code, message)
    assert ei.value.reason == "CERTIFICATE_VERIFY_FAILED"
    assert made(srv) == []
    await close_server(srv)
    srv = await tls_server(certs.server_ctx())
    await good_request(srv.port, client_ctx)
    await close_server(srv)
    assert kinds(errors) == []


async def test_server_requires_client_certificate(certs):
    """A server that requires a client certificate and a client without one.
    TLS 1.3: the client's handshake completes before the server has checked
    it; the server fails its own handshake and drops the connection (asyncio
    sends no alert), so the client sees eof_received() then
    connection_lost(None).  The server makes no protocol and keeps serving."""
    errors = record_errors()
    srv = await tls_server(certs.server_ctx(client_auth=True))
    tr, pr = await tls_client(srv.port, certs.client_ctx())
    tr.write(b"x")
    assert await asyncio.wait_for(pr.lost, T) is None
    assert pr.calls == ["made", "eof", ("lost", None)] and pr.count == 0
    assert made(srv) == []
    tr, pr = await tls_client(srv.port, certs.client_ctx(client_cert=True))
    await echo_roundtrip(tr, pr, 100)
    tr.close()
    await asyncio.wait_for(pr.lost, T)
    await close_server(srv)
    assert kinds(errors) == []


def _renegotiating_client(port, sock_box):
    """A TLS 1.2 client (pyOpenSSL: Python's ssl cannot renegotiate) that
    exchanges a byte, asks for a renegotiation, and tries another byte.
    What it saw: the first byte, then the error its last step raised."""
    from OpenSSL import SSL
    ctx = SSL.Context(SSL.TLS_CLIENT_METHOD)
    ctx.set_max_proto_version(SSL.TLS1_2_VERSION)
    s = socket.create_connection(("127.0.0.1", port))
    sock_box.append(s)   # the test closes it, which ends a blocked recv
    c = SSL.Connection(ctx, s)
    c.set_connect_state()
    c.set_tlsext_host_name(b"localhost")
    c.do_handshake()
    c.sendall(b"a")
    seen = [c.recv(1)]
    if not c.renegotiate():
        return seen + ["refused locally"]
    try:
        c.sendall(b"b")
        seen.append(c.recv(1))
    except SSL.Error as exc:
        seen.append(exc.args[0][0][2] if exc.args and exc.args[0] else repr(exc))
    return seen


async def test_renegotiation_refused(certs, client_ctx):
    """A TLS 1.2 client asks for a renegotiation (TLS 1.3 has none): the
    server refuses it (Python's ssl allows none), the client gives up with
    an alert, the server's protocol gets connection_lost(SSLError), nothing
    is reported, and the server keeps serving."""
    pytest.importorskip("OpenSSL", reason="pyOpenSSL is not installed: no client can renegotiate")
    errors = record_errors()
    srv = await tls_server(certs.server_ctx(max_version=ssl.TLSVersion.TLSv1_2))
    box = []
    try:
        seen = await in_thread(_renegotiating_client, srv.port, box)
    finally:
        for s in box:
            s.close()
    if seen[-1] == "refused locally":
        pytest.skip("this OpenSSL refuses to start a renegotiation")
    assert seen == [b"a", "no renegotiation"]
    exc = await asyncio.wait_for(made(srv)[0].lost, T)
    assert isinstance(exc, ssl.SSLError) and exc.reason == "SSLV3_ALERT_HANDSHAKE_FAILURE", exc
    assert made(srv)[0].calls == ["made", ("lost", exc)]
    await good_request(srv.port, client_ctx)
    await close_server(srv)
    assert kinds(errors) == []


# --------------------------------------------------------------------------- 9. no leaks

async def test_no_descriptor_leak(server_ctx, client_ctx):
    """300 garbage peers and 300 good short TLS connections: the descriptor
    count comes back to where it started, nothing is reported."""
    loop = asyncio.get_running_loop()
    errors = record_errors()
    srv = await tls_server(server_ctx)
    garbage = BAD_INPUT["garbage"]

    async def bad():
        s = await raw_connect(srv.port)
        try:
            await loop.sock_sendall(s, garbage)
            await read_until_eof(s)
        finally:
            s.close()

    async def good():
        tr, pr = await tls_client(srv.port, client_ctx)
        await echo_roundtrip(tr, pr, 10)
        tr.close()
        await asyncio.wait_for(pr.lost, T)

    await bad()
    await good()
    async with asyncio.timeout(T):
        while not all(p.lost.done() for p in made(srv)):
            await asyncio.sleep(0.05)
    await asyncio.sleep(0.1)    # the warm-up's closes, done on the engine
    gc.collect()
    before = nfds()
    for _ in range(15):
        await asyncio.gather(*(bad() for _ in range(20)))
        await asyncio.gather(*(good() for _ in range(20)))
    async with asyncio.timeout(T):
        # The server's side ends after the client's: its descriptor goes
        # when the transport's close is done, and the application's
        # connection_lost() one loop iteration later (asyncio's SSLProtocol
        # schedules it).
        while True:
            gc.collect()
            if nfds() <= before and all(p.lost.done() for p in made(srv)):
                break
            await asyncio.sleep(0.05)
    # (<=: should a descriptor of the warm-up have been still closing when
    # `before` was counted, it is gone since)
    assert nfds() <= before
    assert len(made(srv)) == 301
    assert all(p.lost.done() for p in made(srv))
    await close_server(srv)
    assert kinds(errors) == []


# --------------------------------------------------------------------------- 10. the gunicorn worker over TLS
# (the CLI's --ssl-certfile/--ssl-keyfile is covered by test_cli.py::test_serve_tls)

@pytest.mark.parametrize("engine", ENGINES)
def test_gunicorn_worker_tls(tmp_path, certs, engine):
    """gunicorn --certfile/--keyfile with aioloop's worker serves HTTPS with
    that certificate (a client that does not trust it fails)."""
    pytest.importorskip("aiohttp", reason="aiohttp is not installed (it is in the test extra)")
    pytest.importorskip("gunicorn", reason="gunicorn is not installed (it is in the test extra)")
    import cli_helpers as h
    from test_gunicorn import start_gunicorn
    p, url = start_gunicorn(tmp_path, "cliapp:app", "--certfile", certs.cert_file,
                            "--keyfile", certs.key_file, extra_env={"AIOLOOP_ENGINE": engine})
    url = url.replace("http://", "https://")
    ctx = certs.client_ctx()
    try:
        p.wait_line(r"Booting worker with pid: \d+")
        answer = None
        for _ in range(200):
            try:
                answer = h.get(url, ssl_context=ctx)
                break
            except ConnectionRefusedError:
                time.sleep(0.05)   # the worker is still starting its site
        assert answer is not None, p.stderr()
        status, body = answer
        assert status == 200 and body["loop"] == "aioloop._loop" and body["engine"] == engine
        with pytest.raises(ssl.SSLCertVerificationError):
            h.get(url, ssl_context=ssl.create_default_context())
        p.signal(signal.SIGTERM)
        assert p.wait() == 0, p.stderr()
        assert "Traceback" not in p.stderr(), p.stderr()
    finally:
        p.stop()


# --------------------------------------------------------------------------- more of the app transport

async def test_writelines_and_sendfile(server_ctx, client_ctx, tmp_path):
    """writelines() and loop.sendfile() over TLS (asyncio: sendfile falls
    back to reading the file and writing it; fallback=False is a
    RuntimeError)."""
    loop = asyncio.get_running_loop()
    srv = await tls_server(server_ctx)
    tr, pr = await tls_client(srv.port, client_ctx)
    parts = [payload(n) for n in (1, 1000, 100 * KiB, 1)]
    tr.writelines(parts)
    await pr.wait(sum(map(len, parts)))
    assert pr.hash.hexdigest() == sha(b"".join(parts))
    data = payload(1 * MiB + 7)
    path = tmp_path / "f"
    path.write_bytes(data)
    pr.hash = hashlib.sha256()
    start = pr.count
    with open(path, "rb") as f:
        with pytest.raises(RuntimeError) as ei:
            await loop.sendfile(tr, f, fallback=False)
        assert str(ei.value).startswith(
            "fallback is disabled and native sendfile is not supported for transport")
        sent = await asyncio.wait_for(loop.sendfile(tr, f), T)
    assert sent == len(data)
    await pr.wait(start + len(data))
    assert pr.hash.hexdigest() == sha(data)
    tr.close()
    await asyncio.wait_for(pr.lost, T)
    await close_server(srv)


async def test_get_and_set_protocol(server_ctx, client_ctx):
    """get_protocol() is the application's protocol; after set_protocol()
    the data goes to the new one."""
    srv = await tls_server(server_ctx)
    tr, pr = await tls_client(srv.port, client_ctx)
    assert tr.get_protocol() is pr
    await echo_roundtrip(tr, pr, 10)
    other = Collector()
    tr.set_protocol(other)
    assert tr.get_protocol() is other
    data = payload(1000)
    tr.write(data)
    await other.wait(1000)
    assert other.hash.hexdigest() == sha(data) and pr.count == 10
    tr.close()
    assert await asyncio.wait_for(other.lost, T) is None
    assert not pr.lost.done()
    await close_server(srv)


class Raiser(Collector):
    def __init__(self, where):
        super().__init__()
        self.where = where

    def connection_made(self, transport):
        super().connection_made(transport)
        if self.where == "connection_made":
            1 / 0

    def data_received(self, data):
        super().data_received(data)
        if self.where == "data_received":
            1 / 0

    def eof_received(self):
        super().eof_received()
        if self.where == "eof_received":
            1 / 0


@pytest.mark.parametrize("where", ["data_received", "eof_received"])
async def test_app_protocol_raises(server_ctx, client_ctx, where):
    """An exception out of the application's callback: asyncio reports it
    through the exception handler ('Fatal error on SSL protocol' /
    'Error calling eof_received()') and the connection is lost with it."""
    errors = record_errors()
    srv = await tls_server(server_ctx)
    tr, pr = await tls_client(srv.port, client_ctx, factory=lambda: Raiser(where))
    if where == "data_received":
        tr.write(b"x")
    else:
        (await srv.next_made()).transport.close()
    exc = await asyncio.wait_for(pr.lost, T)
    assert type(exc) is ZeroDivisionError
    message = {"data_received": "Fatal error on SSL protocol",
               "eof_received": "Error calling eof_received()"}[where]
    assert kinds(errors) == [("ZeroDivisionError", message)]
    assert errors[0]["exception"] is exc
    await asyncio.wait_for(made(srv)[0].lost, T)
    await good_request(srv.port, client_ctx)
    await close_server(srv)


async def test_app_connection_made_raises(server_ctx, client_ctx):
    """connection_made() raising on the client: create_connection raises
    that exception, the exception handler gets it once (asyncio's message
    names its own read path, 'Fatal error: protocol.buffer_updated() call
    failed.': only its start is pinned), the server is never told of the
    connection and keeps serving."""
    errors = record_errors()
    srv = await tls_server(server_ctx)
    with pytest.raises(ZeroDivisionError) as ei:
        await tls_client(srv.port, client_ctx, factory=lambda: Raiser("connection_made"))
    await asyncio.wait_for(errors.event.wait(), T)
    assert [type(c.get("exception")) for c in errors] == [ZeroDivisionError]
    assert errors[0]["exception"] is ei.value
    assert errors[0]["message"].startswith("Fatal error")
    await good_request(srv.port, client_ctx)
    assert len(made(srv)) == 1
    await close_server(srv)


async def test_start_tls_handshake_timeout(client_ctx):
    """start_tls() on a connection whose peer never answers: asyncio's
    ConnectionAbortedError after ssl_handshake_timeout, the transport closed."""
    loop = asyncio.get_running_loop()
    errors = record_errors()
    lsock = socket.socket()
    lsock.bind(("127.0.0.1", 0))
    lsock.listen()
    lsock.setblocking(False)
    try:
        tr, pr = await asyncio.wait_for(loop.create_connection(
            Collector, "127.0.0.1", lsock.getsockname()[1]), T)
        conn, _ = await asyncio.wait_for(loop.sock_accept(lsock), T)
        conn.setblocking(False)
        t0 = time.monotonic()
        with pytest.raises(ConnectionAbortedError) as ei:
            await asyncio.wait_for(loop.start_tls(
                tr, pr, client_ctx, server_hostname="localhost", ssl_handshake_timeout=0.3), T)
        assert 0.2 <= time.monotonic() - t0 < 5
        assert str(ei.value) == ("SSL handshake is taking longer than 0.3 seconds: "
                                 "aborting the connection")
        with conn:
            got, how = await read_until_eof(conn)
        assert got[:1] == b"\x16" and how in ("eof", "reset")
        assert tr.is_closing()
    finally:
        lsock.close()
    assert kinds(errors) == []
