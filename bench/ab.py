"""A/B runs of one echo workload between variants of a loop, interleaved.

    python -m bench.ab KIND SIZE CONNS SECONDS ROUNDS VARIANT...

VARIANT is LABEL=LOOP[,path=DIR][,ENV=VALUE...]: LOOP is a name from
``bench.loops``, or ``c-epoll`` (the C ceiling, for protocol and short); ``path=DIR`` runs the server with DIR first on sys.path (a
directory holding another build's ``aioloop`` package: compare two builds);
ENV=VALUE sets an environment variable for that server only (the knobs in
docs/benchmarks.md).  KIND is an echo style of ``bench.servers`` or
``short`` (connect, 16 bytes echoed, close: SIZE is ignored, CONNS clients
at once, 10,000 connections per round), or one of the TLS part's workloads
(``python -m bench --only tls``): ``tls-protocol`` or ``tls-buffered``
(TLS echo of SIZE bytes over CONNS connections), ``tls-conn`` (short TLS
connections, CONNS at a time: a full handshake, one SIZE-byte echo, close),
``tls-aiohttp`` or ``aiohttp`` (aiohttp's hello app over HTTPS or HTTP
under ``wrk -t1 -cCONNS``, a SIZE-byte body; SECONDS rounded to whole
seconds).  For example:

    python -m bench.ab tls-aiohttp 13 50 4 7 new=aioloop old=aioloop,path=/other/tree
  Prints, per variant, the median
requests/s, the median of its per-round ratios to the first variant with
their min-max (the figure to quote: rounds are interleaved, so a ratio
compares runs minutes apart at most), and the server's CPU per request (all
threads, and the loop thread's share).  Use at least 7 rounds on a shared
machine.  Used to decide the
byte path's changes; numbers are for this machine only.
"""
import json
import os
import statistics
import subprocess
import sys
import time

from bench import net

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def parse(variant):
    label, spec = variant.split("=", 1)
    loop, *opts = spec.split(",")
    env, path = dict(os.environ), None
    for opt in opts:
        key, value = opt.split("=", 1)
        if key == "path":
            path = os.path.abspath(value)
        else:
            env[key] = value
    # With -m, sys.path[0] is the working directory: run from the build's
    # directory so that its aioloop wins, and find bench through PYTHONPATH.
    env["PYTHONPATH"] = os.pathsep.join(p for p in (path, ROOT) if p)
    return label, loop, env, path or ROOT


TLS_KINDS = ("tls-protocol", "tls-buffered", "tls-conn", "tls-aiohttp")


def run_net(loop, env, cwd, kind, size, conns, seconds):
    """The TLS part's workloads (and plain aiohttp), through bench.net."""
    srv = {"env": env, "cwd": cwd}
    if kind == "tls-conn":
        res = net.tls_conns(loop, conns, size, seconds, 0.5, **srv)
    elif kind in ("tls-aiohttp", "aiohttp"):
        res = net.aiohttp_run(loop, conns, seconds, size, kind == "tls-aiohttp", **srv)
    else:
        res = net.tls_echo(loop, kind, size, conns, seconds, 0.5, **srv)
    return res["rps"], res["cpu_us"], res["loop_cpu_us"], res["errors"]


def run(loop, env, cwd, kind, size, conns, seconds):
    if kind in TLS_KINDS or kind == "aiohttp":
        return run_net(loop, env, cwd, kind, size, conns, seconds)
    skind = "protocol" if kind == "short" else kind
    if loop == net.C_EPOLL and skind != "protocol":
        raise SystemExit(f"bench.ab: {net.C_EPOLL} serves only protocol and short")
    cmd = ([os.path.join(net.BIN, "echo_epoll"), "0"] if loop == net.C_EPOLL
           else [sys.executable, "-m", "bench.servers", loop, skind, "0"])
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True, env=env, cwd=cwd)
    try:
        port = int(proc.stdout.readline().split()[1])
        gen = [os.path.join(net.BIN, "loadgen")]
        if kind == "short":
            total = 10000
            before, t0 = net.thread_cpu(proc.pid), time.perf_counter()
            subprocess.run(gen + ["short", "127.0.0.1", str(port), str(total), str(conns),
                                  str(total * 10)], capture_output=True, check=True)
            res = {"requests": total, "rps": total / (time.perf_counter() - t0)}
            after = net.thread_cpu(proc.pid)
        else:
            p = subprocess.Popen(gen + ["echo", "127.0.0.1", str(port), str(conns), str(size),
                                        str(seconds), "0.5"], stdout=subprocess.PIPE, text=True)
            time.sleep(0.5)
            before = net.thread_cpu(proc.pid)
            out, _ = p.communicate()
            after = net.thread_cpu(proc.pid)
            res = json.loads(out)
    finally:
        proc.kill()
        proc.wait()
    total_cpu, loop_cpu = net.cpu_split(before, after, proc.pid)
    n = max(res["requests"], 1)
    return res["rps"], total_cpu / n * 1e6, loop_cpu / n * 1e6, res.get("errors", 0)


def main(argv):
    if len(argv) < 6:
        print(__doc__)
        return 2
    kind, size, conns, seconds, rounds = argv[0], int(argv[1]), int(argv[2]), float(argv[3]), int(argv[4])
    variants = [parse(v) for v in argv[5:]]
    net.build_tools()
    if kind in TLS_KINDS:
        why = net.build_tls_tools()
        if why:
            print(f"bench.ab: cannot run {kind}: {why}", file=sys.stderr)
            return 1
    if kind in ("tls-aiohttp", "aiohttp") and not (net.have_wrk() and net.have_aiohttp()):
        print(f"bench.ab: {kind} needs wrk and aiohttp", file=sys.stderr)
        return 1
    results = {v[0]: [] for v in variants}
    for r in range(rounds):
        for label, loop, env, cwd in variants[r % len(variants):] + variants[:r % len(variants)]:
            results[label].append(run(loop, env, cwd, kind, size, conns, seconds))
    first = results[variants[0][0]]
    for label, *_ in variants:
        rows = results[label]
        rps = statistics.median(x[0] for x in rows)
        ratios = [x[0] / b[0] for x, b in zip(rows, first)]
        print(f"{label:<14} {rps:10,.0f}/s {statistics.median(ratios):5.2f}x "
              f"[{min(ratios):.2f}-{max(ratios):.2f}]  "
              f"cpu {statistics.median(x[1] for x in rows):6.1f} us  "
              f"loop thread {statistics.median(x[2] for x in rows):6.1f} us  "
              f"errors {sum(x[3] for x in rows)}  "
              f"rounds {[round(x[0]) for x in rows]}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
