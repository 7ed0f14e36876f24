"""The private asyncio names aioloop borrows (aioloop/_borrowed.py): each
exists on the running Python, the sources use no other, and the policy base
class is found under 3.14's name or not at all without breaking the import."""
import asyncio
import os
import re
import subprocess
import sys

import pytest

import aioloop
from aioloop import _borrowed

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_every_borrowed_name_exists_here():
    assert _borrowed.missing() == [], f"missing on Python {sys.version.split()[0]}"


def test_loop_takes_the_loop_rows_as_they_are():
    for where, name, use in _borrowed.TABLE:
        if use == "loop":
            assert getattr(aioloop.Loop, name) is _borrowed.lookup(where, name), name


def test_inherited_rows_are_what_loop_inherits():
    for where, name, use in _borrowed.TABLE:
        if use == "inherited":
            assert getattr(aioloop.Loop, name) is getattr(asyncio.BaseEventLoop, name), name


def test_a_name_outside_the_table_is_refused():
    with pytest.raises(LookupError):
        _borrowed.lookup("base_events", "_run_until_complete_cb")


_MODULES = ("base_events|constants|coroutines|events|format_helpers|futures|selector_events|"
            "sslproto|transports|trsock|unix_events")
# module._name, and Class.name for the loop classes aioloop reads methods of.
_MODULE_PRIVATE = re.compile(rf"\b({_MODULES})\.(_\w+|TransportSocket|SSLProtocol|extract_stack)\b")
_CLASS_ATTR = re.compile(r"\b(selector_events\.BaseSelectorEventLoop|unix_events\._UnixSelectorEventLoop)"
                         r"\.(\w+)")


def test_sources_borrow_nothing_outside_the_table():
    """Every private asyncio name aioloop's Python sources read is a row."""
    rows = set()
    for where, names, _ in _borrowed.TABLE:
        for n in (names if isinstance(names, tuple) else (names,)):
            rows.add(f"{where}.{n}")
    used = set()
    pkg = os.path.join(ROOT, "aioloop")
    for fn in sorted(os.listdir(pkg)):
        if not fn.endswith(".py") or fn == "_borrowed.py":
            continue
        with open(os.path.join(pkg, fn)) as f:
            src = f.read()
        for m in _CLASS_ATTR.finditer(src):
            used.add(f"{m.group(1)}.{m.group(2)}")
        for m in _MODULE_PRIVATE.finditer(_CLASS_ATTR.sub("", src)):
            if m.group(2) not in ("_UnixSelectorEventLoop",):
                used.add(f"{m.group(1)}.{m.group(2)}")
    assert used, "the scan found nothing: the pattern is stale"
    assert sorted(used - rows) == []


def _import_with(setup):
    code = ("import asyncio.events as e, warnings, sys\n" + setup +
            "\nimport aioloop\n"
            "base = getattr(aioloop, 'EventLoopPolicy', None)\n"
            "print(None if base is None else base.__mro__[1].__name__)\n")
    p = subprocess.run([sys.executable, "-W", "error::DeprecationWarning", "-c", code],
                       capture_output=True, text=True, timeout=60,
                       env=dict(os.environ, PYTHONPATH=ROOT))
    assert p.returncode == 0, p.stderr
    return p.stdout.strip()


@pytest.mark.skipif(sys.version_info >= (3, 14), reason="simulates 3.14 on an older Python")
def test_policy_base_under_its_3_14_name_without_the_deprecated_alias():
    """3.14 names the class _BaseDefaultEventLoopPolicy and serves the old
    name, if at all, through a module __getattr__ with a warning: aioloop
    takes the new name and never asks for the old one."""
    setup = ("e._BaseDefaultEventLoopPolicy = e.BaseDefaultEventLoopPolicy\n"
             "del e.BaseDefaultEventLoopPolicy\n"
             "def __getattr__(name):\n"
             "    if name == 'BaseDefaultEventLoopPolicy':\n"
             "        warnings.warn('deprecated', DeprecationWarning)\n"
             "        return e._BaseDefaultEventLoopPolicy\n"
             "    raise AttributeError(name)\n"
             "e.__getattr__ = __getattr__\n")
    assert _import_with(setup) == "BaseDefaultEventLoopPolicy"   # the class, by its own name


def test_import_without_any_policy_base():
    """Neither name (a Python that removed policies): the import works, and
    there is no EventLoopPolicy/install() to offer."""
    setup = ("for n in ('BaseDefaultEventLoopPolicy', '_BaseDefaultEventLoopPolicy'):\n"
             "    e.__dict__.pop(n, None)\n")
    assert _import_with(setup) == "None"
