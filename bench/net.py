"""Network workloads: echo servers under the C load generator, aiohttp under
wrk, and server memory with many idle or many short connections; and their
TLS counterparts (echo and short connections under the C TLS load
generator, aiohttp over HTTPS under wrk).

Every server runs in a child process of its own (``bench.servers``, or the
C epoll echo server); the server's CPU time is read per thread from /proc
before and after the measured window, so the loop thread's share and the
completion threads' share are both known.
"""
import json
import os
import re
import atexit
import shutil
import socket
import ssl
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
BIN = os.path.join(HERE, "out", "bin")
C_EPOLL = "c-epoll"


def _build(name, libs=(), **kw):
    src = os.path.join(HERE, "c", name + ".c")
    exe = os.path.join(BIN, name)
    newest = max(os.path.getmtime(src), os.path.getmtime(os.path.join(HERE, "c", "latency.h")))
    if os.path.exists(exe) and os.path.getmtime(exe) >= newest:
        return
    subprocess.run([os.environ.get("CC", "cc"), "-std=c11", "-O2", "-Wall", "-Wextra", "-Werror",
                    "-o", exe, src, *libs], check=True, **kw)


def build_tools():
    """Compile the C load generator and the C epoll echo server (once)."""
    os.makedirs(BIN, exist_ok=True)
    for name in ("loadgen", "echo_epoll"):
        _build(name)


TLSGEN = os.path.join(BIN, "tlsgen")
_tls_skip = []


def build_tls_tools():
    """Compile the C TLS load generator (once), and make the run's
    certificate; None, or why the TLS workloads cannot run here (no C
    compiler, no OpenSSL headers, no openssl CLI nor trustme)."""
    if _tls_skip:
        return _tls_skip[0]
    why = None
    os.makedirs(BIN, exist_ok=True)
    try:
        _build("tlsgen", ("-lssl", "-lcrypto"), capture_output=True, text=True)
    except FileNotFoundError:
        why = f"no C compiler ({os.environ.get('CC', 'cc')}) to build bench/c/tlsgen.c"
    except subprocess.CalledProcessError as e:
        err = (e.stderr or "").strip().splitlines()
        why = ("bench/c/tlsgen.c does not build: "
               + ("OpenSSL's headers are missing (Debian: apt-get install libssl-dev)"
                  if any("openssl/" in ln for ln in err) else (err[0] if err else f"exit {e.returncode}")))
    if why is None:
        try:
            tls_dir()
        except (OSError, RuntimeError, subprocess.CalledProcessError) as e:
            why = f"no certificate for the TLS servers: {e}"
    _tls_skip.append(why)
    return why


_tls_dir = []


def tls_dir():
    """A directory holding cert.pem and key.pem, a self-signed ECDSA P-256
    certificate for 127.0.0.1/localhost, made once per bench run (openssl
    CLI, else trustme) and removed when the bench exits."""
    if _tls_dir:
        return _tls_dir[0]
    d = tempfile.mkdtemp(prefix="bench-tls-")
    atexit.register(shutil.rmtree, d, True)
    cert, key = os.path.join(d, "cert.pem"), os.path.join(d, "key.pem")
    if shutil.which("openssl"):
        subprocess.run(["openssl", "req", "-x509", "-newkey", "ec",
                        "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-days", "2",
                        "-subj", "/CN=localhost", "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1",
                        "-keyout", key, "-out", cert], check=True, capture_output=True)
    else:
        try:
            import trustme
        except ImportError:
            raise RuntimeError("neither the openssl CLI nor trustme is installed") from None
        ca = trustme.CA()
        leaf = ca.issue_cert("localhost", "127.0.0.1")
        leaf.private_key_pem.write_to_path(key)
        leaf.cert_chain_pems[0].write_to_path(cert)
    _tls_dir.append(d)
    return d


def thread_cpu(pid):
    """CPU seconds per thread of pid, from /proc/PID/task/TID/schedstat (ns)."""
    out = {}
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{tid}/schedstat") as f:
                out[int(tid)] = int(f.read().split()[0]) / 1e9
        except (FileNotFoundError, ProcessLookupError, ValueError):
            pass
    return out


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


class Server:
    """A server in a child process: ``with Server(loop, kind) as s: s.port``.

    Once the server has printed "ready PORT" the port is probed until it
    answers (a TCP connect accepted; for udp, a datagram echoed), at most
    `ready_timeout` seconds: some loops (rloop) return from create_server
    before the socket listens."""

    def __init__(self, loop, kind, work=0, ready_timeout=5.0, env=None, cwd=None):
        if loop == C_EPOLL:
            cmd = [os.path.join(BIN, "echo_epoll"), "0"]
        else:
            cmd = [sys.executable, "-m", "bench.servers", loop, kind, "0", str(work)]
        # env, cwd: the server's own (bench.ab runs another build's aioloop
        # so); by default this environment with bench/ on PYTHONPATH.
        env = dict(env) if env is not None else dict(os.environ, PYTHONPATH=os.pathsep.join(
            p for p in (os.path.dirname(HERE), os.environ.get("PYTHONPATH")) if p))
        if kind.startswith("tls-"):
            env["BENCH_TLS_DIR"] = tls_dir()
        self.name = f"{loop}/{kind}"
        # The server's stderr goes to a file, summed up when it is stopped,
        # so a peer's tracebacks are told apart from the bench's output.
        self.err = tempfile.TemporaryFile("w+")
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=self.err, text=True, env=env,
                                     cwd=cwd)
        line = self.proc.stdout.readline().split()
        if len(line) != 2 or line[0] != "ready":
            self.proc.kill()
            self.proc.wait()
            raise RuntimeError(f"server {loop}/{kind} did not start: {self._stderr()[-1:]}")
        self.port = int(line[1])
        self.pid = self.proc.pid
        wait = _wait_udp if kind == "udp" else _wait_tls if kind.startswith("tls-") else _wait_tcp
        try:
            wait(self.port, ready_timeout)
        except (OSError, TimeoutError) as e:
            self.proc.kill()
            self.proc.wait()
            raise RuntimeError(f"server {loop}/{kind} printed ready but does not answer: {e}") from None

    def cpu(self):
        return thread_cpu(self.pid)

    def __enter__(self):
        return self

    def _stderr(self):
        self.err.seek(0)
        return [ln.rstrip() for ln in self.err if ln.strip()]

    def __exit__(self, *exc):
        self.proc.kill()
        self.proc.wait()
        lines = self._stderr()
        self.err.close()
        if lines:
            first = next((ln for ln in lines if not ln.startswith(" ")), lines[0])
            print(f"    {self.name}: the server wrote {len(lines)} line(s) to stderr; "
                  f"{first[:100]!r} ... {lines[-1][:100]!r}", file=sys.stderr, flush=True)


def _wait_tcp(port, timeout):
    deadline = time.monotonic() + timeout
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1.0).close()
            return
        except ConnectionRefusedError:
            if time.monotonic() > deadline:
                raise TimeoutError(f"port {port} refused connections for {timeout:g} s")
            time.sleep(0.01)


def _wait_tls(port, timeout):
    """A whole TLS handshake (not a bare TCP connect, which the server's TLS
    layer would see as a handshake cut short)."""
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    deadline = time.monotonic() + timeout
    while True:
        try:
            sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
            break
        except ConnectionRefusedError:
            if time.monotonic() > deadline:
                raise TimeoutError(f"port {port} refused connections for {timeout:g} s")
            time.sleep(0.01)
    with ctx.wrap_socket(sock) as t:
        try:
            t.unwrap()           # a close_notify each way: a clean close
        except (OSError, ValueError):
            pass


def _wait_udp(port, timeout):
    deadline = time.monotonic() + timeout
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.connect(("127.0.0.1", port))
        s.settimeout(0.05)
        while True:
            try:
                s.send(b"probe")
                if s.recv(64) == b"probe":
                    return
            except (socket.timeout, ConnectionRefusedError):
                pass
            if time.monotonic() > deadline:
                raise TimeoutError(f"no echo from udp port {port} in {timeout:g} s")


def cpu_split(before, after, main_tid):
    """(all threads, loop thread) CPU seconds between two thread_cpu() reads."""
    total = sum(after[t] - before.get(t, 0.0) for t in after)
    loop = after.get(main_tid, 0.0) - before.get(main_tid, 0.0)
    return total, loop


def _cpu_fields(before, after, pid, n):
    """Server CPU µs per operation: all threads, the loop thread, the rest
    (aioloop's completion threads, any helper thread of another loop)."""
    total, loop_cpu = cpu_split(before, after, pid)
    n = max(n, 1)
    return {"cpu_us": total / n * 1e6, "loop_cpu_us": loop_cpu / n * 1e6,
            "other_cpu_us": (total - loop_cpu) / n * 1e6}


def _run_loadgen(srv, args, warmup):
    """Runs the load generator against srv; (its JSON result, CPU before, after).
    The CPU window (from the end of the warm-up until the load generator
    exits) is close to the measured window; per-operation CPU uses it."""
    gen = subprocess.Popen([os.path.join(BIN, "loadgen"), args[0], "127.0.0.1", str(srv.port)]
                           + [str(a) for a in args[1:]], stdout=subprocess.PIPE, text=True)
    time.sleep(warmup)
    before = srv.cpu()
    out, _ = gen.communicate()
    after = srv.cpu()
    try:
        return json.loads(out), before, after
    except ValueError:
        raise RuntimeError(f"load generator {args[0]} failed (exit {gen.returncode}): {out!r}") from None


def echo(loop, kind, size, conns, seconds, warmup=0.5, work=0):
    """One echo run: dict with rps, p50/p99 (µs), server CPU µs per request.
    work: iterations of bench.servers.spin() per data_received (protocol)."""
    with Server(loop, kind, work) as srv:
        res, before, after = _run_loadgen(srv, ["echo", conns, size, seconds, warmup], warmup)
    return {"rps": res["rps"], "p50_us": res["p50_us"], "p99_us": res["p99_us"],
            **_cpu_fields(before, after, srv.pid, res["requests"]), "errors": res["errors"]}


def short_conns(loop, conns, size, seconds, warmup=0.5):
    """Short connections, `conns` at a time: connect, one `size`-byte echo,
    close.  rps is connections/s; CPU is per connection."""
    with Server(loop, "protocol") as srv:
        res, before, after = _run_loadgen(srv, ["conn", conns, size, seconds, warmup], warmup)
    return {"rps": res["rps"], "p50_us": res["p50_us"], "p99_us": res["p99_us"],
            **_cpu_fields(before, after, srv.pid, res["requests"]), "errors": res["errors"]}


def _run_tlsgen(srv, args):
    """Runs the TLS load generator against srv; (its JSON result, CPU before,
    after).  The CPU window opens when the generator says "start" (its
    handshakes and warm-up done) and closes when it exits."""
    gen = subprocess.Popen([TLSGEN, args[0], "127.0.0.1", str(srv.port)]
                           + [str(a) for a in args[1:]], stdout=subprocess.PIPE, text=True)
    first = gen.stdout.readline()
    before = srv.cpu()
    out, _ = gen.communicate()
    after = srv.cpu()
    try:
        if first.strip() != "start":
            raise ValueError
        return json.loads(out), before, after
    except ValueError:
        raise RuntimeError(f"TLS load generator {args[0]} failed (exit {gen.returncode}): "
                           f"{(first + out)!r}") from None


def _tls_fields(res, what):
    """The generator's TLS fields; a run where nothing came back is an
    error (a cell skipped with the reason), not a rate of 0."""
    if not res["requests"]:
        raise RuntimeError(f"no {what} completed in the measured window ({res['errors']} error(s), "
                           f"{res['stalled']} connection(s) stalled for 2 s or more)")
    return {"handshakes": res["handshakes"], "stalled": res["stalled"],
            "tls": f"{res['tls_version']} {res['cipher']}"}


def tls_echo(loop, kind, size, conns, seconds, warmup=0.5, **server):
    """TLS echo: kind is tls-protocol or tls-buffered; `conns` connections,
    handshaken before the run, each echoing `size` bytes at a time.
    server: Server's env and cwd, for every function here that takes it."""
    with Server(loop, kind, **server) as srv:
        res, before, after = _run_tlsgen(srv, ["echo", conns, size, seconds, warmup])
    # A connection whose echo never came back is an error too.
    return {"rps": res["rps"], "p50_us": res["p50_us"], "p99_us": res["p99_us"],
            **_cpu_fields(before, after, srv.pid, res["requests"]),
            "errors": res["errors"] + res["stalled"], **_tls_fields(res, "echo")}


def tls_conns(loop, conns, size, seconds, warmup=0.5, **server):
    """Short TLS connections, `conns` at a time: connect, a full handshake
    (no resumption), one `size`-byte echo, close_notify, close.  rps is
    connections/s; CPU is per connection; a connection stuck for 2 s is
    counted as an error (and in "stalled") and replaced."""
    with Server(loop, "tls-protocol", **server) as srv:
        res, before, after = _run_tlsgen(srv, ["conn", conns, size, seconds, warmup])
    return {"rps": res["rps"], "p50_us": res["p50_us"], "p99_us": res["p99_us"],
            **_cpu_fields(before, after, srv.pid, res["requests"]), "errors": res["errors"],
            **_tls_fields(res, "connection")}


def udp(loop, socks, inflight, size, seconds, warmup=0.5):
    """Datagram echo: `socks` client sockets, `inflight` datagrams outstanding
    on each.  rps is datagrams echoed per second; CPU is per datagram;
    `lost` counts datagrams given up on (re-sent after a timeout)."""
    if loop == C_EPOLL:
        raise ValueError("the C epoll server is TCP only")
    with Server(loop, "udp") as srv:
        res, before, after = _run_loadgen(srv, ["udp", socks, inflight, size, seconds, warmup],
                                          warmup)
    return {"rps": res["rps"], "p50_us": res["p50_us"], "p99_us": res["p99_us"],
            **_cpu_fields(before, after, srv.pid, res["requests"]), "errors": res["errors"],
            "lost": res["lost"]}


_WRK_LAT = re.compile(r"^\s*(50|99)%\s+([\d.]+)(us|ms|s)\s*$", re.M)
_UNIT = {"us": 1.0, "ms": 1e3, "s": 1e6}


def have_wrk():
    return shutil.which("wrk") is not None


def have_aiohttp():
    import importlib.util
    return importlib.util.find_spec("aiohttp") is not None


def aiohttp_run(loop, conns, seconds, body=0, tls=False, **server):
    """aiohttp's hello app under wrk; body: the response body's size in bytes
    (0: "Hello, world"); tls: over HTTPS (wrk does not verify the
    certificate; its connections are kept alive, so handshakes are done in
    the warm-up, or again after a connection error)."""
    seconds = max(1, round(seconds))      # wrk takes whole seconds
    with Server(loop, "tls-aiohttp" if tls else "aiohttp", body, **server) as srv:
        url = f"{'https' if tls else 'http'}://127.0.0.1:{srv.port}/"
        # Warm-up so import-time and first-request costs stay out of the window.
        subprocess.run(["wrk", "-t1", "-c", str(conns), "-d1s", url],
                       capture_output=True, check=True)
        before = srv.cpu()
        out = subprocess.run(["wrk", "-t1", "-c", str(conns), f"-d{seconds}s", "--latency", url],
                             capture_output=True, text=True, check=True).stdout
        after = srv.cpu()
    reqs = int(re.search(r"(\d+) requests in", out).group(1))
    lat = {m[0]: float(m[1]) * _UNIT[m[2]] for m in _WRK_LAT.findall(out)}
    errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    return {"rps": reqs / seconds, "p50_us": lat.get("50", 0.0), "p99_us": lat.get("99", 0.0),
            **_cpu_fields(before, after, srv.pid, reqs),
            "errors": (sum(map(int, errors.groups())) if errors else 0)
                      + (int(non2xx.group(1)) if non2xx else 0)}


def memory_idle(loop, conns):
    """Server RSS growth per idle connection (bytes) with `conns` open."""
    with Server(loop, "protocol") as srv:
        # Warm the server up with a few short connections first, so lazy
        # set-up (thread stacks, pools) is not counted per connection.
        subprocess.run([os.path.join(BIN, "loadgen"), "short", "127.0.0.1", str(srv.port),
                        "200", "10", "1000000"], check=True, capture_output=True, text=True)
        time.sleep(0.2)
        base = rss_kib(srv.pid)
        gen = subprocess.Popen([os.path.join(BIN, "loadgen"), "idle", "127.0.0.1", str(srv.port),
                                str(conns)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        try:
            if gen.stdout.readline().strip() != "ready":
                raise RuntimeError("idle load generator failed")
            time.sleep(0.5)
            held = rss_kib(srv.pid)
        finally:
            gen.stdin.close()
            gen.wait()
    return {"base_kib": base, "held_kib": held, "bytes_per_conn": (held - base) * 1024 / conns}


def memory_short(loop, total, points=10, parallel=20):
    """Server RSS (KiB) after each tenth of `total` sequential short connections."""
    every = max(1, total // points)
    with Server(loop, "protocol") as srv:
        gen = subprocess.Popen([os.path.join(BIN, "loadgen"), "short", "127.0.0.1", str(srv.port),
                                str(total), str(parallel), str(every)],
                               stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        samples, errors, done = [], 0, None
        t0 = time.perf_counter()
        for line in gen.stdout:
            parts = line.split()
            if parts[0] == "progress":
                time.sleep(0.05)   # let the server finish closing what just closed
                samples.append((int(parts[1]), rss_kib(srv.pid)))
                errors = int(parts[2])
                gen.stdin.write("go\n")
                gen.stdin.flush()
            elif parts[0] == "done":
                done = parts
                errors = int(parts[2])
                break
        gen.stdin.close()
        gen.wait()
        dt = time.perf_counter() - t0
    if done is None:
        raise RuntimeError(f"short-connection load generator failed (exit {gen.returncode})")
    if len(done) > 3 and done[3] == "1":
        raise RuntimeError(f"no connection finished for 5 s after {int(done[1]):,} of {total:,}: "
                           "the server stopped accepting or answering")
    first, last = samples[0][1], samples[-1][1]
    return {"samples": samples, "errors": errors, "conns_per_s": total / dt,
            "growth_kib": last - first, "first_kib": first, "last_kib": last}
