"""Loop-overhead workloads: the loop's own machinery, no I/O.

Each workload runs n operations on a fresh loop and returns the seconds
taken.  ``python -m bench.overhead LOOP WORKLOAD N`` runs one of them once
(the callgrind counter uses that).
"""
import asyncio
import sys
import threading
import time

from bench.loops import factory


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


def run_one(loop_name, wname, n):
    loop = factory(loop_name)()
    try:
        return WORKLOADS[wname][0](loop, n)
    finally:
        loop.close()


if __name__ == "__main__":
    run_one(sys.argv[1], sys.argv[2], int(sys.argv[3]))
