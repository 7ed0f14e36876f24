"""aioloop.Loop: the C core with asyncio's own orchestration on top.

The hot paths (call_soon, timers, the run loop, completion dispatch, the
resolver) are methods of ``_core.Loop``.  Everything that is rarely hot and
must behave exactly as asyncio's does -- tasks and task factories, the
exception handler, executors, async generator hooks, run_until_complete --
comes from ``asyncio.BaseEventLoop``, whose attributes the C core provides.
"""
import os
import socket
import sys
import weakref
from asyncio import base_events, events, selector_events

from . import _core

__all__ = ("Loop",)

_AF = socket.AddressFamily
_SK = socket.SocketKind


def _intenum(value, enum):
    try:
        return enum(value)
    except ValueError:
        return value


def _encode_host(host):
    if host is None:
        return None
    if isinstance(host, str):
        return host.encode("idna")
    if isinstance(host, (bytes, bytearray)):
        return bytes(host)
    raise TypeError("getaddrinfo() argument 1 must be string or None")


def _encode_port(port):
    if port is None:
        return None
    if isinstance(port, int):
        return str(port).encode()
    if isinstance(port, str):
        return port.encode()
    if isinstance(port, (bytes, bytearray)):
        return bytes(port)
    raise OSError("Int or String expected")


def _env_int(name):
    value = os.environ.get(name, "")
    if not value:
        return 0
    try:
        n = int(value)
    except ValueError:
        raise ValueError(f"{name} must be an integer, got {value!r}") from None
    if n < 0:
        raise ValueError(f"{name} must be >= 0, got {n}")
    return n


class Loop(_core.Loop, base_events.BaseEventLoop):
    """An asyncio event loop whose I/O is done by background completion threads.

    ``threads``: completion threads for socket I/O (default: ``AIOLOOP_THREADS``
    or half the cores, at most 8).  ``resolver_threads``: threads for blocking
    getaddrinfo/getnameinfo calls (default 2).
    """

    def __init__(self, *, threads=None, resolver_threads=None):
        if threads is None:
            threads = _env_int("AIOLOOP_THREADS")
        if resolver_threads is None:
            resolver_threads = _env_int("AIOLOOP_RESOLVER_THREADS")
        try:
            _core.Loop.__init__(self, threads=threads, resolver_threads=resolver_threads)
        except BaseException:
            self._closed = True   # nothing to close; keeps __del__ quiet
            raise
        base_events.BaseEventLoop.__init__(self)
        # fd -> transport, as asyncio's selector loop keeps it, so that the
        # readiness API refuses descriptors owned by a transport.
        self._transports = weakref.WeakValueDictionary()

    # -- running and stopping ------------------------------------------------

    def run_forever(self):
        """Run until stop() is called."""
        self._check_closed()
        self._check_running()
        self._set_coroutine_origin_tracking(self._debug)
        old_agen_hooks = sys.get_asyncgen_hooks()
        try:
            sys.set_asyncgen_hooks(
                firstiter=self._asyncgen_firstiter_hook,
                finalizer=self._asyncgen_finalizer_hook,
            )
            events._set_running_loop(self)
            self._run()
        finally:
            self._stopping = False
            events._set_running_loop(None)
            self._set_coroutine_origin_tracking(False)
            sys.set_asyncgen_hooks(*old_agen_hooks)

    def close(self):
        """Close the loop: drop pending callbacks, shut the default executor
        down without waiting, join the completion threads and free their
        buffers.  The loop must not be running."""
        if self.is_running():
            raise RuntimeError("Cannot close a running event loop")
        if self._closed:
            return
        try:
            super().close()
        finally:
            self._close_core()

    def _process_events(self, event_list):
        # Completions are dispatched by the C run loop itself.
        pass

    # -- name resolution -----------------------------------------------------

    async def getaddrinfo(self, host, port, *, family=0, type=0, proto=0, flags=0):
        """socket.getaddrinfo() without blocking the loop: numeric hosts are
        answered at once, names are resolved on a resolver thread."""
        try:
            # A numeric host never blocks; answer it without a thread hop.
            return socket.getaddrinfo(
                host, port, family, type, proto, flags | socket.AI_NUMERICHOST
            )
        except socket.gaierror as exc:
            if exc.errno != socket.EAI_NONAME:
                raise
        except UnicodeError:
            pass
        raw = await self._getaddrinfo(
            _encode_host(host), _encode_port(port), family, type, proto, flags
        )
        return [
            (_intenum(af, _AF), _intenum(sk, _SK), pr, canon, addr)
            for af, sk, pr, canon, addr in raw
        ]

    async def getnameinfo(self, sockaddr, flags=0):
        """socket.getnameinfo() without blocking the loop."""
        numeric = socket.NI_NUMERICHOST | socket.NI_NUMERICSERV
        # Validates sockaddr exactly as the socket module does, and answers
        # fully numeric requests without a thread hop.
        host, serv = socket.getnameinfo(sockaddr, flags | numeric)
        if flags & numeric == numeric:
            return host, serv
        ip = host.split("%", 1)[0]
        if ":" in ip:
            family = socket.AF_INET6
            flowinfo = sockaddr[2] if len(sockaddr) > 2 else 0
            scope_id = sockaddr[3] if len(sockaddr) > 3 else 0
        else:
            family, flowinfo, scope_id = socket.AF_INET, 0, 0
        return tuple(
            await self._getnameinfo(family, ip, sockaddr[1], flowinfo, scope_id, flags)
        )

    # -- readiness API and low-level socket operations ---------------------
    # The readiness callbacks run on the loop thread's own epoll instance
    # (_core's _add_reader & co.).  The sock_* coroutines are asyncio's own
    # code over that API: a sock_* call is a Python round trip on the loop
    # thread either way, so a completion-thread hop would only add latency.

    for _name in (
        "add_reader", "remove_reader", "add_writer", "remove_writer",
        "_ensure_fd_no_transport",
        "sock_recv", "_sock_recv", "sock_recv_into", "_sock_recv_into",
        "sock_recvfrom", "_sock_recvfrom", "sock_recvfrom_into", "_sock_recvfrom_into",
        "sock_sendall", "_sock_sendall", "sock_sendto", "_sock_sendto",
        "sock_connect", "_sock_connect", "_sock_connect_cb",
        "sock_accept", "_sock_accept", "_sock_read_done", "_sock_write_done",
    ):
        if hasattr(selector_events.BaseSelectorEventLoop, _name):
            locals()[_name] = getattr(selector_events.BaseSelectorEventLoop, _name)
    del _name

    # -- introspection -------------------------------------------------------

    @property
    def engine(self):
        """The completion engine in use: ``"threads"``."""
        return "threads"
