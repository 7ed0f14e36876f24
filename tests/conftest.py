"""Test configuration: every async test runs on aioloop and on asyncio's own
loop (through pytest-asyncio's loop-factory hook), so a behaviour that
differs between the two fails one of the pair."""
import asyncio
import gc

import pytest

import aioloop

FACTORIES = {"aioloop": aioloop.new_event_loop, "asyncio": asyncio.SelectorEventLoop}


def pytest_asyncio_loop_factories(config, item):
    return FACTORIES


@pytest.fixture(params=sorted(FACTORIES))
def any_loop(request):
    """A fresh loop of each kind for synchronous tests; closed afterwards."""
    loop = FACTORIES[request.param]()
    errors = []
    loop.set_exception_handler(lambda lp, ctx: errors.append(ctx))
    loop.unexpected_errors = errors
    yield loop
    if not loop.is_closed():
        loop.close()
    gc.collect()


@pytest.fixture
def aloop():
    """A fresh aioloop loop, closed afterwards."""
    loop = aioloop.new_event_loop()
    yield loop
    if not loop.is_closed():
        loop.close()
