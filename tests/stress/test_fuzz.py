"""Seeded fuzz of the public API, compared call by call with asyncio's loop.

Thousands of bad calls -- wrong types, None, huge and negative ints,
NaN/inf, non-callables, a closed loop, closed and aborted transports,
wrong argument counts, keyword junk -- on the loop (call_soon & co., the
readiness API, run_in_executor, create_task, the exception handler, debug
mode, sock_*, getaddrinfo/getnameinfo, create_connection/create_server,
sendfile) and on a stream transport (write, writelines, buffer limits,
get_extra_info, pause/resume, close/abort twice, writes after close).
fuzz_api.py makes the calls on one loop in a child process (a crash fails
the test instead of pytest); the same seed gives every loop the same calls.

For each call the outcome -- "ok", "pending", or the exception's type --
must be asyncio.SelectorEventLoop's, and a transport must be closing after
the call exactly when asyncio's is.  The only differences allowed are the
deliberate ones of docs/compatibility.md ("Bad input: deliberate
differences from asyncio"), named by their id in ALLOWED below.  A
SystemError anywhere (a call's outcome, the exception handler, an
unraisable exception) counts as a crash: it means C code misused the API.

AIOLOOP_FUZZ_SEED picks the seed (the default is fixed, so a run is
reproducible); the number of calls follows the stress scale.
"""
import collections
import functools
import json
import os
import subprocess
import sys
import tempfile

import pytest

import aioloop
from conftest import ENGINES

from . import fuzz_api
from .conftest import scale

SEED = int(os.environ.get("AIOLOOP_FUZZ_SEED", "20261130"))
CALLS = scale(2000, 20000)
CHILD_TIMEOUT = scale(180, 1200)   # a hang (a call that never returns) is a crash
PY312 = sys.version_info >= (3, 12)
CALLBACK_METHODS = {"call_soon": ["callback"], "call_soon_threadsafe": ["callback"],
                    "call_later": ["delay", "callback"], "call_at": ["when", "callback"]}


def bound(spec, name):
    """The atom a call passes for parameter `name` (None if it does not)."""
    names = CALLBACK_METHODS.get(spec["method"]) or [
        p.name for p in (fuzz_api.TRANSPORT.get(spec["method"]) or ([],))[0]]
    for n, atom in zip(names, spec["args"]):
        if n == name:
            return atom
    return spec["kwargs"].get(name)


# ---- the allow-list: docs/compatibility.md, "Bad input: deliberate differences" --

def b1_bad_callback(ep, spec, ref, got):
    """B1: aioloop refuses a non-callable or coroutine callback at the call
    (TypeError) in every mode; asyncio only in debug mode."""
    return (spec["method"] in CALLBACK_METHODS and not ep["debug"] and ref[0] == "ok"
            and got[0] == "TypeError" and bound(spec, "callback") in fuzz_api.BAD_CALLBACKS)


def b4_strided_write_311(ep, spec, ref, got):
    """B4 (3.11): write() of a non-contiguous memoryview with data buffered:
    asyncio TypeError, aioloop a fatal error (closing)."""
    return (not PY312 and spec["method"] == "write" and bound(spec, "data") == "mv_nc"
            and ref[0] == "TypeError" and got[0] == "ok")


def b5_writelines_after_lost(ep, spec, ref, got):
    """B5 (3.12+): writelines() after the connection was lost: asyncio
    raises TypeError or AttributeError (its write handler and loop were
    cleared) or keeps the data, and with data kept a later
    set_write_buffer_limits() fails (AttributeError: no protocol, no loop
    to report to); aioloop ignores the data as write() does."""
    return (PY312 and spec["method"] in ("writelines", "set_write_buffer_limits") and ref[2]
            and ref[0] in ("TypeError", "AttributeError") and got[0] == "ok")


def b6_wide_items(ep, spec, ref, got):
    """B6 (3.12+): writelines() with items of item size > 1: asyncio sends
    them and then fails (IndexError, closing); aioloop does not fail."""
    return (PY312 and spec["method"] == "writelines"
            and bound(spec, "list_of_data") in fuzz_api.WIDE_LINES and ref[1] and not got[1])


ALLOWED = {"B1": b1_bad_callback, "B4": b4_strided_write_311, "B5": b5_writelines_after_lost,
           "B6": b6_wide_items}
# Allowed differences after which the transports of the two loops are in
# different states: the rest of the episode's transport calls are not compared.
DIVERGING = {"B4", "B6"}


# ---- running the children -----------------------------------------------------------

def run_child(kind, seed, calls):
    """Makes the calls on one loop; returns (records, crash report or None)."""
    root = os.path.dirname(os.path.dirname(aioloop.__file__))
    fd, path = tempfile.mkstemp(prefix=f"aioloop-fuzz-{kind}-", suffix=".jsonl")
    os.close(fd)
    try:
        try:
            p = subprocess.run(
                [sys.executable, fuzz_api.__file__, kind, str(seed), str(calls), path],
                capture_output=True, text=True, timeout=CHILD_TIMEOUT,
                env=dict(os.environ, PYTHONPATH=root, PYTHONFAULTHANDLER="1"))
            rc, err = p.returncode, p.stderr
        except subprocess.TimeoutExpired as e:
            rc, err = "timeout", (e.stderr or b"").decode(errors="replace")
        with open(path) as f:
            lines = [json.loads(line) for line in f if line.strip()]
    finally:
        os.unlink(path)
    records = {r[0]: r[1:] for r in lines if r[0] != "done"}
    done = [r for r in lines if r[0] == "done"]
    crash = None
    if rc != 0 or not done:
        crash = (f"{kind}: exit {rc} after {len(records)} of {calls} calls "
                 f"(the next call is #{len(records)})\n{err[-4000:]}")
    elif done[0][1]:
        crash = f"{kind}: {done[0][1]} SystemError(s) (outcome, exception handler or unraisable)"
    return records, crash


@functools.lru_cache(maxsize=None)
def asyncio_reference(seed, calls):
    return run_child("asyncio", seed, calls)


def compare(episodes, ref, got):
    """Returns (mismatches, allowed Counter, number of calls not compared)."""
    mismatches, allowed, skipped = [], collections.Counter(), 0
    i = 0
    for ep in episodes:
        diverged = False
        for spec in ep["calls"]:
            r, g = ref[i], got[i]
            i += 1
            if diverged and (spec["target"] == "tr" or spec["method"] in fuzz_api.TRANSPORT_CORO):
                skipped += 1
                continue
            if r[0] == g[0] and r[1] == g[1]:
                continue
            rule = next((name for name, ok in ALLOWED.items() if ok(ep, spec, r, g)), None)
            if rule is not None:
                allowed[rule] += 1
                diverged = diverged or rule in DIVERGING
                continue
            where = f"{ep['kind']}, transport {ep['state']}" + (", debug" if ep["debug"] else "")
            mismatches.append(
                f"#{i - 1} [{where}] {fuzz_api.describe(spec)}: asyncio {r[0]} "
                f"(closing {r[1]}), aioloop {g[0]} (closing {g[1]})")
            diverged = diverged or r[1] != g[1]
    return mismatches, allowed, skipped


@pytest.mark.parametrize("engine", ENGINES)
def test_public_api_fuzz_matches_asyncio(engine, stress_report):
    episodes = fuzz_api.generate(SEED, CALLS)
    ref, ref_crash = asyncio_reference(SEED, CALLS)
    assert ref_crash is None, "the harness failed on asyncio's own loop: " + ref_crash
    broken = sorted({r[0] for r in ref.values() if r[0].startswith("harness:")})
    assert not broken, f"the harness could not make some atoms: {broken}"
    got, crash = run_child(engine, SEED, CALLS)
    crashes = int(crash is not None)
    mismatches, allowed, skipped = compare(episodes, ref, got) if not crash else ([], {}, 0)
    stress_report(calls=CALLS, crashes=crashes, mismatches=len(mismatches),
                  allowed=sum(allowed.values()), skipped=skipped,
                  **{f"allowed_{k}": v for k, v in sorted(allowed.items())})
    assert crash is None, crash
    assert not mismatches, (f"{len(mismatches)} calls differ from asyncio (seed {SEED}):\n"
                            + "\n".join(mismatches[:40]))
