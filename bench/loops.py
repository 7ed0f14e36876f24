"""The loops the bench compares, by name.

Every name maps to a zero-argument loop factory.  aioloop appears once per
engine / write mode it offers; other asyncio loops appear when installed:
uvloop, rloop (a Rust loop), aiofastnet (Cython transports patched onto
another loop: ``aiofastnet-uvloop``, ``aiofastnet-asyncio``) and rsloop.
Every loop that is not aioloop's is a *peer*: each result is also given
against the best peer in that workload.
"""
import asyncio
import importlib
import os


def uring_usable():
    try:
        import aioloop
        aioloop.new_event_loop(engine="uring").close()
        return True
    except (ImportError, OSError, TypeError):
        return False


_import_errors = {}


def importable(pkg):
    """True when pkg imports here; the reason it does not is kept for
    missing_message()."""
    if pkg in _import_errors:
        return _import_errors[pkg] is None
    try:
        importlib.import_module(pkg)
        _import_errors[pkg] = None
    except ImportError as e:       # not installed, or no build for this Python
        _import_errors[pkg] = str(e) or type(e).__name__
    return _import_errors[pkg] is None


def available():
    """Names of the loops installed here, in report order."""
    names = ["asyncio"]
    if importable("uvloop"):
        names.append("uvloop")
    if importable("rloop"):
        names.append("rloop")
    if importable("aiofastnet"):
        if "uvloop" in names:
            names.append("aiofastnet-uvloop")
        names.append("aiofastnet-asyncio")
    if importable("rsloop"):
        names.append("rsloop")
    if uring_usable():
        names.append("aioloop-uring")
    names += ["aioloop-threads", "aioloop-inline"]
    return names


# What `--quick` runs on (the full run takes every loop available): the two
# aioloop engines and the fastest peers.
QUICK = ("uvloop", "rloop", "aiofastnet-uvloop", "aioloop-uring", "aioloop-threads")


def is_peer(name):
    """True for a loop the bench compares aioloop against (not the C ceiling)."""
    return not name.startswith("aioloop") and name != "c-epoll"


def default_aioloop(names):
    """The name of what aioloop.new_event_loop() gives here."""
    return "aioloop-uring" if "aioloop-uring" in names else "aioloop-threads"


def factory(name):
    if name == "asyncio":
        return asyncio.SelectorEventLoop
    if name == "uvloop":
        import uvloop
        return uvloop.new_event_loop
    if name == "rloop":
        import rloop
        return rloop.new_event_loop
    if name.startswith("aiofastnet-"):
        import aiofastnet
        base = name[len("aiofastnet-"):]
        if base not in ("uvloop", "asyncio"):
            raise ValueError(f"unknown loop {name!r}")
        # loop_factory() makes the base loop, sets it current and patches its
        # network methods (create_server, sock_*, ...) with aiofastnet's.
        return aiofastnet.loop_factory(factory(base))
    if name == "rsloop":
        import rsloop
        return rsloop.new_event_loop
    import aioloop
    if name == "aioloop":
        return aioloop.new_event_loop
    if name == "aioloop-threads":
        return lambda: aioloop.new_event_loop(engine="threads")
    if name == "aioloop-inline":
        return lambda: aioloop.new_event_loop(engine="threads", inline_writes=True)
    if name == "aioloop-uring":
        return lambda: aioloop.new_event_loop(engine="uring")
    if name == "aioloop-uring-inline":
        return lambda: aioloop.new_event_loop(engine="uring", inline_writes=True)
    if name.startswith("aioloop-uring-"):
        # Ring setup flag variants for measurement (not in the default list):
        # aioloop-uring-none / -coop / -single / -defer.
        setup = name[len("aioloop-uring-"):]

        def make():
            os.environ["AIOLOOP_URING_SETUP"] = setup
            return aioloop.new_event_loop(engine="uring")
        return make
    raise ValueError(f"unknown loop {name!r}")


def missing_message():
    msgs = []
    if not importable("uvloop"):
        msgs.append(f"uvloop does not import ({_import_errors['uvloop']}; `pip install uvloop`): "
                    "ratios are to asyncio")
    for pkg in ("rloop", "aiofastnet"):
        if not importable(pkg):
            msgs.append(f"{pkg} does not import ({_import_errors[pkg]}; `pip install {pkg}`): "
                        "left out of the comparison")
    return msgs
