"""aioloop.worker.GunicornWebWorker under a real gunicorn: the app answers
from aioloop loops in each worker (of each engine), an async app factory
works, and SIGTERM stops gunicorn with status 0."""
import signal
import subprocess
import sys
import time

import pytest

import cli_helpers as h
from conftest import ENGINES

pytest.importorskip("aiohttp", reason="aiohttp is not installed (it is in the test extra)")
gunicorn = pytest.importorskip("gunicorn", reason="gunicorn is not installed (it is in the test extra)")


def gunicorn_args():
    from gunicorn.config import KNOWN_SETTINGS
    # gunicorn 24+ opens a control socket under ~/.gunicorn by default.
    if any(s.name == "control_socket_disable" for s in KNOWN_SETTINGS):
        return ["--no-control-socket"]
    return []


def start_gunicorn(tmp_path, target, *args, extra_env=None):
    h.write_app(tmp_path)
    port = h.free_port()
    p = h.Proc([sys.executable, "-m", "gunicorn", target, "--bind", f"127.0.0.1:{port}",
                "--worker-class", "aioloop.worker.GunicornWebWorker", *gunicorn_args(), *args],
               tmp_path, extra_env)
    return p, f"http://127.0.0.1:{port}"


@pytest.mark.parametrize("engine", ENGINES)
def test_gunicorn_worker(tmp_path, engine):
    p, url = start_gunicorn(tmp_path, "cliapp:app", "--workers", "2",
                            extra_env={"AIOLOOP_ENGINE": engine})
    try:
        for _ in range(2):
            p.wait_line(r"Booting worker with pid: \d+")
        pids = set()
        for _ in range(200):
            try:
                status, body = h.get(url)
            except ConnectionRefusedError:
                time.sleep(0.05)   # the workers are still starting their sites
                continue
            assert status == 200
            assert body["loop"] == "aioloop._loop" and body["engine"] == engine
            pids.add(body["pid"])
            if len(pids) == 2:
                break
        assert len(pids) >= 1 and p.proc.pid not in pids
        p.signal(signal.SIGTERM)
        assert p.wait() == 0, p.stderr()
        assert "Traceback" not in p.stderr(), p.stderr()
    finally:
        p.stop()


def test_gunicorn_async_factory(tmp_path):
    p, url = start_gunicorn(tmp_path, "cliapp:async_factory")
    try:
        p.wait_line(r"Booting worker with pid: \d+")
        answer = None
        for _ in range(200):
            try:
                answer = h.get(url)
                break
            except ConnectionRefusedError:
                time.sleep(0.05)
        assert answer is not None, p.stderr()
        status, body = answer
        assert status == 200 and body["loop"] == "aioloop._loop" and body["args"] == "async"
        p.signal(signal.SIGTERM)
        assert p.wait() == 0, p.stderr()
    finally:
        p.stop()


def test_worker_import_message():
    """Without gunicorn, importing the worker says what to install."""
    code = ("import sys; sys.modules['gunicorn'] = None\n"
            "try:\n    import aioloop.worker\n"
            "except ImportError as exc:\n    print(exc)\n")
    r = subprocess.run([sys.executable, "-c", code], env=h.env(), capture_output=True,
                       text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert "aioloop.worker needs gunicorn and aiohttp" in r.stdout
    assert "pip install gunicorn aiohttp" in r.stdout
