"""Helpers for the tests that start servers as processes (test_cli,
test_gunicorn, test_load): a test application, the subprocess environment
that imports this checkout's aioloop, a reader of a process's stderr, and a
small HTTP client (TCP, TLS or Unix socket)."""
import http.client
import json
import os
import queue
import re
import signal
import socket
import subprocess
import sys
import threading
import time

import aioloop

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(aioloop.__file__)))

# The application every server test serves.  "/" tells which loop and
# process answered; "/slow" holds a request for ?t= seconds, saying on stderr
# when it has started; the factories record the arguments they got.
APP_SOURCE = '''
import asyncio, os, sys
from aiohttp import web

GOT = {"args": None}

async def hello(request):
    loop = asyncio.get_running_loop()
    return web.json_response({"loop": type(loop).__module__,
                              "engine": getattr(loop, "engine", None),
                              "pid": os.getpid(), "args": GOT["args"]})

async def slow(request):
    print("slow request started", file=sys.stderr, flush=True)
    await asyncio.sleep(float(request.query.get("t", "1")))
    return web.Response(text="slow done")

def build():
    app = web.Application()
    app.router.add_get("/", hello)
    app.router.add_get("/slow", slow)
    return app

app = build()

def factory(argv):
    GOT["args"] = argv
    return build()

async def async_factory():
    await asyncio.sleep(0)
    GOT["args"] = "async"
    return build()

def plain_factory():
    GOT["args"] = "plain"
    return build()

def bad_factory():
    return "not an app"

not_an_app = 42
'''


def write_app(directory, name="cliapp"):
    path = os.path.join(directory, f"{name}.py")
    with open(path, "w") as f:
        f.write(APP_SOURCE)
    return name


def env():
    """The environment for child processes: this checkout's aioloop first."""
    e = dict(os.environ)
    e["PYTHONPATH"] = os.pathsep.join(p for p in (ROOT, e.get("PYTHONPATH")) if p)
    e.pop("AIOLOOP_ENGINE", None)
    return e


class Proc:
    """A child process whose stderr lines are collected by a thread."""

    def __init__(self, argv, cwd, extra_env=None):
        e = env()
        e.update(extra_env or {})
        self.argv = argv
        self.proc = subprocess.Popen(argv, cwd=cwd, env=e, stdin=subprocess.DEVNULL,
                                     stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                     text=True)
        self.lines = []
        self._q = queue.Queue()
        self._t = threading.Thread(target=self._read, daemon=True)
        self._t.start()

    def _read(self):
        for line in self.proc.stderr:
            self.lines.append(line.rstrip("\n"))
            self._q.put(line.rstrip("\n"))
        self._q.put(None)

    def wait_line(self, pattern, timeout=30):
        """The first match of ``pattern`` in a stderr line not yet consumed."""
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            try:
                line = self._q.get(timeout=max(0.01, left))
            except queue.Empty:
                line = ""
            if line is None:
                raise AssertionError(f"process exited ({self.proc.wait()}) before "
                                     f"{pattern!r}; stderr:\n" + self.stderr())
            m = re.search(pattern, line)
            if m:
                return m
            if time.monotonic() > deadline:
                raise AssertionError(f"no {pattern!r} within {timeout} s; stderr:\n"
                                     + self.stderr())

    def stderr(self):
        return "\n".join(self.lines)

    def signal(self, signum):
        self.proc.send_signal(signum)

    def wait(self, timeout=60):
        code = self.proc.wait(timeout)
        self._t.join(5)
        return code

    def stop(self):
        """Kill what a failed test left running (a no-op once exited)."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait()
        self._t.join(5)


def serve(cwd, *args, extra_env=None):
    """Start ``python -m aioloop serve ARGS`` and wait until it serves;
    returns (Proc, url)."""
    p = Proc([sys.executable, "-m", "aioloop", "serve", *args], cwd, extra_env)
    try:
        url = p.wait_line(r"serving on (\S+)").group(1)
    except BaseException:
        p.stop()
        raise
    return p, url


class _UnixHTTPConnection(http.client.HTTPConnection):
    def __init__(self, path, timeout):
        super().__init__("localhost", timeout=timeout)
        self._path = path

    def connect(self):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(self.timeout)
        self.sock.connect(self._path)


def get(url, path="/", *, ssl_context=None, timeout=30):
    """(status, body) of a GET on a new connection; a JSON body is decoded."""
    scheme, rest = url.split("://", 1)
    if scheme.endswith("+unix"):
        conn = _UnixHTTPConnection(rest, timeout)
    elif scheme == "https":
        conn = http.client.HTTPSConnection(rest, timeout=timeout, context=ssl_context)
    else:
        conn = http.client.HTTPConnection(rest, timeout=timeout)
    try:
        conn.request("GET", path)
        resp = conn.getresponse()
        body = resp.read()
        if resp.getheader("Content-Type", "").startswith("application/json"):
            body = json.loads(body)
        return resp.status, body
    finally:
        conn.close()


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
