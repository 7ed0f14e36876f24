"""The stress suite: each test drives one failure mode hard and prints its
figures (connections lost, descriptors left, RSS growth, ...) in a table at
the end of the run.

Scale: ``AIOLOOP_STRESS=full`` (``make stress``) runs the sizes named in
docs/stress.md; the default is a few-minute subset that CI runs on both
engines.  ``AIOLOOP_STRESS_LOOPS`` (comma-separated, e.g.
``uring,threads,asyncio,uvloop``) picks the loops; by default the aioloop
engines built here, plus asyncio's and uvloop's loops in the full run so the
figures stand next to theirs."""
import os

import pytest

FULL = os.environ.get("AIOLOOP_STRESS", "") == "full"

_rows = []


def scale(small, full):
    """The size of a workload: `full` under AIOLOOP_STRESS=full, else `small`."""
    return full if FULL else small


@pytest.fixture
def stress_report(request):
    """stress_report(**figures): records this test's figures for the summary."""
    def report(**figures):
        _rows.append((request.node.name, figures))
        print(request.node.name, " ".join(f"{k}={v}" for k, v in figures.items()))
    return report


def pytest_terminal_summary(terminalreporter):
    if not _rows:
        return
    terminalreporter.section("stress figures")
    for name, figures in _rows:
        terminalreporter.write_line(
            f"{name}: " + ", ".join(f"{k}={v}" for k, v in figures.items()))


PEER_LOOPS = {"asyncio", "uvloop"}


def pytest_collection_modifyitems(items):
    """asyncio's and uvloop's runs are there for comparison: their figures are
    reported, and a check they fail (uvloop leaves descriptors open on close,
    asyncio floods EMFILE reports) is marked, not a failure of the suite."""
    for item in items:
        params = getattr(getattr(item, "callspec", None), "params", {})
        if params.get("loop_name") in PEER_LOOPS:
            item.add_marker(pytest.mark.xfail(
                strict=False, reason="comparison loop: figure reported, not required"))
