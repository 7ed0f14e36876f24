"""``python -m aioloop``: run an asyncio program, or serve an aiohttp app, on aioloop.

``run`` executes an unmodified program (a script, or a module with ``-m``)
the way ``python`` itself would -- same ``sys.argv``, ``__main__`` and exit
status -- after making aioloop the loop that asyncio creates.  ``serve``
serves an aiohttp application in one process, or in several that share the
port through SO_REUSEPORT under a small supervisor (``_supervisor``).
"""
import argparse
import asyncio
import functools
import io
import os
import runpy
import signal
import sys
import types
from asyncio import events

import aioloop

ENGINES = ("auto", "uring", "threads")

# Exit status for a usage error (argparse's, and python's own for a script
# that cannot be opened).
EXIT_USAGE = 2


class UsageError(Exception):
    """Bad input from the command line: reported in one line, exit status 2."""


def _error(prog, message):
    print(f"{prog}: error: {message}", file=sys.stderr)
    return EXIT_USAGE


def check_loop(engine):
    """Make and close one loop with ``engine`` (None: ``AIOLOOP_ENGINE``)
    and the AIOLOOP_* settings of the environment, so that a bad value or
    an engine this machine refuses is one line (UsageError) before the
    program starts, not a traceback from the program's first loop."""
    try:
        aioloop.new_event_loop(engine=engine).close()
    except OSError as exc:
        name = engine or os.environ.get("AIOLOOP_ENGINE")
        raise UsageError(f"engine {name!r} is not available here: {exc}") from None
    except ValueError as exc:
        if engine is None and os.environ.get("AIOLOOP_ENGINE", "auto") not in ENGINES + ("",):
            raise UsageError(f"AIOLOOP_ENGINE={os.environ['AIOLOOP_ENGINE']!r} is not an engine "
                             f"(choose from {', '.join(ENGINES)})") from None
        raise UsageError(str(exc)) from None


# -- making aioloop the loop asyncio creates ---------------------------------

def use_aioloop(engine=None, *, policy=None):
    """Make every loop that asyncio creates by default an aioloop loop.

    Up to Python 3.13 an aioloop policy is set: ``asyncio.run()``,
    ``asyncio.Runner()``, ``asyncio.new_event_loop()`` and the implicit loop
    of ``asyncio.get_event_loop()`` all ask the policy.  From 3.14 on, where
    policies are deprecated (and gone in 3.16), and with ``policy=False``,
    the loop factory comes in without one: ``asyncio.new_event_loop`` is
    replaced in ``asyncio`` and ``asyncio.events``, and ``Runner`` (and so
    ``asyncio.run``) calls ``events.new_event_loop()`` when it has no
    ``loop_factory``.  ``policy=True`` still sets a policy up to 3.15
    (through the private setter on 3.14-3.15).

    ``engine`` (None: ``AIOLOOP_ENGINE`` or auto) goes to every new loop.
    Returns the loop factory.
    """
    factory = functools.partial(aioloop.new_event_loop, engine=engine)
    policy_class = getattr(aioloop, "EventLoopPolicy", None)
    if policy is None:
        policy = policy_class is not None and sys.version_info < (3, 14)
    if policy:
        if policy_class is None:
            raise RuntimeError("this Python has no event loop policies")

        class _Policy(policy_class):
            def _loop_factory(self):
                return factory()

        setter = getattr(events, "_set_event_loop_policy", None)
        if setter is None:
            asyncio.set_event_loop_policy(_Policy())
        else:
            setter(_Policy())
    else:
        @functools.wraps(events.new_event_loop)
        def new_event_loop():
            return factory()

        events.new_event_loop = new_event_loop
        asyncio.new_event_loop = new_event_loop
    return factory


# -- run -----------------------------------------------------------------------

RUN_USAGE = "python -m aioloop run [-h] [--engine {auto,uring,threads}] (-m module | script) [args ...]"
RUN_HELP = f"""usage: {RUN_USAGE}

Run an asyncio program on aioloop, unmodified: asyncio.run(), asyncio.Runner,
asyncio.new_event_loop() and asyncio.get_event_loop() give aioloop loops.
sys.argv, __main__ and the exit status are those of `python script [args]`
or `python -m module [args]`.

positional arguments:
  script                the program's file (or a directory or zip file
                        holding __main__.py)
  args                  the program's arguments, passed on as they are

options:
  -h, --help            show this help message and exit
  -m module             run a module as `python -m module` does
  --engine {{auto,uring,threads}}
                        the completion engine of every loop (default:
                        AIOLOOP_ENGINE, else auto)
"""


def _parse_run(argv):
    """Split ``run``'s own options from the program and its arguments.

    Returns (engine, module or None, script or None, program args), or None
    when help was asked for.  Everything after the program is its own.
    """
    engine = None
    i = 0
    while i < len(argv):
        arg = argv[i]
        if arg in ("-h", "--help"):
            return None
        if arg == "--engine" or arg.startswith("--engine="):
            if "=" in arg:
                value = arg.split("=", 1)[1]
            else:
                i += 1
                if i == len(argv):
                    raise UsageError("argument --engine: expected one argument")
                value = argv[i]
            if value not in ENGINES:
                raise UsageError(f"argument --engine: invalid choice: {value!r} "
                                 f"(choose from {', '.join(ENGINES)})")
            engine = value
        elif arg == "-m" or (arg.startswith("-m") and len(arg) > 2):
            module = arg[2:]
            if not module:
                i += 1
                if i == len(argv):
                    raise UsageError("argument -m: expected a module name")
                module = argv[i]
            return engine, module, None, argv[i + 1:]
        elif arg == "--":
            i += 1
            if i == len(argv):
                break
            return engine, None, argv[i], argv[i + 1:]
        elif arg.startswith("-") and arg != "-":
            raise UsageError(f"unrecognized option {arg!r} (the program's own "
                             "options go after the script or module)")
        else:
            return engine, None, arg, argv[i + 1:]
        i += 1
    raise UsageError("the program to run is required: a script or -m module")


def _trim_traceback(tb):
    """Drop the frames of this module and runpy from the top of ``tb``, so a
    failing program's traceback starts at the program, as under python."""
    ours = {os.path.normcase(os.path.abspath(f)) for f in (__file__, runpy.__file__)}
    while tb is not None and tb.tb_next is not None:
        name = os.path.normcase(os.path.abspath(tb.tb_frame.f_code.co_filename))
        if name not in ours:
            break
        tb = tb.tb_next
    return tb


def _exec_script(path):
    """Run the file at ``path`` as ``__main__``, as ``python path`` does:
    the module stays in sys.modules, ``__file__`` is absolute, sys.argv[0]
    is the path as given."""
    full = os.path.abspath(path)
    if os.path.isdir(full) or not full.endswith(".py") and _is_zip(full):
        # A directory or zip with __main__.py: runpy knows the layout.
        sys.path.insert(0, full)
        runpy.run_path(full, run_name="__main__")
        return
    from importlib.machinery import SourceFileLoader
    with io.open_code(full) as f:
        source = f.read()
    code = compile(source, full, "exec", dont_inherit=True)
    main = types.ModuleType("__main__")
    main.__dict__.update(__file__=full, __cached__=None, __package__=None,
                         __loader__=SourceFileLoader("__main__", full),
                         __builtins__=sys.modules["builtins"])
    sys.modules["__main__"] = main
    exec(code, main.__dict__)


def _is_zip(path):
    import zipfile
    try:
        return zipfile.is_zipfile(path)
    except OSError:
        return False


def run_main(argv, prog="python -m aioloop run"):
    try:
        parsed = _parse_run(argv)
    except UsageError as exc:
        print(f"usage: {RUN_USAGE}", file=sys.stderr)
        return _error(prog, str(exc))
    if parsed is None:
        sys.stdout.write(RUN_HELP)
        return 0
    engine, module, script, args = parsed
    # Fail here, in one line, if the engine or a setting cannot work.
    try:
        check_loop(engine)
    except UsageError as exc:
        return _error(prog, str(exc))
    use_aioloop(engine)

    if module is not None:
        sys.argv = ["-m", *args]   # argv[0] becomes the module's file, as under -m
    else:
        if not os.path.exists(script):
            print(f"{sys.executable}: can't open file {os.path.abspath(script)!r}: "
                  f"[Errno 2] No such file or directory", file=sys.stderr)
            return EXIT_USAGE
        sys.argv = [script, *args]
        # `python -m aioloop` put the working directory first on sys.path;
        # `python script` puts the script's directory there instead.
        sys.path[0] = os.path.dirname(os.path.realpath(script))
    try:
        if module is not None:
            runpy._run_module_as_main(module, alter_argv=True)
        else:
            _exec_script(script)
    except (SystemExit, KeyboardInterrupt):
        raise
    except BaseException as exc:
        # What the interpreter does with an uncaught exception, without our
        # frames: the program's (possibly replaced) excepthook, status 1.
        # (The traceback printed is the exception's own, so trim that.)
        tb = _trim_traceback(exc.__traceback__)
        sys.excepthook(type(exc), exc.with_traceback(tb), tb)
        return 1
    return 0


# -- serve ---------------------------------------------------------------------

def _workers(value):
    if value == "auto":
        try:
            return len(os.sched_getaffinity(0))
        except (AttributeError, OSError):
            return os.cpu_count() or 1
    try:
        n = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number or 'auto', got {value!r}") from None
    if n < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {n}")
    return n


def _port(value):
    try:
        n = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a port number, got {value!r}") from None
    if not 0 <= n <= 65535:
        raise argparse.ArgumentTypeError(f"must be 0-65535, got {n}")
    return n


def _seconds(value):
    try:
        t = float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected seconds, got {value!r}") from None
    if not t >= 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {value}")
    return t


def serve_parser():
    p = argparse.ArgumentParser(
        prog="python -m aioloop serve",
        description="Serve an aiohttp application on aioloop. APP is "
                    "'module:attribute', naming a web.Application or a callable "
                    "(sync or async) that returns one; a callable that takes an "
                    "argument gets the list of ARGS given after `--` (as "
                    "`python -m aiohttp.web` passes its unknown arguments).")
    p.add_argument("app", metavar="APP", help="module:attribute of the application or its factory")
    p.usage = "%(prog)s [options] APP [-- ARGS ...]"
    p.add_argument("--host", default="127.0.0.1",
                   help="address to listen on (default: 127.0.0.1; '' for all)")
    p.add_argument("--port", type=_port, default=8080,
                   help="TCP port (default: 8080; 0 picks a free one)")
    p.add_argument("--unix", metavar="PATH", help="listen on a Unix socket instead of TCP")
    p.add_argument("--workers", type=_workers, default=1, metavar="N",
                   help="processes sharing the socket ('auto': one per core; "
                        "default: 1); a worker that dies is restarted")
    p.add_argument("--engine", choices=ENGINES, default=None,
                   help="completion engine (default: AIOLOOP_ENGINE, else auto)")
    p.add_argument("--ssl-certfile", metavar="FILE", help="serve HTTPS with this certificate chain")
    p.add_argument("--ssl-keyfile", metavar="FILE", help="the certificate's private key")
    p.add_argument("--access-log", action=argparse.BooleanOptionalAction, default=True,
                   help="log each request to stderr (default: on)")
    p.add_argument("--shutdown-timeout", type=_seconds, default=30.0, metavar="SECONDS",
                   help="on SIGTERM/SIGINT, how long requests in flight may take "
                        "to finish (default: 30)")
    p.add_argument("--backlog", type=int, default=2048,
                   help="listen backlog (default: 2048, as gunicorn's and uvicorn's)")
    # Internal, set by the supervisor for its workers.
    p.add_argument("--worker-ready-fd", type=int, default=None, help=argparse.SUPPRESS)
    p.add_argument("--worker-listen-fd", type=int, default=None, help=argparse.SUPPRESS)
    return p


def _check_serve_options(opts):
    if opts.ssl_keyfile and not opts.ssl_certfile:
        raise UsageError("--ssl-keyfile needs --ssl-certfile")
    for name in ("ssl_certfile", "ssl_keyfile"):
        path = getattr(opts, name)
        if path and not os.path.isfile(path):
            raise UsageError(f"--{name.replace('_', '-')}: no such file: {path!r}")
    check_loop(opts.engine)


def serve_main(argv, prog="python -m aioloop serve"):
    parser = serve_parser()
    app_args = []
    if "--" in argv:
        i = argv.index("--")
        argv, app_args = argv[:i], argv[i + 1:]
    opts = parser.parse_args(argv)
    opts.app_args = app_args
    try:
        import aiohttp  # noqa: F401
    except ImportError as exc:
        return _error(prog, f"serve needs aiohttp, which cannot be imported here ({exc}): "
                            f"{sys.executable} -m pip install aiohttp")
    try:
        _check_serve_options(opts)
        if ":" not in opts.app:
            raise UsageError(f"APP must be 'module:attribute', got {opts.app!r}")
    except UsageError as exc:
        return _error(prog, str(exc))
    if opts.workers > 1 and opts.worker_ready_fd is None:
        from . import _supervisor
        return _supervisor.supervise(opts, prog)
    from . import _serve
    return _serve.serve(opts, prog)


# -- entry point -----------------------------------------------------------------

MAIN_HELP = """usage: python -m aioloop {run,serve} ...

commands:
  run     run an asyncio program (script or -m module) on aioloop
  serve   serve an aiohttp application on aioloop

`python -m aioloop COMMAND --help` describes each.
"""


def main(argv=None):
    if argv is None:
        argv = sys.argv[1:]
    if not argv or argv[0] in ("-h", "--help"):
        (sys.stdout if argv else sys.stderr).write(MAIN_HELP)
        return 0 if argv else EXIT_USAGE
    if argv[0] == "--version":
        print(f"aioloop {aioloop.__version__}")
        return 0
    command, rest = argv[0], argv[1:]
    if command == "run":
        return run_main(rest)
    if command == "serve":
        return serve_main(rest)
    sys.stderr.write(MAIN_HELP)
    return _error("python -m aioloop", f"unknown command {command!r} (choose run or serve)")
