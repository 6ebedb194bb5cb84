"""The cost of one HTTP hop in Python: a bare reverse proxy with no graph logic.

    python -m load.proxy_baseline PORT UPSTREAM_URL

aiohttp server + one pooled aiohttp client session, on uvloop, forwarding the body to one URL
and answering with the upstream's bytes. The bench measures the router against this.
"""

import asyncio
import sys

import aiohttp
import uvloop
from aiohttp import web


async def main(port: int, upstream: str) -> None:
    session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=1024))

    async def proxy(request: web.Request) -> web.Response:
        async with session.post(upstream, data=await request.read()) as answer:
            body = await answer.read()
            return web.Response(status=answer.status, body=body, content_type=answer.content_type)

    app = web.Application()
    app.router.add_post("/{tail:.*}", proxy)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    await asyncio.Event().wait()


if __name__ == "__main__":
    uvloop.run(main(int(sys.argv[1]), sys.argv[2]))
