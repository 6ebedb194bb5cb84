"""Shared fixtures: a scripted backend and a router process factory (see tests/support.py)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
from collections.abc import AsyncIterator
from typing import Any

import orjson
import pytest
from aiohttp import web

from tests.support import (
    LOOPBACK,
    Backend,
    RouterProcess,
    StartRouter,
    backend_app,
    free_port,
    serving,
    wait_ready,
)


@pytest.fixture
async def backend() -> AsyncIterator[Backend]:
    calls: list[dict[str, Any]] = []
    arrived = asyncio.Event()
    abandoned: list[str] = []
    # handler_cancellation: a backend stops work when its caller hangs up, so every task left
    # in this process after a test is the router's (the reliability suite counts them).
    runner = web.AppRunner(
        backend_app(calls, arrived, abandoned), access_log=None, handler_cancellation=True
    )
    await runner.setup()
    site = web.TCPSite(runner, LOOPBACK, 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        yield Backend(f"http://{LOOPBACK}:{port}", calls, arrived, abandoned)
    finally:
        await runner.cleanup()


@pytest.fixture
def router() -> StartRouter:
    """`async with router(spec, env={...}, args=[...]) as r:` runs `python -m router`."""

    @contextlib.asynccontextmanager
    async def start(
        spec: dict[str, Any] | str,
        env: dict[str, str] | None = None,
        args: list[str] | None = None,
    ) -> AsyncIterator[RouterProcess]:
        port = free_port()
        graph_json = spec if isinstance(spec, str) else orjson.dumps(spec).decode()
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "router",
            "--graph-json",
            graph_json,
            "--host",
            LOOPBACK,
            "--port",
            str(port),
            "--drain-seconds",
            "0.2",
            *(args or []),
            env={**os.environ, **(env or {})},
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.PIPE,
        )
        url = f"http://{LOOPBACK}:{port}"
        try:
            await wait_ready(url, process)
            yield RouterProcess(url, process)
        finally:
            if process.returncode is None:
                process.terminate()
                try:
                    await asyncio.wait_for(process.wait(), 15)
                except TimeoutError:
                    process.kill()
                    await process.wait()
            if process.stderr is not None:
                await process.stderr.read()

    return start


@pytest.fixture
def graph_server() -> Any:
    """`async with graph_server(spec, **build_app_kwargs) as url:` serves a graph in-process.

    The router app is the real one (`router.app.build_app`) on a real socket on 127.0.0.1;
    only the process boundary is skipped, so tests can inject a seeded rng or a clock.
    """
    from router.app import build_app
    from router.graph import compile_graph
    from schemas.valid_graph import validate_graph

    @contextlib.asynccontextmanager
    async def serve(spec: dict[str, Any], **kwargs: Any) -> AsyncIterator[str]:
        app = build_app(compile_graph(validate_graph(spec)), **kwargs)
        async with serving(app, handler_cancellation=True) as url:
            yield url

    return serve
