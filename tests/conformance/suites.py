"""CPython's own loop-agnostic asyncio test mixins, bound to aioloop.

Each class below subclasses a mixin from the running interpreter's
``test.test_asyncio`` package so that it builds its loops with aioloop.  The
runner (run.py) executes every test of these classes in its own process.
Set AIOLOOP_CONFORMANCE_LOOP=asyncio to bind them to asyncio's own loop
instead (a reference run).
"""
import asyncio
import os
import sys
import unittest
from unittest import mock

import aioloop
from test.test_asyncio import utils as test_utils


def new_loop():
    if os.environ.get("AIOLOOP_CONFORMANCE_LOOP") == "asyncio":
        return asyncio.SelectorEventLoop()
    return aioloop.new_event_loop()


def _mixin(module, name):
    mod = __import__(f"test.test_asyncio.{module}", fromlist=[name])
    return getattr(mod, name)


class _CreateLoop:
    def create_event_loop(self):
        return new_loop()

    def new_loop(self):
        return new_loop()


class _PatchedNewLoop:
    """For suites whose setUp calls asyncio.new_event_loop() itself."""

    def setUp(self):
        with mock.patch("asyncio.new_event_loop", new_loop):
            super().setUp()


_events = "test_events"

class EventLoopTests(_CreateLoop, _mixin(_events, "EventLoopTestsMixin"),
                     _mixin(_events, "SubprocessTestsMixin"), test_utils.TestCase):
    pass


class SubprocessTests(_mixin("test_subprocess", "SubprocessMixin"), test_utils.TestCase):
    def setUp(self):
        super().setUp()
        self.loop = new_loop()
        self.set_event_loop(self.loop)


class SockLowLevelTests(_CreateLoop, _mixin("test_sock_lowlevel", "BaseSockTestsMixin"),
                        test_utils.TestCase):
    pass


class SendfileTests(_CreateLoop, _mixin("test_sendfile", "SendfileMixin"),
                    _mixin("test_sendfile", "SockSendfileMixin"), test_utils.TestCase):
    # CPython runs the two mixins together (SendfileTestsBase): the first
    # uses helpers of the second.
    pass


class BufferedProtocolTests(_CreateLoop, _mixin("test_buffered_proto", "BaseTestBufferedProtocol"),
                            unittest.TestCase):
    pass


class StartServerTests(_CreateLoop, _mixin("test_server", "BaseStartServer"),
                       test_utils.TestCase):
    pass


class StartTLSTests(_CreateLoop, _mixin("test_sslproto", "BaseStartTLS"),
                    test_utils.TestCase):
    pass


class StreamTests(_PatchedNewLoop, _mixin("test_streams", "StreamTests")):
    pass


try:
    _TestSSL = _mixin("test_ssl", "TestSSL")
except (ImportError, AttributeError):
    _TestSSL = None

if _TestSSL is not None:
    class SSLTests(_PatchedNewLoop, _TestSSL):
        pass


SUITES = [name for name, obj in list(globals().items())
          if isinstance(obj, type) and issubclass(obj, unittest.TestCase)
          and obj.__module__ == __name__]


def test_ids():
    loader = unittest.TestLoader()
    ids = []
    for name in SUITES:
        for t in loader.getTestCaseNames(globals()[name]):
            ids.append(f"{name}.{t}")
    return ids


if __name__ == "__main__":
    if sys.argv[1:] == ["--list"]:
        print("\n".join(test_ids()))
    else:
        unittest.main(module=__name__)
