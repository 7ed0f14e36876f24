"""Network workloads: echo servers under the C load generator, aiohttp under
wrk, and server memory with many idle or many short connections.

Every server runs in a child process of its own (``bench.servers``, or the
C epoll echo server); the server's CPU time is read per thread from /proc
before and after the measured window, so the loop thread's share and the
completion threads' share are both known.
"""
import json
import os
import re
import shutil
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
BIN = os.path.join(HERE, "out", "bin")
C_EPOLL = "c-epoll"


def build_tools():
    """Compile the C load generator and the C epoll echo server (once)."""
    os.makedirs(BIN, exist_ok=True)
    cc = os.environ.get("CC", "cc")
    for name in ("loadgen", "echo_epoll"):
        src = os.path.join(HERE, "c", name + ".c")
        exe = os.path.join(BIN, name)
        if os.path.exists(exe) and os.path.getmtime(exe) >= os.path.getmtime(src):
            continue
        subprocess.run([cc, "-std=c11", "-O2", "-Wall", "-Wextra", "-Werror", "-o", exe, src],
                       check=True)


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
    """A server in a child process: ``with Server(loop, kind) as s: s.port``."""

    def __init__(self, loop, kind):
        if loop == C_EPOLL:
            cmd = [os.path.join(BIN, "echo_epoll"), "0"]
        else:
            cmd = [sys.executable, "-m", "bench.servers", loop, kind, "0"]
        env = dict(os.environ, PYTHONPATH=os.pathsep.join(
            p for p in (os.path.dirname(HERE), os.environ.get("PYTHONPATH")) if p))
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True, env=env)
        line = self.proc.stdout.readline().split()
        if len(line) != 2 or line[0] != "ready":
            self.proc.kill()
            raise RuntimeError(f"server {loop}/{kind} did not start")
        self.port = int(line[1])
        self.pid = self.proc.pid

    def cpu(self):
        return thread_cpu(self.pid)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.proc.kill()
        self.proc.wait()


def cpu_split(before, after, main_tid):
    total = sum(after[t] - before.get(t, 0.0) for t in after)
    loop = after.get(main_tid, 0.0) - before.get(main_tid, 0.0)
    return total, loop


def echo(loop, kind, size, conns, seconds, warmup=0.5):
    """One echo run: dict with rps, p50/p99 (µs), server CPU µs per request."""
    with Server(loop, kind) as srv:
        gen = subprocess.Popen([os.path.join(BIN, "loadgen"), "echo", "127.0.0.1", str(srv.port),
                                str(conns), str(size), str(seconds), str(warmup)],
                               stdout=subprocess.PIPE, text=True)
        time.sleep(warmup)
        before = srv.cpu()
        out, _ = gen.communicate()
        after = srv.cpu()
    res = json.loads(out)
    total, loop_cpu = cpu_split(before, after, srv.pid)
    reqs = max(res["requests"], 1)
    # The CPU window (from the end of the warm-up until the load generator
    # exits) is close to the measured window; per-request CPU uses it.
    return {"rps": res["rps"], "p50_us": res["p50_us"], "p99_us": res["p99_us"],
            "cpu_us": total / reqs * 1e6, "loop_cpu_us": loop_cpu / reqs * 1e6,
            "errors": res["errors"]}


_WRK_LAT = re.compile(r"^\s*(50|99)%\s+([\d.]+)(us|ms|s)\s*$", re.M)
_UNIT = {"us": 1.0, "ms": 1e3, "s": 1e6}


def have_wrk():
    return shutil.which("wrk") is not None


def have_aiohttp():
    import importlib.util
    return importlib.util.find_spec("aiohttp") is not None


def aiohttp_run(loop, conns, seconds):
    seconds = max(1, round(seconds))      # wrk takes whole seconds
    with Server(loop, "aiohttp") as srv:
        # Warm-up so import-time and first-request costs stay out of the window.
        subprocess.run(["wrk", "-t1", "-c", str(conns), "-d1s", f"http://127.0.0.1:{srv.port}/"],
                       capture_output=True, check=True)
        before = srv.cpu()
        out = subprocess.run(["wrk", "-t1", "-c", str(conns), f"-d{seconds}s", "--latency",
                              f"http://127.0.0.1:{srv.port}/"],
                             capture_output=True, text=True, check=True).stdout
        after = srv.cpu()
    reqs = int(re.search(r"(\d+) requests in", out).group(1))
    lat = {m[0]: float(m[1]) * _UNIT[m[2]] for m in _WRK_LAT.findall(out)}
    errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    total, loop_cpu = cpu_split(before, after, srv.pid)
    return {"rps": reqs / seconds, "p50_us": lat.get("50", 0.0), "p99_us": lat.get("99", 0.0),
            "cpu_us": total / max(reqs, 1) * 1e6, "loop_cpu_us": loop_cpu / max(reqs, 1) * 1e6,
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
        samples, errors = [], 0
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
                errors = int(parts[2])
                break
        gen.stdin.close()
        gen.wait()
        dt = time.perf_counter() - t0
    first, last = samples[0][1], samples[-1][1]
    return {"samples": samples, "errors": errors, "conns_per_s": total / dt,
            "growth_kib": last - first, "first_kib": first, "last_kib": last}
