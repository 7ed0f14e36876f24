"""A line-based chat server written with asyncio streams, on aioloop.

Each client first sends its name on a line; every line it sends afterwards
goes to all the other clients as "name: line".

    python examples/chat_streams.py [PORT]      (or PORT=8889 in the environment)
    nc 127.0.0.1 8889     (in two terminals)

Port 0 takes a free port; the ready line says which.  Ctrl-C or SIGTERM stops it.
"""
import asyncio
import os
import signal
import sys

import aioloop

clients = {}        # StreamWriter -> name


async def broadcast(line, sender=None):
    for writer in list(clients):
        if writer is not sender:
            writer.write(line.encode())
    for writer in list(clients):
        if writer is not sender:
            try:
                await writer.drain()
            except ConnectionError:
                clients.pop(writer, None)


async def client(reader, writer):
    writer.write(b"name? ")
    name = (await reader.readline()).decode().strip() or "anonymous"
    clients[writer] = name
    writer.write(f"welcome, {name}\n".encode())
    await broadcast(f"* {name} joined\n", writer)
    try:
        while line := await reader.readline():
            await broadcast(f"{name}: {line.decode().rstrip()}\n", writer)
    except ConnectionError:
        pass
    except asyncio.CancelledError:
        # Still running when the server stopped.  Returning instead of
        # re-raising: Python 3.11's streams log a cancelled handler task as
        # an error.  Nothing awaits this task, so nothing misses the cancel.
        clients.pop(writer, None)
        writer.close()
        return
    clients.pop(writer, None)
    writer.close()
    await broadcast(f"* {name} left\n")


async def main(port):
    stop = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):     # Ctrl-C, or a service manager
        asyncio.get_running_loop().add_signal_handler(sig, stop.set)
    server = await asyncio.start_server(client, "127.0.0.1", port)
    host, port = server.sockets[0].getsockname()[:2]
    engine = asyncio.get_running_loop().engine
    print(f"ready: chat on {host}:{port} (aioloop, {engine} engine)", flush=True)
    await stop.wait()
    server.close()
    writers = list(clients)
    clients.clear()
    for writer in writers:              # say goodbye: the handlers then see the end
        writer.write(b"* server shutting down\n")
        writer.close()
    # wait_closed: the goodbyes are sent and the connections closed before
    # the loop (and the process) ends
    await asyncio.gather(*(w.wait_closed() for w in writers), return_exceptions=True)
    await server.wait_closed()


if __name__ == "__main__":
    port = int(sys.argv[1] if len(sys.argv) > 1 else os.environ.get("PORT", 8889))
    aioloop.run(main(port))
