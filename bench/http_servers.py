"""HTTP serving with wrk: ``python -m aioloop serve`` against gunicorn with
aiohttp's GunicornUVLoopWebWorker (and with aioloop.worker.GunicornWebWorker),
1 and 2 workers each, rounds interleaved.

    python bench/http_servers.py [--rounds 3] [--duration 5s] [--connections 100]

The application (a 13-byte text response) is the same for every server; both
run without access logs.  Prints a line per run and a median table (Markdown).
Needs wrk, gunicorn and uvloop.
"""
import argparse
import os
import re
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

APP = '''
from aiohttp import web

async def hello(request):
    return web.Response(text="Hello, world!")

app = web.Application()
app.router.add_get("/", hello)
'''


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port, timeout=30):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing listens on {port}")


def server_cmd(kind, workers, port):
    if kind == "aioloop serve":
        return [sys.executable, "-m", "aioloop", "serve", "--no-access-log", "--port", str(port),
                "--workers", str(workers), "benchapp:app"]
    worker = {"gunicorn + uvloop": "aiohttp.GunicornUVLoopWebWorker",
              "gunicorn + aioloop": "aioloop.worker.GunicornWebWorker"}[kind]
    return [sys.executable, "-m", "gunicorn", "benchapp:app", "--bind", f"127.0.0.1:{port}",
            "--workers", str(workers), "--worker-class", worker, "--no-control-socket"]


def latency_ms(out, percentile):
    m = re.search(rf"^\s*{percentile}%\s+([\d.]+)(us|ms|s|m)\s*$", out, re.M)
    if m is None:
        raise RuntimeError(f"no {percentile}% latency in wrk's report:\n{out}")
    return float(m.group(1)) * {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 60e3}[m.group(2)]


def run_wrk(port, args):
    out = subprocess.run(["wrk", "-t2", f"-c{args.connections}", f"-d{args.duration}",
                          "--latency", f"http://127.0.0.1:{port}/"],
                         capture_output=True, text=True, timeout=120).stdout
    errors = 0
    m = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    if m:
        errors += sum(map(int, m.groups()))
    m = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    if m:
        errors += int(m.group(1))
    return {"rps": float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1)),
            "p50": latency_ms(out, 50),
            "p99": latency_ms(out, 99),
            "errors": errors}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--duration", default="5s")
    ap.add_argument("--connections", type=int, default=100)
    args = ap.parse_args()
    configs = [(kind, w) for w in (1, 2) for kind in ("aioloop serve", "gunicorn + uvloop", "gunicorn + aioloop")]
    results = {c: [] for c in configs}
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (ROOT, env.get("PYTHONPATH")) if p)
    with tempfile.TemporaryDirectory() as d:
        with open(os.path.join(d, "benchapp.py"), "w") as f:
            f.write(APP)
        for rnd in range(args.rounds):
            for kind, workers in configs:
                port = free_port()
                proc = subprocess.Popen(server_cmd(kind, workers, port), cwd=d, env=env,
                                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                try:
                    wait_port(port)
                    time.sleep(1.0)    # every worker up, not only the first
                    r = run_wrk(port, args)
                finally:
                    proc.send_signal(signal.SIGTERM)
                    proc.wait(60)
                results[(kind, workers)].append(r)
                print(f"round {rnd + 1} {kind:19} workers={workers}: {r['rps']:9.0f} req/s  "
                      f"p50 {r['p50']:.2f} ms  p99 {r['p99']:.2f} ms  errors {r['errors']}",
                      flush=True)
    print()
    print(f"| server | workers | req/s (median of {args.rounds}) | p50 ms | p99 ms | errors |")
    print("|---|---|---|---|---|---|")
    for kind, workers in configs:
        rs = results[(kind, workers)]
        print(f"| {kind} | {workers} | {statistics.median(r['rps'] for r in rs):.0f} "
              f"| {statistics.median(r['p50'] for r in rs):.2f} "
              f"| {statistics.median(r['p99'] for r in rs):.2f} "
              f"| {sum(r['errors'] for r in rs)} |")


if __name__ == "__main__":
    main()
