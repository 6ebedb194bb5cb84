"""A streaming model stand-in for the streaming rows of `make bench`: Server-Sent Events.

    python -m load.sse_backend PORT

`POST /sse/<events>/<gap_ms>` answers `text/event-stream` with that many events of about 100
bytes (an OpenAI chat chunk's size), `gap_ms` apart, as a model emits tokens; GET / answers 200
for readiness.
"""

import asyncio
import sys

import uvloop
from aiohttp import web

# About the size of one OpenAI chat.completion.chunk event carrying one token.
PAD = "x" * 72


async def main(port: int) -> None:
    async def sse(request: web.Request) -> web.StreamResponse:
        await request.read()
        events = int(request.match_info["events"])
        gap = float(request.match_info["gap_ms"]) / 1000
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        for i in range(events):
            if i and gap:
                await asyncio.sleep(gap)
            await response.write(b'data: {"i":%d,"t":"%s"}\n\n' % (i, PAD.encode()))
        await response.write_eof()
        return response

    async def ready(request: web.Request) -> web.Response:
        return web.Response(text="ok")

    app = web.Application()
    app.router.add_post("/sse/{events}/{gap_ms}", sse)
    app.router.add_get("/", ready)
    runner = web.AppRunner(app, access_log=None, handler_cancellation=True)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port, backlog=4096).start()
    await asyncio.Event().wait()


if __name__ == "__main__":
    uvloop.run(main(int(sys.argv[1])))
