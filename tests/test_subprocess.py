"""Subprocesses: every way of getting an aioloop loop (policy, install(),
loop_factory, new_event_loop) on each engine, asyncio's returncode
semantics (checked on asyncio's loop too), and aioloop's two ways of
learning that a child exited: a pidfd watched by the loop, and a waitpid()
thread where pidfd_open() is refused."""
import asyncio
import errno
import functools
import os
import signal
import sys
import time
import warnings

import pytest

import aioloop
from conftest import ENGINES

PIPE = asyncio.subprocess.PIPE
HAVE_PIDFD = hasattr(os, "pidfd_open")
if HAVE_PIDFD:
    try:
        os.close(os.pidfd_open(os.getpid()))
    except OSError:
        HAVE_PIDFD = False


async def _echo_and_shell():
    loop = asyncio.get_running_loop()
    proc = await asyncio.create_subprocess_exec("echo", "hi", stdout=PIPE)
    out, _ = await asyncio.wait_for(proc.communicate(), 30)
    shell = await asyncio.create_subprocess_shell("exit 5")
    rc = await asyncio.wait_for(shell.wait(), 30)
    return type(loop), loop.engine, out, proc.returncode, rc


def _check(result, engine):
    assert result == (aioloop.Loop, engine, b"hi\n", 0, 5)


@pytest.fixture
def restore_policy():
    old = asyncio.get_event_loop_policy()
    yield
    asyncio.set_event_loop_policy(old)


@pytest.mark.skipif(not hasattr(aioloop, "EventLoopPolicy"),
                    reason="this Python has no event loop policies (removed in 3.16)")
@pytest.mark.parametrize("engine", ENGINES)
def test_under_the_policy(engine, monkeypatch, restore_policy):
    # Before: NotImplementedError on 3.11-3.13 (asyncio asked the policy for
    # a child watcher; aioloop's policy has none).
    monkeypatch.setenv("AIOLOOP_ENGINE", engine)
    asyncio.set_event_loop_policy(aioloop.EventLoopPolicy())
    _check(asyncio.run(_echo_and_shell()), engine)


@pytest.mark.skipif(not hasattr(aioloop, "EventLoopPolicy"),
                    reason="this Python has no event loop policies (removed in 3.16)")
@pytest.mark.parametrize("engine", ENGINES)
def test_after_install(engine, monkeypatch, restore_policy):
    monkeypatch.setenv("AIOLOOP_ENGINE", engine)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        aioloop.install()
    _check(asyncio.run(_echo_and_shell()), engine)


@pytest.mark.parametrize("engine", ENGINES)
def test_with_loop_factory(engine):
    factory = functools.partial(aioloop.new_event_loop, engine=engine)
    with asyncio.Runner(loop_factory=factory) as runner:
        _check(runner.run(_echo_and_shell()), engine)


@pytest.mark.parametrize("engine", ENGINES)
def test_with_new_event_loop(engine):
    loop = aioloop.new_event_loop(engine=engine)
    try:
        _check(loop.run_until_complete(_echo_and_shell()), engine)
    finally:
        loop.close()


# ---- asyncio's semantics, on every loop (conftest runs each async test on all) ----

async def test_returncodes_wait_and_communicate():
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-c", "import sys; data = sys.stdin.read(); print(len(data)); sys.exit(3)",
        stdin=PIPE, stdout=PIPE)
    out, err = await asyncio.wait_for(proc.communicate(b"x" * 100_000), 30)
    assert (out, err, proc.returncode) == (b"100000\n", None, 3)
    assert proc._transport.get_returncode() == 3
    assert await proc.wait() == 3                      # again: the same answer
    with pytest.raises(ProcessLookupError):
        proc.kill()                                    # asyncio: the process is gone


@pytest.mark.parametrize("how, sig", [("kill", signal.SIGKILL), ("terminate", signal.SIGTERM),
                                      ("send_signal", signal.SIGUSR1)])
async def test_killed_process_reports_minus_the_signal(how, sig):
    proc = await asyncio.create_subprocess_exec("sleep", "30")
    assert proc.returncode is None
    if how == "send_signal":
        proc.send_signal(sig)
    else:
        getattr(proc, how)()
    waiters = [asyncio.ensure_future(proc.wait()) for _ in range(3)]
    assert await asyncio.wait_for(asyncio.gather(*waiters), 30) == [-sig] * 3
    assert proc.returncode == -sig


async def test_protocol_sees_process_exited_and_transport_returncode():
    loop = asyncio.get_running_loop()
    exited = loop.create_future()

    class Proto(asyncio.SubprocessProtocol):
        def process_exited(self):
            exited.set_result(transport.get_returncode())

    transport, _ = await loop.subprocess_exec(Proto, "sh", "-c", "exit 7",
                                              stdin=None, stdout=None, stderr=None)
    assert await asyncio.wait_for(exited, 30) == 7
    assert transport.get_returncode() == 7
    transport.close()


async def test_process_exiting_at_once():
    # Most of these exit before the transport is connected (pipes set up).
    procs = [await asyncio.create_subprocess_exec("true", stdout=PIPE) for _ in range(10)]
    outs = await asyncio.wait_for(asyncio.gather(*(p.communicate() for p in procs)), 30)
    assert outs == [(b"", None)] * 10
    assert [p.returncode for p in procs] == [0] * 10


async def test_many_concurrent_processes():
    async def one(i):
        p = await asyncio.create_subprocess_exec("sh", "-c", f"echo {i}; exit {i % 256}",
                                                 stdout=PIPE)
        out, _ = await p.communicate()
        return int(out), p.returncode

    n = 100
    res = await asyncio.wait_for(asyncio.gather(*(one(i) for i in range(n))), 60)
    assert res == [(i, i % 256) for i in range(n)]


async def test_spawn_failure_raises_and_leaves_nothing():
    with pytest.raises(FileNotFoundError):
        await asyncio.create_subprocess_exec("/nonexistent/program")


# ---- aioloop's two watchers ------------------------------------------------

@pytest.fixture(params=["pidfd", "thread"])
def watch_path(request, monkeypatch):
    """The pidfd watcher, or the waitpid() thread (pidfd_open refused, as a
    seccomp filter or an old kernel would)."""
    if request.param == "pidfd":
        if not HAVE_PIDFD:
            pytest.skip("pidfd_open is not available here")
    else:
        def refused(pid, flags=0):
            raise OSError(errno.ENOSYS, "Function not implemented")
        monkeypatch.setattr(os, "pidfd_open", refused, raising=False)
    return request.param


def _run(engine, coro_fn):
    loop = aioloop.new_event_loop(engine=engine)
    try:
        return loop.run_until_complete(asyncio.wait_for(coro_fn(loop), 60))
    finally:
        loop.close()


@pytest.mark.parametrize("engine", ENGINES)
def test_watch_path_semantics(engine, watch_path):
    async def main(loop):
        p = await asyncio.create_subprocess_exec("sh", "-c", "read x; exit 4", stdin=PIPE)
        assert loop._children.watching(p.pid) == watch_path
        await p.communicate(b"go\n")
        assert p.returncode == 4 and loop._children.watching(p.pid) is None
        k = await asyncio.create_subprocess_exec("sleep", "30")
        k.kill()
        assert await k.wait() == -signal.SIGKILL
        many = [await asyncio.create_subprocess_exec("sh", "-c", f"exit {i}") for i in range(30)]
        assert await asyncio.gather(*(m.wait() for m in many)) == list(range(30))
        return True

    assert _run(engine, main)


def _wait_exit(pid, timeout=10):
    """Until the child has exited: a zombie, or already reaped."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with open(f"/proc/{pid}/stat") as f:
                if f.read().rsplit(")", 1)[1].split()[0] == "Z":
                    return
        except FileNotFoundError:
            return
        time.sleep(0.005)
    raise AssertionError(f"pid {pid} did not exit")


@pytest.mark.parametrize("engine", ENGINES)
def test_child_exited_before_it_was_watched(engine, watch_path, monkeypatch):
    """The child is already a zombie when the watcher starts on it."""
    real_watch = aioloop._child.ChildWatcher.watch

    def late_watch(self, pid, transport):
        _wait_exit(pid)
        return real_watch(self, pid, transport)

    monkeypatch.setattr(aioloop._child.ChildWatcher, "watch", late_watch)

    async def main(loop):
        p = await asyncio.create_subprocess_exec("sh", "-c", "exit 9")
        return await p.wait()

    assert _run(engine, main) == 9


@pytest.mark.parametrize("engine", ENGINES)
def test_kill_reaping_an_exited_child_keeps_its_status(engine, watch_path, caplog):
    """Popen.send_signal() polls first, and so reaps a child that exited but
    whose exit the loop has not seen yet: the status Popen read is the one
    reported (asyncio's pidfd watcher reports 255 here)."""
    async def main(loop):
        p = await asyncio.create_subprocess_exec("sh", "-c", "exit 6")
        _wait_exit(p.pid)   # exited; the loop has not run since
        p.kill()            # pidfd path: this reaps it (thread path: the thread did)
        return await p.wait()

    assert _run(engine, main) == 6
    assert "already read" not in caplog.text


@pytest.mark.parametrize("engine", ENGINES)
def test_watch_failure_kills_the_child_and_raises(engine, monkeypatch):
    spawned = []

    def broken(self, pid, transport):
        spawned.append(pid)
        raise RuntimeError("can't start new thread")

    monkeypatch.setattr(aioloop._child.ChildWatcher, "watch", broken)

    async def main(loop):
        with pytest.raises(RuntimeError, match="new thread"):
            await asyncio.create_subprocess_exec("sleep", "30")
        return True

    assert _run(engine, main)
    _wait_exit(spawned[0])      # "sleep 30" ends this soon only if it was killed
    try:
        _, status = os.waitpid(spawned[0], 0)
    except ChildProcessError:
        pass                    # Popen reaped it (3.12+ when it was collected)
    else:
        assert os.waitstatus_to_exitcode(status) == -signal.SIGKILL


@pytest.mark.parametrize("engine", ENGINES)
def test_close_with_a_running_child_releases_the_pidfd(engine):
    if not HAVE_PIDFD:
        pytest.skip("pidfd_open is not available here")
    loop = aioloop.new_event_loop(engine=engine)
    proc = loop.run_until_complete(asyncio.create_subprocess_exec("sleep", "30"))
    pidfd = loop._children._pidfds[proc.pid]
    proc.kill()
    proc._transport.close()
    loop.close()
    with pytest.raises(OSError):
        os.fstat(pidfd)
    os.waitpid(proc.pid, 0)    # reap it here: nobody watches it any more
