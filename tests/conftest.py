"""Test configuration: every async test runs on aioloop -- once per engine
this machine offers (io_uring and the completion threads) -- and on
asyncio's own loop (through pytest-asyncio's loop-factory hook), so a
behaviour that differs between them fails one of the set."""
import asyncio
import functools
import gc

import pytest

import aioloop


def engines():
    """The engines usable here: always "threads", "uring" where the build
    has it and the kernel allows a ring."""
    found = ["threads"]
    try:
        aioloop.new_event_loop(engine="uring").close()
        found.append("uring")
    except OSError:
        pass
    return found


ENGINES = engines()
FACTORIES = {f"aioloop-{e}": functools.partial(aioloop.new_event_loop, engine=e) for e in ENGINES}
FACTORIES["asyncio"] = asyncio.SelectorEventLoop


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


@pytest.fixture(params=ENGINES)
def aloop(request):
    """A fresh aioloop loop of each engine, closed afterwards."""
    loop = aioloop.new_event_loop(engine=request.param)
    yield loop
    if not loop.is_closed():
        loop.close()


@pytest.fixture(scope="session")
def tls_pair():
    """(server context, client context): a trustme CA's certificate for
    127.0.0.1/localhost, and a client that trusts that CA."""
    import ssl
    trustme = pytest.importorskip(
        "trustme", reason="trustme is not installed (it is in the test extra: pip install -e .[test])")
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1", "localhost")
    server = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    cert.configure_cert(server)
    client = ssl.create_default_context()
    ca.configure_trust(client)
    return server, client
