"""Build of the C extension aioloop._core (metadata lives in pyproject.toml).

AIOLOOP_SANITIZE=address|thread builds the extension with that sanitizer;
AIOLOOP_DEBUG=1 builds without optimisation."""
import glob
import os

from setuptools import Extension, setup

cflags = ["-std=c11", "-Wall", "-Wextra", "-Werror", "-D_GNU_SOURCE", "-fvisibility=hidden"]
ldflags = ["-lpthread"]
san = os.environ.get("AIOLOOP_SANITIZE", "")
if san == "address":
    cflags += ["-fsanitize=address,undefined", "-fno-omit-frame-pointer"]
    ldflags += ["-fsanitize=address,undefined"]
elif san == "thread":
    cflags += ["-fsanitize=thread"]
    ldflags += ["-fsanitize=thread"]
if os.environ.get("AIOLOOP_DEBUG"):
    cflags += ["-O0", "-g3"]
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
