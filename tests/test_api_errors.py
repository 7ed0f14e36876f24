"""Bad input to the loop and to the stream transports gets what asyncio's own
loop gives: the same exception type, at the same point, or the same
acceptance.  Every async test runs on both aioloop engines and on
asyncio.SelectorEventLoop (conftest.py); the synchronous ones take
`any_loop`.  The differences aioloop keeps on purpose are listed in
docs/compatibility.md ("Bad input: deliberate differences from asyncio")."""
import os
import socket
import subprocess
import sys

import pytest

import aioloop
from conftest import FACTORIES


def noop(*args):
    pass


# ---- the readiness API's descriptor argument ---------------------------------

class NoFileno:
    pass


class FilenoRaises:
    def fileno(self):
        raise ValueError("closed")


class FilenoNotInt:
    def fileno(self):
        return "x"


class FilenoAs:
    """fileno() gives something int() takes, as selectors accepts."""

    def __init__(self, value):
        self.value = value

    def fileno(self):
        return self.value


def test_readiness_descriptor_arguments(any_loop):
    loop = any_loop
    add = (loop.add_reader, loop.add_writer)
    remove = (loop.remove_reader, loop.remove_writer)
    for fd in (2**31, 2**64, 2**200, FilenoAs(2**64)):
        # Nothing can be registered under such a number: removing is False,
        # adding fails where epoll.register() does.
        for m in remove:
            assert m(fd) is False
        for m in add:
            with pytest.raises(OverflowError):
                m(fd, noop)
    bad = (-1, -2**64, NoFileno(), FilenoRaises(), FilenoNotInt(), FilenoAs(-1), FilenoAs(None),
           "3", 1.5, None)
    for fd in bad:
        for m in remove:
            with pytest.raises(ValueError):
                m(fd)
        for m in add:
            with pytest.raises(ValueError):
                m(fd, noop)
    a, b = socket.socketpair()
    try:
        for m in add:
            m(FilenoAs(str(a.fileno())), noop)
        assert loop.remove_reader(a) is True
        assert loop.remove_writer(a.fileno()) is True
        assert loop.remove_reader(a) is False
    finally:
        a.close()
        b.close()


@pytest.mark.parametrize("kind", sorted(FACTORIES))
def test_add_reader_far_descriptor_does_not_hang(kind):
    # aioloop grew its descriptor table by doubling an int: a number near
    # 2**31 overflowed it and add_reader() never returned.  Such numbers are
    # not open descriptors: OSError(EBADF), as epoll says on asyncio.
    factory = ("asyncio.SelectorEventLoop()" if kind == "asyncio"
               else f"aioloop.new_event_loop(engine={kind.split('-')[1]!r})")
    code = (
        "import asyncio, aioloop\n"
        f"loop = {factory}\n"
        "for fd in (2**31 - 2, 2**30 + 5, 10**6):\n"
        "    try:\n"
        "        loop.add_reader(fd, print)\n"
        "    except OSError as e:\n"
        "        print(type(e).__name__, e.errno)\n"
        "loop.close()\n"
    )
    root = os.path.dirname(os.path.dirname(aioloop.__file__))
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=30,
                       env=dict(os.environ, PYTHONPATH=root))
    assert p.returncode == 0, p.stderr
    assert p.stdout.split("\n") == ["OSError 9"] * 3 + [""]
