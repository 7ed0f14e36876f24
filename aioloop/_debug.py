"""Rarely-hot helpers the C core calls: reprs, debug-mode tracebacks and
messages, written once in Python so they match asyncio's exactly."""
import sys
from asyncio import base_events, coroutines, format_helpers
from asyncio.log import logger


def extract_stack():
    # Frame 0 is this function, frame 1 the Python code that called
    # call_soon()/call_later() (the C method has no frame of its own).
    return format_helpers.extract_stack(sys._getframe(1))


def _format_callback(handle):
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
    return coroutines.iscoroutine(callback) or coroutines.iscoroutinefunction(callback)


def log_slow_callback(handle, dt):
    logger.warning("Executing %s took %.3f seconds", base_events._format_handle(handle), dt)
