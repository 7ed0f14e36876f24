"""aioloop's pytest plugin (aioloop.pytest_plugin), run by pytester on small
test files in a fresh directory (so this project's own conftest.py, which
chooses its loops itself, is not in play): every pytest-asyncio test runs on
aioloop, on the engine asked for, and with the both-loops option once on
aioloop and once on asyncio's loop, the id saying which."""
import pytest

import aioloop
from conftest import ENGINES

pytest_plugins = ["pytester"]

pytest.importorskip("pytest_asyncio", minversion="1.4",
                    reason="the plugin's loop choice goes through pytest-asyncio >= 1.4's hook")

INI = """
[pytest]
asyncio_mode = auto
asyncio_default_fixture_loop_scope = function
"""

CHECKS = """
import asyncio
import aioloop
import pytest
import pytest_asyncio


@pytest_asyncio.fixture
async def fixture_loop():
    return asyncio.get_running_loop()


async def test_where(request, fixture_loop):
    loop = asyncio.get_running_loop()
    assert fixture_loop is loop
    # the file the outer test reads: one line per run, "<test id> <loop class> <engine>"
    with open("runs.txt", "a") as f:
        f.write("%s %s.%s %s\\n" % (request.node.name, type(loop).__module__,
                                    type(loop).__qualname__, getattr(loop, "engine", "-")))
    await asyncio.sleep(0.001)
    r, w = await asyncio.open_connection(*server_address)
    w.write(b"ping")
    assert await r.readexactly(4) == b"PING"
    w.close()
    await w.wait_closed()


server_address = None


@pytest_asyncio.fixture(autouse=True)
async def server():
    global server_address

    async def upper(r, w):
        w.write((await r.readexactly(4)).upper())
        await w.drain()
        w.close()

    srv = await asyncio.start_server(upper, "127.0.0.1", 0)
    server_address = srv.sockets[0].getsockname()
    yield
    srv.close()
    await srv.wait_closed()


def test_sync():
    pass
"""


def runs(pytester, *args, ini=INI):
    pytester.makeini(ini)
    pytester.makepyfile(test_checks=CHECKS)
    result = pytester.runpytest_subprocess("-p", "aioloop.pytest_plugin", "-v", *args)
    lines = (pytester.path / "runs.txt").read_text().split() if (pytester.path / "runs.txt").exists() else []
    return result, [tuple(lines[i:i + 3]) for i in range(0, len(lines), 3)]


def test_tests_run_on_aioloop(pytester):
    result, seen = runs(pytester)
    result.assert_outcomes(passed=2)
    assert len(seen) == 1
    name, cls, engine = seen[0]
    assert name == "test_where"         # one loop: the id is unchanged
    assert cls == "aioloop._loop.Loop"
    result.stdout.fnmatch_lines(["aioloop: asyncio tests run on aioloop"])


@pytest.mark.parametrize("engine", ENGINES)
def test_engine_option(pytester, engine):
    result, seen = runs(pytester, f"--aioloop-engine={engine}")
    result.assert_outcomes(passed=2)
    assert seen == [("test_where", "aioloop._loop.Loop", engine)]


def test_engine_all_runs_each_engine(pytester):
    result, seen = runs(pytester, "--aioloop-engine=all")
    result.assert_outcomes(passed=1 + len(ENGINES))
    assert sorted(seen) == sorted(
        (f"test_where[aioloop-{e}]", "aioloop._loop.Loop", e) for e in ENGINES)


def test_also_asyncio_runs_each_test_twice(pytester):
    result, seen = runs(pytester, "--aioloop-also-asyncio")
    result.assert_outcomes(passed=3)
    assert sorted(seen) == [("test_where[aioloop]", "aioloop._loop.Loop", seen[0][2]),
                            ("test_where[asyncio]", "asyncio.unix_events._UnixSelectorEventLoop", "-")]
    result.stdout.fnmatch_lines(["*test_where?aioloop? PASSED*", "*test_where?asyncio? PASSED*"])


def test_ini_options(pytester):
    result, seen = runs(pytester, ini=INI + "aioloop_loops = aioloop asyncio\naioloop_engine = threads\n")
    result.assert_outcomes(passed=3)
    assert sorted(seen) == [("test_where[aioloop]", "aioloop._loop.Loop", "threads"),
                            ("test_where[asyncio]", "asyncio.unix_events._UnixSelectorEventLoop", "-")]


def test_marker_selects_a_loop(pytester):
    pytester.makeini(INI)
    pytester.makepyfile(test_marked="""
        import asyncio, pytest

        @pytest.mark.asyncio(loop_factories=["asyncio"])
        async def test_only_asyncio():
            assert type(asyncio.get_running_loop()).__module__.startswith("asyncio")
    """)
    result = pytester.runpytest_subprocess("-p", "aioloop.pytest_plugin", "--aioloop-also-asyncio")
    result.assert_outcomes(passed=1)


def test_a_conftest_hook_wins(pytester):
    pytester.makeini(INI)
    pytester.makeconftest("""
        import asyncio

        def pytest_asyncio_loop_factories(config, item):
            return {"mine": asyncio.SelectorEventLoop}
    """)
    pytester.makepyfile(test_mine="""
        import asyncio

        async def test_mine():
            assert type(asyncio.get_running_loop()).__module__.startswith("asyncio")
    """)
    result = pytester.runpytest_subprocess("-p", "aioloop.pytest_plugin")
    result.assert_outcomes(passed=1)


@pytest.mark.parametrize("args, ini, message", [
    (["--aioloop-engine=fast"], "", "*invalid choice*"),
    ([], "aioloop_engine = fast\n", "*aioloop_engine = 'fast': expected one of auto, uring, threads, all*"),
    ([], "aioloop_loops = uvloop\n", "*aioloop_loops = 'uvloop': expected one or both of aioloop, asyncio*"),
])
def test_bad_options_are_usage_errors(pytester, args, ini, message):
    pytester.makeini(INI + ini)
    pytester.makepyfile(test_x="async def test_x():\n    pass\n")
    result = pytester.runpytest_subprocess("-p", "aioloop.pytest_plugin", *args)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([message])


def test_help_lists_the_options(pytester):
    result = pytester.runpytest_subprocess("-p", "aioloop.pytest_plugin", "--help")
    result.stdout.fnmatch_lines(["aioloop: run asyncio tests on aioloop:",
                                 "*--aioloop-engine=*", "*--aioloop-also-asyncio*",
                                 "*aioloop_engine (string):*", "*aioloop_loops (args):*"])


def test_default_engine_is_auto(pytester):
    # what "auto" picks is what aioloop.new_event_loop() picks
    loop = aioloop.new_event_loop()
    expected = loop.engine
    loop.close()
    result, seen = runs(pytester)
    assert seen[0][2] == expected
