"""aioloop: a fast asyncio event loop in C with background completion threads.

Use it with ``asyncio.run(main(), loop_factory=aioloop.new_event_loop)``,
``aioloop.run(main())``, or (Python <= 3.15) ``aioloop.install()``.
"""
import asyncio as _asyncio
import sys as _sys
import sysconfig as _sysconfig
import warnings as _warnings


def _free_threaded():
    """Whether this interpreter is a free-threaded (no-GIL) build."""
    return bool(_sysconfig.get_config_var("Py_GIL_DISABLED"))


if _free_threaded():
    # Checked before _core is imported: its loop relies on the GIL (see
    # docs/architecture.md, "Free-threaded Python"), and a free-threaded
    # interpreter would otherwise import it and silently turn the GIL on, or
    # fail with a bare "undefined symbol".
    raise ImportError(
        "aioloop needs a CPython build with the GIL; this interpreter is a "
        f"free-threaded build (Python {_sys.version.split()[0]}, "
        "Py_GIL_DISABLED=1). Run aioloop on the regular build of the same "
        "Python (python3.X rather than python3.Xt); docs/architecture.md says "
        "what a free-threaded port needs.")

from ._loop import Loop
from ._core import Handle, TimerHandle
from . import _borrowed

__version__ = "0.1.0"
__all__ = ("Loop", "Handle", "TimerHandle", "new_event_loop", "run")


def new_event_loop(**kwargs):
    """Return a new aioloop event loop (keyword arguments go to ``Loop``)."""
    return Loop(**kwargs)


def run(main, *, loop_factory=None, debug=None, **loop_kwargs):
    """Run a coroutine on a new aioloop loop, as ``asyncio.run`` does.

    ``loop_kwargs`` (for example ``threads=4``) are passed to ``Loop``.
    """
    if loop_factory is None:
        def loop_factory():
            return new_event_loop(**loop_kwargs)
    elif loop_kwargs:
        raise TypeError("loop keyword arguments cannot be combined with loop_factory")
    with _asyncio.Runner(loop_factory=loop_factory, debug=debug) as runner:
        return runner.run(main)


# The policy base class: _BaseDefaultEventLoopPolicy from 3.14 on (the old
# public name is deprecated there), BaseDefaultEventLoopPolicy before.  Where
# neither exists, or policies are gone (3.16), there is no policy to offer,
# and importing aioloop still works.
_BasePolicy = (_borrowed.lookup("events", "_BaseDefaultEventLoopPolicy")
               if _sys.version_info < (3, 16) else None)

if _BasePolicy is not None:
    class EventLoopPolicy(_BasePolicy):
        """Event loop policy whose loops are aioloop loops.

        Policies are deprecated since Python 3.14; prefer ``aioloop.run()`` or
        ``asyncio.run(..., loop_factory=aioloop.new_event_loop)``.
        """

        def _loop_factory(self):
            return new_event_loop()

        def __repr__(self):
            return f"<{type(self).__module__}.{type(self).__qualname__}>"

    def install():
        """Make aioloop the loop of ``asyncio.new_event_loop()`` via a policy.

        Deprecated (as uvloop.install is) from Python 3.12 on in favour of
        ``aioloop.run()``.
        """
        if _sys.version_info >= (3, 12):
            _warnings.warn(
                "aioloop.install() is deprecated in favor of aioloop.run() "
                "starting with Python 3.12.",
                DeprecationWarning,
                stacklevel=2,
            )
        _asyncio.set_event_loop_policy(EventLoopPolicy())

    __all__ += ("EventLoopPolicy", "install")
