"""aiohttp "hello world" on aioloop.

    python examples/aiohttp_hello.py [PORT]     (or PORT=8080 in the environment)
    curl http://127.0.0.1:8080/            ->  Hello, world
    curl http://127.0.0.1:8080/hello/you   ->  Hello, you

Port 0 takes a free port; the ready line says which.  Ctrl-C or SIGTERM stops it.
"""
import asyncio
import os
import signal
import sys

from aiohttp import web

import aioloop


async def hello(request):
    name = request.match_info.get("name", "world")
    return web.Response(text=f"Hello, {name}")


async def main(port):
    stop = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):     # Ctrl-C, or a service manager
        asyncio.get_running_loop().add_signal_handler(sig, stop.set)
    app = web.Application()
    app.router.add_get("/", hello)
    app.router.add_get("/hello/{name}", hello)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", port)
    await site.start()
    host, port = runner.addresses[0][:2]
    engine = asyncio.get_running_loop().engine
    print(f"ready: http://{host}:{port}/ (aioloop, {engine} engine)", flush=True)
    await stop.wait()
    await runner.cleanup()


if __name__ == "__main__":
    port = int(sys.argv[1] if len(sys.argv) > 1 else os.environ.get("PORT", 8080))
    aioloop.run(main(port))
