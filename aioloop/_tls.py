"""aioloop's TLS protocol: asyncio's SSLProtocol with its byte path in C.

The state machine (handshake, shutdown, timeouts, flow control, errors and
their messages) is asyncio's own ``sslproto.SSLProtocol`` of the running
Python, so every TLS door behaves as asyncio's does.  Once a connection is
established (state WRAPPED), reading and writing go through
``_core.TLSPump`` (``_core/tls.c``): the C transport hands ciphertext
straight to OpenSSL and the application's ``data_received()``, and the
application transport's ``write()``/``writelines()`` encrypt in C.  The
OpenSSL functions are the ones Python's ``_ssl`` module loaded; where they
cannot be found (an ``_ssl`` built with a private OpenSSL) or
``AIOLOOP_TLS=python`` is set, the whole layer is asyncio's Python code.
"""
import os
import ssl
from asyncio import base_events, sslproto

from . import _core

_WRAPPED = sslproto.SSLProtocolState.WRAPPED


class _SSLProtocolTransport(sslproto._SSLProtocolTransport):
    """asyncio's SSL application transport; write() and writelines() are
    replaced by C methods when the C layer is available (_tls_setup)."""


class SSLProtocol(sslproto.SSLProtocol):
    _aioloop_pump = None
    # asyncio's is 256 KiB: the read buffer every connection allocates and
    # zeroes in __init__, used here only until the handshake is done (and
    # on asyncio's slow paths, which read in chunks of this size in a loop).
    # The C path reads whole records, directly from the socket into a
    # buffer of its own made on first use.
    max_size = 16 * 1024

    def _get_app_transport(self, *args, **kwargs):
        # asyncio's, making the C-accelerated application transport.
        if self._app_transport is None:
            if self._app_transport_created:
                raise RuntimeError('Creating _SSLProtocolTransport twice')
            self._app_transport = _SSLProtocolTransport(self._loop, self, *args, **kwargs)
            self._app_transport_created = True
        return self._app_transport

    def _set_state(self, new_state):
        super()._set_state(new_state)
        if new_state is _WRAPPED and ENABLED and self._aioloop_pump is None:
            if not _has_instance_attrs(self):
                return
            try:
                self._aioloop_pump = _core.TLSPump(self._sslobj, self._incoming,
                                                   self._outgoing)
            except (TypeError, RuntimeError, AttributeError):
                # Not the SSLObject layout the C layer knows: this
                # connection keeps asyncio's Python byte path.
                self._aioloop_pump = None

    def connection_lost(self, exc):
        self._aioloop_pump = None
        super().connection_lost(exc)


# The instance attributes of asyncio's SSLProtocol that _core/tls.c reads
# (the methods it calls are rows of aioloop/_borrowed.py).  Checked on the
# first established connection: a Python whose SSLProtocol lacks one keeps
# asyncio's byte path for every connection.
_INSTANCE_ATTRS = (
    "_state", "_app_reading_paused", "_app_protocol_is_buffer", "_app_protocol",
    "_write_backlog", "_ssl_writing_paused", "_app_writing_paused", "_ssl_reading_paused",
    "_incoming_high_water", "_transport", "_sslobj", "_incoming", "_outgoing")
_attrs_ok = None


def _has_instance_attrs(proto):
    global _attrs_ok
    if _attrs_ok is None:
        _attrs_ok = all(hasattr(proto, n) for n in _INSTANCE_ATTRS)
    return _attrs_ok


def _setup():
    if os.environ.get("AIOLOOP_TLS", "c") == "python":
        return False
    return _core._tls_setup(getattr(ssl._ssl, "__file__", None), SSLProtocol, _SSLProtocolTransport,
                            _WRAPPED)


ENABLED = _setup()

# 3.15 (and the releases it was backported to) moves data a StreamReader
# already buffered into the TLS layer in start_tls(): follow the running
# Python's asyncio.
_MOVES_STREAM_BUFFER = "StreamReaderProtocol" in base_events.BaseEventLoop.start_tls.__code__.co_names


async def start_tls(loop, transport, protocol, sslcontext, *, server_side=False,
                    server_hostname=None, ssl_handshake_timeout=None,
                    ssl_shutdown_timeout=None):
    """BaseEventLoop.start_tls() with aioloop's SSLProtocol."""
    if not isinstance(sslcontext, ssl.SSLContext):
        raise TypeError(
            f'sslcontext is expected to be an instance of ssl.SSLContext, '
            f'got {sslcontext!r}')
    if not getattr(transport, '_start_tls_compatible', False):
        raise TypeError(
            f'transport {transport!r} is not supported by start_tls()')

    waiter = loop.create_future()
    ssl_protocol = SSLProtocol(
        loop, protocol, sslcontext, waiter,
        server_side, server_hostname,
        ssl_handshake_timeout=ssl_handshake_timeout,
        ssl_shutdown_timeout=ssl_shutdown_timeout,
        call_connection_made=False)

    if server_side and _MOVES_STREAM_BUFFER:
        from asyncio.streams import StreamReaderProtocol
        if isinstance(protocol, StreamReaderProtocol):
            stream_reader = getattr(protocol, '_stream_reader', None)
            if stream_reader is not None:
                buffer = stream_reader._buffer
                if buffer:
                    ssl_protocol._incoming.write(buffer)
                    buffer.clear()

    # Pause early so that "ssl_protocol.data_received()" doesn't
    # have a chance to get called before "ssl_protocol.connection_made()".
    transport.pause_reading()

    transport.set_protocol(ssl_protocol)
    conmade_cb = loop.call_soon(ssl_protocol.connection_made, transport)
    resume_cb = loop.call_soon(transport.resume_reading)

    try:
        await waiter
    except BaseException:
        transport.close()
        conmade_cb.cancel()
        resume_cb.cancel()
        waiter = None
        raise

    return ssl_protocol._app_transport
