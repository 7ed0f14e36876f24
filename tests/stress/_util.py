"""Helpers of the stress suite: which loops run, a server subprocess, and a
raw-socket client that never blocks on one connection."""
import json
import os
import select
import subprocess
import tempfile
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
FULL = os.environ.get("AIOLOOP_STRESS", "") == "full"


def _available():
    import aioloop
    found = ["threads"]
    try:
        aioloop.new_event_loop(engine="uring").close()
        found.insert(0, "uring")
    except OSError:
        pass
    return found


def stress_loops():
    """The loops the suite runs on: AIOLOOP_STRESS_LOOPS, else the aioloop
    engines built here, plus asyncio and uvloop (when installed) in the full
    run, so each figure stands next to theirs."""
    env = os.environ.get("AIOLOOP_STRESS_LOOPS")
    if env:
        return [x.strip() for x in env.split(",") if x.strip()]
    loops = _available()
    if FULL:
        loops.append("asyncio")
        try:
            import uvloop  # noqa: F401
            loops.append("uvloop")
        except ImportError:
            pass
    return loops


LOOPS = stress_loops()


def loop_factory(name, **kw):
    from ._server import make_loop
    return make_loop(name, **kw)


def raise_nofile():
    import resource
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return hard


class Server:
    """tests/stress/_server.py in a child process."""

    def __init__(self, loop, ring_buffers=0, nofile=0):
        cmd = [sys.executable, "-m", "tests.stress._server", loop]
        if ring_buffers:
            cmd += ["--ring-buffers", str(ring_buffers)]
        if nofile:
            cmd += ["--nofile", str(nofile)]
        env = dict(os.environ, PYTHONPATH=os.pathsep.join([ROOT] + sys.path))
        # stderr to a file: a pipe nobody reads could fill and block the server.
        self._err = tempfile.TemporaryFile(mode="w+")
        self.proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, stderr=self._err, text=True)
        line = self.proc.stdout.readline()
        if not line.startswith("PORT "):
            self.proc.kill()
            pytest.fail(f"server did not start: {line!r}")
        self.port = int(line.split()[1])
        self._pending = b""

    def stats(self):
        """The server's figures (one JSON line), read from the raw pipe: a
        buffered reader could hold the answer where select() cannot see it."""
        self.proc.stdin.write("stats\n")
        self.proc.stdin.flush()
        fd = self.proc.stdout.fileno()
        while b"\n" not in self._pending:
            ready, _, _ = select.select([fd], [], [], 60)
            if not ready:
                pytest.fail("the server process did not answer `stats` within 60 s")
            chunk = os.read(fd, 65536)
            if not chunk:
                pytest.fail(f"the server process ended (rc={self.proc.poll()})")
            self._pending += chunk
        line, self._pending = self._pending.split(b"\n", 1)
        return json.loads(line)

    def alive(self):
        return self.proc.poll() is None

    def stop(self):
        """Asks the server to shut down; its exit status (0: every
        connection was lost and the loop closed).  Its stderr is printed."""
        rc = self._stop()
        self._err.seek(0)
        err = self._err.read()
        if err:
            print(err[-3000:])
        return rc

    def _stop(self):
        if self.proc.poll() is None:
            try:
                self.proc.stdin.write("quit\n")
                self.proc.stdin.flush()
                rc = self.proc.wait(timeout=30)
            except (BrokenPipeError, subprocess.TimeoutExpired):
                self.proc.kill()
                rc = self.proc.wait()
        else:
            rc = self.proc.returncode
        return rc

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
