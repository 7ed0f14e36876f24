"""Echo and HTTP servers the network benchmarks drive, one per child process.

    python -m bench.servers LOOP KIND [PORT]

KIND is one of protocol, buffered, streams, sock (echo servers in the four
asyncio styles) or aiohttp (a "hello world" app).  Prints "ready PORT" once
listening, then serves until killed.
"""
import asyncio
import resource
import socket
import sys

from bench.loops import factory


class EchoProtocol(asyncio.Protocol):
    def connection_made(self, transport):
        self.transport = transport

    def data_received(self, data):
        self.transport.write(data)


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


async def serve_aiohttp(port):
    from aiohttp import web

    async def hello(request):
        return web.Response(text="Hello, world")

    app = web.Application()
    app.router.add_get("/", hello)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", port, backlog=4096)
    await site.start()
    print("ready", site._server.sockets[0].getsockname()[1], flush=True)
    await asyncio.Event().wait()


async def serve(kind, port):
    loop = asyncio.get_running_loop()
    if kind == "sock":
        return await serve_sock(loop, port)
    if kind == "aiohttp":
        return await serve_aiohttp(port)
    if kind == "streams":
        srv = await asyncio.start_server(echo_stream, "127.0.0.1", port, backlog=4096)
    else:
        proto = {"protocol": EchoProtocol, "buffered": EchoBuffered}[kind]
        srv = await loop.create_server(proto, "127.0.0.1", port, backlog=4096)
    print("ready", srv.sockets[0].getsockname()[1], flush=True)
    await srv.serve_forever()


def main():
    loop_name, kind = sys.argv[1], sys.argv[2]
    port = int(sys.argv[3]) if len(sys.argv) > 3 else 0
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    with asyncio.Runner(loop_factory=factory(loop_name)) as runner:
        try:
            runner.run(serve(kind, port))
        except KeyboardInterrupt:
            pass


if __name__ == "__main__":
    main()
