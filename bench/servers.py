"""Echo and HTTP servers the network benchmarks drive, one per child process.

    python -m bench.servers LOOP KIND [PORT [WORK]]

KIND is one of protocol, buffered, streams, sock (TCP echo servers in the
four asyncio styles), udp (a datagram echo server), aiohttp (a "hello
world" app), or tls-protocol, tls-buffered, tls-aiohttp (the protocol,
buffered and aiohttp servers over TLS: ``create_server(ssl=...)`` with the
certificate and key in $BENCH_TLS_DIR, cert.pem and key.pem).  WORK
(protocol only) is pure-Python work done in every data_received: that many
iterations of spin() (calibrate() says how many make a µs here); for
aiohttp and tls-aiohttp it is the response body's size in bytes instead (0:
"Hello, world", 12 bytes).  Prints "ready PORT" once create_server (or its
like) has returned, then serves until killed; the bench checks that the
port answers (for TLS, that a handshake completes) before it measures.
"""
import asyncio
import os
import resource
import socket
import ssl
import sys
import time

from bench.loops import factory


def spin(n):
    """Pure-Python busy work: n iterations of an add (see calibrate())."""
    x = 0
    for i in range(n):
        x += i
    return x


def calibrate(n=200_000, tries=5):
    """spin() iterations per µs of this thread's CPU time (so time spent
    preempted does not count), the fastest of a few tries.  The bench
    calibrates once and hands every server the same iteration count, so each
    loop does the same work even though this machine's speed drifts (by up
    to 2x between processes on the shared VM)."""
    best = float("inf")
    for _ in range(tries):
        t0 = time.thread_time()
        spin(n)
        best = min(best, time.thread_time() - t0)
    return n / (best * 1e6)


class EchoProtocol(asyncio.Protocol):
    def connection_made(self, transport):
        self.transport = transport

    def data_received(self, data):
        self.transport.write(data)


def echo_working(iters):
    class EchoWorking(EchoProtocol):
        def data_received(self, data):
            spin(iters)
            self.transport.write(data)
    return EchoWorking


class EchoDatagram(asyncio.DatagramProtocol):
    def connection_made(self, transport):
        self.transport = transport

    def datagram_received(self, data, addr):
        self.transport.sendto(data, addr)

    def error_received(self, exc):
        pass      # an ICMP error from a client socket already gone


class EchoBuffered(asyncio.BufferedProtocol):
    def __init__(self):
        self.buf = bytearray(256 * 1024)
        self.view = memoryview(self.buf)

    def connection_made(self, transport):
        self.transport = transport

    def get_buffer(self, sizehint):
        return self.view

    def buffer_updated(self, nbytes):
        self.transport.write(self.buf[:nbytes])


async def echo_stream(reader, writer):
    try:
        while True:
            data = await reader.read(256 * 1024)
            if not data:
                break
            writer.write(data)
            await writer.drain()
    except ConnectionError:
        pass
    finally:
        writer.close()


async def echo_sock(loop, conn):
    try:
        while True:
            data = await loop.sock_recv(conn, 256 * 1024)
            if not data:
                break
            await loop.sock_sendall(conn, data)
    except ConnectionError:
        pass
    finally:
        conn.close()


async def serve_sock(loop, port):
    lsock = socket.socket()
    lsock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    lsock.bind(("127.0.0.1", port))
    lsock.listen(4096)
    lsock.setblocking(False)
    print("ready", lsock.getsockname()[1], flush=True)
    tasks = set()
    while True:
        conn, _ = await loop.sock_accept(lsock)
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        t = loop.create_task(echo_sock(loop, conn))
        tasks.add(t)
        t.add_done_callback(tasks.discard)


def tls_context():
    """The server side's SSLContext: Python's defaults for a server (TLS 1.2
    or 1.3, 1.3 negotiated with any current client), the bench run's
    self-signed certificate."""
    d = os.environ.get("BENCH_TLS_DIR")
    if not d:
        raise ValueError("TLS servers need BENCH_TLS_DIR (a directory with cert.pem and key.pem)")
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(os.path.join(d, "cert.pem"), os.path.join(d, "key.pem"))
    return ctx


def http_body(size):
    """The hello app's body: "Hello, world" (size 0), or `size` bytes of
    "Hello, world!" repeated (13: exactly that)."""
    if not size:
        return b"Hello, world"
    return (b"Hello, world!" * (size // 13 + 1))[:size]


async def serve_aiohttp(port, body_size=0, ssl_context=None):
    from aiohttp import web
    body = http_body(body_size)

    async def hello(request):
        if not body_size:        # as it always was, for comparison with older runs
            return web.Response(text="Hello, world")
        return web.Response(body=body, content_type="text/plain", charset="utf-8")

    app = web.Application()
    app.router.add_get("/", hello)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", port, backlog=4096, ssl_context=ssl_context)
    await site.start()
    print("ready", site._server.sockets[0].getsockname()[1], flush=True)
    await asyncio.Event().wait()


async def serve_udp(loop, port):
    transport, _ = await loop.create_datagram_endpoint(EchoDatagram, local_addr=("127.0.0.1", port))
    print("ready", transport.get_extra_info("sockname")[1], flush=True)
    await asyncio.Event().wait()


async def serve(kind, port, work=0):
    loop = asyncio.get_running_loop()
    if work and kind not in ("protocol", "aiohttp", "tls-aiohttp"):
        raise ValueError("WORK is for the protocol and aiohttp servers only")
    tls = tls_context() if kind.startswith("tls-") else None
    kind = kind[len("tls-"):] if tls else kind
    if tls and kind not in ("protocol", "buffered", "aiohttp"):
        raise ValueError(f"no TLS server of kind {kind!r}")
    if kind == "sock":
        return await serve_sock(loop, port)
    if kind == "aiohttp":
        return await serve_aiohttp(port, work, tls)
    if kind == "udp":
        return await serve_udp(loop, port)
    if kind == "streams":
        srv = await asyncio.start_server(echo_stream, "127.0.0.1", port, backlog=4096)
    else:
        proto = {"protocol": EchoProtocol, "buffered": EchoBuffered}[kind]
        if work:
            proto = echo_working(work)
        srv = await loop.create_server(proto, "127.0.0.1", port, backlog=4096, ssl=tls)
    print("ready", srv.sockets[0].getsockname()[1], flush=True)
    # Not srv.serve_forever(): create_server has started serving already,
    # and rloop 0.5's serve_forever starts it a second time, which stops its
    # listener (connections refused) or panics.
    async with srv:
        await asyncio.Event().wait()


def main():
    loop_name, kind = sys.argv[1], sys.argv[2]
    port = int(sys.argv[3]) if len(sys.argv) > 3 else 0
    work = int(sys.argv[4]) if len(sys.argv) > 4 else 0
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    with asyncio.Runner(loop_factory=factory(loop_name)) as runner:
        try:
            runner.run(serve(kind, port, work))
        except KeyboardInterrupt:
            pass


if __name__ == "__main__":
    main()
