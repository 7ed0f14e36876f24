"""Loop-overhead benchmarks: aioloop against asyncio's default loop and
uvloop (when installed), in one run with interleaved rounds so machine noise
hits all loops alike.  Reports operations per second, the median of the
per-round ratios to uvloop (or to asyncio when uvloop is absent), and writes
a JSON file of every round.

    python -m bench [--quick] [--rounds N] [--json FILE]

Network workloads (echo, aiohttp under wrk, memory per connection) arrive
with the stream transports; see docs/benchmarks.md.
"""
import argparse
import asyncio
import json
import os
import platform
import statistics
import sys
import threading
import time

import aioloop


def loop_factories():
    loops = {"asyncio": asyncio.SelectorEventLoop}
    try:
        import uvloop
        loops["uvloop"] = uvloop.new_event_loop
    except ImportError:
        print("uvloop is not installed: `pip install uvloop` to compare with it", file=sys.stderr)
    loops["aioloop"] = aioloop.new_event_loop
    return loops


# Each workload runs n operations on a fresh loop and returns the seconds taken.

def call_soon_chain(loop, n):
    left = [n]

    def cb():
        left[0] -= 1
        if left[0]:
            loop.call_soon(cb)
        else:
            loop.stop()

    loop.call_soon(cb)
    t0 = time.perf_counter()
    loop.run_forever()
    return time.perf_counter() - t0


def call_soon_batch(loop, n):
    # Many callbacks ready at once: the dispatch loop itself.
    done = [0]

    def cb():
        done[0] += 1

    t0 = time.perf_counter()
    for _ in range(n):
        loop.call_soon(cb)
    loop.call_soon(loop.stop)
    loop.run_forever()
    return time.perf_counter() - t0


def call_later_timers(loop, n):
    fired = [0]

    def cb():
        fired[0] += 1
        if fired[0] == n:
            loop.stop()

    t0 = time.perf_counter()
    now = loop.time()
    for i in range(n):
        loop.call_at(now + (i % 100) * 1e-5, cb)
    loop.run_forever()
    return time.perf_counter() - t0


def sleep0(loop, n):
    async def main():
        for _ in range(n):
            await asyncio.sleep(0)

    t0 = time.perf_counter()
    loop.run_until_complete(main())
    return time.perf_counter() - t0


def task_churn(loop, n):
    async def child(i):
        return i

    async def main():
        for _ in range(n // 100):
            await asyncio.gather(*[loop.create_task(child(i)) for i in range(100)])

    t0 = time.perf_counter()
    loop.run_until_complete(main())
    return time.perf_counter() - t0


def future_roundtrip(loop, n):
    async def main():
        for _ in range(n):
            f = loop.create_future()
            loop.call_soon(f.set_result, None)
            await f

    t0 = time.perf_counter()
    loop.run_until_complete(main())
    return time.perf_counter() - t0


def call_soon_threadsafe(loop, n):
    got = [0]
    done = threading.Event()

    def cb():
        got[0] += 1
        if got[0] == n:
            loop.stop()

    def producer():
        for _ in range(n):
            loop.call_soon_threadsafe(cb)
        done.set()

    t = threading.Thread(target=producer)
    t0 = time.perf_counter()
    loop.call_soon(t.start)
    loop.run_forever()
    dt = time.perf_counter() - t0
    t.join()
    return dt


WORKLOADS = {
    "call_soon chain": (call_soon_chain, 200_000),
    "call_soon batch": (call_soon_batch, 200_000),
    "call_later timers": (call_later_timers, 100_000),
    "sleep(0)": (sleep0, 50_000),
    "task churn": (task_churn, 50_000),
    "future round trip": (future_roundtrip, 50_000),
    "call_soon_threadsafe": (call_soon_threadsafe, 100_000),
}


def run_one(factory, fn, n):
    loop = factory()
    try:
        return fn(loop, n)
    finally:
        loop.close()


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="fewer rounds, smaller counts")
    ap.add_argument("--rounds", type=int)
    ap.add_argument("--json", default=os.path.join("bench", "out", "loop_overhead.json"))
    args = ap.parse_args()
    rounds = args.rounds or (5 if args.quick else 9)
    scale = 0.25 if args.quick else 1.0
    loops = loop_factories()
    base = "uvloop" if "uvloop" in loops else "asyncio"

    print(f"Python {platform.python_version()}, {os.cpu_count()} CPUs, {rounds} interleaved rounds; "
          f"ratios are medians of per-round ratios to {base} (higher is faster)\n")
    results = {}
    for wname, (fn, n) in WORKLOADS.items():
        n = max(100, int(n * scale))
        per = {name: [] for name in loops}
        for r in range(rounds):
            # Rotate the order each round so no loop always runs first.
            names = list(loops)
            names = names[r % len(names):] + names[:r % len(names)]
            for name in names:
                per[name].append(n / run_one(loops[name], fn, n))
        ratios = {name: statistics.median(a / b for a, b in zip(per[name], per[base]))
                  for name in loops}
        results[wname] = {"n": n, "ops_per_s": per, "ratio_to_" + base: ratios}
        cells = "  ".join(f"{name} {statistics.median(per[name]):>10,.0f}/s ({ratios[name]:.2f}x)"
                          for name in loops)
        print(f"{wname:<22} {cells}", flush=True)

    os.makedirs(os.path.dirname(args.json) or ".", exist_ok=True)
    with open(args.json, "w") as f:
        json.dump({"python": sys.version, "machine": platform.machine(), "cpus": os.cpu_count(),
                   "rounds": rounds, "baseline": base, "results": results}, f, indent=1)
    print(f"\nwrote {args.json}")


if __name__ == "__main__":
    main()
