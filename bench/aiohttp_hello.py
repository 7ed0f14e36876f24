"""aiohttp "hello world" on a chosen loop; the server wrk drives.

    python -m bench.aiohttp_hello --loop aioloop|uvloop|asyncio --port 8080
"""
import argparse
import asyncio


def make_app():
    from aiohttp import web

    async def hello(request):
        return web.Response(text="Hello, world")

    app = web.Application()
    app.router.add_get("/", hello)
    return app


def loop_factory(name):
    if name == "aioloop":
        import aioloop
        return aioloop.new_event_loop
    if name == "uvloop":
        import uvloop
        return uvloop.new_event_loop
    return asyncio.SelectorEventLoop


async def serve(port):
    from aiohttp import web
    runner = web.AppRunner(make_app(), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", port)
    await site.start()
    print("ready", flush=True)
    try:
        await asyncio.Event().wait()
    finally:
        await runner.cleanup()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--loop", default="aioloop")
    ap.add_argument("--port", type=int, default=8080)
    args = ap.parse_args()
    with asyncio.Runner(loop_factory=loop_factory(args.loop)) as runner:
        try:
            runner.run(serve(args.port))
        except KeyboardInterrupt:
            pass


if __name__ == "__main__":
    main()
