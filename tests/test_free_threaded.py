"""A free-threaded (no-GIL) Python is refused with one clear message, at
install (setup.py) and at import, instead of a build that would re-enable
the GIL or misbehave.  No free-threaded interpreter is available here, so
each check runs in a subprocess whose sysconfig says Py_GIL_DISABLED=1."""
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

PATCH = ("import sysconfig, sys; _get = sysconfig.get_config_var; "
         "sysconfig.get_config_var = lambda n: 1 if n == 'Py_GIL_DISABLED' else _get(n); ")


def run(code, cwd):
    return subprocess.run([sys.executable, "-c", PATCH + code], cwd=cwd,
                          env=dict(os.environ, PYTHONPATH=str(ROOT)),
                          capture_output=True, text=True, timeout=60)


def test_import_on_a_free_threaded_python_says_why_in_one_message(tmp_path):
    r = run("import aioloop", tmp_path)
    assert r.returncode == 1
    last = r.stderr.strip().splitlines()[-1]
    assert last.startswith("ImportError: aioloop needs a CPython build with the GIL"), r.stderr
    assert "free-threaded" in last
    # Refused before the C extension was loaded.
    r = run("import sys\ntry:\n    import aioloop\nexcept ImportError:\n    pass\n"
            "print('aioloop._core' in sys.modules)", tmp_path)
    assert r.stdout.strip() == "False", r.stderr


def test_setup_py_refuses_to_build_for_a_free_threaded_python(tmp_path):
    r = run("import runpy; sys.argv = ['setup.py', '--version']; "
            f"runpy.run_path({str(ROOT / 'setup.py')!r})", ROOT)
    assert r.returncode == 1
    assert "aioloop: cannot build for a free-threaded Python" in r.stderr, r.stderr
    assert "Traceback" not in r.stderr
