"""CPython's own asyncio test mixins against aioloop (tests/conformance).

Each test runs in its own process; every test that does not pass must be
named in tests/conformance/expectations.txt with its reason."""
import os
import subprocess
import sys

import pytest

from conftest import ENGINES

HERE = os.path.dirname(os.path.abspath(__file__))


@pytest.mark.parametrize("engine", ENGINES)
def test_cpython_asyncio_conformance(engine):
    """The same expectations hold for every engine: both pass the same set."""
    p = subprocess.run(
        [sys.executable, os.path.join(HERE, "conformance", "run.py"), "--timeout", "60", "-v"],
        capture_output=True, text=True, timeout=3000,
        env=dict(os.environ, AIOLOOP_ENGINE=engine),
    )
    print(p.stdout[-20000:])
    assert p.returncode == 0, p.stdout[-20000:] + p.stderr[-5000:]
    assert "conformance:" in p.stdout
