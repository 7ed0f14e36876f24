"""A server process for the stress suite: ``python -m tests.stress._server
LOOP [--ring-buffers N] [--nofile N]``.

It serves an echo Protocol on 127.0.0.1, prints ``PORT <n>``, and answers
each line ``stats`` on stdin with one JSON line: connections made and lost,
protocol calls after connection_lost or connection_lost twice, exception
handler calls, open descriptors, RSS, and the engine's counters.  ``quit``
stops the loop and closes it.  LOOP is ``uring``, ``threads``, ``asyncio`` or
``uvloop``."""
import argparse
import asyncio
import json
import os
import resource
import sys
import threading


def make_loop(name, ring_buffers=None):
    if name in ("uring", "threads"):
        import aioloop
        kw = {"engine": name}
        if ring_buffers:
            kw["ring_buffers"] = ring_buffers
        return aioloop.new_event_loop(**kw)
    if name == "uvloop":
        import uvloop
        return uvloop.new_event_loop()
    return asyncio.SelectorEventLoop()


def rss_kib():
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


class Stats:
    def __init__(self):
        self.made = self.lost = self.lost_twice = self.after_lost = 0
        self.handler_calls = 0
        self.handler_messages = {}
        self.bytes_in = 0


class Echo(asyncio.Protocol):
    stats = None

    def __init__(self):
        self.closed = False
        self.transport = None

    def connection_made(self, transport):
        self.transport = transport
        self.stats.made += 1

    def data_received(self, data):
        if self.closed:
            self.stats.after_lost += 1
            return
        self.stats.bytes_in += len(data)
        self.transport.write(data)

    def eof_received(self):
        if self.closed:
            self.stats.after_lost += 1
        return False

    def connection_lost(self, exc):
        if self.closed:
            self.stats.lost_twice += 1
        self.closed = True
        self.stats.lost += 1


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("loop")
    ap.add_argument("--ring-buffers", type=int, default=0)
    ap.add_argument("--nofile", type=int, default=0)
    args = ap.parse_args()
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    soft = args.nofile or hard
    resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))

    stats = Stats()
    Echo.stats = stats
    loop = make_loop(args.loop, args.ring_buffers)

    def handler(lp, ctx):
        stats.handler_calls += 1
        msg = ctx.get("message", "")
        stats.handler_messages[msg] = stats.handler_messages.get(msg, 0) + 1

    loop.set_exception_handler(handler)
    server = loop.run_until_complete(
        loop.create_server(Echo, "127.0.0.1", 0, backlog=4096))
    port = server.sockets[0].getsockname()[1]

    def dump():
        engine = loop.stats() if hasattr(loop, "stats") else {}
        try:   # listing /proc/self/fd takes a descriptor: -1 while none is free
            fds = len(os.listdir("/proc/self/fd"))
        except OSError:
            fds = -1
        try:
            rss = rss_kib()
        except OSError:
            rss = -1
        rec = dict(vars(stats), fds=fds, rss_kib=rss, engine=engine)
        sys.stdout.write(json.dumps(rec) + "\n")
        sys.stdout.flush()

    def control():
        for line in sys.stdin:
            cmd = line.strip()
            if cmd == "stats":
                loop.call_soon_threadsafe(dump)
            elif cmd == "quit":
                break
        loop.call_soon_threadsafe(loop.stop)

    threading.Thread(target=control, daemon=True).start()
    sys.stdout.write(f"PORT {port}\n")
    sys.stdout.flush()
    loop.run_forever()
    server.close()
    try:
        # wait_closed() waits for every connection to be lost: one that never
        # is (a connection the loop stopped reading) shows up here.
        loop.run_until_complete(asyncio.wait_for(server.wait_closed(), 20))
    except asyncio.TimeoutError:
        sys.stderr.write(f"server: connections never lost: made={stats.made} "
                         f"lost={stats.lost} stats={loop.stats() if hasattr(loop, 'stats') else {}}\n")
        sys.exit(3)
    loop.close()


if __name__ == "__main__":
    main()
