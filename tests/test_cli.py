"""``python -m aioloop run`` and ``python -m aioloop serve``, as processes.

run: a program's argv, __main__, sys.path[0] and exit status are those
python gives it; every way a program gets a loop (asyncio.run, Runner,
new_event_loop, the implicit loop of get_event_loop) gives an aioloop loop.
serve: an application object, sync and async factories, a Unix socket, TLS,
two workers (both answering, a killed one restarted), a graceful SIGTERM
that lets a request in flight finish, and one-line errors (exit 2) for an
app that cannot be found or is not an application.
"""
import json
import os
import shutil
import signal
import ssl
import subprocess
import sys
import textwrap
import threading
import time

import pytest

import cli_helpers as h
from conftest import ENGINES

pytest.importorskip("aiohttp", reason="aiohttp is not installed (it is in the test extra)")


def run_cli(tmp_path, *args, extra_env=None):
    e = h.env()
    e.update(extra_env or {})
    return subprocess.run([sys.executable, "-m", "aioloop", *args], cwd=tmp_path, env=e,
                          capture_output=True, text=True, timeout=60)


# -- run -----------------------------------------------------------------------

PROGRAM = '''
import asyncio, json, os, sys, warnings

async def which():
    loop = asyncio.get_running_loop()
    return [type(loop).__module__, loop.engine]

report = {"argv": sys.argv, "name": __name__, "file": __file__,
          "path0": sys.path[0], "main_is_me": sys.modules["__main__"].__dict__ is globals()}
if sys.version_info < (3, 14):
    # The loop get_event_loop() makes when none is set (gone in 3.14).
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        loop = asyncio.get_event_loop()
    report["get_event_loop"] = loop.run_until_complete(which())
    loop.close()
    asyncio.set_event_loop(None)
report["asyncio.run"] = asyncio.run(which())
with asyncio.Runner() as runner:
    report["Runner"] = runner.run(which())
loop = asyncio.new_event_loop()
report["new_event_loop"] = loop.run_until_complete(which())
loop.close()
print(json.dumps(report))
if sys.argv[1:2] == ["exit"]:
    sys.exit(int(sys.argv[2]))
if sys.argv[1:2] == ["raise"]:
    raise ValueError("raised by the program")
'''


@pytest.fixture
def program(tmp_path):
    sub = tmp_path / "prog"
    sub.mkdir()
    (sub / "prog.py").write_text(PROGRAM)
    pkg = tmp_path / "progpkg"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "__main__.py").write_text(PROGRAM)
    return tmp_path


def entry_points():
    names = ["asyncio.run", "Runner", "new_event_loop"]
    if sys.version_info < (3, 14):
        names.append("get_event_loop")
    return names


@pytest.mark.parametrize("engine", ENGINES)
def test_run_script(program, engine):
    r = run_cli(program, "run", "--engine", engine, "prog/prog.py", "a", "--b", "-c")
    assert r.returncode == 0, r.stderr
    report = json.loads(r.stdout)
    assert report["argv"] == ["prog/prog.py", "a", "--b", "-c"]
    assert report["name"] == "__main__" and report["main_is_me"]
    assert report["file"] == str(program / "prog" / "prog.py")
    assert report["path0"] == str(program / "prog")
    for name in entry_points():
        assert report[name] == ["aioloop._loop", engine], name


def test_run_module(program):
    r = run_cli(program, "run", "-m", "progpkg", "x", "-y")
    assert r.returncode == 0, r.stderr
    report = json.loads(r.stdout)
    assert report["argv"] == [str(program / "progpkg" / "__main__.py"), "x", "-y"]
    assert report["name"] == "__main__" and report["main_is_me"]
    for name in entry_points():
        assert report[name][0] == "aioloop._loop", name


def test_run_exit_status(program):
    r = run_cli(program, "run", "prog/prog.py", "exit", "7")
    assert r.returncode == 7, r.stderr
    r = run_cli(program, "run", "-m", "progpkg", "exit", "0")
    assert r.returncode == 0, r.stderr


def test_run_exception(program):
    r = run_cli(program, "run", "prog/prog.py", "raise")
    assert r.returncode == 1
    # The traceback starts at the program, as under python: no frames of
    # aioloop's command line or runpy.
    assert r.stderr.startswith("Traceback (most recent call last):\n"
                               f'  File "{program / "prog" / "prog.py"}"'), r.stderr
    assert r.stderr.rstrip().endswith("ValueError: raised by the program")
    assert "_cli.py" not in r.stderr and "runpy" not in r.stderr


def test_run_bad_usage(program):
    r = run_cli(program, "run", "missing.py")
    assert r.returncode == 2
    assert "can't open file" in r.stderr and "missing.py" in r.stderr
    r = run_cli(program, "run", "-m", "no_such_module_here")
    assert r.returncode == 1
    assert "No module named no_such_module_here" in r.stderr
    r = run_cli(program, "run", "--engine", "fast", "prog/prog.py")
    assert r.returncode == 2 and "invalid choice: 'fast'" in r.stderr
    r = run_cli(program, "run", "--flag", "prog/prog.py")
    assert r.returncode == 2 and "unrecognized option '--flag'" in r.stderr
    r = run_cli(program, "run")
    assert r.returncode == 2 and "the program to run is required" in r.stderr
    r = run_cli(program, "frobnicate")
    assert r.returncode == 2 and "unknown command 'frobnicate'" in r.stderr


def test_use_aioloop_without_policies(tmp_path):
    """The way in for Pythons without policies (3.16+), tried here on this
    one: asyncio.new_event_loop is replaced, and Runner and asyncio.run
    (which call events.new_event_loop without a loop_factory) follow."""
    code = textwrap.dedent("""
        import asyncio, sys
        from aioloop._cli import use_aioloop
        use_aioloop("threads", policy=False)
        async def which():
            loop = asyncio.get_running_loop()
            return type(loop).__module__, loop.engine
        print(asyncio.run(which()))
        with asyncio.Runner() as r:
            print(r.run(which()))
        loop = asyncio.new_event_loop()
        print(loop.run_until_complete(which()))
        loop.close()
    """)
    r = subprocess.run([sys.executable, "-c", code], env=h.env(), capture_output=True,
                       text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines() == ["('aioloop._loop', 'threads')"] * 3


# -- serve ---------------------------------------------------------------------

@pytest.fixture
def appdir(tmp_path):
    h.write_app(tmp_path)
    return tmp_path


@pytest.fixture
def procs():
    started = []
    yield started
    for p in started:
        p.stop()


def start(procs, appdir, *args):
    p, url = h.serve(appdir, "--no-access-log", *args)
    procs.append(p)
    return p, url


def stop_ok(p):
    p.signal(signal.SIGTERM)
    assert p.wait() == 0, p.stderr()
    assert "Traceback" not in p.stderr(), p.stderr()


@pytest.mark.parametrize("engine", ENGINES)
def test_serve_app(procs, appdir, engine):
    p, url = start(procs, appdir, "--port", "0", "--engine", engine, "cliapp:app")
    for _ in range(3):
        status, body = h.get(url)
        assert status == 200
        assert body["loop"] == "aioloop._loop" and body["engine"] == engine
        assert body["pid"] == p.proc.pid
    stop_ok(p)


@pytest.mark.parametrize("target, args, expected", [
    ("cliapp:factory", ["--", "--db", "x"], ["--db", "x"]),
    ("cliapp:factory", [], []),
    ("cliapp:plain_factory", [], "plain"),
    ("cliapp:async_factory", [], "async"),
])
def test_serve_factories(procs, appdir, target, args, expected):
    p, url = start(procs, appdir, "--port", "0", target, *args)
    status, body = h.get(url)
    assert status == 200 and body["args"] == expected
    stop_ok(p)


@pytest.mark.parametrize("target, message", [
    ("no_such_module:app", "cannot import 'no_such_module': No module named 'no_such_module'"),
    ("cliapp:missing", "module 'cliapp' has no attribute 'missing'"),
    ("cliapp", "APP must be 'module:attribute', got 'cliapp'"),
    ("cliapp:not_an_app", "cliapp:not_an_app is not an aiohttp application or a factory of one"),
    ("cliapp:bad_factory", "cliapp:bad_factory returned str, not an aiohttp web.Application"),
    ("cliapp:app -- extra", "cliapp:app is an application, not a factory"),
])
def test_serve_errors(appdir, target, message):
    r = run_cli(appdir, "serve", "--port", "0", *target.split())
    assert r.returncode == 2, r.stderr
    lines = r.stderr.splitlines()
    assert lines == [f"python -m aioloop serve: error: {message}"] or \
        (len(lines) == 1 and lines[0].startswith(f"python -m aioloop serve: error: {message}")), r.stderr


def test_serve_errors_in_workers(appdir):
    # A bad app under the supervisor: the workers cannot start, the
    # supervisor stops with their status.
    r = run_cli(appdir, "serve", "--port", "0", "--workers", "2", "cliapp:not_an_app")
    assert r.returncode == 2, r.stderr
    assert "is not an aiohttp application" in r.stderr
    assert "Traceback" not in r.stderr


def test_serve_address_in_use(appdir, procs):
    p, url = start(procs, appdir, "--port", "0", "cliapp:app")
    port = url.rsplit(":", 1)[1]
    r = run_cli(appdir, "serve", "--port", port, "cliapp:app")
    assert r.returncode == 2 and "cannot listen on" in r.stderr, r.stderr
    assert "Traceback" not in r.stderr
    stop_ok(p)


def test_serve_unix(procs, appdir):
    path = str(appdir / "s.sock")
    p, url = start(procs, appdir, "--unix", path, "cliapp:app")
    assert url == f"http+unix://{path}"
    status, body = h.get(url)
    assert status == 200 and body["loop"] == "aioloop._loop"
    stop_ok(p)
    assert not os.path.exists(path)


def test_serve_unix_workers(procs, appdir):
    path = str(appdir / "w.sock")
    p, url = start(procs, appdir, "--unix", path, "--workers", "2", "cliapp:app")
    pids = {h.get(url)[1]["pid"] for _ in range(10)}
    assert pids and p.proc.pid not in pids
    stop_ok(p)
    assert not os.path.exists(path)


def test_serve_graceful_sigterm(procs, appdir):
    p, url = start(procs, appdir, "--port", "0", "--shutdown-timeout", "20", "cliapp:app")
    result = {}

    def slow():
        result["answer"] = h.get(url, "/slow?t=1.5")
    t = threading.Thread(target=slow)
    t.start()
    p.wait_line("slow request started")
    p.signal(signal.SIGTERM)
    p.wait_line("SIGTERM: shutting down")
    # New connections are refused while the request in flight finishes.
    with pytest.raises(OSError):
        h.get(url, timeout=5)
    t.join(30)
    assert result["answer"] == (200, b"slow done")
    assert p.wait() == 0, p.stderr()


def test_serve_shutdown_timeout(procs, appdir):
    """A request that outlives --shutdown-timeout is cut off; exit is still 0."""
    p, url = start(procs, appdir, "--port", "0", "--shutdown-timeout", "0.5", "cliapp:app")
    errors = []

    def slow():
        try:
            errors.append(h.get(url, "/slow?t=30"))
        except Exception as exc:
            errors.append(exc)
    t = threading.Thread(target=slow)
    t.start()
    p.wait_line("slow request started")
    began = time.monotonic()
    p.signal(signal.SIGINT)
    assert p.wait() == 0, p.stderr()
    t.join(30)
    assert time.monotonic() - began < 20
    assert errors and isinstance(errors[0], Exception), errors


def pids_answering(url, want, tries=200):
    seen = set()
    for _ in range(tries):
        seen.add(h.get(url)[1]["pid"])
        if len(seen) >= want:
            break
    return seen


def test_serve_workers(procs, appdir):
    p, url = start(procs, appdir, "--port", "0", "--workers", "2", "cliapp:app")
    assert "with 2 workers" in p.stderr()
    # SO_REUSEPORT spreads connections (by their source port) over both.
    pids = pids_answering(url, 2)
    assert len(pids) == 2 and p.proc.pid not in pids
    # A killed worker is replaced, and the new one answers too.
    victim = sorted(pids)[0]
    os.kill(victim, signal.SIGKILL)
    p.wait_line(r"worker \d exited \(signal SIGKILL\); restarting it in")
    new = int(p.wait_line(r"worker (\d+) ready").group(1))
    assert new not in pids
    assert pids_answering(url, 2) == (pids - {victim}) | {new}
    stop_ok(p)
    assert "SIGTERM: stopping 2 workers" in p.stderr()


@pytest.fixture(scope="module")
def certificate(tmp_path_factory):
    if shutil.which("openssl") is None:
        pytest.skip("the openssl command is not installed (Debian package openssl)")
    d = tmp_path_factory.mktemp("tls")
    cert, key = d / "cert.pem", d / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes",
                    "-keyout", str(key), "-out", str(cert), "-days", "2",
                    "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1"],
                   check=True, capture_output=True, timeout=60)
    return str(cert), str(key)


def test_serve_tls(procs, appdir, certificate):
    cert, key = certificate
    p, url = start(procs, appdir, "--port", "0", "--ssl-certfile", cert, "--ssl-keyfile", key,
                   "cliapp:app")
    assert url.startswith("https://127.0.0.1:")
    ctx = ssl.create_default_context(cafile=cert)
    status, body = h.get(url, ssl_context=ctx)
    assert status == 200 and body["loop"] == "aioloop._loop"
    # The certificate really is checked: a client that does not trust it fails.
    with pytest.raises(ssl.SSLCertVerificationError):
        h.get(url, ssl_context=ssl.create_default_context())
    stop_ok(p)


def test_serve_tls_missing_file(appdir):
    r = run_cli(appdir, "serve", "--ssl-certfile", "nope.pem", "cliapp:app")
    assert r.returncode == 2
    assert r.stderr.strip() == "python -m aioloop serve: error: --ssl-certfile: no such file: 'nope.pem'"


def test_serve_access_log(procs, appdir):
    p, url = h.serve(appdir, "--port", "0", "cliapp:app")
    procs.append(p)
    h.get(url, "/?x=1")
    p.wait_line(r'"GET /\?x=1 HTTP/1.1" 200')
    stop_ok(p)


def test_help(tmp_path):
    r = run_cli(tmp_path, "serve", "--help")
    assert r.returncode == 0 and "--shutdown-timeout SECONDS" in r.stdout
    assert "--worker-ready-fd" not in r.stdout
    r = run_cli(tmp_path, "run", "--help")
    assert r.returncode == 0 and "-m module" in r.stdout


# -- shutdown timeouts, and errors in one line -----------------------------------

class _Outcome(list):
    pass


def _slow_request(url, t):
    """Starts GET /slow?t=T in a thread; returns the list its outcome lands in."""
    out = _Outcome()

    def go():
        try:
            out.append(h.get(url, f"/slow?t={t}", timeout=60))
        except Exception as exc:
            out.append(exc)
    th = threading.Thread(target=go, daemon=True)
    th.start()
    out.thread = th
    return out


def test_serve_shutdown_timeout_zero_cuts_the_request_at_once(procs, appdir):
    """--shutdown-timeout 0 ends requests in flight at once (aiohttp took 0
    as no limit, and the process waited the whole 30 s request)."""
    p, url = start(procs, appdir, "--port", "0", "--shutdown-timeout", "0", "cliapp:app")
    out = _slow_request(url, 30)
    p.wait_line("slow request started")
    p.signal(signal.SIGTERM)
    p.wait_line(r"up to 0 s for requests in flight")
    assert p.wait(timeout=20) == 0, p.stderr()
    out.thread.join(20)
    assert out and isinstance(out[0], Exception), out


def test_serve_shutdown_timeout_zero_with_workers_needs_no_kill(procs, appdir):
    p, url = start(procs, appdir, "--port", "0", "--workers", "2", "--shutdown-timeout", "0",
                   "cliapp:app")
    out = _slow_request(url, 30)
    p.wait_line("slow request started")
    p.signal(signal.SIGTERM)
    assert p.wait(timeout=30) == 0, p.stderr()
    assert "killing it" not in p.stderr(), p.stderr()
    out.thread.join(20)
    assert out and isinstance(out[0], Exception), out


def test_serve_shutdown_timeout_is_applied_once(procs, appdir):
    """A 6 s request with --shutdown-timeout 4 is cut: aiohttp waited the
    timeout twice (4 + 4 s) and let it finish."""
    p, url = start(procs, appdir, "--port", "0", "--shutdown-timeout", "4", "cliapp:app")
    out = _slow_request(url, 6)
    p.wait_line("slow request started")
    p.signal(signal.SIGTERM)
    assert p.wait(timeout=30) == 0, p.stderr()
    out.thread.join(20)
    assert out and isinstance(out[0], Exception), out


@pytest.mark.parametrize("command", ["run", "serve"])
def test_a_bad_engine_in_the_environment_is_one_line(appdir, command):
    args = ["prog.py"] if command == "run" else ["--port", "0", "cliapp:app"]
    (appdir / "prog.py").write_text("print('ran')\n")
    r = run_cli(appdir, command, *args, extra_env={"AIOLOOP_ENGINE": "bogus"})
    assert r.returncode == 2, r.stderr
    assert r.stderr.strip() == (f"python -m aioloop {command}: error: AIOLOOP_ENGINE='bogus' "
                                "is not an engine (choose from auto, uring, threads)"), r.stderr


def test_a_bad_write_mode_is_refused(appdir):
    import aioloop
    mp = pytest.MonkeyPatch()
    mp.setenv("AIOLOOP_WRITE_MODE", "bogus")
    try:
        with pytest.raises(ValueError, match="AIOLOOP_WRITE_MODE must be 'thread' or 'inline'"):
            aioloop.new_event_loop()
    finally:
        mp.undo()
    (appdir / "prog.py").write_text("print('ran')\n")
    r = run_cli(appdir, "run", "prog.py", extra_env={"AIOLOOP_WRITE_MODE": "bogus"})
    assert r.returncode == 2 and "ran" not in r.stdout, r.stderr
    assert r.stderr.strip() == ("python -m aioloop run: error: AIOLOOP_WRITE_MODE must be "
                                "'thread' or 'inline', got 'bogus'"), r.stderr


def test_serve_without_aiohttp_is_one_line(appdir, tmp_path):
    shadow = tmp_path / "shadow" / "aiohttp"
    shadow.mkdir(parents=True)
    (shadow / "__init__.py").write_text(
        "raise ModuleNotFoundError(\"No module named 'aiohttp'\", name='aiohttp')\n")
    e = h.env()
    e["PYTHONPATH"] = os.pathsep.join([str(shadow.parent), e["PYTHONPATH"]])
    r = subprocess.run([sys.executable, "-m", "aioloop", "serve", "cliapp:app"], cwd=appdir,
                       env=e, capture_output=True, text=True, timeout=60)
    assert r.returncode == 2, r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(
        "python -m aioloop serve: error: serve needs aiohttp"), r.stderr
    assert "pip install aiohttp" in lines[0]


@pytest.mark.parametrize("workers", ["1", "2"])
def test_serve_of_a_module_that_raises_shows_only_its_frames(appdir, workers):
    (appdir / "boom.py").write_text("import os\n\ndef f():\n    raise RuntimeError('boom at import')\n\nf()\n")
    r = run_cli(appdir, "serve", "--port", "0", "--workers", workers, "boom:app")
    assert r.returncode == 1, r.stderr
    assert "Traceback (most recent call last):" in r.stderr
    assert 'boom.py", line 6, in <module>' in r.stderr
    assert "RuntimeError: boom at import" in r.stderr
    for ours in ("_serve.py", "_cli.py", "runners.py", "importlib"):
        assert ours not in r.stderr, r.stderr


def test_serve_certificate_errors_name_the_file(appdir):
    bad = appdir / "bad.pem"
    bad.write_text("not a certificate\n")
    r = run_cli(appdir, "serve", "--port", "0", "--ssl-certfile", str(bad), "cliapp:app")
    assert r.returncode == 2, r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(
        f"python -m aioloop serve: error: cannot load the certificate {str(bad)!r}: "), r.stderr


@pytest.mark.parametrize("workers", ["1", "2"])
def test_serve_unix_bind_error_names_the_path(appdir, workers):
    path = str(appdir / "no-such-dir" / "s.sock")
    r = run_cli(appdir, "serve", "--unix", path, "--workers", workers, "cliapp:app")
    assert r.returncode == 2, r.stderr
    assert r.stderr.strip() == (f"python -m aioloop serve: error: cannot listen on the Unix "
                                f"socket {path!r}: [Errno 2] No such file or directory"), r.stderr
