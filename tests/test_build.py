"""The build (setup.py), in a copy of the sources in a temporary directory:
it says in one line which engines it builds and why; a build after the
configuration changed (liburing appearing, here AIOLOOP_URING=0 dropped)
rebuilds the extension instead of keeping the stale one; and a wheel built
with ``pip wheel .`` links liburing statically where liburing.a exists, so
it runs on a machine without liburing.so.  Each build takes a few seconds."""
import os
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
CC = os.environ.get("CC", "cc")

pytestmark = pytest.mark.skipif(shutil.which(CC) is None, reason=f"no C compiler ({CC})")


def static_liburing():
    r = subprocess.run([CC, "-print-file-name=liburing.a"], capture_output=True, text=True)
    path = r.stdout.strip()
    return path if os.path.isabs(path) and os.path.exists(path) else None


def have_setuptools():
    r = subprocess.run([sys.executable, "-c", "import setuptools"], capture_output=True)
    return r.returncode == 0


@pytest.fixture
def src(tmp_path):
    """A copy of what a build needs, without built files."""
    dst = tmp_path / "src"
    dst.mkdir()
    for name in ("setup.py", "pyproject.toml", "README.md", "LICENSE"):
        shutil.copy(ROOT / name, dst / name)
    ignore = shutil.ignore_patterns("*.so", "*.o", "__pycache__", "build")
    shutil.copytree(ROOT / "_core", dst / "_core", ignore=ignore)
    shutil.copytree(ROOT / "aioloop", dst / "aioloop", ignore=ignore)
    return dst


def probe(path):
    """URING_COMPILED of the aioloop under path, from a fresh interpreter."""
    r = subprocess.run(
        [sys.executable, "-c", "import aioloop, aioloop._core as c; "
         "print(aioloop.__file__); print(c.URING_COMPILED)"],
        cwd=path, env=dict(os.environ, PYTHONPATH=str(path)),
        capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    where, compiled = r.stdout.split()
    assert Path(where).resolve().is_relative_to(Path(path).resolve())
    return int(compiled)


def needed(so):
    """The shared libraries an ELF file names as NEEDED."""
    r = subprocess.run(["readelf", "-d", str(so)], capture_output=True, text=True, check=True)
    return re.findall(r"\(NEEDED\)\s+Shared library: \[([^\]]+)\]", r.stdout)


def build_inplace(src, **env):
    r = subprocess.run([sys.executable, "setup.py", "-q", "build_ext", "--inplace"],
                       cwd=src, env=dict(os.environ, **env),
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr
    return [line for line in r.stdout.splitlines() if line.startswith("aioloop:")]


@pytest.mark.skipif(not have_setuptools(), reason="setuptools is not installed here")
def test_the_build_says_what_it_builds_and_rebuilds_when_that_changes(src):
    assert build_inplace(src, AIOLOOP_URING="0") == [
        "aioloop: building engine: threads only (AIOLOOP_URING=0)"]
    assert probe(src) == 0
    if static_liburing() is None and subprocess.run(
            [CC, "-x", "c", "-", "-o", os.devnull, "-luring"], input="#include <liburing.h>\n"
            "int main(void){return 0;}\n", text=True, capture_output=True).returncode != 0:
        pytest.skip("liburing is not installed (apt-get install liburing-dev): "
                    "only the threads engine can be built here")
    lines = build_inplace(src)
    assert len(lines) == 1 and lines[0].startswith("aioloop: building engines: uring, threads (")
    assert probe(src) == 1, "the rebuild kept the extension built without io_uring"


@pytest.mark.skipif(static_liburing() is None,
                    reason="no liburing.a (apt-get install liburing-dev) to link statically")
@pytest.mark.skipif(shutil.which("readelf") is None, reason="no readelf (binutils)")
def test_a_wheel_links_liburing_statically(src, tmp_path):
    wheels = tmp_path / "wheels"
    cmd = [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(wheels), str(src)]
    r = subprocess.run([sys.executable, "-c", "import setuptools.command.bdist_wheel"],
                       capture_output=True)
    if r.returncode == 0:
        cmd.insert(4, "--no-build-isolation")     # no download when the tools are here
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=300,
                       env=dict(os.environ, PIP_DISABLE_PIP_VERSION_CHECK="1"))
    assert r.returncode == 0, r.stdout + r.stderr
    [wheel] = wheels.glob("aioloop-*.whl")
    unpacked = tmp_path / "unpacked"
    with zipfile.ZipFile(wheel) as z:
        z.extractall(unpacked)
    [so] = (unpacked / "aioloop").glob("_core*.so")
    libs = needed(so)
    assert libs and not [lib for lib in libs if "liburing" in lib], libs
    assert probe(unpacked) == 1


def tracked_files():
    r = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, text=True)
    return [n for n in r.stdout.split("\0") if n and (ROOT / n).is_file()] \
        if r.returncode == 0 else None


@pytest.mark.skipif(not have_setuptools(), reason="setuptools is not installed here")
@pytest.mark.skipif(shutil.which("git") is None or tracked_files() is None,
                    reason="not a git checkout: which files belong is unknown")
def test_the_sdist_holds_what_the_build_and_the_tests_need(tmp_path):
    """Built from a copy of the tracked files (a stale egg-info manifest in
    the checkout would otherwise decide what goes in)."""
    import tarfile
    src = tmp_path / "src"
    files = tracked_files()
    for name in files:
        (src / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / name, src / name)
    r = subprocess.run([sys.executable, "setup.py", "-q", "sdist", "-d", str(tmp_path)],
                       cwd=src, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr
    [sdist] = tmp_path.glob("aioloop-*.tar.gz")
    with tarfile.open(sdist) as t:
        names = {n.split("/", 1)[1] for n in t.getnames() if "/" in n}
    want = {n for n in files
            if n.split("/", 1)[0] in ("_core", "aioloop", "tests", "bench", "examples", ".ci")}
    want |= {"LICENSE", "README.md", "pyproject.toml", "setup.py", "Makefile"}
    assert not want - names, sorted(want - names)
    assert not [n for n in names if n.endswith((".so", ".o")) or "@test_" in n]
