"""Builds the engine's C unit tests (pure C, no Python) and runs each test
in its own process: plain, under ThreadSanitizer, and under
AddressSanitizer+UBSan (the same programs `make sanitize` runs); every
engine test runs against each backend built."""
import os
import shutil
import subprocess

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TESTDIR = os.path.join(ROOT, "_core", "tests")
VARIANTS = {"plain": ("", "test_engine"), "tsan": ("thread", "test_engine_tsan"),
            "asan": ("address", "test_engine_asan")}
from aioloop import _core

# Engine tests run once per backend this build has (NAME@threads, NAME@uring).
BACKENDS = ["threads", "uring"] if _core.URING_COMPILED else ["threads"]
TESTS = ["mpsc_stress", "wakeup_coalescing", "pool_stress", "pool_trim"] + [
    f"{name}@{b}" for name in ("engine_nop", "engine_resolve", "engine_shutdown_inflight",
                               "engine_stream_echo", "engine_stream_faults",
                               "engine_submit_fails") for b in BACKENDS] + [
    "engine_thread_bound"]


@pytest.fixture(scope="session")
def engine_binaries(tmp_path_factory):
    if shutil.which("make") is None or shutil.which(os.environ.get("CC", "cc")) is None:
        pytest.fail("a C compiler and make are needed to build the engine tests")
    out = tmp_path_factory.mktemp("engine")
    built = {}
    for name, (san, binary) in VARIANTS.items():
        subprocess.run(["make", "-s", "-C", TESTDIR, f"OUT={out}", f"SANITIZE={san}"],
                       check=True)
        built[name] = os.path.join(out, binary)
    return built


def test_engine_test_list_is_complete(engine_binaries):
    listed = subprocess.run([engine_binaries["plain"], "list"], capture_output=True,
                            text=True, check=True).stdout.split()
    assert listed == TESTS


@pytest.mark.parametrize("variant", sorted(VARIANTS))
@pytest.mark.parametrize("name", TESTS)
def test_engine(engine_binaries, variant, name):
    env = dict(os.environ)
    # Leak checks on: a request or buffer not freed at shutdown fails the run.
    env["ASAN_OPTIONS"] = "detect_leaks=1:abort_on_error=0"
    env["TSAN_OPTIONS"] = "halt_on_error=1:second_deadlock_stack=1"
    p = subprocess.run([engine_binaries[variant], name], capture_output=True, text=True,
                       timeout=600, env=env)
    if p.returncode == 77:
        pytest.skip(p.stderr.strip())
    assert p.returncode == 0, p.stdout + p.stderr
    assert "WARNING: ThreadSanitizer" not in p.stderr
    assert "ERROR: AddressSanitizer" not in p.stderr
