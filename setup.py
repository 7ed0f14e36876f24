"""Build of the C extension aioloop._core (metadata lives in pyproject.toml).

AIOLOOP_SANITIZE=address|thread builds the extension with that sanitizer;
AIOLOOP_DEBUG=1 builds without optimisation.  The io_uring engine is built
when liburing's headers are found (Debian: liburing-dev); AIOLOOP_URING=0
leaves it out, and then only the threads engine exists."""
import glob
import os
import subprocess
import tempfile

from setuptools import Extension, setup

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


def have_liburing():
    """Whether a program using liburing compiles and links here."""
    if os.environ.get("AIOLOOP_URING", "1") == "0":
        return False
    cc = os.environ.get("CC", "cc")
    with tempfile.TemporaryDirectory() as d:
        src = os.path.join(d, "t.c")
        with open(src, "w") as f:
            f.write("#include <liburing.h>\nint main(void){struct io_uring r;"
                    "return io_uring_queue_init(2, &r, 0);}\n")
        r = subprocess.run([cc, src, "-o", os.path.join(d, "t"), "-luring"],
                           capture_output=True)
        return r.returncode == 0


if have_liburing():
    cflags += ["-DAIO_HAVE_URING"]
    ldflags += ["-luring"]
else:
    print("aioloop: liburing not found (Debian: liburing-dev): building the threads engine only")

if os.environ.get("AIOLOOP_DEBUG"):
    cflags += ["-O0", "-g3", "-DAIO_DEBUG"]
else:
    cflags += ["-O2"]

setup(
    ext_modules=[
        Extension(
            "aioloop._core",
            sources=sorted(glob.glob("_core/*.c")) + sorted(glob.glob("_core/engine/*.c")),
            depends=glob.glob("_core/*.h") + glob.glob("_core/engine/*.h"),
            extra_compile_args=cflags,
            extra_link_args=ldflags,
        )
    ],
)
