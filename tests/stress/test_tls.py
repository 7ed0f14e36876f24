"""TLS servers under failed handshakes by the thousand: garbage peers,
peers that stall or vanish mid-handshake, between good short TLS
connections; descriptors back to the start, RSS flat, nothing reported."""
import asyncio
import gc
import os
import socket
import ssl

import pytest

from ._util import LOOPS, loop_factory, raise_nofile
from .conftest import scale

trustme = pytest.importorskip(
    "trustme", reason="trustme is not installed (it is in the test extra: pip install -e .[test])")


def _nfds():
    return len(os.listdir("/proc/self/fd"))


def _rss_kib():
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


class _Echo(asyncio.Protocol):
    made = lost = 0

    def connection_made(self, transport):
        self.transport = transport
        _Echo.made += 1

    def data_received(self, data):
        self.transport.write(data)

    def connection_lost(self, exc):
        _Echo.lost += 1


class _Client(asyncio.Protocol):
    def __init__(self, done):
        self.done = done
        self.lost = asyncio.get_running_loop().create_future()

    def data_received(self, data):
        if not self.done.done():
            self.done.set_result(data)

    def connection_lost(self, exc):
        if not self.done.done():
            self.done.set_exception(ConnectionError(repr(exc)))
        self.lost.set_result(exc)


@pytest.mark.parametrize("loop_name", LOOPS)
def test_failed_handshakes(loop_name, stress_report):
    """20,000 failed handshakes (CI size: 2,000) -- garbage, a half
    ClientHello then EOF, a full ClientHello then EOF, in turn -- and one
    good TLS echo after every 10: the good ones all succeed, no descriptor
    is left, RSS stays within 8 MiB after a warm-up, the exception handler
    gets nothing (asyncio reports TLS failures of OSError kinds only in
    debug mode)."""
    raise_nofile()
    failed = scale(2000, 20000)
    ca = trustme.CA()
    sctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("localhost", "127.0.0.1").configure_cert(sctx)
    cctx = ssl.create_default_context()
    ca.configure_trust(cctx)
    inc, out = ssl.MemoryBIO(), ssl.MemoryBIO()
    try:
        cctx.wrap_bio(inc, out, server_hostname="localhost").do_handshake()
    except ssl.SSLWantReadError:
        pass
    hello = out.read()
    bad_inputs = [b"\x00garbage, no ClientHello\r\n" * 3, hello[:len(hello) // 2], hello]

    loop = loop_factory(loop_name)
    errors = []
    loop.set_exception_handler(lambda lp, ctx: errors.append(ctx))
    _Echo.made = _Echo.lost = 0

    async def main():
        srv = await loop.create_server(_Echo, "127.0.0.1", 0, ssl=sctx,
                                       ssl_handshake_timeout=5)
        port = srv.sockets[0].getsockname()[1]
        sem = asyncio.Semaphore(50)

        async def bad(i):
            async with sem:
                s = socket.socket()
                s.setblocking(False)
                try:
                    await loop.sock_connect(s, ("127.0.0.1", port))
                    await loop.sock_sendall(s, bad_inputs[i % 3])
                    s.shutdown(socket.SHUT_WR)
                    async with asyncio.timeout(10):
                        while await loop.sock_recv(s, 65536):
                            pass
                except ConnectionResetError:
                    pass
                finally:
                    s.close()

        async def good():
            done = loop.create_future()
            tr, pr = await asyncio.wait_for(loop.create_connection(
                lambda: _Client(done), "127.0.0.1", port, ssl=cctx,
                server_hostname="localhost"), 10)
            tr.write(b"ping")
            got = await asyncio.wait_for(done, 10)
            tr.close()
            await asyncio.wait_for(pr.lost, 10)
            return got == b"ping"

        async def rounds(start, stop):
            ok = 0
            for base in range(start, stop, 100):
                await asyncio.gather(*(bad(i) for i in range(base, min(base + 100, stop))))
                ok += sum(await asyncio.gather(*(good() for _ in range(10))))
                # What a round left is freed now: asyncio's TLS layer holds
                # a 256 KiB buffer per connection in reference cycles, and
                # RSS would measure when the collector last ran.
                gc.collect()
            return ok

        async def settled():
            """The descriptor count once the server has closed every
            connection its peers left (failed handshakes have no event)."""
            async with asyncio.timeout(10):
                while _Echo.lost < _Echo.made:
                    await asyncio.sleep(0.02)
                last, same = -1, 0
                while same < 5:
                    gc.collect()
                    n = _nfds()
                    same = same + 1 if n == last else 0
                    last = n
                    await asyncio.sleep(0.02)
            return last

        await rounds(0, 1000)   # warm-up: allocator pools, caches
        fds0, rss0 = await settled(), _rss_kib()
        ok = await rounds(0, failed)
        fd_delta, rss_growth = await settled() - fds0, _rss_kib() - rss0
        srv.close()
        await srv.wait_closed()
        return ok, fd_delta, rss_growth

    try:
        ok, fd_delta, rss_growth = loop.run_until_complete(main())
    finally:
        loop.close()
    goods = (failed // 100) * 10 + (10 if failed % 100 else 0)
    stress_report(failed_handshakes=failed, good=f"{ok}/{goods}", fd_delta=fd_delta,
                  rss_growth_kib=rss_growth, handler_calls=len(errors))
    assert ok == goods
    assert fd_delta == 0
    assert rss_growth < 8 * 1024, f"RSS grew {rss_growth} KiB"
    assert errors == []
