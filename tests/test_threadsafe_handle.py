"""call_soon_threadsafe()'s handle where asyncio has a thread-safe one
(asyncio.events._ThreadSafeHandle, Python 3.14): cancel() and cancelled()
from another thread wait for a callback that is running, so a thread that
saw the callback start and then asks cancelled() sees the finished call.
Before, aioloop returned its plain C handle there and CPython 3.14's own
tests of this hung."""
import threading
import time
from asyncio import events

import pytest

pytestmark = pytest.mark.skipif(not hasattr(events, "_ThreadSafeHandle"),
                                reason="asyncio has no thread-safe handle before 3.14")


def test_the_handle_is_asyncios_thread_safe_handle(any_loop):
    handle = any_loop.call_soon_threadsafe(lambda: None)
    assert isinstance(handle, events._ThreadSafeHandle)
    handle.cancel()
    assert handle.cancelled()


def test_cancelled_from_another_thread_waits_for_the_running_callback(any_loop):
    loop = any_loop
    started, finished = threading.Event(), threading.Event()
    seen = []

    def callback():
        started.set()
        time.sleep(0.2)
        finished.set()

    def other_thread():
        handle = loop.call_soon_threadsafe(callback)
        started.wait(10)
        seen.append((handle.cancelled(), finished.is_set()))
        loop.call_soon_threadsafe(loop.stop)

    t = threading.Thread(target=other_thread)
    t.start()
    loop.run_forever()
    t.join(10)
    assert seen == [(False, True)]


def test_a_handle_cancelled_from_another_thread_before_it_runs_does_not_run(any_loop):
    loop = any_loop
    ran = []
    gate = threading.Event()

    def other_thread():
        handle = loop.call_soon_threadsafe(ran.append, "ran")
        handle.cancel()
        gate.set()
        loop.call_soon_threadsafe(loop.stop)

    loop.call_soon(gate.wait, 10)      # the loop is busy until the cancel
    t = threading.Thread(target=other_thread)
    t.start()
    loop.run_forever()
    t.join(10)
    assert ran == []
