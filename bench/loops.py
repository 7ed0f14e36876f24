"""The loops the bench compares, by name.

Every name maps to a zero-argument loop factory.  aioloop appears once per
engine / write mode it offers; other asyncio loops appear when installed.
"""
import asyncio
import importlib.util
import os


def uring_usable():
    try:
        import aioloop
        aioloop.new_event_loop(engine="uring").close()
        return True
    except (ImportError, OSError, TypeError):
        return False


def available():
    """Names of the loops installed here, in report order."""
    names = ["asyncio"]
    if importlib.util.find_spec("uvloop"):
        names.append("uvloop")
    if importlib.util.find_spec("rsloop"):
        names.append("rsloop")
    if uring_usable():
        names.append("aioloop-uring")
    names += ["aioloop-threads", "aioloop-inline"]
    return names


def default_aioloop(names):
    """The name of what aioloop.new_event_loop() gives here."""
    return "aioloop-uring" if "aioloop-uring" in names else "aioloop-threads"


def factory(name):
    if name == "asyncio":
        return asyncio.SelectorEventLoop
    if name == "uvloop":
        import uvloop
        return uvloop.new_event_loop
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
    if not importlib.util.find_spec("uvloop"):
        msgs.append("uvloop is not installed (`pip install uvloop`): ratios are to asyncio")
    return msgs
