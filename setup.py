"""Build of the C extension aioloop._core (metadata lives in pyproject.toml).

AIOLOOP_SANITIZE=address|thread builds the extension with that sanitizer;
AIOLOOP_DEBUG=1 builds without optimisation.  The io_uring engine is built
when liburing's headers are found (Debian: liburing-dev), with liburing.a
linked in where it exists so the extension needs no liburing.so at run time
(AIOLOOP_URING_STATIC=0 links the shared library); AIOLOOP_URING=0 leaves it
out, and then only the threads engine exists.  The build prints one line
saying which engines it builds and why."""
import glob
import os
import subprocess
import tempfile

import sysconfig

from setuptools import Extension, setup

if sysconfig.get_config_var("Py_GIL_DISABLED"):
    # The extension relies on the GIL (docs/architecture.md, "Free-threaded
    # Python"): refuse in one clear line rather than build something that
    # would re-enable the GIL or misbehave.
    raise SystemExit(
        "aioloop: cannot build for a free-threaded Python (Py_GIL_DISABLED=1): "
        "aioloop needs the GIL. Build and install it with the regular build of "
        "this Python (python3.X rather than python3.Xt).")

cflags = ["-std=c11", "-Wall", "-Wextra", "-Werror", "-D_GNU_SOURCE", "-fvisibility=hidden"]
ldflags = ["-lpthread"]
san = os.environ.get("AIOLOOP_SANITIZE", "")
if san:
    cflags += ["-DAIO_DEBUG"]
if san == "address":
    cflags += ["-fsanitize=address,undefined", "-fno-omit-frame-pointer"]
    ldflags += ["-fsanitize=address,undefined"]
elif san == "thread":
    cflags += ["-fsanitize=thread"]
    ldflags += ["-fsanitize=thread"]


def compiles(args):
    """Whether a program using liburing compiles and links with ``args``."""
    cc = os.environ.get("CC", "cc")
    with tempfile.TemporaryDirectory() as d:
        src = os.path.join(d, "t.c")
        with open(src, "w") as f:
            f.write("#include <liburing.h>\nint main(void){struct io_uring r;"
                    "return io_uring_queue_init(2, &r, 0);}\n")
        try:
            r = subprocess.run([cc, src, "-o", os.path.join(d, "t")] + args,
                               capture_output=True)
        except OSError:
            return False
        return r.returncode == 0


def static_liburing():
    """The path of liburing.a where the compiler finds one, else None."""
    try:
        r = subprocess.run([os.environ.get("CC", "cc"), "-print-file-name=liburing.a"],
                           capture_output=True, text=True)
    except OSError:
        return None
    path = r.stdout.strip()
    return path if os.path.isabs(path) and os.path.exists(path) else None


def uring_link_args():
    """(link arguments for liburing or None, why: for the build's one line).

    liburing.a is linked in where it exists (Debian's liburing-dev has it),
    so the extension (and a wheel of it) needs no liburing.so at run time;
    AIOLOOP_URING_STATIC=0 links the shared library instead."""
    if os.environ.get("AIOLOOP_URING", "1") == "0":
        return None, "AIOLOOP_URING=0"
    static = static_liburing() if os.environ.get("AIOLOOP_URING_STATIC", "1") != "0" else None
    if static and compiles([static]):
        # --exclude-libs: liburing's symbols stay private to the extension
        return ["-Wl,--exclude-libs,ALL", static], "liburing linked statically"
    if compiles(["-luring"]):
        return ["-luring"], "liburing linked as a shared library"
    return None, ("liburing headers or library not found: apt-get install liburing-dev"
                  " / dnf install liburing-devel")


uring_args, why = uring_link_args()
if uring_args:
    cflags += ["-DAIO_HAVE_URING"]
    ldflags += uring_args
    print(f"aioloop: building engines: uring, threads ({why})")
else:
    print(f"aioloop: building engine: threads only ({why})")

if os.environ.get("AIOLOOP_DEBUG"):
    cflags += ["-O0", "-g3", "-DAIO_DEBUG"]
else:
    cflags += ["-O2"]

def config_stamp():
    """A file under build/ holding this build's flags, rewritten when they
    change, and among the extension's dependencies: so a build after the
    configuration changed (liburing installed, AIOLOOP_URING=0 dropped, a
    sanitizer asked for) rebuilds the extension instead of keeping the old
    one as up to date."""
    path = os.path.join("build", "aioloop-config.txt")
    text = "\n".join(["cflags: " + " ".join(cflags), "ldflags: " + " ".join(ldflags)]) + "\n"
    try:
        with open(path) as f:
            if f.read() == text:
                return path
    except OSError:
        pass
    os.makedirs("build", exist_ok=True)
    with open(path, "w") as f:
        f.write(text)
    # setuptools compares whole-second mtimes: a build within the second of
    # the last would keep it, so the stale extension goes too.
    for built in glob.glob(os.path.join("build", "lib*", "aioloop", "_core*")):
        os.remove(built)
    return path


setup(
    ext_modules=[
        Extension(
            "aioloop._core",
            sources=sorted(glob.glob("_core/*.c")) + sorted(glob.glob("_core/engine/*.c")),
            depends=glob.glob("_core/*.h") + glob.glob("_core/engine/*.h") + [config_stamp()],
            extra_compile_args=cflags,
            extra_link_args=ldflags,
        )
    ],
)
