"""UDP endpoints, pipes, signals and subprocesses, checked on aioloop and on
asyncio's own loop (every async test runs on both, see conftest.py)."""
import asyncio
import os
import signal
import socket
import sys

import pytest


async def test_udp_roundtrip_and_errors():
    loop = asyncio.get_running_loop()

    class Proto(asyncio.DatagramProtocol):
        def __init__(self):
            self.got = loop.create_future()
            self.lost = loop.create_future()

        def datagram_received(self, data, addr):
            if not self.got.done():
                self.got.set_result((data, addr))

        def connection_lost(self, exc):
            self.lost.set_result(exc)

    server, sp = await loop.create_datagram_endpoint(Proto, local_addr=("127.0.0.1", 0))
    addr = server.get_extra_info("sockname")
    client, cp = await loop.create_datagram_endpoint(Proto, remote_addr=addr)
    client.sendto(b"ping")
    data, peer = await asyncio.wait_for(sp.got, 5)
    assert data == b"ping" and peer == client.get_extra_info("sockname")
    server.sendto(b"pong", peer)
    assert (await asyncio.wait_for(cp.got, 5))[0] == b"pong"
    with pytest.raises(TypeError):
        client.sendto("text")
    client.close()
    server.close()
    assert await cp.lost is None and await sp.lost is None


async def test_pipes_both_ways():
    loop = asyncio.get_running_loop()
    rfd, wfd = os.pipe()
    reader = asyncio.StreamReader()
    rtr, _ = await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader),
                                          os.fdopen(rfd, "rb", 0))
    wtr, _ = await loop.connect_write_pipe(asyncio.Protocol, os.fdopen(wfd, "wb", 0))
    payload = os.urandom(300_000)
    wtr.write(payload)
    wtr.close()
    assert await asyncio.wait_for(reader.readexactly(len(payload)), 10) == payload
    assert await asyncio.wait_for(reader.read(), 10) == b""   # EOF after the writer closed
    rtr.close()


async def test_signal_handler():
    loop = asyncio.get_running_loop()
    got = loop.create_future()
    loop.add_signal_handler(signal.SIGUSR1, got.set_result, "usr1")
    os.kill(os.getpid(), signal.SIGUSR1)
    assert await asyncio.wait_for(got, 5) == "usr1"
    assert loop.remove_signal_handler(signal.SIGUSR1) is True
    assert loop.remove_signal_handler(signal.SIGUSR1) is False
    with pytest.raises((ValueError, RuntimeError)):
        loop.add_signal_handler(signal.SIGKILL, lambda: None)
    with pytest.raises(TypeError):
        loop.add_signal_handler(signal.SIGUSR1, asyncio.sleep)


async def test_subprocess_exec_and_shell():
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-c", "import sys; sys.stdout.write(sys.stdin.read()[::-1]); sys.exit(3)",
        stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE)
    out, _ = await asyncio.wait_for(proc.communicate(b"abc" * 10000), 30)
    assert out == (b"abc" * 10000)[::-1]
    assert proc.returncode == 3
    shell = await asyncio.create_subprocess_shell(
        "echo hi; echo err 1>&2", stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(shell.communicate(), 30)
    assert (out, err, shell.returncode) == (b"hi\n", b"err\n", 0)
