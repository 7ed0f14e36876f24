"""A gunicorn worker that serves aiohttp applications on aioloop.

    gunicorn mypackage.app:app --worker-class aioloop.worker.GunicornWebWorker

The counterpart of aiohttp's ``aiohttp.worker.GunicornUVLoopWebWorker``: the
worker process creates an aioloop loop and sets it as the current loop
(which works on every Python, with or without event loop policies), and,
where policies still exist, installs aioloop's so that loops the application
itself creates with ``asyncio.new_event_loop()`` are aioloop loops as well.
The engine comes from ``AIOLOOP_ENGINE`` (``auto`` when unset); set it with
gunicorn's ``--env AIOLOOP_ENGINE=threads`` for example.
"""
import asyncio
import warnings

try:
    from aiohttp.worker import GunicornWebWorker as _AiohttpWorker
    from gunicorn.workers import base as _base
except ImportError as exc:   # pragma: no cover - depends on what is installed
    raise ImportError(
        f"aioloop.worker needs gunicorn and aiohttp ({exc}); "
        "install them with: pip install gunicorn aiohttp") from exc

import aioloop
from ._cli import use_aioloop

__all__ = ("GunicornWebWorker", "GunicornAioloopWebWorker")


class GunicornWebWorker(_AiohttpWorker):
    """aiohttp's gunicorn worker, running on an aioloop loop."""

    def init_process(self):
        # A loop the arbiter left set in this forked process (an app preloaded
        # with --preload may make one) is closed first, as aiohttp's workers
        # do -- without asking get_event_loop(), which would make one.
        if hasattr(aioloop, "EventLoopPolicy"):
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", DeprecationWarning)
                policy = asyncio.get_event_loop_policy()
            old = getattr(getattr(policy, "_local", None), "_loop", None)
            if old is not None and not old.is_closed() and not old.is_running():
                old.close()
        self.loop = use_aioloop()()
        asyncio.set_event_loop(self.loop)
        # aiohttp's init_process would make its own loop: skip to gunicorn's.
        _base.Worker.init_process(self)


# The name aiohttp would give it.
GunicornAioloopWebWorker = GunicornWebWorker
