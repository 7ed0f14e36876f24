"""Runs CPython's asyncio conformance tests (suites.py) against aioloop.

Every test runs in its own process with a timeout, so a hang or a crash
costs one test.  A test outside the expectations that fails under the
parallel load is run once more alone; passing then, it is reported as FLAKY.  Results are compared with expectations.txt, which names
every test not expected to pass yet and why.  Exit status: 0 when every test
outside the expectations passed; 1 otherwise.

    python tests/conformance/run.py [-j N] [--timeout S] [-k SUBSTRING] [--json FILE]
"""
import argparse
import concurrent.futures
import json
import os
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
HANG_TIMEOUT = 15


def load_expectations(path):
    """Lines: `TestClass.test_name  fail|hang|crash|skip  reason`."""
    expected = {}
    with open(path) as f:
        for line in f:
            line = line.split("#", 1)[0].strip() if line.lstrip().startswith("#") else line.strip()
            if not line:
                continue
            parts = line.split(None, 2)
            if len(parts) < 3:
                raise SystemExit(f"expectations.txt: a reason is required: {line!r}")
            expected[parts[0]] = (parts[1], parts[2])
    return expected


def list_tests(env):
    out = subprocess.run([sys.executable, os.path.join(HERE, "suites.py"), "--list"],
                         env=env, capture_output=True, text=True, check=True)
    return out.stdout.split()


def run_one(test_id, timeout, env):
    t0 = time.monotonic()
    try:
        p = subprocess.run([sys.executable, "-m", "unittest", "-q", f"suites.{test_id}"],
                           cwd=HERE, env=env, capture_output=True, text=True,
                           timeout=timeout)
    except subprocess.TimeoutExpired as e:
        out = (e.stdout or b"")
        out = out.decode(errors="replace") if isinstance(out, bytes) else out
        return test_id, "hang", time.monotonic() - t0, out[-2000:]
    out = p.stdout + p.stderr
    if p.returncode < 0:
        status = "crash"
    elif p.returncode == 0:
        status = "skip" if "OK (skipped=" in out else "pass"
    else:
        status = "fail"
    return test_id, status, time.monotonic() - t0, out[-3000:]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("-j", type=int, default=os.cpu_count() or 2)
    ap.add_argument("--timeout", type=float, default=60)
    ap.add_argument("-k", default="")
    ap.add_argument("--json")
    ap.add_argument("--expectations", default=os.path.join(HERE, "expectations.txt"))
    ap.add_argument("-v", action="store_true", help="print output of unexpected results")
    args = ap.parse_args()

    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [ROOT, env.get("PYTHONPATH")]))
    expected = load_expectations(args.expectations)
    tests = [t for t in list_tests(env) if args.k in t]
    results = {}
    with concurrent.futures.ThreadPoolExecutor(args.j) as ex:
        # A test expected to hang gets a short timeout: it would otherwise
        # cost the whole timeout on every run (a fix still shows, as a pass).
        futs = [ex.submit(run_one, t, min(args.timeout, HANG_TIMEOUT)
                          if expected.get(t, ("",))[0] == "hang" else args.timeout, env)
                for t in tests]
        for fut in concurrent.futures.as_completed(futs):
            tid, status, dt, out = fut.result()
            results[tid] = (status, dt, out)

    # A test outside the expectations that failed under the parallel load is
    # run once more on its own (as CPython's regrtest -w does).  If it passes
    # then, it counts as a pass and is named as flaky in the output; a crash
    # is never retried.
    flaky = []
    for tid in tests:
        status, dt, out = results[tid]
        if status in ("fail", "hang") and tid not in expected:
            _, status2, dt2, out2 = run_one(tid, args.timeout, env)
            if status2 == "pass":
                flaky.append((tid, status, out))
                results[tid] = (status2, dt2, out2)

    counts = {}
    unexpected, fixed = [], []
    for tid in tests:
        status, dt, out = results[tid]
        counts[status] = counts.get(status, 0) + 1
        exp = expected.get(tid)
        if status in ("pass", "skip"):
            if exp and exp[0] != "skip":
                fixed.append(tid)
        elif not exp:
            unexpected.append((tid, status, out))
    stale = sorted(set(expected) - set(tests))

    for tid, status, out in unexpected:
        print(f"UNEXPECTED {status.upper()}: {tid}")
        if args.v:
            print(out)
    for tid in fixed:
        print(f"now passes (remove from expectations): {tid}")
    for tid, status, out in flaky:
        print(f"FLAKY: {tid} ({status} under parallel load, passed when run alone)")
        if args.v:
            print(out)
    summary = ", ".join(f"{counts.get(k, 0)} {k}" for k in ("pass", "fail", "hang", "crash", "skip"))
    print(f"conformance: {len(tests)} tests on Python {sys.version.split()[0]}: {summary}; "
          f"{len(unexpected)} unexpected")
    if stale and not args.k:
        print(f"expectations name {len(stale)} tests that do not exist here "
              f"(other Python versions): ok")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"python": sys.version, "counts": counts,
                       "results": {t: r[0] for t, r in results.items()},
                       "unexpected": [u[0] for u in unexpected],
                       "flaky": [f[0] for f in flaky]}, f, indent=1)
    return 1 if unexpected else 0


if __name__ == "__main__":
    sys.exit(main())
