"""Connections by the thousand against a server process on the loop under
test: none left unread, none cross-delivered, no descriptor left open,
connection_lost exactly once whatever the peer does."""
import asyncio
import random
import socket
import struct
import time

import pytest

from ._util import LOOPS, Server, raise_nofile
from .conftest import scale


class TaggedClient(asyncio.Protocol):
    """Sends one tagged message and expects exactly it back."""

    def __init__(self, msg, done):
        self.msg = msg
        self.buf = bytearray()
        self.done = done

    def connection_made(self, transport):
        self.transport = transport

    def data_received(self, data):
        self.buf += data
        if len(self.buf) >= len(self.msg) and not self.done.done():
            self.done.set_result(bytes(self.buf))

    def connection_lost(self, exc):
        if not self.done.done():
            self.done.set_result(bytes(self.buf))


async def _burst(port, n, size, timeout):
    """n connections opened at once, each sending one tagged message of
    `size` bytes; returns (received intact, cross-delivered, missing)."""
    loop = asyncio.get_running_loop()
    sem = asyncio.Semaphore(1000)   # connect in waves: the backlog is finite

    async def connect(i):
        msg = (b"%08d" % i) * (size // 8)
        done = loop.create_future()
        async with sem:
            for attempt in range(20):
                try:
                    tr, _ = await loop.create_connection(
                        lambda: TaggedClient(msg, done), "127.0.0.1", port)
                    break
                except OSError:
                    await asyncio.sleep(0.05 * (attempt + 1))
            else:
                raise
        return msg, tr, done

    conns = await asyncio.gather(*(connect(i) for i in range(n)))
    for msg, tr, _ in conns:
        tr.write(msg)
    deadline = loop.time() + timeout
    ok = cross = missing = 0
    for msg, tr, done in conns:
        try:
            got = await asyncio.wait_for(asyncio.shield(done), max(0.01, deadline - loop.time()))
        except asyncio.TimeoutError:
            got = None
        if got == msg:
            ok += 1
        elif got is None or len(got) < len(msg):
            missing += 1
        else:
            cross += 1
        tr.close()
    return ok, cross, missing


def _ring_params():
    params = []
    for lp in LOOPS:
        params.append((lp, 0))
        if lp == "uring":
            params += [(lp, 1), (lp, 16)]
    return params


@pytest.mark.parametrize("loop_name,ring", _ring_params(),
                         ids=[f"{lp}-ring{r or 'default'}" for lp, r in _ring_params()])
def test_tagged_burst(loop_name, ring, stress_report):
    """10,000 concurrent tagged echoes (CI: 2,000): 0 lost, 0 cross-delivered,
    at ring sizes 1, 16 and the default (issue 10: 700-1,350 of 4,000 never
    read with one ring buffer)."""
    raise_nofile()
    n = scale(2000, 10000)
    size = 400 if ring else 4000
    with Server(loop_name, ring_buffers=ring) as srv:
        t0 = time.monotonic()
        ok, cross, missing = asyncio.run(_burst(srv.port, n, size, timeout=60))
        secs = time.monotonic() - t0
        st = srv.stats()
        assert srv.stop() == 0
    stress_report(conns=n, size=size, ok=ok, lost=missing, cross=cross, secs=round(secs, 1))
    assert (missing, cross) == (0, 0)
    assert st["after_lost"] == 0 and st["lost_twice"] == 0


async def _lifecycles(port, total, concurrency):
    loop = asyncio.get_running_loop()
    left = [total]
    failures = [0]

    async def worker():
        while left[0] > 0:
            left[0] -= 1
            try:
                r, w = await asyncio.open_connection("127.0.0.1", port)
                w.write(b"ping")
                got = await asyncio.wait_for(r.readexactly(4), 30)
                if got != b"ping":
                    failures[0] += 1
                w.close()
                await w.wait_closed()
            except OSError:
                failures[0] += 1
                await asyncio.sleep(0.01)

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    del loop
    return failures[0]


def _settled(srv):
    """The server's stats once every connection it made is lost and its
    descriptor count has stopped moving (closes finish a moment later)."""
    last = None
    for _ in range(100):
        st = srv.stats()
        if st["made"] == st["lost"] and last is not None and st["fds"] == last["fds"]:
            return st
        last = st
        time.sleep(0.1)
    return st


@pytest.mark.parametrize("loop_name", LOOPS)
def test_connection_lifecycles(loop_name, stress_report):
    """200,000 connect/echo/close cycles (CI: 10,000): the server's descriptor
    count returns to where it was and its RSS growth stays bounded."""
    total = scale(10000, 200000)
    with Server(loop_name) as srv:
        asyncio.run(_lifecycles(srv.port, 500, 20))   # warm up allocators
        before = _settled(srv)
        t0 = time.monotonic()
        failures = asyncio.run(_lifecycles(srv.port, total, 50))
        secs = time.monotonic() - t0
        after = _settled(srv)
        assert srv.stop() == 0
    fd_delta = after["fds"] - before["fds"]
    rss_growth = after["rss_kib"] - before["rss_kib"]
    stress_report(cycles=total, failures=failures, fd_delta=fd_delta,
                  rss_growth_kib=rss_growth, conn_per_s=round(total / secs))
    assert failures == 0
    assert fd_delta == 0
    assert after["made"] == after["lost"] and after["lost_twice"] == 0
    assert rss_growth < 32 * 1024


def _abrupt_peer(port, kind, rnd):
    """One misbehaving peer, with blocking sockets (run in threads)."""
    s = socket.create_connection(("127.0.0.1", port), timeout=10)
    try:
        if kind == "reset":          # RST in the middle of a write
            s.sendall(b"x" * rnd.randrange(1, 200000))
            s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        elif kind == "half":         # FIN, then read what comes back
            s.sendall(b"y" * 1000)
            s.shutdown(socket.SHUT_WR)
            got = 0
            while got < 1000:
                d = s.recv(65536)
                if not d:
                    break
                got += len(d)
        elif kind == "vanish":       # send and close without reading
            s.sendall(b"z" * rnd.randrange(1, 100000))
        elif kind == "slow":         # a slow reader of a large echo
            s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            s.sendall(b"s" * 300000)
            for _ in range(5):
                s.recv(1024)
                time.sleep(0.001)
    except OSError:
        pass
    finally:
        s.close()


@pytest.mark.parametrize("loop_name", LOOPS)
def test_abrupt_peers(loop_name, stress_report):
    """5,000 peers (CI: 1,000) that reset mid-write, half-close, vanish or read
    slowly: connection_lost exactly once each, no call after it, and the
    server still serves."""
    from concurrent.futures import ThreadPoolExecutor
    n = scale(1000, 5000)
    rnd = random.Random(10)
    kinds = [rnd.choice(["reset", "half", "vanish", "slow"]) for _ in range(n)]
    with Server(loop_name) as srv:
        with ThreadPoolExecutor(32) as ex:
            list(ex.map(lambda k: _abrupt_peer(srv.port, k, random.Random(hash(k))), kinds))
        for _ in range(100):
            st = srv.stats()
            if st["made"] == st["lost"] == n:
                break
            time.sleep(0.1)
        ok, cross, missing = asyncio.run(_burst(srv.port, 20, 4000, timeout=20))
        assert srv.stop() == 0
    stress_report(peers=n, made=st["made"], lost=st["lost"], lost_twice=st["lost_twice"],
                  after_lost=st["after_lost"], serving_after=ok == 20)
    assert st["made"] == st["lost"] == n
    assert st["lost_twice"] == 0 and st["after_lost"] == 0
    assert (ok, cross, missing) == (20, 0, 0)


@pytest.mark.parametrize("loop_name", LOOPS)
def test_emfile_and_recovery(loop_name, stress_report):
    """Descriptors exhausted while peers keep connecting: the loop reports it
    about once per retry interval (asyncio's ACCEPT_RETRY_DELAY, 1 s), not in
    a flood, and serves again once descriptors are free."""
    seconds = scale(3, 10)
    with Server(loop_name, nofile=64) as srv:
        held = []
        for _ in range(80):      # more than the server can take
            try:
                held.append(socket.create_connection(("127.0.0.1", srv.port), timeout=5))
            except OSError:
                break
        base = srv.stats()["handler_calls"]
        t0 = time.monotonic()
        extra = []
        while time.monotonic() - t0 < seconds:   # peers keep arriving
            try:
                extra.append(socket.create_connection(("127.0.0.1", srv.port), timeout=1))
            except OSError:
                pass
            time.sleep(0.02)
        reports = srv.stats()["handler_calls"] - base
        for s in held + extra:
            s.close()
        time.sleep(1.5)          # the next retry finds descriptors free
        ok, cross, missing = asyncio.run(_burst(srv.port, 10, 400, timeout=20))
        assert srv.stop() == 0
    per_s = reports / seconds
    stress_report(seconds=seconds, reports=reports, reports_per_s=round(per_s, 2),
                  served_after=ok)
    if loop_name in ("uring", "threads"):
        assert per_s <= 2.0
    assert ok == 10


@pytest.mark.parametrize("loop_name", LOOPS)
def test_idle_connection_memory(loop_name, stress_report):
    """RSS per idle connection with 10,000 idle connections (CI: 2,000)."""
    raise_nofile()
    n = scale(2000, 10000)
    with Server(loop_name) as srv:
        asyncio.run(_burst(srv.port, 50, 400, timeout=20))   # warm up
        before = srv.stats()
        socks = []
        for _ in range(n):
            socks.append(socket.create_connection(("127.0.0.1", srv.port)))
        for _ in range(100):
            st = srv.stats()
            if st["made"] - before["made"] >= n:
                break
            time.sleep(0.1)
        per_conn = (st["rss_kib"] - before["rss_kib"]) * 1024 / n
        for s in socks:
            s.close()
        assert srv.stop() == 0
    stress_report(conns=n, bytes_per_conn=round(per_conn))
    assert st["made"] - before["made"] == n
    assert per_conn < 16 * 1024
