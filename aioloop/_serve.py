"""One serving process of ``python -m aioloop serve``.

The application is loaded inside the running loop (a factory may create
sessions or locks that want one), served through aiohttp's own AppRunner and
sites, and shut down gracefully on SIGTERM or SIGINT: the sites stop
accepting, requests in flight get ``--shutdown-timeout`` seconds to finish,
then the process exits 0.
"""
import asyncio
import importlib
import inspect
import logging
import os
import signal
import socket
import ssl
import sys
import traceback

from ._cli import UsageError, use_aioloop, _error


class AppImportError(Exception):
    """The application's module raised while it was imported: reported as
    python reports it, with the module's frames only."""

    def __init__(self, exc):
        super().__init__(exc)
        self.exc = exc


def _own_frame(filename):
    """Whether a traceback frame is aioloop's or the import machinery's,
    not the application's."""
    if filename.startswith("<frozen importlib"):
        return True
    path = os.path.normcase(os.path.abspath(filename))
    return path in (os.path.normcase(os.path.abspath(__file__)),
                    os.path.normcase(os.path.abspath(importlib.__file__)))


def _say(message):
    print(f"aioloop: {message}", file=sys.stderr, flush=True)


def _import_target(spec):
    """The object named by 'module:attribute' (dotted attributes allowed);
    UsageError when the module or the attribute does not exist."""
    module_name, _, attr = spec.partition(":")
    if not module_name or not attr:
        raise UsageError(f"APP must be 'module:attribute', got {spec!r}")
    if module_name.startswith("."):
        raise UsageError(f"relative module names are not supported: {module_name!r}")
    if "" not in sys.path and os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        # Only the module asked for (or a package above it) missing is a
        # usage error; a missing import inside it is the program's bug.
        if exc.name and (module_name == exc.name or module_name.startswith(exc.name + ".")):
            raise UsageError(f"cannot import {module_name!r}: {exc}") from None
        raise AppImportError(exc) from None
    except (SystemExit, KeyboardInterrupt):
        raise
    except BaseException as exc:
        raise AppImportError(exc) from None
    obj = module
    for part in attr.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            raise UsageError(f"module {module_name!r} has no attribute {attr!r}") from None
    return obj


async def load_app(spec, args):
    """The web.Application that ``spec`` names, calling and awaiting a factory."""
    from aiohttp import web

    obj = _import_target(spec)
    if isinstance(obj, web.Application):
        if args:
            raise UsageError(f"{spec} is an application, not a factory: "
                             f"it takes no arguments ({' '.join(args)})")
        return obj
    if not callable(obj):
        raise UsageError(f"{spec} is not an aiohttp application or a factory "
                         f"of one (it is {type(obj).__name__})")
    try:
        params = inspect.signature(obj).parameters.values()
        takes_args = any(p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD, p.VAR_POSITIONAL)
                         for p in params)
    except (TypeError, ValueError):
        takes_args = False
    if args and not takes_args:
        raise UsageError(f"{spec} takes no arguments, got {' '.join(args)}")
    result = obj(list(args)) if takes_args else obj()
    if inspect.isawaitable(result):
        result = await result
    if not isinstance(result, web.Application):
        raise UsageError(f"{spec} returned {type(result).__name__}, "
                         "not an aiohttp web.Application")
    return result


def _ssl_context(opts):
    if not opts.ssl_certfile:
        return None
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    try:
        ctx.load_cert_chain(opts.ssl_certfile, opts.ssl_keyfile)
    except (OSError, ssl.SSLError) as exc:
        files = repr(opts.ssl_certfile)
        if opts.ssl_keyfile:
            files += f" with the key {opts.ssl_keyfile!r}"
        raise UsageError(f"cannot load the certificate {files}: {exc}") from None
    return ctx


def _access_logger(enabled):
    if not enabled:
        return None
    log = logging.getLogger("aiohttp.access")
    if not log.handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(message)s"))
        log.addHandler(handler)
        log.propagate = False
    if log.level == logging.NOTSET or log.level > logging.INFO:
        log.setLevel(logging.INFO)
    return log


def _urls(runner, opts, tls):
    scheme = "https" if tls else "http"
    if opts.unix:
        return [f"{scheme}+unix://{opts.unix}"]
    urls = []
    for addr in runner.addresses:
        if isinstance(addr, (tuple, list)):
            host, port = addr[0], addr[1]
            if ":" in host:
                host = f"[{host}]"
            urls.append(f"{scheme}://{host}:{port}")
        else:
            urls.append(f"{scheme}+unix://{addr}")
    return urls


async def _serve(opts):
    from aiohttp import web

    loop = asyncio.get_running_loop()
    stop = loop.create_future()

    def on_signal(signum):
        if not stop.done():
            stop.set_result(signal.Signals(signum).name)

    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, on_signal, signum)

    app = await load_app(opts.app, opts.app_args)
    tls = _ssl_context(opts)
    runner = web.AppRunner(app, access_log=_access_logger(opts.access_log),
                           shutdown_timeout=_aiohttp_shutdown_timeout(opts.shutdown_timeout))
    await runner.setup()
    try:
        if opts.worker_listen_fd is not None:
            sock = socket.socket(fileno=opts.worker_listen_fd)
            site = web.SockSite(runner, sock, ssl_context=tls)
        elif opts.unix:
            site = web.UnixSite(runner, opts.unix, ssl_context=tls, backlog=opts.backlog)
        else:
            # reuse_port lets the supervisor's other workers bind the same port.
            site = web.TCPSite(runner, opts.host or None, opts.port, ssl_context=tls,
                               backlog=opts.backlog,
                               reuse_port=opts.worker_ready_fd is not None)
        try:
            await site.start()
        except OSError as exc:
            if opts.unix:
                where = f"the Unix socket {opts.unix!r}"
            elif opts.worker_listen_fd is not None:
                where = "the supervisor's socket"
            else:
                where = site.name
            raise UsageError(f"cannot listen on {where}: {exc}") from None

        if opts.worker_ready_fd is None:
            _say(f"serving on {', '.join(_urls(runner, opts, tls))} "
                 f"(pid {os.getpid()}, engine {loop.engine})")
        else:
            _say(f"worker {os.getpid()} ready (engine {loop.engine})")
            os.write(opts.worker_ready_fd, b"ready\n")
            os.close(opts.worker_ready_fd)
            # A worker whose supervisor is gone shuts down too.
            parent = os.getppid()

            def watch_parent():
                if os.getppid() != parent:
                    on_signal(signal.SIGTERM)
                else:
                    loop.call_later(1.0, watch_parent)
            loop.call_later(1.0, watch_parent)

        reason = await stop
        _say(f"{reason}: shutting down (pid {os.getpid()}, up to "
             f"{opts.shutdown_timeout:g} s for requests in flight)")
    finally:
        await runner.cleanup()
        if opts.unix and opts.worker_listen_fd is None:
            try:
                os.unlink(opts.unix)
            except OSError:
                pass


def _aiohttp_shutdown_timeout(seconds):
    """The shutdown_timeout to give aiohttp for requests in flight to get
    ``seconds`` in all.  aiohttp waits for a request twice with it (first
    for the handler to finish, then again after cancelling the request,
    which by default does not cancel the handler's task) before it cancels
    the task, and takes 0 as no limit at all: so half of ``seconds``, and a
    microsecond for 0."""
    return max(seconds / 2, 1e-6)


def serve(opts, prog):
    logging.basicConfig(level=logging.WARNING,
                        format=f"[%(process)d] %(levelname)s %(name)s: %(message)s")
    factory = use_aioloop(opts.engine)
    try:
        with asyncio.Runner(loop_factory=factory) as runner:
            runner.run(_serve(opts))
    except UsageError as exc:
        return _error(prog, str(exc))
    except AppImportError as err:
        # As python reports an uncaught exception, from the module's own
        # frames on (run does the same for a program).
        exc = err.exc
        tb = exc.__traceback__
        while tb is not None and tb.tb_next is not None and _own_frame(
                tb.tb_frame.f_code.co_filename):
            tb = tb.tb_next
        traceback.print_exception(type(exc), exc.with_traceback(tb), tb)
        return 1
    _say(f"stopped (pid {os.getpid()})")
    return 0
