"""GET /healthz (the process is serving) and /readyz (every cache has listed once), for the
kubelet's liveness and readiness probes. aiohttp, on the controller's event loop."""

from __future__ import annotations

from collections.abc import Callable

from aiohttp import web

Check = Callable[[], tuple[bool, str]]


def health_app(live: Check, ready: Check) -> web.Application:
    async def answer(check: Check) -> web.Response:
        ok, detail = check()
        return web.Response(status=200 if ok else 503, text=f"{'ok' if ok else detail}\n")

    async def healthz(_: web.Request) -> web.Response:
        return await answer(live)

    async def readyz(_: web.Request) -> web.Response:
        return await answer(ready)

    app = web.Application()
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    return app


async def serve(app: web.Application, host: str, port: int) -> web.AppRunner:
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, host, port).start()
    return runner
