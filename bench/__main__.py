"""aioloop's benchmarks: asyncio's loop, uvloop, rloop, aiofastnet and
aioloop (each engine and write mode) side by side in one run, interleaved
rounds.

    python -m bench [--quick] [--rounds N] [--only PART,...] [--loops NAME,...]
                    [--docs] [--out DIR]

Parts: overhead (loop overhead, in this process), echo (TCP echo servers in
four asyncio styles driven by a C load generator, a plain C epoll server as
the ceiling), short (short connections: connect, one echo, close), udp
(datagram echo), pywork (the Protocol echo doing K µs of pure-Python work
per request), aiohttp ("hello world" under wrk), tls (aiohttp over HTTPS
under wrk, TLS echo and short TLS connections under a C TLS load generator,
each beside its plain-TCP twin; rloop has no TLS server and is left out),
memory (per idle connection and after many short connections) and, in the
full run or when asked for, callgrind (instruction counts of the
loop-overhead workloads).

Each round runs every loop once per configuration, the order of the loops
rotating between rounds, so machine noise hits all alike; results are
medians over rounds and ratios are medians of per-round ratios, both to
uvloop (to asyncio when uvloop is absent) and to the best peer of that
workload (the fastest loop that is not aioloop's).  --quick runs the
network parts on uvloop, rloop, aiofastnet-uvloop and aioloop's two engines
only.  Writes OUT/results.json, OUT/report.md and PNG plots; --docs also
writes them into docs/benchmarks.md and docs/bench-results-full.json.
"""
import argparse
import datetime
import json
import os
import platform
import statistics
import subprocess
import sys
import time

from bench import loops as loops_mod
from bench import net, overhead, report

SIZES = {"1KiB": 1024, "16KiB": 16 * 1024, "100KiB": 100 * 1024}
KINDS = ("protocol", "buffered", "streams", "sock")
UDP_SIZES = {"64B": 64, "1KiB": 1024}
UDP_SOCKS, UDP_INFLIGHT = 50, 1     # more in flight overflows the server's
                                    # receive buffer at 1 KiB (datagrams lost)
SHORT_CONNS, SHORT_SIZE = 50, 1024
WORK_US = (0, 10, 50)
# TLS: aiohttp response bodies, echo over TLS_CONNS connections (SIZES), and
# short connections TLS_SHORT_CONNS at a time (a handshake is CPU-bound: a
# few in parallel keep both sides busy on 2 CPUs), each beside its plain twin.
HTTP_BODIES = {"13B": 13, "64KiB": 64 * 1024}
TLS_CONNS = 50
TLS_SHORT_CONNS, TLS_SHORT_SIZE = 10, 1024
# The peer every TLS result is also given against: aiofastnet's TLS
# transport is the fastest asyncio TLS path known (uvloop's is the baseline).
TLS_PEER = "aiofastnet-uvloop"


def rotate(names, r):
    r %= len(names)
    return names[r:] + names[:r]


def progress(msg):
    print(msg, file=sys.stderr, flush=True)


def round_ratios(rows, base, key, invert=False):
    """Per round, value/base-value (base/value when invert); rounds where
    either side has no result are left out."""
    ratios = []
    for row, brow in zip(rows, base):
        if not isinstance(row, dict) or not isinstance(brow, dict):
            continue            # a skipped round: its reason, not a result
        a, b = row[key], brow[key]
        if a and b:
            ratios.append(b / a if invert else a / b)
    return ratios


def median_ratio(rows, base, key, invert=False):
    """Median over rounds of value/base-value (base/value when invert)."""
    ratios = round_ratios(rows, base, key, invert)
    return statistics.median(ratios) if ratios else None


def summarize(per_loop, base_name, refs=()):
    """per_loop: {loop: [round dict, or a string saying why that round has
    no result]} -> ({loop: medians + ratios}, best peer's name or None).

    Ratios are to base_name (ratio_rps, ratio_cpu) and to the best peer,
    the loop other than aioloop's with the highest median rate
    (best_rps, best_cpu), and to every loop named in refs that ran:
    vs[ref] = {"rps": ..., "cpu": ...}.  CPU ratios are "how many times
    less CPU than"."""
    out = {}
    for name, rows in per_loop.items():
        ok = [r for r in rows if isinstance(r, dict)]
        if not ok:
            out[name] = {"skipped": next((r for r in rows if isinstance(r, str)), "no result")}
            continue
        s = {k: statistics.median(r[k] for r in ok) for k in ok[0]
             if k not in ("errors", "lost") and not isinstance(ok[0][k], str)}
        # Strings (the TLS version and cipher negotiated): every one seen.
        s.update({k: " | ".join(dict.fromkeys(r[k] for r in ok)) for k in ok[0]
                  if isinstance(ok[0][k], str)})
        for k in ("errors", "lost"):
            if k in ok[0]:
                s[k] = sum(r.get(k, 0) for r in ok)
        s["rounds"] = len(ok)
        # Every round as measured (a string where that round was skipped).
        s["per_round"] = [{k: r[k] for k in ("rps", "cpu_us", "loop_cpu_us")}
                          if isinstance(r, dict) else r for r in rows]
        out[name] = s
    peers = [n for n in out if loops_mod.is_peer(n) and "rps" in out[n]]
    best = max(peers, key=lambda n: out[n]["rps"]) if peers else None
    for name, s in out.items():
        if "rps" not in s or name == net.C_EPOLL:
            continue
        for prefix, ref in (("ratio", base_name), ("best", best)):
            if ref in per_loop and ref != name:
                s[prefix + "_rps"] = median_ratio(per_loop[name], per_loop[ref], "rps")
                rr = round_ratios(per_loop[name], per_loop[ref], "rps")
                if len(rr) > 1:
                    s[prefix + "_rps_range"] = [min(rr), max(rr)]
                s[prefix + "_cpu"] = median_ratio(per_loop[name], per_loop[ref], "cpu_us", invert=True)
        for ref in refs:
            if ref in per_loop and ref != name and "rps" in out.get(ref, {}):
                s.setdefault("vs", {})[ref] = {
                    "rps": median_ratio(per_loop[name], per_loop[ref], "rps"),
                    "cpu": median_ratio(per_loop[name], per_loop[ref], "cpu_us", invert=True)}
    return out, best


def measure(fn, *args):
    """One run; a string saying why when the loop cannot run it (a peer
    lacking an API, a server that did not come up), so one cell is skipped
    rather than the whole bench failing."""
    try:
        return fn(*args)
    except (RuntimeError, OSError, ValueError) as e:
        msg = str(e).strip().splitlines()[-1] if str(e).strip() else type(e).__name__
        progress(f"    {args[0]}: skipped ({msg})")
        return msg


def _x(v):
    return "—" if v is None else f"{v:.2f}x"


def run_matrix(configs, servers, run, base, rounds, label, refs=()):
    """Runs run(loop, *config) for every config, `rounds` interleaved rounds
    of every server; {key: {**meta, "loops": summary, "best_peer": name}}.
    refs: loops every result is also given against (see summarize), their
    ratios printed on a second line."""
    results = {}
    for i, (key, meta, args) in enumerate(configs, 1):
        srvs = servers(meta)
        per = {name: [] for name in srvs}
        for r in range(rounds):
            for name in rotate(srvs, r):
                per[name].append(measure(run, name, *args))
        summary, best = summarize(per, base, refs)
        results[key] = dict(meta, loops=summary, best_peer=best)
        progress(f"  {label} [{i}/{len(configs)}] {key:<22} " + "  ".join(
            f"{nm} {sm['rps']:,.0f}/s {sm['cpu_us']:.1f}us" if "rps" in sm else f"{nm} skipped"
            for nm, sm in summary.items()))
        if refs:
            progress(f"      req/s and CPU ratios vs {base} / vs {' / vs '.join(refs)}: " + "  ".join(
                f"{nm} {_x(sm.get('ratio_rps'))}/{'/'.join(_x(sm.get('vs', {}).get(r, {}).get('rps')) for r in refs)}"
                f" cpu {_x(sm.get('ratio_cpu'))}/{'/'.join(_x(sm.get('vs', {}).get(r, {}).get('cpu')) for r in refs)}"
                for nm, sm in summary.items() if "rps" in sm and nm != base))
    return results


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


def run_echo(names, base, rounds, seconds, quick, match=None, warmup=0.5):
    configs = [(f"{k} {sz} x{c}", {"kind": k, "size": sz, "conns": c},
                (k, SIZES[sz], c, seconds, warmup))
               for k, sz, c in echo_configs(quick) if not match or match in f"{k} {sz} x{c}"]
    return run_matrix(configs, lambda m: list(names) + ([net.C_EPOLL] if m["kind"] == "protocol" else []),
                      net.echo, base, rounds, "echo")


def run_short(names, base, rounds, seconds, warmup=0.5):
    key = f"{SHORT_SIZE // 1024}KiB x{SHORT_CONNS}"
    configs = [(key, {"conns": SHORT_CONNS, "size": SHORT_SIZE},
                (SHORT_CONNS, SHORT_SIZE, seconds, warmup))]
    return run_matrix(configs, lambda m: list(names) + [net.C_EPOLL], net.short_conns,
                      base, rounds, "short")


def run_udp(names, base, rounds, seconds, warmup=0.5):
    configs = [(f"{sz} x{UDP_SOCKS}", {"size": sz, "socks": UDP_SOCKS, "inflight": UDP_INFLIGHT},
                (UDP_SOCKS, UDP_INFLIGHT, n, seconds, warmup)) for sz, n in UDP_SIZES.items()]
    return run_matrix(configs, lambda m: list(names), net.udp, base, rounds, "udp")


def _echo_work(loop, iters, seconds, warmup):
    return net.echo(loop, "protocol", 1024, 50, seconds, warmup, work=iters)


def run_pywork(names, base, rounds, seconds, warmup=0.5):
    """K µs of Python per request: calibrated once here, and the same number
    of iterations given to every loop's server."""
    from bench.servers import calibrate
    per_us = calibrate()
    configs = [(f"{k} us", {"work_us": k, "iters": round(k * per_us)},
                (round(k * per_us), seconds, warmup)) for k in WORK_US]
    return run_matrix(configs, lambda m: list(names), _echo_work, base, rounds, "pywork"), per_us


def run_aiohttp(names, base, rounds, seconds):
    if not net.have_wrk():
        progress("  aiohttp: skipped, wrk is not installed (Debian: `apt-get install wrk`)")
        return {"skipped": "wrk is not installed (Debian: apt-get install wrk)"}
    if not net.have_aiohttp():
        progress("  aiohttp: skipped, aiohttp is not installed (`pip install aiohttp`)")
        return {"skipped": "aiohttp is not installed (pip install aiohttp)"}
    res = run_matrix([("hello x50", {"conns": 50}, (50, seconds))], lambda m: list(names),
                     net.aiohttp_run, base, rounds, "aiohttp")["hello x50"]
    return res


def tls_loops(names):
    """The loops of the TLS part: those given, less rloop (its create_server
    raises NotImplementedError for ssl=: it has no TLS server)."""
    return [n for n in names if n != "rloop"]


def _call(loop, fn, *args):
    return fn(loop, *args)


def tls_configs(quick, seconds, warmup, http=True):
    """(key, meta, args for _call) of the TLS part, every TLS workload
    followed by its plain-TCP twin (meta "plain" names it), so that the two
    are measured minutes apart at most."""
    out = []
    if http:
        for b, n in HTTP_BODIES.items():
            out.append((f"https {b} x{TLS_CONNS}", {"kind": "tls-aiohttp", "body": n, "conns": TLS_CONNS,
                                                    "plain": f"http {b} x{TLS_CONNS}"},
                        (net.aiohttp_run, TLS_CONNS, seconds, n, True)))
            out.append((f"http {b} x{TLS_CONNS}", {"kind": "aiohttp", "body": n, "conns": TLS_CONNS},
                        (net.aiohttp_run, TLS_CONNS, seconds, n, False)))
    for kind in ("protocol",) if quick else ("protocol", "buffered"):
        for sz, n in SIZES.items():
            out.append((f"tls-{kind} {sz} x{TLS_CONNS}",
                        {"kind": f"tls-{kind}", "size": sz, "conns": TLS_CONNS,
                         "plain": f"{kind} {sz} x{TLS_CONNS}"},
                        (net.tls_echo, f"tls-{kind}", n, TLS_CONNS, seconds, warmup)))
            out.append((f"{kind} {sz} x{TLS_CONNS}", {"kind": kind, "size": sz, "conns": TLS_CONNS},
                        (net.echo, kind, n, TLS_CONNS, seconds, warmup)))
    sz = f"{TLS_SHORT_SIZE // 1024}KiB"
    out.append((f"tls-conn {sz} x{TLS_SHORT_CONNS}",
                {"kind": "tls-conn", "size": sz, "conns": TLS_SHORT_CONNS,
                 "plain": f"conn {sz} x{TLS_SHORT_CONNS}"},
                (net.tls_conns, TLS_SHORT_CONNS, TLS_SHORT_SIZE, seconds, warmup)))
    out.append((f"conn {sz} x{TLS_SHORT_CONNS}", {"kind": "conn", "size": sz, "conns": TLS_SHORT_CONNS},
                (net.short_conns, TLS_SHORT_CONNS, TLS_SHORT_SIZE, seconds, warmup)))
    return out


def tls_cost(results):
    """For every TLS workload, per loop: what TLS adds to its plain twin of
    the same run (server CPU µs per request or connection, TLS minus plain)
    and the rate it keeps (TLS req/s over plain req/s), from the medians."""
    for key, res in results.items():
        plain = results.get(res.get("plain"), {}).get("loops", {})
        for nm, sm in res.get("loops", {}).items():
            p = plain.get(nm, {})
            if "cpu_us" in sm and "cpu_us" in p:
                sm["plain_cpu_us"] = p["cpu_us"]
                sm["tls_extra_cpu_us"] = sm["cpu_us"] - p["cpu_us"]
                sm["plain_rps"] = p["rps"]
                sm["tls_rps_share"] = sm["rps"] / p["rps"] if p["rps"] else None


def run_tls(names, base, rounds, seconds, quick, warmup=0.5, match=None):
    """The TLS part; match: only the workloads whose name contains it (a
    string) or is in it (a set), each TLS one with its plain twin."""
    why = net.build_tls_tools()
    if why:
        progress(f"  tls: skipped, {why}")
        return {"skipped": why}
    http = net.have_wrk() and net.have_aiohttp()
    if not http:
        progress("  tls: the HTTPS workloads are skipped: they need wrk and aiohttp")
    refs = (TLS_PEER,) if TLS_PEER in names and TLS_PEER != base else ()
    configs = tls_configs(quick, seconds, warmup, http)
    if match:
        keep = {k for k, _, _ in configs if (match in k if isinstance(match, str) else k in match)}
        keep |= {m["plain"] for k, m, _ in configs if k in keep and "plain" in m}
        configs = [c for c in configs if c[0] in keep]
    results = run_matrix(configs, lambda m: list(names), _call, base, rounds, "tls", refs)
    tls_cost(results)
    progress(f"  TLS cost per loop (server CPU µs per request/connection, TLS - plain; "
             "TLS req/s as a share of plain):")
    for key, res in results.items():
        if "plain" in res:
            progress(f"    {key:<22} " + "  ".join(
                f"{nm} {sm['tls_extra_cpu_us']:+.1f}us ({sm['tls_rps_share']:.2f})"
                if sm.get("tls_rps_share") is not None else f"{nm} —"
                for nm, sm in res["loops"].items()))
    return results


def run_memory(names, idle_conns, short_total):
    res = {"idle_conns": idle_conns, "short_total": short_total, "loops": {}}
    for name in names + [net.C_EPOLL]:
        idle = measure(net.memory_idle, name, idle_conns)
        short = measure(net.memory_short, name, short_total) if isinstance(idle, dict) else idle
        if not isinstance(short, dict):
            res["loops"][name] = {"skipped": short}
            continue
        res["loops"][name] = {"idle": idle, "short": short}
        progress(f"  memory {name:<15} {idle['bytes_per_conn']:,.0f} B/idle conn; "
                 f"after {short_total:,} short conns RSS {short['first_kib']:,}->{short['last_kib']:,} KiB "
                 f"({short['conns_per_s']:,.0f} conn/s, {short['errors']} errors)")
    return res


def versions():
    """The machine and software a run measured (kept in every result file)."""
    import importlib.metadata as md
    v = {"python": platform.python_version(), "machine": platform.machine(),
         "kernel": platform.release(), "cpus": os.cpu_count()}
    for pkg in ("aioloop", "uvloop", "rloop", "aiofastnet", "aiohttp", "rsloop"):
        try:
            v[pkg] = md.version(pkg)
        except md.PackageNotFoundError:
            pass
    try:
        with open("/proc/cpuinfo") as f:
            v["cpu"] = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    try:
        import aioloop
        loop = aioloop.new_event_loop()
        v["aioloop_engine"] = loop.engine      # what new_event_loop() picks here
        loop.close()
        git = subprocess.run(["git", "-C", os.path.dirname(os.path.dirname(aioloop.__file__)),
                              "rev-parse", "--short", "HEAD"], capture_output=True, text=True)
        if git.returncode == 0:
            v["aioloop_commit"] = git.stdout.strip()
    except (ImportError, OSError):
        pass
    return v


PARTS = ("overhead", "echo", "short", "udp", "pywork", "aiohttp", "tls", "memory", "callgrind")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="a run of about five minutes")
    ap.add_argument("--rounds", type=int, help="interleaved rounds per workload")
    ap.add_argument("--seconds", type=float, help="seconds per network run")
    ap.add_argument("--only", help="comma-separated: " + ",".join(PARTS))
    ap.add_argument("--loops", help="comma-separated loop names (default: all installed; "
                    "--quick: " + ",".join(loops_mod.QUICK) + ")")
    ap.add_argument("--idle", type=int, help="idle connections for the memory test")
    ap.add_argument("--short", type=int, help="short connections for the memory test")
    ap.add_argument("--match", help="run only the echo and tls workloads whose name contains "
                    "this (a TLS one with its plain twin)")
    ap.add_argument("--out", default=os.path.join("bench", "out"))
    ap.add_argument("--docs", action="store_true",
                    help="write the report into docs/benchmarks.md (and every round into "
                         "docs/bench-results-full.json)")
    args = ap.parse_args()
    import aioloop
    probe_loop = aioloop.new_event_loop()    # what plain "aioloop" gives on this machine
    progress(f"aioloop: default engine here: {probe_loop.engine}")
    probe_loop.close()

    for msg in loops_mod.missing_message():
        progress(msg)
    if args.loops:
        names = args.loops.split(",")
        for n in names:                   # an unknown name fails here, not mid-run
            try:
                loops_mod.factory(n)
            except (ValueError, ImportError) as e:
                ap.error(f"--loops: {n}: {e}")
    else:
        names = loops_mod.available()
        if args.quick:
            names = [n for n in names if n in loops_mod.QUICK] or names
    base = "uvloop" if "uvloop" in names else "asyncio" if "asyncio" in names else names[0]
    default = set(PARTS) - ({"callgrind"} if args.quick else set())
    parts = set(args.only.split(",")) if args.only else default
    if parts - set(PARTS):
        ap.error(f"unknown part(s) {', '.join(sorted(parts - set(PARTS)))}; parts: {', '.join(PARTS)}")
    quick = args.quick
    rounds = args.rounds or (1 if quick else 2)
    seconds = args.seconds or (1.0 if quick else 2.0)
    warmup = 0.3 if quick else 0.5
    started = time.time()
    data = {"date": datetime.date.today().isoformat(), "versions": versions(),
            "command": " ".join(["python -m bench"] + sys.argv[1:]),
            "quick": quick, "rounds": rounds, "seconds": seconds, "baseline": base,
            "loops": names}
    progress(f"bench: {', '.join(names)}; {rounds} interleaved round(s); ratios to {base} "
             "and to the best peer")
    data["part_s"] = part_s = {}
    mark = [time.time()]

    def done(part):
        now = time.time()
        part_s[part] = round(now - mark[0], 1)
        mark[0] = now
    if parts - {"overhead", "callgrind"}:
        net.build_tools()
    if "overhead" in parts:
        progress("loop overhead")
        data["overhead"] = run_overhead(names, base, rounds=3 if quick else max(rounds, 5),
                                        scale=0.1 if quick else 0.5)
        done("overhead")
    if "echo" in parts:
        progress("echo (C load generator, closed loop)")
        data["echo"] = run_echo(names, base, rounds, seconds, quick, args.match, warmup)
        done("echo")
    if "short" in parts:
        progress(f"short connections ({SHORT_CONNS} at a time: connect, {SHORT_SIZE} B echo, close)")
        data["short"] = run_short(names, base, rounds, seconds, warmup)
        done("short")
    if "udp" in parts:
        progress(f"udp echo ({UDP_SOCKS} sockets, {UDP_INFLIGHT} datagram(s) in flight each)")
        data["udp"] = run_udp(names, base, rounds, seconds, warmup)
        done("udp")
    if "pywork" in parts:
        progress("Python work per request (Protocol echo, 1 KiB, 50 connections)")
        data["pywork"], per_us = run_pywork(names, base, rounds, seconds, warmup)
        data["pywork_iters_per_us"] = round(per_us, 2)
        done("pywork")
    if "aiohttp" in parts:
        progress("aiohttp hello world (wrk -t1 -c50)")
        data["aiohttp"] = run_aiohttp(names, base, rounds, seconds)
        done("aiohttp")
    if "tls" in parts:
        tnames = tls_loops(names)
        if quick and not args.loops and "asyncio" not in tnames:
            # asyncio's SSLProtocol: aioloop's TLS keeps its state machine
            # (its byte path is aioloop's C): the reference, kept in --quick.
            tnames.insert(0, "asyncio")
        progress(f"TLS (aiohttp over HTTPS under wrk -t1 -c{TLS_CONNS}; TLS echo x{TLS_CONNS} and "
                 f"short TLS connections x{TLS_SHORT_CONNS} under bench/c/tlsgen.c; each beside "
                 f"its plain twin): {', '.join(tnames)}"
                 + "; rloop is never in this part: it has no TLS server (its create_server(ssl=) "
                 "raises NotImplementedError)")
        data["tls_loops"] = tnames
        data["tls"] = run_tls(tnames, base, rounds, seconds, quick, warmup, args.match)
        done("tls")
    if "memory" in parts:
        idle, short = (2000, 20_000) if quick else (10_000, 1_000_000)
        idle, short = args.idle or idle, args.short or short
        progress(f"memory ({idle:,} idle connections; {short:,} short connections)")
        # Memory is per engine (the write mode changes nothing there); asyncio
        # and aiofastnet over it are left out of the long run to keep the
        # full bench under an hour.
        data["memory"] = run_memory([n for n in names if n != "aioloop-inline" and
                                     (quick or n not in ("asyncio", "aiofastnet-asyncio"))],
                                    idle, short)
        done("memory")
    if "callgrind" in parts:
        from bench import callgrind
        progress("callgrind instruction counts (loop overhead)")
        # valgrind serialises threads and cannot see a thread sleeping in
        # io_uring_enter as blocked (call_soon_threadsafe deadlocks under it),
        # so instructions are counted on the threads engine: the C paths these
        # workloads exercise are the same on both.
        data["callgrind"] = callgrind.run(
            [n for n in names if n in ("uvloop", "aioloop-threads")], progress)
        done("callgrind")
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
        with open(os.path.join("docs", "bench-results-full.json"), "w") as f:
            json.dump(data, f, indent=1)
    progress(f"wrote {args.out}/results.json and report.md ({data['wall_s']:.0f} s)")


if __name__ == "__main__":
    main()
