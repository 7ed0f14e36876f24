"""pytest plugin: run pytest-asyncio tests on aioloop.

Enable it for a run with ``pytest -p aioloop.pytest_plugin``, for a project
with ``addopts = -p aioloop.pytest_plugin`` in its pytest configuration, or
with ``pytest_plugins = ["aioloop.pytest_plugin"]`` in its top conftest.py.
Every test pytest-asyncio runs then runs on an aioloop loop.

Options (command line, or the ini key in brackets):

``--aioloop-engine=auto|uring|threads|all`` [``aioloop_engine``]
    the engine of the loops (default ``auto``: io_uring where built and
    allowed, else threads); ``all`` runs each test once per engine this
    machine offers (ids ``aioloop-uring``, ``aioloop-threads``).
``--aioloop-also-asyncio`` [``aioloop_loops = aioloop asyncio``]
    run each test on asyncio's own loop as well; the test id names the loop
    (``test_x[aioloop]``, ``test_x[asyncio]``).

With pytest-asyncio 1.4 or newer the plugin answers pytest-asyncio's
``pytest_asyncio_loop_factories`` hook (after any conftest.py that answers it
itself, so a project's own choice wins), and
``@pytest.mark.asyncio(loop_factories=["asyncio"])`` selects among the loops
by those names.  With older pytest-asyncio (1.0 to 1.3) it overrides the
``event_loop_policy`` fixture with aioloop's policy instead (one loop per
test: the both-loops option needs the hook).
"""
import asyncio
import functools

import pytest

ENGINE_CHOICES = ("auto", "uring", "threads", "all")
LOOP_CHOICES = ("aioloop", "asyncio")


def pytest_addoption(parser):
    group = parser.getgroup("aioloop", "aioloop: run asyncio tests on aioloop")
    group.addoption(
        "--aioloop-engine", dest="aioloop_engine", default=None, choices=ENGINE_CHOICES,
        help="aioloop engine for asyncio tests: auto (default), uring, threads, "
             "or all (each test once per engine available here)")
    group.addoption(
        "--aioloop-also-asyncio", dest="aioloop_also_asyncio", action="store_true",
        default=False,
        help="run each asyncio test on asyncio's own loop as well as on aioloop")
    parser.addini("aioloop_engine", "aioloop engine for asyncio tests "
                  "(auto, uring, threads or all)", default="auto")
    parser.addini("aioloop_loops", "loops each asyncio test runs on: aioloop, "
                  "asyncio or both (space separated)", type="args", default=["aioloop"])


def available_engines():
    """The engines usable here: "uring" where built and the kernel allows a
    ring, and always "threads"."""
    import aioloop
    found = []
    try:
        aioloop.new_event_loop(engine="uring").close()
        found.append("uring")
    except OSError:
        pass
    found.append("threads")
    return found


def loop_factories(config):
    """The mapping name -> loop factory that the options select."""
    import aioloop
    engine = config.getoption("aioloop_engine") or config.getini("aioloop_engine")
    if engine not in ENGINE_CHOICES:
        raise pytest.UsageError(
            f"aioloop_engine = {engine!r}: expected one of {', '.join(ENGINE_CHOICES)}")
    loops = list(config.getini("aioloop_loops"))
    bad = [name for name in loops if name not in LOOP_CHOICES]
    if bad or not loops:
        raise pytest.UsageError(
            f"aioloop_loops = {' '.join(loops)!r}: expected one or both of "
            f"{', '.join(LOOP_CHOICES)}")
    if config.getoption("aioloop_also_asyncio") and "asyncio" not in loops:
        loops.append("asyncio")
    factories = {}
    for name in loops:
        if name == "asyncio":
            factories["asyncio"] = asyncio.SelectorEventLoop
        elif engine == "all":
            for e in available_engines():
                factories[f"aioloop-{e}"] = functools.partial(aioloop.new_event_loop, engine=e)
        elif engine == "auto":
            factories["aioloop"] = aioloop.new_event_loop
        else:
            factories["aioloop"] = functools.partial(aioloop.new_event_loop, engine=engine)
    return factories


class _FactoriesHook:
    """pytest-asyncio >= 1.4: the loop-factory hook.  trylast, so that a
    conftest.py answering the hook itself is asked first and wins."""

    def __init__(self, factories):
        self.factories = factories

    @pytest.hookimpl(trylast=True)
    def pytest_asyncio_loop_factories(self, config, item):
        return self.factories


class _PolicyFixture:
    """pytest-asyncio < 1.4: aioloop's policy through the event_loop_policy
    fixture (the way those versions offer to choose the loop)."""

    def __init__(self, engine):
        self.engine = engine

    @pytest.fixture(scope="session", autouse=True)
    def event_loop_policy(self):
        import aioloop
        engine = self.engine

        class Policy(aioloop.EventLoopPolicy):
            def _loop_factory(self):
                if engine == "auto":
                    return aioloop.new_event_loop()
                return aioloop.new_event_loop(engine=engine)

        return Policy()


def pytest_configure(config):
    factories = loop_factories(config)
    if hasattr(config.hook, "pytest_asyncio_loop_factories"):
        config.pluginmanager.register(_FactoriesHook(factories), "aioloop-loop-factories")
        return
    engine = config.getoption("aioloop_engine") or config.getini("aioloop_engine")
    if len(factories) > 1 or engine == "all":
        raise pytest.UsageError(
            "running each test on several loops (aioloop_loops, --aioloop-also-asyncio, "
            "--aioloop-engine=all) needs pytest-asyncio >= 1.4 "
            "(its pytest_asyncio_loop_factories hook)")
    if "asyncio" in factories:
        return      # asyncio's loop only: nothing to change
    import aioloop
    if not hasattr(aioloop, "EventLoopPolicy"):
        raise pytest.UsageError(
            "this Python has no event loop policies: the aioloop plugin needs "
            "pytest-asyncio >= 1.4 (its pytest_asyncio_loop_factories hook) here")
    config.pluginmanager.register(_PolicyFixture(engine), "aioloop-event-loop-policy")


def pytest_report_header(config):
    names = ", ".join(loop_factories(config))
    return f"aioloop: asyncio tests run on {names}"
