"""aioloop's benchmarks: asyncio's loop, uvloop and aioloop (each engine and
write mode) side by side in one run, interleaved rounds.

    python -m bench [--quick] [--rounds N] [--only overhead,echo,aiohttp,memory,callgrind]
                    [--docs] [--out DIR]

Workloads: loop overhead (in this process), echo servers in four asyncio
styles driven by a C load generator (with a plain C epoll server as the
ceiling), aiohttp "hello world" under wrk, server memory per idle
connection and after many short connections, and (full run, or asked for)
callgrind instruction counts of the loop-overhead workloads.

Each round runs every loop once per configuration, the order of the loops
rotating between rounds, so machine noise hits all alike; results are
medians over rounds and ratios are medians of per-round ratios to uvloop
(to asyncio when uvloop is absent).  Writes OUT/results.json, OUT/report.md
and PNG plots; --docs also writes them into docs/benchmarks.md.
"""
import argparse
import datetime
import json
import os
import platform
import statistics
import sys
import time

from bench import loops as loops_mod
from bench import net, overhead, report

SIZES = {"1KiB": 1024, "16KiB": 16 * 1024, "100KiB": 100 * 1024}
KINDS = ("protocol", "buffered", "streams", "sock")


def rotate(names, r):
    r %= len(names)
    return names[r:] + names[:r]


def progress(msg):
    print(msg, file=sys.stderr, flush=True)


def median_ratio(rows, base, key, invert=False):
    """Median over rounds of value/base-value (base/value when invert)."""
    ratios = []
    for row, brow in zip(rows, base):
        a, b = row[key], brow[key]
        if a and b:
            ratios.append(b / a if invert else a / b)
    return statistics.median(ratios) if ratios else None


def summarize(per_loop, base_name):
    """per_loop: {loop: [round dicts]} -> {loop: medians + ratios}."""
    out = {}
    base = per_loop.get(base_name)
    for name, rows in per_loop.items():
        s = {k: statistics.median(r[k] for r in rows) for k in rows[0] if k != "errors"}
        s["errors"] = sum(r.get("errors", 0) for r in rows)
        s["rounds"] = len(rows)
        if base and name != net.C_EPOLL:
            s["ratio_rps"] = median_ratio(rows, base, "rps")
            # CPU ratio as "how many times less CPU than the baseline".
            s["ratio_cpu"] = median_ratio(rows, base, "cpu_us", invert=True)
        out[name] = s
    return out


def run_overhead(names, base, rounds, scale):
    results = {}
    for wname, (fn, n) in overhead.WORKLOADS.items():
        n = max(100, int(n * scale))
        per = {name: [] for name in names}
        for r in range(rounds):
            for name in rotate(names, r):
                per[name].append(n / overhead.run_one(name, wname, n))
        res = {"n": n, "loops": {}}
        for name in names:
            ratios = [a / b for a, b in zip(per[name], per[base])]
            res["loops"][name] = {"ops_per_s": statistics.median(per[name]),
                                  "ratio": statistics.median(ratios), "rounds": per[name]}
        results[wname] = res
        progress(f"  overhead {wname:<22} " + "  ".join(
            f"{nm} {res['loops'][nm]['ops_per_s']:,.0f}/s ({res['loops'][nm]['ratio']:.2f}x)"
            for nm in names))
    return results


def echo_configs(quick):
    if quick:
        return ([("protocol", s, 50) for s in SIZES] +
                [(k, "1KiB", 50) for k in KINDS if k != "protocol"])
    return [(k, s, c) for k in KINDS for s in SIZES for c in (10, 50, 200)]


def run_echo(names, base, rounds, seconds, quick, match=None):
    results = {}
    configs = [c for c in echo_configs(quick) if not match or match in f"{c[0]} {c[1]} x{c[2]}"]
    for i, (kind, size, conns) in enumerate(configs, 1):
        servers = list(names) + ([net.C_EPOLL] if kind == "protocol" else [])
        per = {name: [] for name in servers}
        for r in range(rounds):
            for name in rotate(servers, r):
                per[name].append(net.echo(name, kind, SIZES[size], conns, seconds))
        key = f"{kind} {size} x{conns}"
        results[key] = {"kind": kind, "size": size, "conns": conns,
                        "loops": summarize(per, base)}
        progress(f"  echo [{i}/{len(configs)}] {key:<22} " + "  ".join(
            f"{nm} {results[key]['loops'][nm]['rps']:,.0f}/s "
            f"{results[key]['loops'][nm]['cpu_us']:.1f}us" for nm in servers))
    return results


def run_aiohttp(names, base, rounds, seconds):
    if not net.have_wrk():
        progress("  aiohttp: skipped, wrk is not installed (Debian: `apt-get install wrk`)")
        return {"skipped": "wrk is not installed (Debian: apt-get install wrk)"}
    if not net.have_aiohttp():
        progress("  aiohttp: skipped, aiohttp is not installed (`pip install aiohttp`)")
        return {"skipped": "aiohttp is not installed (pip install aiohttp)"}
    per = {name: [] for name in names}
    for r in range(rounds):
        for name in rotate(names, r):
            per[name].append(net.aiohttp_run(name, 50, seconds))
    res = summarize(per, base)
    progress("  aiohttp " + "  ".join(f"{nm} {res[nm]['rps']:,.0f}/s {res[nm]['cpu_us']:.1f}us"
                                      for nm in names))
    return {"conns": 50, "loops": res}


def run_memory(names, idle_conns, short_total):
    res = {"idle_conns": idle_conns, "short_total": short_total, "loops": {}}
    for name in names + [net.C_EPOLL]:
        idle = net.memory_idle(name, idle_conns)
        short = net.memory_short(name, short_total)
        res["loops"][name] = {"idle": idle, "short": short}
        progress(f"  memory {name:<15} {idle['bytes_per_conn']:,.0f} B/idle conn; "
                 f"after {short_total:,} short conns RSS {short['first_kib']:,}->{short['last_kib']:,} KiB "
                 f"({short['conns_per_s']:,.0f} conn/s, {short['errors']} errors)")
    return res


def versions():
    import importlib.metadata as md
    v = {"python": platform.python_version(), "machine": platform.machine(),
         "kernel": platform.release(), "cpus": os.cpu_count()}
    for pkg in ("aioloop", "uvloop", "aiohttp", "rsloop"):
        try:
            v[pkg] = md.version(pkg)
        except md.PackageNotFoundError:
            pass
    try:
        with open("/proc/cpuinfo") as f:
            v["cpu"] = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return v


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="a run of about two minutes")
    ap.add_argument("--rounds", type=int, help="interleaved rounds per workload")
    ap.add_argument("--seconds", type=float, help="seconds per network run")
    ap.add_argument("--only", help="comma-separated: overhead,echo,aiohttp,memory,callgrind")
    ap.add_argument("--loops", help="comma-separated loop names (default: all installed)")
    ap.add_argument("--idle", type=int, help="idle connections for the memory test")
    ap.add_argument("--short", type=int, help="short connections for the memory test")
    ap.add_argument("--match", help="run only the echo workloads whose name contains this")
    ap.add_argument("--out", default=os.path.join("bench", "out"))
    ap.add_argument("--docs", action="store_true", help="write the report into docs/benchmarks.md")
    args = ap.parse_args()

    names = args.loops.split(",") if args.loops else loops_mod.available()
    base = "uvloop" if "uvloop" in names else "asyncio"
    for msg in loops_mod.missing_message():
        progress(msg)
    default = {"overhead", "echo", "aiohttp", "memory"} | (set() if args.quick else {"callgrind"})
    parts = set(args.only.split(",")) if args.only else default
    quick = args.quick
    rounds = args.rounds or (1 if quick else 2)
    seconds = args.seconds or (1.5 if quick else 2.0)
    started = time.time()
    data = {"date": datetime.date.today().isoformat(), "versions": versions(),
            "quick": quick, "rounds": rounds, "seconds": seconds, "baseline": base,
            "loops": names}
    progress(f"bench: {', '.join(names)}; {rounds} interleaved round(s); ratios to {base}")
    if parts & {"echo", "memory"}:
        net.build_tools()
    if "overhead" in parts:
        progress("loop overhead")
        data["overhead"] = run_overhead(names, base, rounds=3 if quick else max(rounds, 5),
                                        scale=0.1 if quick else 0.5)
    if "echo" in parts:
        progress("echo (C load generator, closed loop)")
        data["echo"] = run_echo(names, base, rounds, seconds, quick, args.match)
    if "aiohttp" in parts:
        progress("aiohttp hello world (wrk -t1 -c50)")
        data["aiohttp"] = run_aiohttp(names, base, rounds, seconds)
    if "memory" in parts:
        idle, short = (2000, 20_000) if quick else (10_000, 1_000_000)
        idle, short = args.idle or idle, args.short or short
        progress(f"memory ({idle:,} idle connections; {short:,} short connections)")
        # Memory is per engine (the write mode changes nothing there); asyncio
        # is left out of the long run to keep the full bench under an hour.
        data["memory"] = run_memory([n for n in names if n != "aioloop-inline" and
                                     (quick or n != "asyncio")], idle, short)
    if "callgrind" in parts:
        from bench import callgrind
        progress("callgrind instruction counts (loop overhead)")
        # valgrind serialises threads and cannot see a thread sleeping in
        # io_uring_enter as blocked (call_soon_threadsafe deadlocks under it),
        # so instructions are counted on the threads engine: the C paths these
        # workloads exercise are the same on both.
        data["callgrind"] = callgrind.run(
            [n for n in names if n in ("uvloop", "aioloop-threads")], progress)
    data["wall_s"] = round(time.time() - started, 1)

    os.makedirs(args.out, exist_ok=True)
    with open(os.path.join(args.out, "results.json"), "w") as f:
        json.dump(data, f, indent=1)
    md = report.markdown(data, img_dir=os.path.join(args.out, "img"), img_rel="img")
    with open(os.path.join(args.out, "report.md"), "w") as f:
        f.write(md)
    print(md)
    if args.docs:
        report.write_docs(data, "docs")
    progress(f"wrote {args.out}/results.json and report.md ({data['wall_s']:.0f} s)")


if __name__ == "__main__":
    main()
