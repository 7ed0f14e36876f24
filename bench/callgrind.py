"""Instruction counts of the loop-overhead workloads under callgrind.

Wall-clock time on a shared 2-core VM drifts by tens of percent; the number
of instructions a workload executes does not.  Each workload runs under
``valgrind --tool=callgrind`` twice, with N and 3N operations; the
difference divided by 2N is the instructions per operation, free of
interpreter start-up and import costs.

    python -m bench.callgrind [LOOP ...]
"""
import os
import re
import shutil
import subprocess
import sys

from bench.overhead import WORKLOADS

N = 2000
_COLLECTED = re.compile(r"Collected\s*:\s*(\d+)")


def count(loop, wname, n):
    env = dict(os.environ, PYTHONHASHSEED="0", AIOLOOP_THREADS="1")
    out = subprocess.run(["valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null",
                          sys.executable, "-m", "bench.overhead", loop, wname, str(n)],
                         capture_output=True, text=True, env=env, timeout=600)
    m = _COLLECTED.search(out.stderr)
    if out.returncode or not m:
        raise RuntimeError(f"callgrind failed for {loop}/{wname}: {out.stderr[-500:]}")
    return int(m.group(1))


def run(loops, progress=print):
    if not shutil.which("valgrind"):
        progress("  callgrind: skipped, valgrind is not installed (Debian: `apt-get install valgrind`)")
        return {"skipped": "valgrind is not installed"}
    res = {"n": N, "workloads": {}}
    for wname in WORKLOADS:
        row = {}
        for loop in loops:
            a, b = count(loop, wname, N), count(loop, wname, 3 * N)
            row[loop] = (b - a) / (2 * N)
        res["workloads"][wname] = row
        progress(f"  callgrind {wname:<22} " + "  ".join(f"{lp} {v:,.0f} instr/op" for lp, v in row.items()))
    return res


if __name__ == "__main__":
    run(sys.argv[1:] or ["uvloop", "aioloop-threads"])
