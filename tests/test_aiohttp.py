"""A real aiohttp application and client under aioloop's policy, on each
engine: keep-alive requests, a request body, a streamed response and a
websocket echo.  ResourceWarning is an error for the whole run (loop close
and a final collection included), and nothing may reach
sys.unraisablehook ("Exception ignored in ..."): an unclosed transport, a
socket left open or an error in a destructor fails the test."""
import asyncio
import gc
import hashlib
import sys
import warnings

import pytest

import aioloop
from conftest import ENGINES

aiohttp = pytest.importorskip(
    "aiohttp", reason="aiohttp is not installed (it is in the test extra: pip install -e .[test])")
from aiohttp import web  # noqa: E402

pytestmark = pytest.mark.skipif(not hasattr(aioloop, "EventLoopPolicy"),
                                reason="this Python has no event loop policies (removed in 3.16)")

N_KEEPALIVE = 30
N_CHUNKS = 64
BODY = bytes(range(256)) * 4096          # 1 MiB


def make_app(peers):
    async def hello(request):
        peers.add(request.transport.get_extra_info("peername"))
        return web.Response(text=f"hello {request.match_info['name']}")

    async def digest(request):
        body = await request.read()
        return web.Response(text=hashlib.sha256(body).hexdigest())

    async def stream(request):
        resp = web.StreamResponse()
        resp.enable_chunked_encoding()
        await resp.prepare(request)
        for i in range(N_CHUNKS):
            await resp.write(b"chunk %03d\n" % i)
            await asyncio.sleep(0)
        await resp.write_eof()
        return resp

    async def echo(request):
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        async for msg in ws:
            if msg.type == aiohttp.WSMsgType.TEXT:
                await ws.send_str("echo " + msg.data)
            elif msg.type == aiohttp.WSMsgType.BINARY:
                await ws.send_bytes(msg.data[::-1])
        return ws

    app = web.Application()
    app.router.add_get("/hello/{name}", hello)
    app.router.add_post("/digest", digest)
    app.router.add_get("/stream", stream)
    app.router.add_get("/ws", echo)
    return app


async def exercise(engine):
    loop = asyncio.get_running_loop()
    assert type(loop) is aioloop.Loop and loop.engine == engine
    peers = set()
    runner = web.AppRunner(make_app(peers))
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    base = "http://127.0.0.1:%d" % runner.addresses[0][1]
    try:
        async with asyncio.timeout(60):
            connector = aiohttp.TCPConnector(limit=1)
            async with aiohttp.ClientSession(connector=connector) as session:
                for i in range(N_KEEPALIVE):
                    async with session.get(f"{base}/hello/{i}") as r:
                        assert r.status == 200 and await r.text() == f"hello {i}"
                assert len(peers) == 1, "keep-alive: one connection for every request"

                async with session.post(f"{base}/digest", data=BODY) as r:
                    assert await r.text() == hashlib.sha256(BODY).hexdigest()

                async with session.get(f"{base}/stream") as r:
                    assert r.headers.get("Transfer-Encoding") == "chunked"
                    got = b"".join([c async for c in r.content.iter_any()])
                assert got == b"".join(b"chunk %03d\n" % i for i in range(N_CHUNKS))

                async with session.ws_connect(f"{base}/ws") as ws:
                    for i in range(20):
                        await ws.send_str(f"m{i}")
                        assert (await ws.receive_str()) == f"echo m{i}"
                    await ws.send_bytes(b"abc")
                    assert (await ws.receive_bytes()) == b"cba"
                    await ws.close()
                assert ws.closed
    finally:
        await runner.cleanup()
    return True


@pytest.mark.parametrize("engine", ENGINES)
def test_aiohttp_under_the_policy_leaves_nothing_behind(engine, monkeypatch):
    monkeypatch.setenv("AIOLOOP_ENGINE", engine)
    gc.collect()    # what earlier tests left is not this test's
    unraisable = []

    def hook(args):
        unraisable.append(f"{args.err_msg or 'Exception ignored in'}: {args.object!r}: "
                          f"{args.exc_type.__name__}: {args.exc_value}")

    old_hook, old_policy = sys.unraisablehook, asyncio.get_event_loop_policy()
    sys.unraisablehook = hook
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", ResourceWarning)
            asyncio.set_event_loop_policy(aioloop.EventLoopPolicy())
            assert asyncio.run(exercise(engine)) is True    # closes the loop
            gc.collect()
    finally:
        asyncio.set_event_loop_policy(old_policy)
        sys.unraisablehook = old_hook
    assert unraisable == []
