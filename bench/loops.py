"""The loops the bench compares, by name.

Every name maps to a zero-argument loop factory.  aioloop appears once per
engine / write mode it offers; other asyncio loops appear when installed.
"""
import asyncio
import importlib.util


def available():
    """Names of the loops installed here, in report order."""
    names = ["asyncio"]
    if importlib.util.find_spec("uvloop"):
        names.append("uvloop")
    if importlib.util.find_spec("rsloop"):
        names.append("rsloop")
    names += ["aioloop", "aioloop-inline"]
    try:
        import aioloop
        engines = getattr(aioloop, "ENGINES", ())
    except ImportError:
        engines = ()
    if "uring" in engines:
        names.append("aioloop-uring")
    return names


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
        return lambda: aioloop.new_event_loop(engine="threads") if _has_engines() else aioloop.new_event_loop()
    if name == "aioloop-inline":
        return lambda: aioloop.new_event_loop(inline_writes=True)
    if name == "aioloop-uring":
        return lambda: aioloop.new_event_loop(engine="uring")
    raise ValueError(f"unknown loop {name!r}")


def _has_engines():
    import aioloop
    return bool(getattr(aioloop, "ENGINES", ()))


def missing_message():
    msgs = []
    if not importlib.util.find_spec("uvloop"):
        msgs.append("uvloop is not installed (`pip install uvloop`): ratios are to asyncio")
    return msgs
