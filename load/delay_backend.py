"""A v1 model stand-in that answers after a fixed delay, for fan-out scenarios.

    python -m load.delay_backend PORT DELAY_MS

Every POST waits DELAY_MS then answers a fixed v1 JSON body; GET / answers 200 for readiness.
"""

import asyncio
import sys

import uvloop
from aiohttp import web

BODY = b'{"predictions":[1]}'


async def main(port: int, delay_ms: float) -> None:
    delay = delay_ms / 1000

    async def predict(request: web.Request) -> web.Response:
        await request.read()
        if delay:
            await asyncio.sleep(delay)
        return web.Response(body=BODY, content_type="application/json")

    async def ready(request: web.Request) -> web.Response:
        return web.Response(text="ok")

    app = web.Application()
    app.router.add_post("/{tail:.*}", predict)
    app.router.add_get("/", ready)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    await asyncio.Event().wait()


if __name__ == "__main__":
    uvloop.run(main(int(sys.argv[1]), float(sys.argv[2])))
