"""A short load test: wrk, 100 connections for 5 s, against
``python -m aioloop serve --workers 2``; every request must be answered
(no socket errors, no error statuses).  Timings are printed, not asserted
(the machine is shared)."""
import re
import shutil
import signal
import subprocess

import pytest

import cli_helpers as h

pytest.importorskip("aiohttp", reason="aiohttp is not installed (it is in the test extra)")
pytestmark = pytest.mark.skipif(shutil.which("wrk") is None,
                                reason="wrk is not installed (Debian package wrk)")


def parse_wrk(out):
    """requests, socket errors (by kind) and non-2xx/3xx responses from wrk's report."""
    m = re.search(r"^\s*(\d+) requests in ", out, re.M)
    assert m, out
    result = {"requests": int(m.group(1)), "non_2xx_3xx": 0,
              "socket_errors": {"connect": 0, "read": 0, "write": 0, "timeout": 0}}
    m = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    if m:
        result["socket_errors"] = dict(zip(("connect", "read", "write", "timeout"),
                                           map(int, m.groups())))
    m = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    if m:
        result["non_2xx_3xx"] = int(m.group(1))
    m = re.search(r"Requests/sec:\s+([\d.]+)", out)
    result["rps"] = float(m.group(1)) if m else None
    return result


def test_parse_wrk():
    out = ("Running 5s test @ http://127.0.0.1:1/\n  2 threads and 100 connections\n"
           "  1234 requests in 5.00s, 1.00MB read\n"
           "  Socket errors: connect 0, read 3, write 0, timeout 2\n"
           "  Non-2xx or 3xx responses: 7\nRequests/sec:    246.80\n")
    assert parse_wrk(out) == {"requests": 1234, "non_2xx_3xx": 7, "rps": 246.8,
                              "socket_errors": {"connect": 0, "read": 3, "write": 0,
                                                "timeout": 2}}


def test_wrk_two_workers(tmp_path):
    h.write_app(tmp_path)
    p, url = h.serve(tmp_path, "--port", "0", "--workers", "2", "--no-access-log", "cliapp:app")
    try:
        r = subprocess.run(["wrk", "-t2", "-c100", "-d5s", "--latency", url + "/"],
                           capture_output=True, text=True, timeout=60)
        print(r.stdout)
        assert r.returncode == 0, r.stdout + r.stderr
        result = parse_wrk(r.stdout)
        assert result["requests"] > 0
        assert result["socket_errors"] == {"connect": 0, "read": 0, "write": 0, "timeout": 0}, r.stdout
        assert result["non_2xx_3xx"] == 0, r.stdout
        p.signal(signal.SIGTERM)
        assert p.wait() == 0, p.stderr()
        assert "Traceback" not in p.stderr(), p.stderr()
    finally:
        p.stop()
