"""Loops that end in awkward moments, forks, threads and one very long
transfer, on the loop under test (in this process or a child)."""
import asyncio
import gc
import hashlib
import os
import random
import socket
import subprocess
import sys
import textwrap
import threading
import time

import pytest

from ._util import LOOPS, ROOT, loop_factory
from .conftest import scale


def _nfds():
    return len(os.listdir("/proc/self/fd"))


@pytest.mark.parametrize("loop_name", LOOPS)
def test_close_before_the_loop_runs_again(loop_name, stress_report):
    """A client connects, server.close(), loop.close() before the loop ran
    again: no descriptor stays open (issue 10: io_uring left one per round,
    the accept that was still in the ring)."""
    rounds = scale(20, 200)
    gc.collect()
    before = _nfds()
    for _ in range(rounds):
        loop = loop_factory(loop_name)
        srv = loop.run_until_complete(loop.create_server(asyncio.Protocol, "127.0.0.1", 0))
        port = srv.sockets[0].getsockname()[1]
        c = socket.create_connection(("127.0.0.1", port))
        time.sleep(0.005)
        srv.close()
        loop.close()
        c.close()
    gc.collect()
    delta = _nfds() - before
    stress_report(rounds=rounds, fd_delta=delta)
    assert delta == 0


_CLOSE_UNDER_LOAD = r"""
import asyncio, gc, os, sys, warnings
sys.path.insert(0, ROOT)
from tests.stress._server import make_loop
warnings.simplefilter("ignore", ResourceWarning)   # server-side transports stay open

class Echo(asyncio.Protocol):
    def connection_made(self, tr): self.tr = tr
    def data_received(self, d): self.tr.write(d)

class Pump(asyncio.Protocol):
    def connection_made(self, tr):
        self.tr = tr
        tr.write(b"x" * 65536)
    def data_received(self, d): self.tr.write(d)

def nfds(): return len(os.listdir("/proc/self/fd"))
gc.collect()
before = nfds()
kept = []   # closed client transports stay referenced: loop.close() must close their sockets
for rnd in range(ROUNDS):
    loop = make_loop(LOOP)
    srv = loop.run_until_complete(loop.create_server(Echo, "127.0.0.1", 0))
    port = srv.sockets[0].getsockname()[1]
    trs = [loop.run_until_complete(loop.create_connection(Pump, "127.0.0.1", port))[0]
           for _ in range(50)]
    loop.run_until_complete(asyncio.sleep(0.05))
    if rnd % 2:
        for t in trs: t.close()
        srv.close()
        loop.call_soon(loop.stop); loop.run_forever()
    else:
        for t in trs: t.abort()
        srv.close()
    loop.close()
    kept.extend(trs)
    del trs, srv
    gc.collect()
print(nfds() - before)
"""


@pytest.mark.parametrize("loop_name", LOOPS)
def test_close_under_load(loop_name, stress_report):
    """50 connections pumping data, then the transports closed (or aborted)
    and the loop closed within one iteration: no crash, and once garbage is
    collected no descriptor left, with the closed client transports still
    referenced: loop.close() itself closes the sockets of transports the
    user closed (on the threads engine it left those whose CLOSE came back
    in the final drain open)."""
    rounds = scale(6, 40)
    code = (_CLOSE_UNDER_LOAD.replace("ROOT", repr(ROOT)).replace("ROUNDS", str(rounds))
            .replace("LOOP", repr(loop_name)))
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr[-3000:]
    delta = int(p.stdout.split()[-1])
    stress_report(rounds=rounds, fd_delta=delta, stderr_lines=len(p.stderr.splitlines()))
    assert delta == 0


@pytest.mark.parametrize("loop_name", LOOPS)
def test_call_soon_threadsafe_from_8_threads(loop_name, stress_report):
    """8 threads x 200,000 call_soon_threadsafe (CI: 8 x 20,000): every
    callback runs once, in each thread's order."""
    per = scale(20000, 200000)
    loop = loop_factory(loop_name)
    seen = [0] * 8
    bad = []
    done = loop.create_future()

    def cb(i, k):
        if seen[i] != k:
            bad.append((i, k, seen[i]))
        seen[i] = k + 1
        if sum(seen) == 8 * per and not done.done():
            done.set_result(None)

    def producer(i):
        for k in range(per):
            loop.call_soon_threadsafe(cb, i, k)

    t0 = time.monotonic()
    threads = [threading.Thread(target=producer, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    loop.run_until_complete(asyncio.wait_for(done, 300))
    for t in threads:
        t.join()
    secs = time.monotonic() - t0
    loop.close()
    stress_report(calls=8 * per, out_of_order=len(bad), calls_per_s=round(8 * per / secs))
    assert bad == [] and seen == [per] * 8


@pytest.mark.parametrize("loop_name", LOOPS)
def test_forks_under_traffic(loop_name, stress_report):
    """200 forks (CI: 20) while echo traffic runs: each child runs a loop of
    its own and exits 0; the parent's connections lose nothing."""
    forks = scale(20, 200)
    loop = loop_factory(loop_name)

    class Echo(asyncio.Protocol):
        def connection_made(self, tr):
            self.tr = tr

        def data_received(self, d):
            self.tr.write(d)

    async def child_work():
        srv = await asyncio.get_running_loop().create_server(Echo, "127.0.0.1", 0)
        port = srv.sockets[0].getsockname()[1]
        r, w = await asyncio.open_connection("127.0.0.1", port)
        w.write(b"child")
        assert await r.readexactly(5) == b"child"
        w.close()
        srv.close()

    async def main():
        srv = await loop.create_server(Echo, "127.0.0.1", 0)
        port = srv.sockets[0].getsockname()[1]
        stop = False
        errors = []

        async def traffic(i):
            r, w = await asyncio.open_connection("127.0.0.1", port)
            n = 0
            while not stop:
                msg = b"%d:%d;" % (i, n)
                w.write(msg)
                if await r.readexactly(len(msg)) != msg:
                    errors.append(i)
                n += 1
            w.close()
            return n

        tasks = [asyncio.ensure_future(traffic(i)) for i in range(10)]
        bad = 0
        for _ in range(forks):
            await asyncio.sleep(0.01)
            pid = os.fork()
            if pid == 0:
                code = 1
                try:
                    child = loop_factory(loop_name)
                    child.run_until_complete(asyncio.wait_for(child_work(), 20))
                    child.close()
                    code = 0
                finally:
                    os._exit(code)
            _, status = await loop.run_in_executor(None, os.waitpid, pid, 0)
            if os.waitstatus_to_exitcode(status) != 0:
                bad += 1
        stop = True
        counts = await asyncio.gather(*tasks)
        srv.close()
        return bad, errors, sum(counts)

    bad, errors, exchanges = loop.run_until_complete(main())
    loop.close()
    stress_report(forks=forks, failed_children=bad, parent_errors=len(errors),
                  exchanges=exchanges)
    assert bad == 0 and errors == []


@pytest.mark.parametrize("loop_name", LOOPS)
def test_one_connection_pause_resume_both_sides(loop_name, stress_report):
    """1 GiB (CI: 128 MiB) through one connection; the reader pauses and
    resumes at random, the writer obeys pause_writing: sha256 equal."""
    total = scale(128, 1024) * 1024 * 1024
    loop = loop_factory(loop_name)
    rnd = random.Random(7)
    sent_digest = hashlib.sha256()
    recv_digest = hashlib.sha256()

    class Reader(asyncio.Protocol):
        def __init__(self):
            self.n = 0
            self.done = loop.create_future()
            self.pauses = 0

        def connection_made(self, tr):
            self.tr = tr

        def data_received(self, d):
            recv_digest.update(d)
            self.n += len(d)
            if self.n >= total and not self.done.done():
                self.done.set_result(None)
            elif rnd.random() < 0.02:
                self.pauses += 1
                self.tr.pause_reading()
                loop.call_later(0.001, self.tr.resume_reading)

    class Writer(asyncio.Protocol):
        def __init__(self):
            self.can = asyncio.Event()
            self.can.set()
            self.paused = 0

        def pause_writing(self):
            self.paused += 1
            self.can.clear()

        def resume_writing(self):
            self.can.set()

    async def main():
        reader = Reader()
        srv = await loop.create_server(lambda: reader, "127.0.0.1", 0)
        port = srv.sockets[0].getsockname()[1]
        tr, wr = await loop.create_connection(Writer, "127.0.0.1", port)
        tr.set_write_buffer_limits(high=1 << 20)
        block = random.Random(3).randbytes(1 << 20)
        sent = 0
        while sent < total:
            await wr.can.wait()
            k = min(len(block) - 1, total - sent)
            chunk = block[sent % 7:sent % 7 + k] if k > 1 else block[:k]
            chunk = chunk[: total - sent]
            sent_digest.update(chunk)
            tr.write(chunk)
            sent += len(chunk)
        await asyncio.wait_for(reader.done, 600)
        tr.close()
        srv.close()
        return reader.pauses, wr.paused

    t0 = time.monotonic()
    pauses, wpauses = loop.run_until_complete(main())
    secs = time.monotonic() - t0
    loop.close()
    equal = sent_digest.hexdigest() == recv_digest.hexdigest()
    stress_report(mib=total >> 20, sha256_equal=equal, read_pauses=pauses,
                  write_pauses=wpauses, mib_per_s=round((total >> 20) / secs))
    assert equal
