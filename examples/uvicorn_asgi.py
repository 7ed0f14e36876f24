"""A plain ASGI application served by uvicorn on aioloop.

    python examples/uvicorn_asgi.py [PORT]      (or PORT=8000 in the environment)
    curl http://127.0.0.1:8000/       ->  {"hello": "world", "loop": "aioloop.Loop", ...}
    curl -d 'some body' http://127.0.0.1:8000/echo

The same application from uvicorn's command line:

    uvicorn --loop aioloop:new_event_loop examples.uvicorn_asgi:app

Port 0 takes a free port; the ready line says which.  Ctrl-C stops it.
"""
import asyncio
import json
import os
import sys

import uvicorn


async def app(scope, receive, send):
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
    assert scope["type"] == "http"
    body = b""
    more = True
    while more:
        message = await receive()
        body += message.get("body", b"")
        more = message.get("more_body", False)
    loop = asyncio.get_running_loop()
    if scope["path"] == "/echo":
        status, payload, ctype = 200, body, b"application/octet-stream"
    elif scope["path"] == "/":
        status, ctype = 200, b"application/json"
        payload = json.dumps({"hello": "world", "loop": f"{type(loop).__module__.split('.')[0]}."
                              f"{type(loop).__qualname__}",
                              "engine": getattr(loop, "engine", None)}).encode()
    else:
        status, payload, ctype = 404, b"not found\n", b"text/plain"
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", ctype),
                            (b"content-length", str(len(payload)).encode())]})
    await send({"type": "http.response.body", "body": payload})


class Server(uvicorn.Server):
    async def startup(self, sockets=None):
        await super().startup(sockets)
        if self.started:
            host, port = self.servers[0].sockets[0].getsockname()[:2]
            engine = asyncio.get_running_loop().engine
            print(f"ready: http://{host}:{port}/ (uvicorn on aioloop, {engine} engine)",
                  flush=True)


if __name__ == "__main__":
    port = int(sys.argv[1] if len(sys.argv) > 1 else os.environ.get("PORT", 8000))
    config = uvicorn.Config(app, host="127.0.0.1", port=port, loop="aioloop:new_event_loop",
                            log_level="warning")
    try:
        Server(config).run()
    except KeyboardInterrupt:      # uvicorn re-raises the Ctrl-C it caught once it has stopped
        pass
