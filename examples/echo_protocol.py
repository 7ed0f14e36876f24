"""A TCP echo server written with asyncio.Protocol, on aioloop.

    python examples/echo_protocol.py [PORT]     (or PORT=8888 in the environment)
    nc 127.0.0.1 8888

Port 0 takes a free port; the ready line says which.  Ctrl-C or SIGTERM stops it.
"""
import asyncio
import os
import signal
import sys

import aioloop


class Echo(asyncio.Protocol):
    def connection_made(self, transport):
        self.transport = transport

    def data_received(self, data):
        self.transport.write(data)

    def eof_received(self):
        return False        # close our side too once the client has finished


async def main(port):
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):     # Ctrl-C, or a service manager
        asyncio.get_running_loop().add_signal_handler(sig, stop.set)
    server = await loop.create_server(Echo, "127.0.0.1", port)
    host, port = server.sockets[0].getsockname()[:2]
    print(f"ready: echo on {host}:{port} (aioloop, {loop.engine} engine)", flush=True)
    await stop.wait()
    server.close()
    await server.wait_closed()


if __name__ == "__main__":
    port = int(sys.argv[1] if len(sys.argv) > 1 else os.environ.get("PORT", 8888))
    aioloop.run(main(port))
