"""Rarely-hot helpers the C core calls: reprs, debug-mode tracebacks and
messages, written once in Python so they match asyncio's exactly."""
import inspect
import sys
from asyncio import base_events, coroutines, format_helpers
from asyncio.log import logger

from . import _borrowed

# 3.13 gave _format_callback_source a keyword-only `debug`: a callback's
# arguments are shown in debug mode only (they may hold secrets).  Earlier
# versions always show them and take no such argument.
_FORMAT_TAKES_DEBUG = "debug" in inspect.signature(
    format_helpers._format_callback_source).parameters
# 3.14 deprecates the public iscoroutinefunction; asyncio calls the private one.
_iscoroutinefunction = _borrowed.lookup("coroutines", "_iscoroutinefunction")


def extract_stack():
    # Frame 0 is this function, frame 1 the Python code that called
    # call_soon()/call_later() (the C method has no frame of its own).
    return format_helpers.extract_stack(sys._getframe(1))


def _format_callback(handle):
    if _FORMAT_TAKES_DEBUG:
        return format_helpers._format_callback_source(
            handle._callback, handle._args, debug=handle._loop.get_debug())
    return format_helpers._format_callback_source(handle._callback, handle._args)


def callback_message(handle, loop):
    return f"Exception in callback {_format_callback(handle)}"


def handle_repr(handle):
    info = [type(handle).__name__]
    if handle._cancelled:
        info.append("cancelled")
    if handle._callback is not None:
        info.append(_format_callback(handle))
    if handle._source_traceback:
        frame = handle._source_traceback[-1]
        info.append(f"created at {frame[0]}:{frame[1]}")
    if hasattr(handle, "_when"):
        info.insert(2 if handle._cancelled else 1, f"when={handle._when}")
    return "<{}>".format(" ".join(info))


def is_coroutine_callback(callback):
    # asyncio's BaseEventLoop._check_callback, for the callables the C core
    # does not recognise by itself (debug mode only).
    return coroutines.iscoroutine(callback) or _iscoroutinefunction(callback)


def log_slow_callback(handle, dt):
    logger.warning("Executing %s took %.3f seconds", base_events._format_handle(handle), dt)
