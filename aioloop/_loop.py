"""aioloop.Loop: the C core with asyncio's own orchestration on top.

The hot paths (call_soon, timers, the run loop, completion dispatch, the
resolver) are methods of ``_core.Loop``.  Everything that is rarely hot and
must behave exactly as asyncio's does -- tasks and task factories, the
exception handler, executors, async generator hooks, run_until_complete --
comes from ``asyncio.BaseEventLoop``, whose attributes the C core provides.
"""
import errno
import functools
import os
import selectors
import signal
import socket
import sys
import warnings
import weakref
from asyncio import base_events, constants, events, futures, selector_events
from asyncio import trsock, unix_events
from asyncio.log import logger

from . import _borrowed, _child, _core, _tls
# Imported now, not when a callback first fails: a process out of descriptors
# (EMFILE) could not import it then.
from . import _debug  # noqa: F401

__all__ = ("Loop",)

_AF = socket.AddressFamily
_AI_NUMERICHOST = int(socket.AI_NUMERICHOST)
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


_ATTACH_TAKES_TRANSPORT = sys.version_info >= (3, 13)
# asyncio's handle for call_soon_threadsafe() where it has one (3.14): its
# lock makes cancel() from another thread wait for a callback that is
# running, and a cancel that wins the race stops the callback.
_ThreadSafeHandle = getattr(events, "_ThreadSafeHandle", None)

# What BaseEventLoop.start_tls() and sendfile() look for on a transport.
_core.StreamTransport._start_tls_compatible = True
_core.StreamTransport._sendfile_compatible = constants._SendfileMode.TRY_NATIVE


if sys.version_info >= (3, 14):
    _c_writelines = _core.StreamTransport.writelines
    _ONE_BYTE = (b"\0",)

    def _writelines(self, list_of_data):
        """asyncio 3.14's writelines(): after write_eof() and sendfile
        checks and the argument's truth, a lost (or closed) connection looks
        at nothing more (it only counts the write); otherwise items that are
        false (b"", None, 0) are skipped, never buffered.  (A C version of
        this belongs in transport.c's tr_writelines.)"""
        if self._eof or not list_of_data:
            return _c_writelines(self, list_of_data)
        if self._conn_lost:
            return _c_writelines(self, _ONE_BYTE)
        return _c_writelines(self, [data for data in list_of_data if data])

    _writelines.__name__ = _writelines.__qualname__ = "writelines"
    _core.StreamTransport.writelines = _writelines


def _ssl_shutdown_kw(timeout):
    # SSLProtocol takes ssl_shutdown_timeout from 3.11 on.
    return {"ssl_shutdown_timeout": timeout}


class _SelectorView:
    """What asyncio's selector-based transports read through loop._selector
    (their repr asks which events a descriptor is registered for)."""

    def __init__(self, loop):
        self._loop = loop

    def get_key(self, fd):
        events = self._loop._fd_events(fd)
        if not events:
            raise KeyError(fd)
        return selectors.SelectorKey(fd, fd, events, None)




class _DatagramTransport(selector_events._SelectorDatagramTransport):
    """asyncio's datagram transport over aioloop's readiness API, reading up
    to _READ_BATCH datagrams per readiness event, as libuv does, where
    asyncio's reads one and goes back to the poller for the next.  Reading
    stops as soon as the transport is closing or lost (a protocol may close
    it from datagram_received), as asyncio's close() removes the reader."""

    _READ_BATCH = 32

    def _read_ready(self):
        recvfrom = self._sock.recvfrom
        protocol = self._protocol
        for _ in range(self._READ_BATCH):
            if self._conn_lost or self._closing:
                return
            try:
                data, addr = recvfrom(self.max_size)
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                protocol.error_received(exc)
                return
            except (SystemExit, KeyboardInterrupt):
                raise
            except BaseException as exc:
                self._fatal_error(exc, "Fatal read error on datagram transport")
                return
            protocol.datagram_received(data, addr)


class Loop(_core.Loop, base_events.BaseEventLoop):
    """An asyncio event loop whose I/O is done by background completion threads.

    ``engine``: ``"auto"`` (default, or ``AIOLOOP_ENGINE``), ``"uring"`` or
    ``"threads"``.  ``auto`` takes io_uring when this build has it and the
    kernel lets a ring be set up (containers often forbid it), else the
    completion threads; ``uring`` raises OSError where io_uring is refused.
    ``ring_buffers``: io_uring provided read buffers (a power of two,
    default 256, each ``buffer_size`` bytes).  ``buffer_size``: bytes per
    read buffer (default ``AIOLOOP_BUFFER_SIZE``, else 256 KiB on threads
    and 64 KiB on io_uring).
    ``threads``: completion threads for socket I/O (default: ``AIOLOOP_THREADS``
    or half the cores, at most 8).  ``resolver_threads``: threads for blocking
    getaddrinfo/getnameinfo calls (default 2).
    """

    def __init__(self, *, engine=None, threads=None, resolver_threads=None, inline_writes=None,
                 ring_buffers=None, buffer_size=None):
        if engine is None:
            engine = os.environ.get("AIOLOOP_ENGINE") or "auto"
        if threads is None:
            threads = _env_int("AIOLOOP_THREADS")
        if resolver_threads is None:
            resolver_threads = _env_int("AIOLOOP_RESOLVER_THREADS")
        try:
            if inline_writes is None:
                # Unset: the engine's default (inline on io_uring, handed
                # to the completion thread on threads).
                mode = os.environ.get("AIOLOOP_WRITE_MODE") or None
                if mode not in (None, "thread", "inline"):
                    raise ValueError("AIOLOOP_WRITE_MODE must be 'thread' or 'inline', "
                                     f"got {mode!r}")
                inline_writes = None if mode is None else mode == "inline"
            kw = dict(threads=threads, resolver_threads=resolver_threads,
                      inline_writes=inline_writes)
            if ring_buffers is None:
                ring_buffers = _env_int("AIOLOOP_RING_BUFFERS")
            if ring_buffers:
                kw["ring_buffers"] = ring_buffers
            if buffer_size is None:
                buffer_size = _env_int("AIOLOOP_BUFFER_SIZE")
            if buffer_size:
                kw["buffer_size"] = buffer_size
            # The C core validates the name and decides "auto" once per
            # process (a cached probe), falling back to the threads engine
            # where a ring is refused.
            _core.Loop.__init__(self, engine=engine, **kw)
        except BaseException:
            self._closed = True   # nothing to close; keeps __del__ quiet
            raise
        base_events.BaseEventLoop.__init__(self)
        # Remembered now: close() frees the engine, and the core then no
        # longer knows which one it was.
        self._engine_name = self._engine_kind()
        # fd -> transport, as asyncio's selector loop keeps it, so that the
        # readiness API refuses descriptors owned by a transport.
        self._transports = weakref.WeakValueDictionary()
        self._listeners = {}            # listening socket -> _core.Listener
        self._accept_retries = {}       # listening socket -> TimerHandle of its retry
        self._unix_server_sockets = {}  # unix listening socket -> inode
        self._signal_handlers = {}
        self._children = _child.ChildWatcher(self)
        self._ssock = self._csock = None   # self-pipe, made for the first signal
        self._internal_fds = 0
        self._selector = _SelectorView(self)

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

    if _ThreadSafeHandle is not None:
        def call_soon_threadsafe(self, callback, *args, context=None):
            """Like call_soon(), but thread-safe; the handle is asyncio's
            _ThreadSafeHandle (its cancel() and cancelled() wait for a
            callback that is running), queued through the C core's wakeup."""
            self._check_closed()
            if self._debug:
                self._check_callback(callback, "call_soon_threadsafe")
            handle = _ThreadSafeHandle(callback, args, self, context)
            if handle._source_traceback:
                del handle._source_traceback[-1]
            _core.Loop.call_soon_threadsafe(self, handle._run)
            return handle

    def close(self):
        """Close the loop: drop pending callbacks, shut the default executor
        down without waiting, join the completion threads and free their
        buffers.  The loop must not be running."""
        if self.is_running():
            raise RuntimeError("Cannot close a running event loop")
        if self._closed:
            return
        try:
            if not sys.is_finalizing():
                for sig in list(self._signal_handlers):
                    self.remove_signal_handler(sig)
            elif self._signal_handlers:
                warnings.warn(f"Closing the loop {self!r} on interpreter shutdown "
                              f"stage, skipping signal handlers removal",
                              ResourceWarning, source=self)
                self._signal_handlers.clear()
            self._children.close()
            super().close()
        finally:
            if self._ssock is not None:
                self._close_self_pipe()
            self._selector = None   # as asyncio's loop: transports' repr says "open"
            self._close_core()

    def _process_events(self, event_list):
        # Completions are dispatched by the C run loop itself.
        pass

    # -- name resolution -----------------------------------------------------

    async def getaddrinfo(self, host, port, *, family=0, type=0, proto=0, flags=0):
        """socket.getaddrinfo() without blocking the loop: numeric hosts are
        answered at once, names are resolved on a resolver thread."""
        # asyncio's checks come first there (run_in_executor's): a closed
        # loop or a shut-down default executor refuses before any argument
        # is looked at.
        self._check_closed()
        self._check_default_executor()
        try:
            # A numeric host never blocks; answer it without a thread hop.
            # Flags that are not an int go to the socket module as they are,
            # so that its checks (and their order) are the ones asyncio's
            # executor call would meet.  The flag is or-ed as a plain int:
            # AddressInfo's own | would drop unknown bits (-1 | flag is 2047),
            # turning flags the C library refuses into valid ones.
            numeric = flags | _AI_NUMERICHOST if isinstance(flags, int) else flags
            return socket.getaddrinfo(host, port, family, type, proto, numeric)
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
        self._check_closed()   # before the arguments, as on asyncio (see getaddrinfo)
        self._check_default_executor()
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
    # (_core's _add_reader & co.).  add_reader() & co. and the sock_*
    # coroutines are asyncio's own code over that API, installed from
    # _borrowed.TABLE below the class: a sock_* call is a Python round trip
    # on the loop thread either way, so a completion-thread hop would only
    # add latency.

    if sys.version_info >= (3, 15):
        # asyncio 3.15's selector transports (the datagram, pipe and
        # readiness-based ones aioloop borrows) pass the transport's context.
        def _add_reader(self, fd, callback, *args, context=None):
            if context is not None:
                args = (callback, *args)
                callback = context.run
            return _core.Loop._add_reader(self, fd, callback, *args)

        def _add_writer(self, fd, callback, *args, context=None):
            if context is not None:
                args = (callback, *args)
                callback = context.run
            return _core.Loop._add_writer(self, fd, callback, *args)

    # -- stream transports and servers ----------------------------------------

    def _make_socket_transport(self, sock, protocol, waiter=None, *,
                               extra=None, server=None, context=None, _nodelay=None,
                               _private_sock=False):
        # _nodelay: the accept path's answer, decided once per listener
        # (None: look at the socket, as asyncio's _set_nodelay does).
        # _private_sock: the accept path's socket object, which nobody else
        # holds (see the transport's sock_private).
        # context (Python 3.15 passes it): the context connection_made runs
        # in.  The C transport runs its other protocol callbacks in a copy of
        # the context current here, which the callers make the same one.
        if _nodelay is None:
            self._ensure_fd_no_transport(sock)
            base_events._set_nodelay(sock)
        elif _nodelay:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        extra = {} if extra is None else dict(extra)
        if server is None:
            extra["socket"] = trsock.TransportSocket(sock)
            try:
                extra["sockname"] = sock.getsockname()
            except OSError:
                extra["sockname"] = None
        # else: the transport makes "socket" and "sockname" on first use (a
        # server's connection usually never asks; and a socket object only
        # the transport holds is closed without a placeholder).
        if "peername" not in extra:
            try:
                extra["peername"] = sock.getpeername()
            except OSError:
                extra["peername"] = None
        # Looked up before the transport exists: a protocol without it fails
        # here with asyncio's AttributeError, and no stream is left started.
        connection_made = protocol.connection_made
        transport = _core.StreamTransport(self, sock, protocol, extra, server,
                                          private_sock=_private_sock)
        if server is not None:
            if _ATTACH_TAKES_TRANSPORT:
                server._attach(transport)
            else:
                server._attach()
        self._transports[sock.fileno()] = transport
        self.call_soon(connection_made, transport, context=context)
        self.call_soon(transport._start_reading, context=context)
        if waiter is not None:
            self.call_soon(futures._set_result_unless_cancelled, waiter, None, context=context)
        return transport

    def _make_datagram_transport(self, sock, protocol, address=None, waiter=None, extra=None):
        return _DatagramTransport(self, sock, protocol, address, waiter, extra)

    def _make_ssl_transport(self, rawsock, protocol, sslcontext, waiter=None, *,
                            server_side=False, server_hostname=None, extra=None,
                            server=None,
                            ssl_handshake_timeout=constants.SSL_HANDSHAKE_TIMEOUT,
                            ssl_shutdown_timeout=constants.SSL_SHUTDOWN_TIMEOUT,
                            context=None):
        # TLS is asyncio's SSLProtocol state machine with its byte path in C
        # (aioloop/_tls.py, _core/tls.c) on top of a stream transport.
        ssl_protocol = _tls.SSLProtocol(
            self, protocol, sslcontext, waiter, server_side, server_hostname,
            ssl_handshake_timeout=ssl_handshake_timeout,
            **_ssl_shutdown_kw(ssl_shutdown_timeout))
        self._make_socket_transport(rawsock, ssl_protocol, extra=extra, server=server,
                                    context=context)
        return ssl_protocol._app_transport

    async def start_tls(self, transport, protocol, sslcontext, *, server_side=False,
                        server_hostname=None, ssl_handshake_timeout=None,
                        ssl_shutdown_timeout=None):
        """Upgrade transport to TLS (asyncio's start_tls, with aioloop's
        TLS layer)."""
        return await _tls.start_tls(
            self, transport, protocol, sslcontext, server_side=server_side,
            server_hostname=server_hostname, ssl_handshake_timeout=ssl_handshake_timeout,
            ssl_shutdown_timeout=ssl_shutdown_timeout)

    def _start_serving(self, protocol_factory, sock, sslcontext=None, server=None,
                       backlog=100, ssl_handshake_timeout=constants.SSL_HANDSHAKE_TIMEOUT,
                       ssl_shutdown_timeout=constants.SSL_SHUTDOWN_TIMEOUT, context=None):
        # Accepts run on a completion thread; each accepted descriptor comes
        # back as a completion and becomes a transport here.  context (the
        # server's, from Python 3.15 on): each connection's protocol factory
        # and callbacks run in a copy of it, as on asyncio 3.15; without it,
        # in a copy of the context the listener was made in.
        listener = self._listeners.get(sock)
        if listener is None:
            # What each accepted socket is, decided once: socket.socket's
            # family/type properties convert to enums on every read.
            family, type_, proto = int(sock.family), int(sock.type), sock.proto
            nodelay = (family in (socket.AF_INET, socket.AF_INET6) and
                       type_ == socket.SOCK_STREAM and proto == socket.IPPROTO_TCP)
            on_accept = functools.partial(
                self._on_accept, protocol_factory, sock, sslcontext, server,
                ssl_handshake_timeout, ssl_shutdown_timeout,
                (family, type_ | socket.SOCK_NONBLOCK, proto, nodelay), context)
            listener = _core.Listener(self, sock.fileno(), on_accept)
            self._listeners[sock] = listener
        listener.resume()

    def _on_accept(self, protocol_factory, sock, sslcontext, server,
                   ssl_handshake_timeout, ssl_shutdown_timeout, spec, context, fd, addr):
        if fd is None:
            exc = addr
            if isinstance(exc, MemoryError) or getattr(exc, "errno", None) in (
                    errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM):
                # Out of a resource (descriptors, or memory for the accepted
                # connection's objects: that connection is closed): the
                # listener stopped itself; try again after a delay instead
                # of spinning (asyncio does the same).
                self.call_exception_handler({
                    "message": "socket.accept() out of system resource",
                    "exception": exc,
                    "socket": trsock.TransportSocket(sock),
                })
            else:
                self.call_exception_handler({
                    "message": "Error on accepting a connection",
                    "exception": exc,
                    "socket": trsock.TransportSocket(sock),
                })
            # One retry per listener at a time: a report that arrives while
            # one is pending must not add a second (each retry that fails
            # reports again, and the reports would multiply).
            if sock not in self._accept_retries:
                self._accept_retries[sock] = self.call_later(
                    constants.ACCEPT_RETRY_DELAY, self._resume_listener, sock)
            return
        try:
            conn = socket.socket(spec[0], spec[1], spec[2], fd)
        except BaseException:
            os.close(fd)
            raise
        if self._debug:
            logger.debug("%r got a new connection from %r: %r", server, addr, conn)
        extra = {"peername": addr}
        conn_context = None if context is None else context.copy()
        if sslcontext:
            # asyncio's own coroutine; 3.15's takes the context (3.14's not).
            kw = {} if conn_context is None else {"context": conn_context}
            self.create_task(selector_events.BaseSelectorEventLoop._accept_connection2(
                self, protocol_factory, conn, extra, sslcontext, server,
                ssl_handshake_timeout, ssl_shutdown_timeout, **kw), context=conn_context)
            return
        if conn_context is None:
            self._accept_plain(protocol_factory, conn, extra, server, spec[3], None)
        else:
            conn_context.run(self._accept_plain, protocol_factory, conn, extra, server,
                             spec[3], conn_context)

    def _accept_plain(self, protocol_factory, conn, extra, server, nodelay, context):
        protocol = transport = None
        try:
            protocol = protocol_factory()
            transport = self._make_socket_transport(conn, protocol, extra=extra, server=server,
                                                    context=context, _nodelay=nodelay,
                                                    _private_sock=True)
        except (SystemExit, KeyboardInterrupt):
            raise
        except BaseException as exc:
            if transport is None:
                conn.close()
            else:
                transport.close()
            if self._debug:
                info = {
                    "message": "Error on transport creation for incoming connection",
                    "exception": exc,
                }
                if protocol is not None:
                    info["protocol"] = protocol
                if transport is not None:
                    info["transport"] = transport
                self.call_exception_handler(info)

    def _resume_listener(self, sock):
        self._accept_retries.pop(sock, None)
        listener = self._listeners.get(sock)
        if listener is not None:
            listener.resume()

    def _stop_serving(self, sock):
        listener = self._listeners.pop(sock, None)
        retry = self._accept_retries.pop(sock, None)
        if retry is not None:
            retry.cancel()
        if listener is not None:
            listener.close()
        path = sock.getsockname() if sock in self._unix_server_sockets else None
        sock.close()
        if path is not None:
            prev_ino = self._unix_server_sockets.pop(sock)
            try:
                if os.stat(path).st_ino == prev_ino:
                    os.unlink(path)
            except FileNotFoundError:
                pass
            except OSError as err:
                logger.error("Unable to clean up listening UNIX socket %r: %r", path, err)

    # sendfile (os.sendfile() driven by the readiness API), UDP, pipes and
    # Unix sockets are asyncio's own code over aioloop's readiness API (loop
    # thread), installed from _borrowed.TABLE below the class.

    # -- subprocesses and signals ----------------------------------------------

    async def _make_subprocess_transport(self, protocol, args, shell,
                                         stdin, stdout, stderr, bufsize,
                                         extra=None, **kwargs):
        # asyncio's Unix subprocess transport; the child's exit comes from
        # this loop's own ChildWatcher (_child.py), not from a policy's or
        # asyncio's watcher.
        waiter = self.create_future()
        transp = unix_events._UnixSubprocessTransport(
            self, protocol, args, shell, stdin, stdout, stderr, bufsize,
            waiter=waiter, extra=extra, **kwargs)
        try:
            self._children.watch(transp.get_pid(), transp)
        except BaseException:
            transp.close()      # kills the child: nothing would report its exit
            raise
        try:
            await waiter
        except (SystemExit, KeyboardInterrupt):
            raise
        except BaseException:
            transp.close()
            await transp._wait()
            raise
        return transp

    # Signals: asyncio's Unix implementation (signal.set_wakeup_fd on a
    # self-pipe read by the loop; installed from _borrowed.TABLE).  The
    # self-pipe is made for the first handler only, so a loop without signal
    # handlers watches no descriptor.

    def add_signal_handler(self, sig, callback, *args):
        """Add a handler for a Unix signal (main thread only)."""
        self._check_signal(sig)
        self._check_closed()
        if self._ssock is None:
            self._make_self_pipe()
        return unix_events._UnixSelectorEventLoop.add_signal_handler(self, sig, callback, *args)

    def _add_callback_signalsafe(self, handle):
        # Called from _handle_signal on the loop thread (the self-pipe's
        # reader), so a plain call_soon is safe here.
        if not handle._cancelled:
            self.call_soon(handle._run)

    # -- introspection -------------------------------------------------------

    @property
    def engine(self):
        """The completion engine this loop runs (or ran, once closed):
        ``"uring"`` or ``"threads"``."""
        return self._engine_name


# asyncio's own methods that Loop takes as they are (the "loop" rows).
_borrowed.install(Loop)
