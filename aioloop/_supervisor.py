"""The supervisor of ``python -m aioloop serve --workers N`` (N > 1).

Plain Python, no event loop: it starts N worker processes
(``python -m aioloop serve ... --worker-ready-fd FD``), each binding the same
TCP port with SO_REUSEPORT so the kernel spreads connections over them (a
Unix socket cannot be shared that way: the supervisor binds it and the
workers inherit it).  It waits for every worker to report ready, restarts a
worker that dies (with back-off when it keeps dying young), forwards SIGTERM
or SIGINT to all of them as SIGTERM, and exits 0 once they have all exited 0.

Workers run in their own session so a terminal's Ctrl-C reaches only the
supervisor; a worker whose supervisor disappears shuts itself down.
"""
import os
import selectors
import signal
import socket
import subprocess
import sys
import time

from ._serve import _say
from ._cli import _error

# A worker that lived less than this is "dying young": each consecutive
# young death doubles the pause before its restart, up to RESTART_MAX.
YOUNG = 10.0
RESTART_MIN = 0.1
RESTART_MAX = 30.0
# After the workers' own shutdown timeout, how long before they are killed.
KILL_GRACE = 5.0


class _Worker:
    def __init__(self, slot):
        self.slot = slot
        self.proc = None
        self.ready_r = None      # read end of the readiness pipe, until ready
        self.ready = False
        self.started = 0.0
        self.young_deaths = 0
        self.restart_at = None   # monotonic time of a scheduled restart


def _child_args(opts, port):
    args = ["--engine", opts.engine or "auto",
            "--shutdown-timeout", repr(opts.shutdown_timeout),
            "--backlog", str(opts.backlog),
            "--access-log" if opts.access_log else "--no-access-log"]
    if opts.unix:
        args += ["--unix", opts.unix]
    else:
        args += ["--host", opts.host, "--port", str(port)]
    if opts.ssl_certfile:
        args += ["--ssl-certfile", opts.ssl_certfile]
    if opts.ssl_keyfile:
        args += ["--ssl-keyfile", opts.ssl_keyfile]
    # The factory's arguments after `--`.
    return args + [opts.app, "--", *opts.app_args]


def _reserve_port(host, port):
    """For ``--port 0``: bind (not listen) a SO_REUSEPORT socket to a free
    port, so every worker can join that port; the socket itself never gets
    connections (only listening sockets do)."""
    infos = socket.getaddrinfo(host or None, port, type=socket.SOCK_STREAM,
                               flags=socket.AI_PASSIVE)
    family, type_, proto, _, addr = infos[0]
    sock = socket.socket(family, type_, proto)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind(addr)
    return sock, sock.getsockname()[1]


def _unix_listener(path, backlog):
    try:
        if os.path.exists(path) and not os.path.isdir(path):
            import stat
            if stat.S_ISSOCK(os.stat(path).st_mode):
                os.unlink(path)   # a stale socket, as asyncio removes it too
    except OSError:
        pass
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.bind(path)
    sock.listen(backlog)
    return sock


def _describe(status):
    return f"signal {signal.Signals(-status).name}" if status < 0 else f"status {status}"


class Supervisor:
    def __init__(self, opts):
        self.opts = opts
        self.workers = [_Worker(i) for i in range(opts.workers)]
        self.sel = selectors.DefaultSelector()
        self.stopping = None       # the signal's name once asked to stop
        self.listen_sock = None
        self.port_sock = None
        self.port = opts.port

    def spawn(self, w):
        r, wfd = os.pipe()
        cmd = [sys.executable, "-m", "aioloop", "serve",
               "--worker-ready-fd", str(wfd)]
        fds = [wfd]
        if self.listen_sock is not None:
            cmd += ["--worker-listen-fd", str(self.listen_sock.fileno())]
            fds.append(self.listen_sock.fileno())
        cmd += _child_args(self.opts, self.port)
        try:
            w.proc = subprocess.Popen(cmd, pass_fds=fds, start_new_session=True)
        finally:
            os.close(wfd)
        w.ready_r, w.ready, w.started, w.restart_at = r, False, time.monotonic(), None
        self.sel.register(r, selectors.EVENT_READ, w)

    def _close_ready(self, w):
        if w.ready_r is not None:
            self.sel.unregister(w.ready_r)
            os.close(w.ready_r)
            w.ready_r = None

    def on_signal(self, signum, frame):
        if self.stopping is None:
            self.stopping = signal.Signals(signum).name

    def run(self):
        opts = self.opts
        for signum in (signal.SIGINT, signal.SIGTERM):
            signal.signal(signum, self.on_signal)
        if opts.unix:
            self.listen_sock = _unix_listener(opts.unix, opts.backlog)
        elif opts.port == 0:
            self.port_sock, self.port = _reserve_port(opts.host, 0)
        for w in self.workers:
            self.spawn(w)
        announced = False
        status = 0
        while self.stopping is None:
            timeout = 0.2
            now = time.monotonic()
            for w in self.workers:
                if w.restart_at is not None:
                    timeout = max(0.0, min(timeout, w.restart_at - now))
            for key, _ in self.sel.select(timeout):
                w = key.data
                data = os.read(w.ready_r, 64)
                if data.startswith(b"ready"):
                    w.ready = True
                self._close_ready(w)
            if not announced and all(w.ready for w in self.workers):
                announced = True
                _say(f"serving on {self.url()} with {len(self.workers)} workers "
                     f"(supervisor pid {os.getpid()})")
            now = time.monotonic()
            for w in self.workers:
                if w.proc is not None and w.proc.poll() is not None:
                    code = w.proc.returncode
                    self._close_ready(w)
                    w.proc = None
                    if not announced and not w.ready:
                        # A worker that cannot start (bad app, port taken)
                        # will not start better next time: stop everything.
                        _say(f"worker failed to start ({_describe(code)}); stopping")
                        self.stopping = "boot failure"
                        status = code if code > 0 else 1
                        break
                    if now - w.started < YOUNG:
                        w.young_deaths += 1
                    else:
                        w.young_deaths = 0
                    delay = min(RESTART_MIN * 2 ** w.young_deaths, RESTART_MAX)
                    _say(f"worker {w.slot} exited ({_describe(code)}); "
                         f"restarting it in {delay:g} s")
                    w.restart_at = now + delay
                elif w.proc is None and w.restart_at is not None and now >= w.restart_at:
                    self.spawn(w)
        if status == 0:
            _say(f"{self.stopping}: stopping {sum(w.proc is not None for w in self.workers)} workers")
        status = max(status, self.stop_all())
        self.cleanup()
        return status

    def stop_all(self):
        """SIGTERM every worker, wait for them (their shutdown timeout plus a
        grace), SIGKILL the rest.  0 when every worker exited 0."""
        live = [w for w in self.workers if w.proc is not None]
        for w in live:
            try:
                w.proc.send_signal(signal.SIGTERM)
            except ProcessLookupError:
                pass
        deadline = time.monotonic() + self.opts.shutdown_timeout + KILL_GRACE
        status = 0
        for w in live:
            try:
                code = w.proc.wait(max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                _say(f"worker {w.proc.pid} did not stop in time; killing it")
                w.proc.kill()
                code = w.proc.wait()
            if code != 0:
                status = 1
            self._close_ready(w)
            w.proc = None
        return status

    def cleanup(self):
        if self.port_sock is not None:
            self.port_sock.close()
        if self.listen_sock is not None:
            self.listen_sock.close()
            try:
                os.unlink(self.opts.unix)
            except OSError:
                pass
        self.sel.close()

    def url(self):
        scheme = "https" if self.opts.ssl_certfile else "http"
        if self.opts.unix:
            return f"{scheme}+unix://{self.opts.unix}"
        host = self.opts.host or "0.0.0.0"
        if ":" in host:
            host = f"[{host}]"
        return f"{scheme}://{host}:{self.port}"


def supervise(opts, prog):
    sup = Supervisor(opts)
    try:
        return sup.run()
    except OSError as exc:
        # Only the supervisor's own binding (a Unix socket, a port for
        # --port 0) gets here.
        for w in sup.workers:
            if w.proc is not None:
                w.proc.kill()
                w.proc.wait()
        sup.cleanup()
        where = f"the Unix socket {opts.unix!r}" if opts.unix else sup.url()
        return _error(prog, f"cannot listen on {where}: {exc}")
