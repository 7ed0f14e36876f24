"""The body of the public-API fuzz (tests/stress/test_fuzz.py runs it).

generate(seed, calls) turns a seed into a list of episodes, each a few
calls on one target: the open loop, a closed loop, or a stream transport
in a given state (fresh, closing, aborted, lost, after write_eof, reading
paused).  A call names its method and, for every argument, an *atom*: a
kind of value (a non-callable, NaN, 2**64, a non-contiguous memoryview, a
closed socket, ...) that each loop makes for itself.  The list depends on
the seed only, so every loop gets the same calls in the same order.

Run as a script (``fuzz_api.py LOOP SEED CALLS OUT``) it makes those calls
on one loop ("uring", "threads" or "asyncio") and writes one JSON line per
call: [index, outcome, closing_after, lost_before], the outcome being
"ok", "pending" (a coroutine still running after its time), or the
exception's qualified type name.  It runs in its own process so that a
crash of the C extension fails the test instead of killing pytest.

Between calls the harness undoes what a call set up (handles and tasks
cancelled, readers removed, servers and connections closed), so that each
call starts from the same state on every loop; on asyncio's loop it also
undoes two of asyncio's own accidents that would otherwise leak into later
calls (a timer with a non-number deadline left in its heap, rule B2; a
writer registered for a closed socket, rule B5).
"""
import array
import asyncio
import contextvars
import decimal
import fractions
import functools
import gc
import heapq
import json
import logging
import math
import numbers
import os
import random
import shutil
import socket
import sys
import tempfile
import warnings

# ---- atoms: the kinds of values that are passed ------------------------------

# Junk that any parameter may get.
JUNK = [
    "none", "true", "zero", "one", "neg1", "int31", "int64", "int200", "negbig", "f15",
    "fneg", "nan", "inf", "ninf", "cplx", "str_x", "str_empty", "bytes_x", "bytearray",
    "mv", "list_empty", "list_bytes", "dict", "obj", "dec", "frac", "noop", "coro_fn",
    "coro", "exc", "proto_cls", "partial_coro_fn", "gen",
]

# Atoms that are not an acceptable callback for call_soon() & co.: not
# callable, or a coroutine (function).  See allow-list rule B1.
BAD_CALLBACKS = {
    "none", "true", "zero", "one", "neg1", "int31", "int64", "int200", "negbig", "f15", "fneg",
    "nan", "inf", "ninf", "cplx", "str_x", "str_empty", "bytes_x", "bytearray", "mv",
    "list_empty", "list_bytes", "dict", "obj", "dec", "frac", "coro_fn", "coro", "exc",
    "partial_coro_fn", "gen", "small", "big_delay", "now_plus", "now_minus", "ctx",
}

# writelines() arguments with an item whose item size is not 1 (rule B6).
WIDE_LINES = {"lines_wide", "lines_cast"}

POOLS = {
    "callback": ["noop", "noop", "raiser", "append", "partial_noop"],
    "delay": ["zero", "small", "big_delay", "f15", "nan", "inf", "ninf", "frac", "true", "int64",
              "int200", "dec", "cplx"],
    "when": ["now_plus", "now_minus", "nan", "inf", "ninf", "int200", "negbig", "dec", "frac",
             "true"],
    "context": ["none", "ctx"],
    "fd": ["own_fd", "own_sock", "own_fd_wrapper", "own_fd_str_wrapper", "tr_fd", "far_fd",
           "int31m2", "int31", "int64", "neg1", "negbig", "fileno_raises", "fileno_none",
           "fileno_neg", "fileno_big", "no_fileno", "closed_sock"],
    "executor": ["none", "none", "executor"],
    "func": ["noop", "noop", "raiser", "coro_fn"],
    "coro": ["coro", "coro", "coro_fn", "gen"],
    "task_name": ["none", "str_x", "obj"],
    "handler": ["handler", "none", "noop"],
    "flag": ["true", "false", "one", "none", "str_x", "list_empty"],
    "host": ["ip4", "ip4", "ip6", "localhost", "none", "bytes_ip4", "bytearray_ip4",
             "long_label"],
    "port": ["p80", "str_p80", "http", "no_service", "none", "neg1", "p65536", "int64", "f15",
             "bytes_p80"],
    "family": ["zero", "af_inet", "af_inet6", "af_unix", "str_x", "int64", "neg1"],
    "socktype": ["zero", "sock_stream", "sock_dgram", "str_x", "neg1"],
    "proto": ["zero", "str_x", "neg1", "int64"],
    "gai_flags": ["zero", "ai_passive", "str_x", "neg1", "int64"],
    "sockaddr": ["sa4", "sa4", "sa6", "sa4_short", "sa4_long", "sa_str_port", "sa_big_port",
                 "sa_localhost"],
    "ni_flags": ["zero", "ni_numeric", "str_x", "neg1", "int64"],
    "factory": ["proto_cls", "proto_cls", "proto_cls", "str_x", "none", "noop"],
    "conn_host": ["ip4", "ip4", "none", "localhost", "one", "str_x"],
    "conn_port": ["server_port", "server_port", "refused_port", "none", "str_x", "neg1",
                  "p65536"],
    "ssl": ["none", "false", "str_x"],
    "conn_sock": ["none", "obj", "closed_sock", "udp_sock"],
    "local_addr": ["none", "sa4_any", "one", "str_x"],
    "hostname": ["none", "str_x"],
    "he_delay": ["none", "f15", "str_x", "neg1"],
    "interleave": ["none", "one", "str_x"],
    "srv_host": ["ip4", "ip4", "str_x", "one", "list_ips"],
    "srv_port": ["zero", "zero", "none", "str_x", "neg1", "p65536"],
    "srv_sock": ["none", "listen_sock", "obj", "closed_sock"],
    "backlog": ["p100", "neg1", "str_x", "none"],
    "sock": ["nb_pair", "nb_pair_data", "timeout_sock", "closed_sock", "listen_sock", "udp_sock",
             "unconnected_sock"],
    "nbytes": ["p100", "zero", "neg1", "int64", "str_x", "f15"],
    "recv_buf": ["bytearray10", "bytearray10", "mv_bytearray", "bytes_x"],
    "address": ["addr_server", "addr_server", "addr_refused", "addr_localhost_server",
                "sa4_short", "sa_big_port"],
    "data": ["bytes_x", "bytes_x", "bytes_empty", "bytearray", "mv", "mv_nc", "mv_released",
             "mv_2d", "mv_cast_i", "array_h", "str_x", "none", "one", "list_bytes", "big_bytes"],
    "lines": ["lines_ok", "lines_ok", "lines_empty", "lines_empty_item", "lines_tuple", "gen_ok",
              "gen_raises", "lines_bad", "lines_nc", "lines_wide", "lines_cast", "none", "one",
              "bytes_x", "str_x", "lines_dict", "lines_big"],
    "info_name": ["peername", "sockname", "socket", "nope", "list_empty", "none"],
    "mark": ["none", "zero", "p100", "f15", "big_mark", "nan", "inf", "ninf", "neg1", "str_x",
             "cplx", "frac", "dec", "int200", "true"],
    "protocol": ["episode_protocol", "episode_protocol", "proto_inst", "none", "obj"],
    "transport": ["tr"],
    "file": ["file_bin", "file_bin", "file_text"],
    "offset": ["zero", "zero", "neg1", "str_x", "p100"],
    "count": ["none", "none", "zero", "neg1", "p100", "str_x"],
    "none": ["none"],
}


class Param:
    """A parameter: its name, its pool, whether it has a default, and
    whether it is keyword-only."""

    def __init__(self, name, pool, optional=False, kwonly=False):
        self.name, self.pool, self.optional, self.kwonly = name, pool, optional, kwonly


P = Param
# Loop methods: name -> (parameters, "junk" when *args may follow, else None).
LOOP_SYNC = {
    "call_soon": ([P("callback", "callback"), P("context", "context", True, True)], "junk"),
    "call_soon_threadsafe": ([P("callback", "callback"), P("context", "context", True, True)],
                             "junk"),
    "call_later": ([P("delay", "delay"), P("callback", "callback"),
                    P("context", "context", True, True)], "junk"),
    "call_at": ([P("when", "when"), P("callback", "callback"),
                 P("context", "context", True, True)], "junk"),
    "add_reader": ([P("fd", "fd"), P("callback", "callback")], "junk"),
    "add_writer": ([P("fd", "fd"), P("callback", "callback")], "junk"),
    "remove_reader": ([P("fd", "fd")], None),
    "remove_writer": ([P("fd", "fd")], None),
    "run_in_executor": ([P("executor", "executor"), P("func", "func")], "junk"),
    "create_task": ([P("coro", "coro"), P("name", "task_name", True, True)], None),
    "set_exception_handler": ([P("handler", "handler")], None),
    "set_debug": ([P("enabled", "flag")], None),
    "time": ([], None),
    "get_debug": ([], None),
    "create_future": ([], None),
}
# Loop coroutines: name -> (parameters, seconds to let it run).  Calls that
# wait for a peer (a read on an empty socket) are "pending" on both loops
# after SHORT; everything else ends well before LONG.
SHORT, LONG = 0.02, 2.0
LOOP_CORO = {
    "getaddrinfo": ([P("host", "host"), P("port", "port"), P("family", "family", True, True),
                     P("type", "socktype", True, True), P("proto", "proto", True, True),
                     P("flags", "gai_flags", True, True)], LONG),
    "getnameinfo": ([P("sockaddr", "sockaddr"), P("flags", "ni_flags", True)], LONG),
    "create_connection": ([P("protocol_factory", "factory"), P("host", "conn_host", True),
                           P("port", "conn_port", True), P("ssl", "ssl", True, True),
                           P("family", "family", True, True), P("sock", "conn_sock", True, True),
                           P("local_addr", "local_addr", True, True),
                           P("server_hostname", "hostname", True, True),
                           P("happy_eyeballs_delay", "he_delay", True, True),
                           P("interleave", "interleave", True, True)], LONG),
    "create_server": ([P("protocol_factory", "factory"), P("host", "srv_host", True),
                       P("port", "srv_port", True), P("family", "family", True, True),
                       P("flags", "gai_flags", True, True), P("sock", "srv_sock", True, True),
                       P("backlog", "backlog", True, True), P("reuse_address", "flag", True, True),
                       P("reuse_port", "flag", True, True),
                       P("start_serving", "flag", True, True)], LONG),
    "sock_recv": ([P("sock", "sock"), P("n", "nbytes")], SHORT),
    "sock_recv_into": ([P("sock", "sock"), P("buf", "recv_buf")], SHORT),
    "sock_recvfrom": ([P("sock", "sock"), P("bufsize", "nbytes")], SHORT),
    "sock_sendall": ([P("sock", "sock"), P("data", "data")], SHORT),
    "sock_sendto": ([P("sock", "sock"), P("data", "data"), P("address", "address")], SHORT),
    "sock_connect": ([P("sock", "sock"), P("address", "address")], LONG),
    "sock_accept": ([P("sock", "sock")], SHORT),
}
# Stream transport methods, as LOOP_SYNC.
TRANSPORT = {
    "write": ([P("data", "data")], None),
    "writelines": ([P("list_of_data", "lines")], None),
    "write_eof": ([], None),
    "can_write_eof": ([], None),
    "close": ([], None),
    "abort": ([], None),
    "is_closing": ([], None),
    "pause_reading": ([], None),
    "resume_reading": ([], None),
    "is_reading": ([], None),
    "get_extra_info": ([P("name", "info_name"), P("default", "none", True)], None),
    "set_write_buffer_limits": ([P("high", "mark", True), P("low", "mark", True)], None),
    "get_write_buffer_limits": ([], None),
    "get_write_buffer_size": ([], None),
    "get_protocol": ([], None),
    "set_protocol": ([P("protocol", "protocol")], None),
}
# Loop coroutines that take the episode's transport.
TRANSPORT_CORO = {
    "sendfile": ([P("transport", "transport"), P("file", "file"), P("offset", "offset", True),
                  P("count", "count", True)], LONG),
}
EPISODE_KINDS = [("loop", 30), ("coro", 20), ("transport", 38), ("closed", 12)]
TRANSPORT_STATES = ["fresh", "fresh", "fresh", "closing", "aborted", "lost", "eof", "paused"]
CALLS_PER_EPISODE = 10


def _make_call(rng, target, method, params, varargs):
    """A call spec: {target, method, args: [atom], kwargs: {name: atom}}.

    Each parameter gets a value from its own pool (which holds bad values
    of the right kind too: NaN for a delay, a closed socket for a socket);
    then none, one or two of them are replaced by junk of any kind, and
    one call in six gets an argument too few, one too many, or a keyword
    that does not belong (an unknown name, or a positional's name again)."""
    slots = []   # [name, atom, by_keyword]
    positional_open = True
    for p in params:
        if p.optional and rng.random() < 0.5:
            positional_open = positional_open and p.kwonly
            continue
        by_keyword = p.kwonly or not positional_open or rng.random() < 0.1
        if by_keyword and not p.kwonly:
            positional_open = False
        slots.append([p.name, rng.choice(POOLS[p.pool]), by_keyword])
    njunk = rng.choices([0, 1, 2], [0.4, 0.45, 0.15])[0]
    for slot in rng.sample(slots, min(njunk, len(slots))):
        slot[1] = rng.choice(JUNK)
    args = [atom for _, atom, kw in slots if not kw]
    kwargs = {name: atom for name, atom, kw in slots if kw}
    if varargs and positional_open and rng.random() < 0.3:
        args.extend(rng.choice(JUNK) for _ in range(rng.randint(1, 3)))
    r = rng.random()
    if r < 0.06 and args:
        args.pop()                                   # one argument too few
    elif r < 0.12:
        args.append(rng.choice(JUNK))                # one too many
    elif r < 0.18:
        names = ["bogus", "loop", "timeout"] + [p.name for p in params]
        kwargs[rng.choice(names)] = rng.choice(JUNK)  # keyword junk
    return {"target": target, "method": method, "args": args, "kwargs": kwargs}


def generate(seed, calls):
    """The episodes for `calls` calls: a pure function of the seed."""
    rng = random.Random(seed)
    episodes = []
    n = 0
    kinds, weights = zip(*EPISODE_KINDS)
    while n < calls:
        kind = rng.choices(kinds, weights)[0]
        ep = {"kind": kind, "debug": rng.random() < 0.25, "state": "fresh", "calls": []}
        if kind == "transport":
            ep["state"] = rng.choice(TRANSPORT_STATES)
        for _ in range(min(CALLS_PER_EPISODE, calls - n)):
            if kind == "loop" or (kind == "closed" and rng.random() < 0.6):
                target = "closed" if kind == "closed" else "loop"
                method = rng.choice(sorted(LOOP_SYNC))
                params, varargs = LOOP_SYNC[method]
            elif kind in ("coro", "closed"):
                target = "closed" if kind == "closed" else "loop"
                method = rng.choice(sorted(LOOP_CORO))
                params, varargs = LOOP_CORO[method][0], None
            elif rng.random() < 0.06:
                target, method = "loop", "sendfile"
                params, varargs = TRANSPORT_CORO[method][0], None
            else:
                target = "tr"
                method = rng.choice(sorted(TRANSPORT))
                params, varargs = TRANSPORT[method]
            ep["calls"].append(_make_call(rng, target, method, params, varargs))
            n += 1
        episodes.append(ep)
    return episodes


def describe(spec):
    args = ", ".join(spec["args"] + [f"{k}={v}" for k, v in spec["kwargs"].items()])
    return f"{spec['target']}.{spec['method']}({args})"


def is_coroutine_call(spec):
    return spec["method"] in LOOP_CORO or spec["method"] in TRANSPORT_CORO


def timeout_of(spec):
    table = LOOP_CORO if spec["method"] in LOOP_CORO else TRANSPORT_CORO
    return table[spec["method"]][1]


# ---- the child: makes the calls on one loop ------------------------------------

def noop(*args, **kwargs):
    pass


def raiser(*args):
    raise ZeroDivisionError("raiser")


async def coro_fn(*args):
    pass


class NoFileno:
    pass


class Fileno:
    def __init__(self, value):
        self.value = value

    def fileno(self):
        if isinstance(self.value, BaseException):
            raise self.value
        return self.value


class Sink(asyncio.Protocol):
    """The server side of the episodes' connections.  It never closes on
    its own (a close at a moment that differs between loops would make the
    client's state differ); the harness closes it when the episode ends."""

    open_transports = set()

    def connection_made(self, transport):
        self.transport = transport
        self.open_transports.add(transport)

    def data_received(self, data):
        pass

    def eof_received(self):
        return True

    def connection_lost(self, exc):
        self.open_transports.discard(self.transport)


class EpisodeProtocol(asyncio.Protocol):
    def __init__(self):
        self.lost = asyncio.get_running_loop().create_future()

    def eof_received(self):
        return True

    def connection_lost(self, exc):
        if not self.lost.done():
            self.lost.set_result(exc)


def outcome_of(exc):
    t = type(exc)
    return t.__qualname__ if t.__module__ == "builtins" else f"{t.__module__}.{t.__qualname__}"


class Harness:
    def __init__(self, kind):
        self.kind = kind
        self.loop = self.new_loop()
        self.closed_loop = self.new_loop()
        self.closed_loop.close()
        self.contexts = []
        self.loop.set_exception_handler(self.on_error)
        self.tmp = tempfile.mkdtemp(prefix="aioloop-fuzz-")
        self.file_path = os.path.join(self.tmp, "data")
        with open(self.file_path, "wb") as f:
            f.write(os.urandom(4096))
        self.executor = __import__("concurrent.futures").futures.ThreadPoolExecutor(1)
        self.own_a, self.own_b = socket.socketpair()
        self.own_a.setblocking(False)
        self.loop.call_later(3600, noop)   # keeps asyncio's heap non-empty (rule B2)
        self.server = self.loop.run_until_complete(
            self.loop.create_server(Sink, "127.0.0.1", 0))
        self.server_port = self.server.sockets[0].getsockname()[1]
        probe = socket.socket()
        probe.bind(("127.0.0.1", 0))
        self.refused_port = probe.getsockname()[1]   # bound, never listening
        self.refused_holder = probe
        self.systemerrors = 0

    def new_loop(self):
        if self.kind == "asyncio":
            return asyncio.SelectorEventLoop()
        import aioloop
        return aioloop.new_event_loop(engine=self.kind)

    def on_error(self, loop, context):
        self.contexts.append(context)
        if isinstance(context.get("exception"), SystemError):
            self.systemerrors += 1

    # -- atoms --

    def atom(self, name, ep):
        fresh = self.fresh
        simple = {
            "none": None, "true": True, "false": False, "zero": 0, "one": 1, "neg1": -1,
            "int31": 2**31, "int31m2": 2**31 - 2, "int64": 2**64, "int200": 2**200,
            "negbig": -2**1100, "f15": 1.5, "fneg": -0.5, "nan": math.nan, "inf": math.inf,
            "ninf": -math.inf, "cplx": 1j, "str_x": "x", "str_empty": "", "bytes_x": b"x",
            "bytes_empty": b"", "big_bytes": b"B" * 70000, "dict": {}, "obj": object(),
            "dec": decimal.Decimal("1.5"), "frac": fractions.Fraction(1, 3), "noop": noop,
            "raiser": raiser, "coro_fn": coro_fn, "exc": ValueError("x"),
            "proto_cls": asyncio.Protocol, "small": 0.001, "big_delay": 1000,
            "p80": 80, "str_p80": "80", "http": "http", "no_service": "no-such-service",
            "p65536": 65536, "bytes_p80": b"80", "p100": 100, "big_mark": 10**6,
            "ip4": "127.0.0.1", "ip6": "::1", "localhost": "localhost",
            "bytes_ip4": b"127.0.0.1", "bytearray_ip4": bytearray(b"127.0.0.1"),
            "long_label": "x" * 70, "af_inet": socket.AF_INET,
            "af_inet6": socket.AF_INET6, "af_unix": socket.AF_UNIX,
            "sock_stream": socket.SOCK_STREAM, "sock_dgram": socket.SOCK_DGRAM,
            "ai_passive": socket.AI_PASSIVE,
            "ni_numeric": socket.NI_NUMERICHOST | socket.NI_NUMERICSERV,
            "sa4": ("127.0.0.1", 80), "sa6": ("::1", 80, 0, 0), "sa4_short": ("127.0.0.1",),
            "sa4_long": ("127.0.0.1", 80, 0, 0, 0), "sa_str_port": ("127.0.0.1", "x"),
            "sa_big_port": ("127.0.0.1", 2**70), "sa_localhost": ("localhost", 80),
            "sa4_any": ("127.0.0.1", 0), "list_ips": ["127.0.0.1"],
            "peername": "peername", "sockname": "sockname", "socket": "socket", "nope": "nope",
            "far_fd": 10**6, "no_fileno": NoFileno(), "fileno_raises": Fileno(ValueError("x")),
            "fileno_none": Fileno(None), "fileno_neg": Fileno(-1), "fileno_big": Fileno(2**64),
            "array_h": array.array("h", [1, 2]), "mv_2d": memoryview(b"abcd").cast("B", (2, 2)),
            "mv_cast_i": memoryview(b"abcdefgh").cast("I"),
            "partial_noop": functools.partial(noop, 1),
            "partial_coro_fn": functools.partial(coro_fn, 1),
            "handler": lambda loop, ctx: None, "proto_inst": asyncio.Protocol(),
        }
        if name in simple:
            return simple[name]
        if name == "bytearray":
            return bytearray(b"yz")
        if name == "mv":
            return memoryview(b"abc")
        if name == "mv_nc":
            return memoryview(b"abcdef")[::2]
        if name == "mv_released":
            m = memoryview(b"abc")
            m.release()
            return m
        if name == "list_empty":
            return []
        if name == "list_bytes":
            return [b"a"]
        if name == "coro":
            return fresh("coro", coro_fn())
        if name == "gen":
            return (x for x in [b"g"])
        if name == "append":
            return [].append
        if name == "ctx":
            return contextvars.copy_context()
        if name == "now_plus":
            return self.loop.time() + 1000
        if name == "now_minus":
            return self.loop.time() - 1
        if name == "executor":
            return self.executor
        if name == "own_fd":
            return self.own_a.fileno()
        if name == "own_sock":
            return self.own_a
        if name == "own_fd_wrapper":
            return Fileno(self.own_a.fileno())
        if name == "own_fd_str_wrapper":
            return Fileno(str(self.own_a.fileno()))
        if name == "tr_fd":
            tr = self.transport
            return tr.get_extra_info("socket").fileno() if tr is not None else self.own_a.fileno()
        if name == "closed_sock":
            s = socket.socket()
            s.close()
            return s
        if name == "server_port":
            return self.server_port
        if name == "refused_port":
            return self.refused_port
        if name == "addr_server":
            return ("127.0.0.1", self.server_port)
        if name == "addr_localhost_server":
            return ("localhost", self.server_port)
        if name == "addr_refused":
            return ("127.0.0.1", self.refused_port)
        if name in ("nb_pair", "nb_pair_data", "timeout_sock"):
            a, b = socket.socketpair()
            fresh("sock", a)
            fresh("sock", b)
            if name == "nb_pair_data":
                b.send(b"data")
            if name == "timeout_sock":
                a.settimeout(0.01)
            else:
                a.setblocking(False)
            return a
        if name == "listen_sock":
            s = fresh("sock", socket.socket())
            s.bind(("127.0.0.1", 0))
            s.listen(1)
            s.setblocking(False)
            return s
        if name == "udp_sock":
            s = fresh("sock", socket.socket(socket.AF_INET, socket.SOCK_DGRAM))
            s.bind(("127.0.0.1", 0))
            s.setblocking(False)
            return s
        if name == "unconnected_sock":
            s = fresh("sock", socket.socket())
            s.setblocking(False)
            return s
        if name == "bytearray10":
            return bytearray(10)
        if name == "mv_bytearray":
            return memoryview(bytearray(10))
        if name.startswith("lines_") or name.startswith("gen_"):
            return self.lines_atom(name)
        if name == "episode_protocol":
            return self.protocol if self.protocol is not None else asyncio.Protocol()
        if name == "tr":
            return self.transport
        if name == "file_bin":
            return fresh("file", open(self.file_path, "rb"))
        if name == "file_text":
            return fresh("file", open(self.file_path, "r", encoding="latin-1"))
        raise KeyError(name)

    def lines_atom(self, name):
        if name == "lines_ok":
            return [b"a", bytearray(b"b"), memoryview(b"c")]
        if name == "lines_empty":
            return []
        if name == "lines_empty_item":
            return [b"", b"x"]
        if name == "lines_tuple":
            return (b"t", memoryview(b"u"))
        if name == "gen_ok":
            return (x for x in [b"g", b"h"])

        def failing():
            yield b"f"
            raise ZeroDivisionError("gen_raises")

        if name == "gen_raises":
            return failing()
        if name == "lines_bad":
            return [b"a", "x"]
        if name == "lines_nc":
            return [b"n", memoryview(b"abcdef")[::2]]
        if name == "lines_wide":
            return [b"w", array.array("h", [1, 2])]
        if name == "lines_cast":
            return [memoryview(b"abcdefgh").cast("I")]
        if name == "lines_dict":
            return {b"k": 1}
        if name == "lines_big":
            return [b"L" * 70000, b"M"]
        raise KeyError(name)

    def fresh(self, kind, obj):
        self.cleanup_items.append((kind, obj))
        return obj

    # -- episodes --

    def run(self, episodes, out):
        i = 0
        for ep in episodes:
            self.begin(ep)
            for spec in ep["calls"]:
                rec = self.call(ep, spec)
                out.write(json.dumps([i] + rec) + "\n")
                out.flush()
                i += 1
            self.end(ep)
        out.write(json.dumps(["done", self.systemerrors]) + "\n")
        out.flush()

    def begin(self, ep):
        self.cleanup_items = []
        self.transport = self.protocol = None
        self.debug = ep["debug"]
        self.loop.set_debug(self.debug)
        if ep["kind"] != "transport":
            return
        loop = self.loop

        async def connect():
            return await loop.create_connection(EpisodeProtocol, "127.0.0.1", self.server_port)

        self.transport, self.protocol = loop.run_until_complete(connect())
        state = ep["state"]
        if state == "closing":
            self.transport.close()
        elif state in ("aborted", "lost"):
            self.transport.abort()
            if state == "lost":
                loop.run_until_complete(asyncio.wait_for(self.protocol.lost, 10))
        elif state == "eof":
            self.transport.write_eof()
        elif state == "paused":
            self.transport.pause_reading()

    def call(self, ep, spec):
        loop = self.closed_loop if spec["target"] == "closed" else self.loop
        target = self.transport if spec["target"] == "tr" else loop
        tr = self.transport
        lost_before = bool(tr._conn_lost) if spec["target"] == "tr" else None
        try:
            args = [self.atom(a, ep) for a in spec["args"]]
            kwargs = {k: self.atom(v, ep) for k, v in spec["kwargs"].items()}
        except Exception as exc:   # noqa: B902 - a harness bug must show
            return [f"harness:{outcome_of(exc)}:{exc}", None, lost_before]
        result = None
        try:
            result = getattr(target, spec["method"])(*args, **kwargs)
            if is_coroutine_call(spec) and asyncio.iscoroutine(result):
                outcome = self.finish(loop, result, spec)
            else:
                outcome = "ok"
        except BaseException as exc:   # noqa: B902 - the outcome is the point
            if isinstance(exc, (KeyboardInterrupt, SystemExit)):
                raise
            outcome = outcome_of(exc)
        self.dispose(spec, args, kwargs, result, outcome)
        closing_after = tr.is_closing() if spec["target"] == "tr" else None
        if outcome == "SystemError":
            self.systemerrors += 1
        return [outcome, closing_after, lost_before]

    def finish(self, loop, coro, spec):
        """Runs a coroutine the call returned: to its end on the open loop
        (or "pending" after its time), its first step on the closed one."""
        if loop is self.closed_loop:
            try:
                coro.send(None)
            except StopIteration:
                return "ok"
            except BaseException as exc:   # noqa: B902
                return outcome_of(exc)
            finally:
                coro.close()
            return "pending"

        async def bounded():
            task = asyncio.ensure_future(coro)
            done, _ = await asyncio.wait({task}, timeout=timeout_of(spec))
            if not done:
                task.cancel()
                try:
                    await task
                except BaseException:   # noqa: B902
                    pass
                return "pending", None
            exc = task.exception()
            if exc is not None:
                return outcome_of(exc), None
            return "ok", task.result()

        outcome, value = loop.run_until_complete(bounded())
        if value is not None:
            self.dispose_value(value)
        return outcome

    def dispose_value(self, value):
        """Closes what a coroutine made: (transport, protocol) from
        create_connection, a server, (socket, address) from sock_accept."""
        first = value[0] if isinstance(value, tuple) and len(value) == 2 else None
        if isinstance(first, asyncio.BaseTransport):
            first.abort()
        elif isinstance(first, socket.socket):
            first.close()
        elif isinstance(value, asyncio.AbstractServer):
            value.close()

    def dispose(self, spec, args, kwargs, result, outcome):
        """Undoes what a call set up, so that the next one starts from the
        same state on every loop."""
        method = spec["method"]
        if hasattr(result, "cancel"):
            result.cancel()   # handles, tasks, futures
        if method in ("add_reader", "add_writer") and outcome == "ok":
            fd = args[0] if args else kwargs["fd"]
            (self.loop.remove_reader if method == "add_reader" else self.loop.remove_writer)(fd)
        if method == "set_exception_handler":
            self.loop.set_exception_handler(self.on_error)
        if method == "set_debug":
            self.loop.set_debug(self.debug)
        if self.kind == "asyncio":
            self.scrub_asyncio_heap()
            tr = self.transport
            if spec["target"] == "tr" and tr._conn_lost and sys.version_info >= (3, 12):
                # asyncio 3.12+: writelines() after the connection was lost
                # registers a writer for the closed socket (rule B5); the
                # next socket to get that number would inherit it.
                self.loop._remove_writer(tr._sock_fd)

    def scrub_asyncio_heap(self):
        # asyncio pushes a timer before it compares its deadline: one that
        # is not a real number stays in the heap after the TypeError (rule
        # B2).  Drop such timers and NaN ones, as aioloop never keeps them.
        sched = self.loop._scheduled
        keep = [h for h in sched if isinstance(h._when, numbers.Real) and not (
            isinstance(h._when, float) and math.isnan(h._when))]
        if len(keep) != len(sched):
            sched[:] = keep
            heapq.heapify(sched)

    def end(self, ep):
        loop = self.loop
        if self.transport is not None:
            self.transport.abort()
        for _, obj in self.cleanup_items:   # coroutines, sockets, files
            obj.close()
        for t in list(Sink.open_transports):
            t.abort()
        loop.set_debug(False)
        loop.set_exception_handler(self.on_error)
        for _ in range(3):
            loop.run_until_complete(asyncio.sleep(0))
        if self.kind == "asyncio":
            self.scrub_asyncio_heap()

    def close(self):
        self.server.close()
        self.loop.run_until_complete(self.server.wait_closed())
        self.loop.run_until_complete(self.loop.shutdown_default_executor())
        self.executor.shutdown(wait=True)
        self.loop.close()
        self.own_a.close()
        self.own_b.close()
        self.refused_holder.close()
        shutil.rmtree(self.tmp)


def child_main(argv):
    kind, seed, calls, out_path = argv[0], int(argv[1]), int(argv[2]), argv[3]
    warnings.simplefilter("ignore")
    logging.getLogger("asyncio").setLevel(logging.CRITICAL + 1)
    episodes = generate(seed, calls)
    h = Harness(kind)

    def unraisable(u):
        if isinstance(u.exc_value, SystemError):
            h.systemerrors += 1

    sys.unraisablehook = unraisable
    with open(out_path, "w") as out:
        h.run(episodes, out)
    h.close()
    gc.collect()


if __name__ == "__main__":
    child_main(sys.argv[1:])
