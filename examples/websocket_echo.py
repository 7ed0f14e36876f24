"""An aiohttp websocket echo server on aioloop: text comes back as it went,
binary messages come back reversed; GET / says how to use it.

    python examples/websocket_echo.py [PORT]    (or PORT=8081 in the environment)
    websocat ws://127.0.0.1:8081/ws       (any websocket client)

Port 0 takes a free port; the ready line says which.  Ctrl-C or SIGTERM stops it.
"""
import asyncio
import os
import signal
import sys

import aiohttp
from aiohttp import web

import aioloop


async def index(request):
    return web.Response(text="websocket echo: connect to /ws\n")


async def echo(request):
    ws = web.WebSocketResponse(heartbeat=30)
    await ws.prepare(request)
    async for msg in ws:
        if msg.type == aiohttp.WSMsgType.TEXT:
            await ws.send_str(msg.data)
        elif msg.type == aiohttp.WSMsgType.BINARY:
            await ws.send_bytes(msg.data[::-1])
    return ws


async def main(port):
    stop = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):     # Ctrl-C, or a service manager
        asyncio.get_running_loop().add_signal_handler(sig, stop.set)
    app = web.Application()
    app.router.add_get("/", index)
    app.router.add_get("/ws", echo)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", port)
    await site.start()
    host, port = runner.addresses[0][:2]
    engine = asyncio.get_running_loop().engine
    print(f"ready: ws://{host}:{port}/ws (aioloop, {engine} engine)", flush=True)
    await stop.wait()
    await runner.cleanup()


if __name__ == "__main__":
    port = int(sys.argv[1] if len(sys.argv) > 1 else os.environ.get("PORT", 8081))
    aioloop.run(main(port))
