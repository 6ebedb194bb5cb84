"""Bare one-hop proxies on candidate HTTP stacks: what each server and client costs per request.

    python -m load.proxy_stacks aiohttp aiohttp|pyreqwest|rnet PORT UPSTREAM_URL
    PROXY_CLIENT=aiohttp|pyreqwest PROXY_UPSTREAM=URL \
        python -m granian --interface rsgi --runtime-mode st --factory \
        load.proxy_stacks:rsgi_app ...

Each proxy does what the router does for a 1-step graph, and nothing more: read the request
body, POST it to the upstream on a pooled keep-alive client, parse the answer with orjson (the
router's Payload does when it checks it is JSON), and answer with the upstream's bytes. The
bench (`load/bench.py`, scenarios `proxy-<server>-<client>`) runs them beside
`proxy-baseline` with the same pinning, so the choice of stack is made on measured figures.
"""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Any

import orjson

JSON_HEADERS = {"Content-Type": "application/json"}
Post = Callable[[bytes], Awaitable[tuple[int, bytes]]]


async def aiohttp_client(upstream: str) -> Post:
    import aiohttp

    session = aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=1024), skip_auto_headers=("User-Agent",)
    )

    async def post(body: bytes) -> tuple[int, bytes]:
        async with session.post(upstream, data=body, headers=JSON_HEADERS) as answer:
            return answer.status, await answer.read()

    return post


async def pyreqwest_client(upstream: str) -> Post:
    from pyreqwest.client import ClientBuilder

    client = (
        ClientBuilder()
        .max_connections(1024)
        .follow_redirects(False)
        .timeout(timedelta(seconds=60))
        .build()
    )

    async def post(body: bytes) -> tuple[int, bytes]:
        request = client.post(upstream).headers(JSON_HEADERS).body_bytes(body).build()
        answer = await request.send()
        return answer.status, bytes(await answer.bytes())

    return post


async def rnet_client(upstream: str) -> Post:
    import rnet

    client = rnet.Client(referer=False, allow_redirects=False, pool_max_size=1024)

    async def post(body: bytes) -> tuple[int, bytes]:
        answer = await client.post(upstream, body=body, headers=JSON_HEADERS)
        return answer.status, await answer.bytes()

    return post


CLIENTS: dict[str, Callable[[str], Awaitable[Post]]] = {
    "aiohttp": aiohttp_client,
    "pyreqwest": pyreqwest_client,
    "rnet": rnet_client,
}


def _answer(status: int, data: bytes) -> tuple[int, bytes]:
    orjson.loads(data)  # what the router pays to know the answer is JSON
    return status, data


async def serve_aiohttp(client: str, port: int, upstream: str) -> None:
    from aiohttp import web

    post = await CLIENTS[client](upstream)

    async def proxy(request: web.Request) -> web.Response:
        status, data = _answer(*await post(await request.read()))
        return web.Response(status=status, body=data, headers=JSON_HEADERS)

    app = web.Application()
    app.router.add_post("/{tail:.*}", proxy)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    await asyncio.Event().wait()


class RsgiProxy:
    """An RSGI application (granian): the client is made in the worker's loop, at its start."""

    def __init__(self, client: str, upstream: str) -> None:
        self._client = client
        self._upstream = upstream
        self._post: Post | None = None
        self._starting: asyncio.Task[Post] | None = None

    async def __call__(self, scope: Any, proto: Any) -> None:
        if scope.proto != "http":
            return
        post = self._post
        if post is None:
            if self._starting is None:
                self._starting = asyncio.ensure_future(CLIENTS[self._client](self._upstream))
            post = self._post = await self._starting
        status, data = _answer(*await post(await proto()))
        proto.response_bytes(status, [("content-type", "application/json")], data)


def rsgi_app() -> RsgiProxy:
    """granian's `--factory` target; the bench passes the client and upstream in the env."""
    return RsgiProxy(os.environ["PROXY_CLIENT"], os.environ["PROXY_UPSTREAM"])


if __name__ == "__main__":
    import uvloop

    server, client_name, port_arg, upstream_url = sys.argv[1:5]
    if server != "aiohttp":
        raise SystemExit("granian stacks run under granian's CLI (see the module docstring)")
    uvloop.run(serve_aiohttp(client_name, int(port_arg), upstream_url))
