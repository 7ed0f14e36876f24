"""Context variables seen by a server's protocols (Python 3.15's asyncio
passes the server's context to the loop's _start_serving and the
connection's to _make_socket_transport: each connection's protocol factory
and callbacks run in a copy of the context the server was created in).
Before aioloop took `context`, every server and client connection failed on
3.15 with TypeError."""
import asyncio
import contextvars
import socket
import sys

import pytest

import aioloop

var = contextvars.ContextVar("var", default="default")


async def _fetch(addr):
    reader, writer = await asyncio.open_connection(*addr)
    data = await reader.read(100)
    writer.close()
    await writer.wait_closed()
    return data.decode()


async def test_start_server_handlers_see_the_context_of_the_servers_creation():
    async def handle(reader, writer):
        value = var.get()
        var.set("in_handler")
        writer.write(value.encode())
        await writer.drain()
        writer.close()

    var.set("before_server")
    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    var.set("after_server")
    async with server:
        addr = server.sockets[0].getsockname()
        assert [await _fetch(addr) for _ in range(3)] == ["before_server"] * 3
    assert var.get() == "after_server"


async def test_protocol_callbacks_of_one_connection_do_not_leak_into_another():
    made = []

    class Echo(asyncio.Protocol):
        def __init__(self):
            made.append(("init", var.get()))

        def connection_made(self, transport):
            made.append(("made", var.get()))
            var.set("in_handler")
            transport.write(b"x")
            transport.close()

    server = await asyncio.get_running_loop().create_server(Echo, "127.0.0.1", 0)
    var.set("after_server")
    async with server:
        addr = server.sockets[0].getsockname()
        assert [await _fetch(addr) for _ in range(2)] == ["x", "x"]
    assert made == [("init", "default"), ("made", "default")] * 2
    assert var.get() == "after_server"


@pytest.mark.parametrize("engine", ["threads", "uring"])
def test_start_serving_takes_the_servers_context(engine):
    """The loop-level call 3.15's Server makes, on every Python: the
    factory and connection_made run in a copy of the given context (not the
    caller's), and what a connection sets stays in its own copy."""
    try:
        loop = aioloop.new_event_loop(engine=engine)
    except OSError:
        pytest.skip(f"engine {engine} is not available here")
    ctx = contextvars.copy_context()
    ctx.run(var.set, "server")
    made = []

    class P(asyncio.Protocol):
        def __init__(self):
            made.append(("init", var.get()))

        def connection_made(self, transport):
            made.append(("made", var.get()))
            var.set("conn")
            transport.write(b"x")
            transport.close()

    async def main():
        sock = socket.create_server(("127.0.0.1", 0))
        sock.setblocking(False)
        loop._start_serving(P, sock, context=ctx)
        try:
            return [await _fetch(sock.getsockname()) for _ in range(2)]
        finally:
            loop._stop_serving(sock)

    try:
        assert loop.run_until_complete(main()) == ["x", "x"]
    finally:
        loop.close()
    assert made == [("init", "server"), ("made", "server")] * 2
    assert ctx[var] == "server"
    assert var.get() == "default"


@pytest.mark.skipif(sys.version_info < (3, 15), reason="asyncio passes context= from 3.15 on")
def test_a_three_line_server_runs_on_315():
    async def main():
        server = await asyncio.start_server(lambda r, w: w.close(), "127.0.0.1", 0)
        server.close()
        await server.wait_closed()
        return "ok"

    assert aioloop.run(main()) == "ok"
