"""Each program in examples/ runs as a user would run it (python
examples/x.py 0, on each engine through AIOLOOP_ENGINE), says it is ready on
aioloop with that engine, answers a real client (plain sockets, aiohttp's
client, on asyncio's own loop in this process), and stops cleanly on Ctrl-C
(SIGINT) or SIGTERM: exit status 0 and nothing on stderr."""
import asyncio
import json
import os
import re
import select
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import ENGINES

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
READY = re.compile(r"^ready: .*127\.0\.0\.1:(\d+)\b.*aioloop, (\w+) engine\)$")


class Example:
    def __init__(self, name, engine):
        env = dict(os.environ, AIOLOOP_ENGINE=engine, PYTHONUNBUFFERED="1")
        root = str(EXAMPLES.parent)
        env["PYTHONPATH"] = root + os.pathsep + env.get("PYTHONPATH", "")
        self.proc = subprocess.Popen([sys.executable, str(EXAMPLES / name), "0"],
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                     env=env, text=True)
        deadline = time.monotonic() + 30
        line = ""
        while not line and time.monotonic() < deadline:
            ready, _, _ = select.select([self.proc.stdout], [], [], 0.2)
            if ready:
                line = self.proc.stdout.readline().rstrip("\n")
            elif self.proc.poll() is not None:
                break
        m = READY.match(line)
        if m is None:
            self.proc.kill()
            _, err = self.proc.communicate()
            pytest.fail(f"{name}: no ready line (got {line!r}); stderr:\n{err}")
        self.port, self.engine = int(m.group(1)), m.group(2)

    def stop(self, sig):
        """Ctrl-C (SIGINT) or SIGTERM, then the exit status and stderr."""
        self.proc.send_signal(sig)
        try:
            out, err = self.proc.communicate(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            out, err = self.proc.communicate()
            pytest.fail(f"did not stop on {sig!r}; stderr:\n{err}")
        return self.proc.returncode, err

    def kill(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.communicate()


@pytest.fixture
def run_example():
    started = []

    def start(name, engine):
        ex = Example(name, engine)
        started.append(ex)
        assert ex.engine == engine
        return ex

    yield start
    for ex in started:
        ex.kill()


def stops_cleanly(ex, sig):
    rc, err = ex.stop(sig)
    assert (rc, err) == (0, "")


def client(coro):
    return asyncio.run(asyncio.wait_for(coro, 30))


@pytest.mark.parametrize("engine", ENGINES)
def test_aiohttp_hello(run_example, engine):
    aiohttp = pytest.importorskip("aiohttp")
    ex = run_example("aiohttp_hello.py", engine)

    async def talk():
        async with aiohttp.ClientSession(f"http://127.0.0.1:{ex.port}") as s:
            answers = []
            for path in ("/", "/hello/aioloop", "/missing"):
                async with s.get(path) as r:
                    answers.append((r.status, await r.text()))
            return answers

    got = client(talk())
    assert got[:2] == [(200, "Hello, world"), (200, "Hello, aioloop")]
    assert got[2][0] == 404
    stops_cleanly(ex, signal.SIGINT)


@pytest.mark.parametrize("engine", ENGINES)
def test_echo_protocol(run_example, engine):
    ex = run_example("echo_protocol.py", engine)
    payload = os.urandom(300_000)

    async def talk():
        r, w = await asyncio.open_connection("127.0.0.1", ex.port)
        w.write(payload)
        w.write_eof()
        got = await r.read()
        w.close()
        await w.wait_closed()
        return got

    assert client(talk()) == payload
    stops_cleanly(ex, signal.SIGTERM)


@pytest.mark.parametrize("engine", ENGINES)
def test_chat_streams(run_example, engine):
    ex = run_example("chat_streams.py", engine)

    async def join(name):
        r, w = await asyncio.open_connection("127.0.0.1", ex.port)
        assert await r.readexactly(6) == b"name? "
        w.write(name.encode() + b"\n")
        assert await r.readline() == f"welcome, {name}\n".encode()
        return r, w

    async def talk():
        ra, wa = await join("ann")
        rb, wb = await join("bob")
        assert await ra.readline() == b"* bob joined\n"
        wa.write(b"hi bob\n")
        assert await rb.readline() == b"ann: hi bob\n"
        wb.write(b"hi ann\nbye\n")
        assert await ra.readline() == b"bob: hi ann\n"
        assert await ra.readline() == b"bob: bye\n"
        wb.close()
        await wb.wait_closed()
        assert await ra.readline() == b"* bob left\n"
        return ra, wa

    async def stop_while_connected():
        ra, wa = await talk()
        # Ctrl-C with ann still connected: the server says goodbye and
        # closes her connection, and nothing is logged.
        stops_cleanly(ex, signal.SIGINT)
        assert await ra.read() == b"* server shutting down\n"
        wa.close()
        await wa.wait_closed()

    client(stop_while_connected())


@pytest.mark.parametrize("engine", ENGINES)
def test_websocket_echo(run_example, engine):
    aiohttp = pytest.importorskip("aiohttp")
    ex = run_example("websocket_echo.py", engine)

    async def talk():
        async with aiohttp.ClientSession() as s:
            async with s.get(f"http://127.0.0.1:{ex.port}/") as r:
                assert "/ws" in await r.text()
            async with s.ws_connect(f"ws://127.0.0.1:{ex.port}/ws") as ws:
                for i in range(10):
                    await ws.send_str(f"message {i}")
                    assert await ws.receive_str() == f"message {i}"
                big = os.urandom(200_000)
                await ws.send_bytes(big)
                assert await ws.receive_bytes() == big[::-1]
                await ws.close()

    client(talk())
    stops_cleanly(ex, signal.SIGTERM)


@pytest.mark.parametrize("engine", ENGINES)
def test_uvicorn_asgi(run_example, engine):
    aiohttp = pytest.importorskip("aiohttp")
    pytest.importorskip("uvicorn", reason="uvicorn is not installed (it is in the test extra)")
    ex = run_example("uvicorn_asgi.py", engine)

    async def talk():
        async with aiohttp.ClientSession(f"http://127.0.0.1:{ex.port}") as s:
            async with s.get("/") as r:
                info = json.loads(await r.text())
            async with s.post("/echo", data=b"x" * 100_000) as r:
                echoed = await r.read()
            async with s.get("/nothing") as r:
                missing = r.status
        return info, echoed, missing

    info, echoed, missing = client(talk())
    assert info == {"hello": "world", "loop": "aioloop.Loop", "engine": engine}
    assert echoed == b"x" * 100_000 and missing == 404
    stops_cleanly(ex, signal.SIGINT)
