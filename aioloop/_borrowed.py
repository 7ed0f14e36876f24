"""Every private asyncio name aioloop borrows, in one table.

Much of aioloop's Python face is asyncio's own code: the readiness-based
socket methods, UDP, pipes, signals, Unix sockets and sendfile of asyncio's
selector loop run unchanged over aioloop's readiness API, and a few private
helpers are called where asyncio calls them.  Private names change between
Python versions without notice, so each one aioloop uses is listed here,
once.  ``tests/test_borrowed.py`` checks on the running Python that each
exists (a Python that renames one fails there, by name) and that aioloop's
sources use no private asyncio name this table does not list.

A row is ``(where, names, use)``:

``where``
    a module of the asyncio package, or a class in one
    (``"selector_events.BaseSelectorEventLoop"``).
``names``
    the attribute, or a tuple of alternatives tried in order (the first one
    present is used; later Pythons renamed some).
``use``
    ``"loop"``: becomes an attribute of ``aioloop.Loop`` under the same name
    (``install()``); ``"inherited"``: a private method of
    ``asyncio.BaseEventLoop`` that Loop's own code calls; ``"used"``: read
    by aioloop's code (Python or C) where it is needed; ``"policy"``: the
    event loop policy base class, which Python 3.16 removes.
"""
import importlib
import sys

SELECTOR = "selector_events.BaseSelectorEventLoop"
UNIX = "unix_events._UnixSelectorEventLoop"
BASE = "base_events.BaseEventLoop"

TABLE = (
    # The readiness API and the sock_* coroutines: asyncio's selector loop
    # code over Loop._add_reader & co.
    (SELECTOR, "add_reader", "loop"),
    (SELECTOR, "remove_reader", "loop"),
    (SELECTOR, "add_writer", "loop"),
    (SELECTOR, "remove_writer", "loop"),
    (SELECTOR, "_ensure_fd_no_transport", "loop"),
    (SELECTOR, "sock_recv", "loop"),
    (SELECTOR, "_sock_recv", "loop"),
    (SELECTOR, "sock_recv_into", "loop"),
    (SELECTOR, "_sock_recv_into", "loop"),
    (SELECTOR, "sock_recvfrom", "loop"),
    (SELECTOR, "_sock_recvfrom", "loop"),
    (SELECTOR, "sock_recvfrom_into", "loop"),
    (SELECTOR, "_sock_recvfrom_into", "loop"),
    (SELECTOR, "sock_sendall", "loop"),
    (SELECTOR, "_sock_sendall", "loop"),
    (SELECTOR, "sock_sendto", "loop"),
    (SELECTOR, "_sock_sendto", "loop"),
    (SELECTOR, "sock_connect", "loop"),
    (SELECTOR, "_sock_connect", "loop"),
    (SELECTOR, "_sock_connect_cb", "loop"),
    (SELECTOR, "sock_accept", "loop"),
    (SELECTOR, "_sock_accept", "loop"),
    (SELECTOR, "_sock_read_done", "loop"),
    (SELECTOR, "_sock_write_done", "loop"),
    # TLS on an accepted connection.
    (SELECTOR, "_accept_connection2", "used"),
    # sendfile: os.sendfile() driven by the readiness API.
    (SELECTOR, "_sendfile_native", "loop"),
    (UNIX, "_sock_sendfile_native", "loop"),
    (UNIX, "_sock_sendfile_native_impl", "loop"),
    (UNIX, "_sock_sendfile_update_filepos", "loop"),
    (UNIX, "_sock_add_cancellation_callback", "loop"),
    # UDP, pipes and Unix sockets: asyncio's transports and servers.
    ("selector_events", "_SelectorDatagramTransport", "used"),   # a base class
    (UNIX, "_make_read_pipe_transport", "loop"),
    (UNIX, "_make_write_pipe_transport", "loop"),
    (UNIX, "create_unix_connection", "loop"),
    (UNIX, "create_unix_server", "loop"),
    # Subprocesses: asyncio's transport; the exit comes from aioloop's own
    # watcher (_child.py).
    ("unix_events", "_UnixSubprocessTransport", "used"),
    # Signals: set_wakeup_fd on a self-pipe read by the loop.
    (SELECTOR, "_make_self_pipe", "loop"),
    (SELECTOR, "_close_self_pipe", "loop"),
    (SELECTOR, "_read_from_self", "loop"),
    (UNIX, "_process_self_data", "loop"),
    (UNIX, "_handle_signal", "loop"),
    (UNIX, "_check_signal", "loop"),
    (UNIX, "remove_signal_handler", "loop"),
    (UNIX, "add_signal_handler", "used"),
    # BaseEventLoop's own helpers that Loop's methods call.
    (BASE, "_check_closed", "inherited"),
    (BASE, "_check_running", "inherited"),
    (BASE, "_check_default_executor", "inherited"),
    (BASE, "_set_coroutine_origin_tracking", "inherited"),
    (BASE, "_asyncgen_firstiter_hook", "inherited"),
    (BASE, "_asyncgen_finalizer_hook", "inherited"),
    # Helpers called where asyncio calls them.
    ("base_events", "_set_nodelay", "used"),
    ("base_events", "_format_handle", "used"),
    ("events", "_set_running_loop", "used"),
    ("futures", "_set_result_unless_cancelled", "used"),
    ("constants", "_SendfileMode", "used"),
    ("trsock", "TransportSocket", "used"),
    ("sslproto", "SSLProtocol", "used"),
    # The TLS layer (aioloop/_tls.py subclasses both; _core/tls.c calls
    # these SSLProtocol methods by name where it hands work back to asyncio).
    ("sslproto", "_SSLProtocolTransport", "used"),
    ("sslproto", "SSLProtocolState", "used"),
    ("sslproto.SSLProtocol", "_set_state", "used"),
    ("sslproto.SSLProtocol", "_get_app_transport", "used"),
    ("sslproto.SSLProtocol", "_write_appdata", "used"),
    ("sslproto.SSLProtocol", "_do_read", "used"),
    ("sslproto.SSLProtocol", "_do_write", "used"),
    ("sslproto.SSLProtocol", "_process_outgoing", "used"),
    ("sslproto.SSLProtocol", "_control_ssl_reading", "used"),
    ("sslproto.SSLProtocol", "_call_eof_received", "used"),
    ("sslproto.SSLProtocol", "_start_shutdown", "used"),
    ("sslproto.SSLProtocol", "_fatal_error", "used"),
    ("format_helpers", "_format_callback_source", "used"),
    ("format_helpers", "extract_stack", "used"),
    # 3.14 deprecates the public iscoroutinefunction; asyncio itself calls
    # the private one.
    ("coroutines", ("_iscoroutinefunction", "iscoroutinefunction"), "used"),
    # The C core's StreamTransport subclasses it (module.c checks its layout).
    ("transports", "_FlowControlMixin", "used"),
    # 3.14 renamed the public BaseDefaultEventLoopPolicy (deprecated) to this.
    ("events", ("_BaseDefaultEventLoopPolicy", "BaseDefaultEventLoopPolicy"), "policy"),
)

_MISSING = object()


def _where(where):
    module, _, cls = where.partition(".")
    obj = importlib.import_module(f"asyncio.{module}")
    return getattr(obj, cls) if cls else obj


def _get(obj, name):
    # A module is read through its namespace: a module-level __getattr__
    # (3.14 serves deprecated names through one, with a warning) is never
    # asked.  A class is read with getattr: its bases count.
    if isinstance(obj, type):
        return getattr(obj, name, _MISSING)
    return vars(obj).get(name, _MISSING)


def _row(where, name):
    for row in TABLE:
        names = row[1] if isinstance(row[1], tuple) else (row[1],)
        if row[0] == where and name in names:
            return row
    raise LookupError(f"asyncio.{where}.{name} is not in aioloop's table of borrowed names")


def lookup(where, name):
    """The object a row of the table names: the first of its alternatives
    present on this Python, or None when none is.  ``name`` is any one of
    the row's names; a name the table does not list is a LookupError."""
    row = _row(where, name)
    names = row[1] if isinstance(row[1], tuple) else (row[1],)
    try:
        obj = _where(where)
    except (ImportError, AttributeError):
        return None
    for n in names:
        found = _get(obj, n)
        if found is not _MISSING:
            return found
    return None


def missing():
    """The rows whose names are all absent on the running Python (policy
    rows count only before 3.16), as ``where.name`` strings."""
    out = []
    for where, names, use in TABLE:
        if use == "policy" and sys.version_info >= (3, 16):
            continue
        first = names[0] if isinstance(names, tuple) else names
        if lookup(where, first) is None:
            out.append(f"{where}.{first}")
    return out


def install(cls):
    """Sets each ``"loop"`` row on ``cls`` under its own name.  A name that
    ``cls`` defines itself is an error: the table and the class would
    disagree about where that method comes from."""
    for where, name, use in TABLE:
        if use != "loop":
            continue
        if name in vars(cls):
            raise TypeError(f"{cls.__name__}.{name} is defined by the class and borrowed")
        obj = lookup(where, name)
        if obj is None:
            raise ImportError(f"asyncio.{where}.{name} is missing on this Python")
        setattr(cls, name, obj)
