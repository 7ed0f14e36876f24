"""Real packages on aioloop, no mocks: aiohttp's client against aiohttp's
server (chunked request and response bodies of several MiB checked by
sha256, one keep-alive connection across request kinds, web.FileResponse
through sendfile with and without a Range, websockets with text, binary,
ping and close codes, all of it again over TLS with a trustme certificate),
and uvicorn's command line with --loop aioloop:new_event_loop answering
requests from an app that reports the loop it runs on.

The async tests run on each aioloop engine and on asyncio's loop (the
conftest's loop factories); test_aiohttp.py covers aiohttp under the policy.
Nothing may reach the loop's exception handler during a test."""
import asyncio
import hashlib
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

import aioloop
from conftest import ENGINES

aiohttp = pytest.importorskip(
    "aiohttp", reason="aiohttp is not installed (it is in the test extra: pip install -e .[test])")
from aiohttp import web  # noqa: E402

MiB = 1 << 20
BIG = 6 * MiB
ROOT = Path(__file__).resolve().parent.parent


def pattern(n, seed=0):
    """n deterministic, non-repeating-looking bytes."""
    out = bytearray()
    block = hashlib.sha256(b"%d" % seed).digest()
    while len(out) < n:
        block = hashlib.sha256(block).digest()
        out += block * 64
    return bytes(out[:n])


PAYLOAD = pattern(BIG)


@pytest.fixture
async def loop_errors():
    """What reaches the running loop's exception handler; must stay empty."""
    loop = asyncio.get_running_loop()
    errors = []
    loop.set_exception_handler(lambda lp, ctx: errors.append(ctx))
    yield errors
    await asyncio.sleep(0)
    loop.set_exception_handler(None)
    assert errors == []


def make_app(tmp_path, peers):
    big_file = tmp_path / "big.bin"
    big_file.write_bytes(PAYLOAD)

    async def digest(request):
        peers.add(request.transport.get_extra_info("peername"))
        h = hashlib.sha256()
        size = 0
        async for chunk in request.content.iter_chunked(64 * 1024):
            h.update(chunk)
            size += len(chunk)
        return web.json_response({"sha256": h.hexdigest(), "size": size,
                                  "chunked": request.headers.get("Transfer-Encoding"),
                                  "tls": request.transport.get_extra_info("sslcontext") is not None})

    async def stream(request):
        peers.add(request.transport.get_extra_info("peername"))
        resp = web.StreamResponse()
        resp.enable_chunked_encoding()
        await resp.prepare(request)
        sizes = [1, 100, 4096, 65536, 300_000, 1_000_000]
        pos = i = 0
        while pos < len(PAYLOAD):
            step = sizes[i % len(sizes)]
            await resp.write(PAYLOAD[pos:pos + step])
            pos += step
            i += 1
        await resp.write_eof()
        return resp

    async def file(request):
        peers.add(request.transport.get_extra_info("peername"))
        return web.FileResponse(big_file)

    async def ws_handler(request):
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        async for msg in ws:
            if msg.type == aiohttp.WSMsgType.TEXT:
                if msg.data == "close me":
                    await ws.close(code=4000, message=b"as asked")
                    break
                await ws.send_str(msg.data.upper())
            elif msg.type == aiohttp.WSMsgType.BINARY:
                await ws.send_bytes(hashlib.sha256(msg.data).digest() + msg.data[:16])
        return ws

    app = web.Application(client_max_size=2 * BIG)
    app.router.add_post("/digest", digest)
    app.router.add_get("/stream", stream)
    app.router.add_get("/file", file)
    app.router.add_get("/ws", ws_handler)
    return app


class Served:
    def __init__(self, app, ssl_context=None):
        self.runner = web.AppRunner(app)
        self.ssl_context = ssl_context

    async def __aenter__(self):
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0, ssl_context=self.ssl_context)
        await site.start()
        port = self.runner.addresses[0][1]
        scheme = "https" if self.ssl_context else "http"
        self.base = f"{scheme}://127.0.0.1:{port}"
        self.ws_base = f"{'wss' if self.ssl_context else 'ws'}://127.0.0.1:{port}"
        return self

    async def __aexit__(self, *exc):
        await self.runner.cleanup()


async def chunked_body():
    sizes = [7, 65536, 1000, 250_000, 3]
    pos = i = 0
    while pos < len(PAYLOAD):
        step = sizes[i % len(sizes)]
        yield PAYLOAD[pos:pos + step]
        pos += step
        i += 1
        if i % 8 == 0:
            await asyncio.sleep(0)


async def http_round(session, base, tls=False):
    """A chunked upload, a streamed download, a file (whole, then a range):
    every byte checked."""
    async with session.post(f"{base}/digest", data=chunked_body()) as r:
        assert r.status == 200
        info = await r.json()
    assert info == {"sha256": hashlib.sha256(PAYLOAD).hexdigest(), "size": BIG,
                    "chunked": "chunked", "tls": tls}

    async with session.get(f"{base}/stream") as r:
        assert r.headers["Transfer-Encoding"] == "chunked"
        h = hashlib.sha256()
        async for chunk in r.content.iter_any():
            h.update(chunk)
    assert h.hexdigest() == hashlib.sha256(PAYLOAD).hexdigest()

    async with session.get(f"{base}/file") as r:
        assert r.status == 200 and int(r.headers["Content-Length"]) == BIG
        body = await r.read()
    assert hashlib.sha256(body).digest() == hashlib.sha256(PAYLOAD).digest()

    lo, hi = 3 * MiB - 5, 5 * MiB + 17
    async with session.get(f"{base}/file", headers={"Range": f"bytes={lo}-{hi}"}) as r:
        assert r.status == 206
        assert await r.read() == PAYLOAD[lo:hi + 1]


async def ws_round(session, ws_base):
    async with session.ws_connect(f"{ws_base}/ws", autoping=False, max_msg_size=4 * MiB) as ws:
        for i in range(20):
            await ws.send_str(f"hello {i}")
            assert await ws.receive_str() == f"HELLO {i}"
        data = PAYLOAD[:2 * MiB]
        await ws.send_bytes(data)
        assert await ws.receive_bytes() == hashlib.sha256(data).digest() + data[:16]
        await ws.ping(b"are you there")
        msg = await ws.receive()
        assert (msg.type, msg.data) == (aiohttp.WSMsgType.PONG, b"are you there")
        await ws.send_str("close me")
        msg = await ws.receive()
        assert msg.type == aiohttp.WSMsgType.CLOSE and msg.data == 4000 and msg.extra == "as asked"
        await ws.close()
    assert ws.closed and ws.close_code == 4000


async def test_aiohttp_bodies_files_and_websockets(tmp_path, loop_errors):
    peers = set()
    async with Served(make_app(tmp_path, peers)) as srv, asyncio.timeout(120):
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=1)) as session:
            await http_round(session, srv.base)
            await http_round(session, srv.base)
            assert len(peers) == 1, "keep-alive: every request on one connection"
            await ws_round(session, srv.ws_base)


async def test_aiohttp_many_clients_at_once(tmp_path, loop_errors):
    peers = set()
    async with Served(make_app(tmp_path, peers)) as srv, asyncio.timeout(120):
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=8)) as session:
            async def one(i):
                data = pattern(50_000 + i * 997, seed=i)
                async with session.post(f"{srv.base}/digest", data=data) as r:
                    info = await r.json()
                assert info["sha256"] == hashlib.sha256(data).hexdigest()
            await asyncio.gather(*(one(i) for i in range(64)))
    assert 1 < len(peers) <= 8


@pytest.fixture(scope="module")
def tls(tls_pair):
    return tls_pair


async def test_aiohttp_over_tls(tmp_path, tls, loop_errors):
    server_ctx, client_ctx = tls
    peers = set()
    async with Served(make_app(tmp_path, peers), ssl_context=server_ctx) as srv, \
            asyncio.timeout(120):
        connector = aiohttp.TCPConnector(limit=1, ssl=client_ctx)
        async with aiohttp.ClientSession(connector=connector) as session:
            await http_round(session, srv.base, tls=True)
            assert len(peers) == 1
            await ws_round(session, srv.ws_base)
        # a client that does not trust the certificate is refused
        async with aiohttp.ClientSession() as session:
            with pytest.raises(aiohttp.ClientConnectorCertificateError):
                await session.get(f"{srv.base}/file")


# --- uvicorn, from its command line ------------------------------------------

@pytest.mark.parametrize("engine", ENGINES)
def test_uvicorn_command_line_on_aioloop(engine):
    pytest.importorskip("uvicorn", reason="uvicorn is not installed (it is in the test extra)")
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    env = dict(os.environ, AIOLOOP_ENGINE=engine,
               PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]))
    proc = subprocess.Popen(
        [sys.executable, "-m", "uvicorn", "--loop", "aioloop:new_event_loop",
         "--fd", str(listener.fileno()), "--app-dir", str(ROOT / "examples"),
         "--log-level", "info", "--no-access-log", "uvicorn_asgi:app"],
        pass_fds=[listener.fileno()], env=env,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    listener.close()
    try:
        async def talk():
            base = f"http://127.0.0.1:{port}"
            async with aiohttp.ClientSession() as session:
                deadline = time.monotonic() + 30
                while True:     # the socket accepts at once; the app answers once started
                    try:
                        async with session.get(f"{base}/") as r:
                            info = await r.json(content_type=None)
                        break
                    except aiohttp.ClientError:
                        if time.monotonic() > deadline or proc.poll() is not None:
                            raise
                        await asyncio.sleep(0.1)

                async def echo(i):
                    data = pattern(200_000 + i, seed=i)
                    async with session.post(f"{base}/echo", data=data) as r:
                        assert r.status == 200 and await r.read() == data
                await asyncio.gather(*(echo(i) for i in range(20)))
                async with session.get(f"{base}/missing") as r:
                    assert r.status == 404
            return info

        info = asyncio.run(asyncio.wait_for(talk(), 60))
        assert info == {"hello": "world", "loop": "aioloop.Loop", "engine": engine}
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=20)
        # a graceful shutdown, after which uvicorn re-raises the signal it
        # caught (on any loop), so the process ends by SIGTERM
        assert "Finished server process" in err, err
        assert proc.returncode == -signal.SIGTERM, err
        assert "Traceback" not in err and "ERROR" not in err, err
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()


def test_anyio_runs_on_aioloop():
    anyio = pytest.importorskip("anyio")

    async def main():
        async with anyio.create_task_group() as tg:
            results = []

            async def child(i):
                await anyio.sleep(0.001 * i)
                results.append(i)
            for i in range(5):
                tg.start_soon(child, i)
        return type(asyncio.get_running_loop()), sorted(results)

    for engine in ENGINES:
        got = anyio.run(main, backend="asyncio", backend_options={
            "loop_factory": lambda: aioloop.new_event_loop(engine=engine)})
        assert got == (aioloop.Loop, [0, 1, 2, 3, 4])


# --- Ctrl-C --------------------------------------------------------------------

CTRL_C_CHILD = """
import asyncio, sys
import aioloop

async def main():
    print("ready", flush=True)
    await asyncio.Event().wait()        # an idle loop: nothing but the signal wakes it

try:
    aioloop.run(main(), engine=sys.argv[1])
except KeyboardInterrupt:
    print("interrupted", flush=True)
"""


@pytest.mark.parametrize("engine", ENGINES)
def test_ctrl_c_stops_aioloop_run(engine):
    """Ctrl-C on a program run by aioloop.run() whose loop is idle: asyncio.Runner's
    SIGINT handler cancels the main task and KeyboardInterrupt comes out, as on
    asyncio's loop."""
    proc = subprocess.Popen([sys.executable, "-c", CTRL_C_CHILD, engine],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline() == "ready\n"
        time.sleep(0.3)          # the loop is asleep by now
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=5)
        assert (out, proc.returncode) == ("interrupted\n", 0), err
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()


RUN_APP_CHILD = """
import asyncio, socket, sys
from aiohttp import web
import aioloop

async def where(request):
    loop = asyncio.get_running_loop()
    return web.Response(text=f"{type(loop).__module__} {loop.engine}")

app = web.Application()
app.router.add_get("/", where)
sock = socket.socket(fileno=int(sys.argv[2]))
web.run_app(app, sock=sock, loop=aioloop.new_event_loop(engine=sys.argv[1]),
            print=lambda *a: print("ready", flush=True))
print("stopped", flush=True)
"""


@pytest.mark.parametrize("engine", ENGINES)
def test_aiohttp_run_app_with_an_aioloop_loop(engine):
    """web.run_app(app, loop=aioloop.new_event_loop()): serves on that loop and
    stops gracefully on Ctrl-C (aiohttp's own signal handling)."""
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    proc = subprocess.Popen([sys.executable, "-c", RUN_APP_CHILD, engine, str(listener.fileno())],
                            pass_fds=[listener.fileno()],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    listener.close()
    try:
        assert proc.stdout.readline() == "ready\n"

        async def get():
            async with aiohttp.ClientSession() as session:
                async with session.get(f"http://127.0.0.1:{port}/") as r:
                    return await r.text()

        assert asyncio.run(asyncio.wait_for(get(), 30)) == f"aioloop._loop {engine}"
        time.sleep(0.2)
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=20)
        assert (out, proc.returncode, err) == ("stopped\n", 0, "")
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
