"""Echo server CPU split: how much of the server's CPU time the loop thread
spends and how much the completion threads take over.

Starts an echo server (asyncio.Protocol) on the chosen loop in a child
process, drives it from a second child (uvloop client, closed loop: each
connection sends a message and waits for its echo), and reads per-thread CPU
times of the server from /proc before and after.

    python -m bench.echo_cpu [--loop aioloop] [--conns 50] [--size 1024] [--seconds 5]
"""
import argparse
import asyncio
import os
import subprocess
import sys
import time

SERVER = r"""
import asyncio, sys
loop_name, port = sys.argv[1], int(sys.argv[2])
class Echo(asyncio.Protocol):
    def connection_made(self, t): self.t = t
    def data_received(self, d): self.t.write(d)
if loop_name == "aioloop":
    import aioloop; factory = aioloop.new_event_loop
elif loop_name == "aioloop-thread":
    import aioloop; factory = lambda: aioloop.new_event_loop(inline_writes=False)
elif loop_name == "uvloop":
    import uvloop; factory = uvloop.new_event_loop
else:
    factory = asyncio.SelectorEventLoop
async def main():
    srv = await asyncio.get_running_loop().create_server(Echo, "127.0.0.1", port)
    print("ready", flush=True)
    await srv.serve_forever()
with asyncio.Runner(loop_factory=factory) as r:
    r.run(main())
"""

CLIENT = r"""
import asyncio, sys, time
port, conns, size, seconds = map(int, sys.argv[1:5])
try:
    import uvloop; factory = uvloop.new_event_loop
except ImportError:
    factory = asyncio.SelectorEventLoop
class C(asyncio.Protocol):
    def __init__(s, msg, done): s.msg, s.done, s.n, s.got = msg, done, 0, 0
    def connection_made(s, t): s.t = t; t.write(s.msg)
    def data_received(s, d):
        s.got += len(d)
        if s.got >= len(s.msg):
            s.got = 0; s.n += 1
            if not s.done[0]: s.t.write(s.msg)
async def main():
    loop = asyncio.get_running_loop(); done = [False]; msg = b"x" * size
    ps = []
    for _ in range(conns):
        _, p = await loop.create_connection(lambda: C(msg, done), "127.0.0.1", port)
        ps.append(p)
    await asyncio.sleep(seconds); done[0] = True
    print(sum(p.n for p in ps))
with asyncio.Runner(loop_factory=factory) as r:
    r.run(main())
"""


def thread_cpu(pid):
    out = {}
    tick = os.sysconf("SC_CLK_TCK")
    for tid in os.listdir(f"/proc/{pid}/task"):
        with open(f"/proc/{pid}/task/{tid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        out[int(tid)] = (int(fields[11]) + int(fields[12])) / tick
    return out


def run(loop, conns, size, seconds, port=18765):
    srv = subprocess.Popen([sys.executable, "-c", SERVER, loop, str(port)],
                           stdout=subprocess.PIPE, text=True)
    try:
        assert srv.stdout.readline().strip() == "ready"
        time.sleep(0.3)
        before = thread_cpu(srv.pid)
        cli = subprocess.run([sys.executable, "-c", CLIENT, str(port), str(conns), str(size),
                              str(seconds)], capture_output=True, text=True, check=True)
        after = thread_cpu(srv.pid)
    finally:
        srv.kill()
        srv.wait()
    reqs = int(cli.stdout.split()[-1])
    loop_cpu = after.get(srv.pid, 0) - before.get(srv.pid, 0)
    other = sum(after[t] - before.get(t, 0) for t in after if t != srv.pid)
    return reqs, loop_cpu, other


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--loop", action="append")
    ap.add_argument("--conns", type=int, default=50)
    ap.add_argument("--size", type=int, default=1024)
    ap.add_argument("--seconds", type=float, default=5)
    args = ap.parse_args()
    for loop in args.loop or ["aioloop", "aioloop-thread", "uvloop", "asyncio"]:
        reqs, loop_cpu, other = run(loop, args.conns, args.size, int(args.seconds))
        total = loop_cpu + other
        print(f"{loop:<15} {reqs / args.seconds:>9,.0f} req/s  server CPU {total / reqs * 1e6:6.1f} us/req"
              f"  (loop thread {loop_cpu / reqs * 1e6:5.1f}, completion threads"
              f" {other / reqs * 1e6:5.1f}: {100 * other / total if total else 0:.0f}% offloaded)",
              flush=True)


if __name__ == "__main__":
    main()
