"""Test support: scripted model backends and router processes, all real, all on 127.0.0.1.

`backend` is an aiohttp server in the test's loop whose paths script a model's behaviour
(echo, classify, fail with a status, answer slowly, answer non-JSON, show headers). `router`
starts `python -m router` as a subprocess exactly as KServe's controller would run it, waits
for `/readyz`, and stops it afterwards, so nothing outlives a test.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import orjson
from aiohttp import web

LOOPBACK = "127.0.0.1"
ROUTER_START_TIMEOUT = 20.0  # cold imports on a loaded 2-core CI machine can take seconds


@dataclass
class Backend:
    """A running scripted backend; `calls` records (path, body, headers, start, end)."""

    url: str
    calls: list[dict[str, Any]] = field(default_factory=list)
    arrived: asyncio.Event = field(default_factory=asyncio.Event)  # set by the first call
    abandoned: list[str] = field(default_factory=list)  # /watch calls whose caller hung up

    def at(self, path: str) -> str:
        return f"{self.url}{path}"

    def paths(self) -> list[str]:
        return [c["path"] for c in self.calls]


FLAKY = web.AppKey("flaky", dict[str, int])
ABANDONED = web.AppKey("abandoned", list[str])


def backend_app(
    record: list[dict[str, Any]],
    arrived: asyncio.Event,
    abandoned: list[str] | None = None,
) -> web.Application:
    async def handle(request: web.Request) -> web.StreamResponse:
        body = await request.read()
        started = time.monotonic()
        call: dict[str, Any] = {
            "path": request.path,
            "body": body,
            "headers": dict(request.headers),
            "start": started,
        }
        record.append(call)
        arrived.set()
        try:
            return await _script(request, body)
        finally:
            call["end"] = time.monotonic()

    app = web.Application()
    app[FLAKY] = {}
    app[ABANDONED] = abandoned if abandoned is not None else []
    app.router.add_route("*", "/{tail:.*}", handle)
    return app


async def _script(request: web.Request, body: bytes) -> web.StreamResponse:
    parts = request.path.strip("/").split("/")
    kind, arg = parts[0], (parts[1] if len(parts) > 1 else "")
    received: Any = None
    with contextlib.suppress(orjson.JSONDecodeError):
        received = orjson.loads(body) if body else None
    if kind == "echo":  # /echo/<model>
        return web.json_response({"model": arg, "received": received})
    if kind == "classify":  # /classify/<label>: a v1 classifier that always says <label>
        return web.json_response({"predictions": [{"label": arg, "score": 0.9}]})
    if kind == "status":  # /status/<code>
        return web.json_response({"model_error": f"failed with {arg}"}, status=int(arg))
    if kind == "slow":  # /slow/<ms>
        await asyncio.sleep(int(arg) / 1000)
        return web.json_response({"model": f"slow-{arg}", "received": received})
    if kind == "text":
        return web.Response(text="plain text, not JSON")
    if kind == "list":
        return web.json_response([1, 2, 3])
    if kind == "headers":
        return web.json_response({"headers": dict(request.headers)})
    if kind == "v1":  # KServe v1 path shape: /v1/models/<name>:predict
        return web.json_response({"predictions": [{"label": arg.split(":")[0]}]})
    if kind == "vote":  # /vote/<a,b,...>: one label per instance, as a classifier would
        return web.json_response({"predictions": arg.split(",")})
    if kind == "num":  # /num/<x,y,...>: numeric predictions
        return web.json_response({"predictions": [float(x) for x in arg.split(",")]})
    if kind == "v2":  # /v2/<name>: an Open Inference Protocol answer from the inputs it got
        inputs = received.get("inputs", []) if isinstance(received, dict) else []
        outputs = [
            {"name": f"{arg}-out", "shape": [len(t["data"])], "datatype": "FP64",
             "data": [x * 2 for x in t["data"]]}
            for t in inputs
        ]  # fmt: skip
        return web.json_response({"model_name": arg, "outputs": outputs, "seen": received})
    if kind == "flaky":  # /flaky/<n>: 503 for the first n calls to this backend, then 200
        state = request.app[FLAKY]
        state[request.path] = state.get(request.path, 0) + 1
        if state[request.path] <= int(arg):
            return web.json_response({"error": "warming up"}, status=503)
        return web.json_response({"model": "flaky", "attempt": state[request.path]})
    if kind == "huge":  # /huge/<bytes>: a chunked answer of that size, no Content-Length
        # Labelled JSON, as a model server chunks a large answer: the router collects it (and
        # so bounds it); a chunked answer of another type would stream through (README).
        response = web.StreamResponse(headers={"Content-Type": "application/json"})
        response.enable_chunked_encoding()
        await response.prepare(request)
        remaining = int(arg)
        while remaining > 0:
            await response.write(b"x" * min(remaining, 65536))
            remaining -= 65536
        await response.write_eof()
        return response
    if kind == "watch":  # /watch/<ms>: slow, and records whether the caller hung up first
        try:
            for _ in range(int(arg) // 10):
                await asyncio.sleep(0.01)
                transport = request.transport
                if transport is None or transport.is_closing():
                    request.app[ABANDONED].append(request.path)
                    return web.Response(status=499)
        except asyncio.CancelledError:  # the server cancelled us: the caller hung up
            request.app[ABANDONED].append(request.path)
            raise
        return web.json_response({"model": "watch"})
    return web.json_response({"error": f"no script for {request.path}"}, status=404)


@dataclass(frozen=True)
class RawAnswer:
    """One HTTP/1.1 response as read off a socket: status, lower-cased headers, body."""

    status: int
    headers: dict[str, str]
    body: bytes


async def read_answer(reader: asyncio.StreamReader) -> RawAnswer:
    """The next response on `reader` (interim 1xx ones included), framed by Content-Length."""
    head = await reader.readuntil(b"\r\n\r\n")
    status_line, *lines = head.decode("latin-1").split("\r\n")
    headers = {}
    for line in lines:
        if line:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
    length = int(headers.get("content-length", "0"))
    body = await reader.readexactly(length) if length else b""
    return RawAnswer(int(status_line.split()[1]), headers, body)


@contextlib.asynccontextmanager
async def serving(
    app: web.Application, *, handler_cancellation: bool = False
) -> AsyncIterator[str]:
    """`app` on a free port of 127.0.0.1 for the block; yields its base URL.

    `handler_cancellation=True` makes a handler stop when its caller hangs up, as a model
    server that notices a dropped request does.
    """
    runner = web.AppRunner(app, access_log=None, handler_cancellation=handler_cancellation)
    await runner.setup()
    try:
        await web.TCPSite(runner, LOOPBACK, 0).start()
        yield f"http://{LOOPBACK}:{runner.addresses[0][1]}"
    finally:
        await runner.cleanup()


def host_port(url: str) -> tuple[str, int]:
    host, port = url.removeprefix("http://").rsplit(":", 1)
    return host, int(port)


def free_port() -> int:
    with socket.socket() as s:
        s.bind((LOOPBACK, 0))
        port: int = s.getsockname()[1]
        return port


@dataclass
class RouterProcess:
    url: str
    process: asyncio.subprocess.Process

    async def post(
        self, body: bytes | dict[str, Any] | list[Any], headers: dict[str, str] | None = None
    ) -> tuple[int, Any, aiohttp.typedefs.LooseHeaders]:
        data = body if isinstance(body, bytes) else orjson.dumps(body)
        async with (
            aiohttp.ClientSession() as session,
            session.post(self.url + "/", data=data, headers=headers) as response,
        ):
            raw = await response.read()
            try:
                parsed: Any = orjson.loads(raw)
            except orjson.JSONDecodeError:
                parsed = raw
            return response.status, parsed, response.headers


StartRouter = Callable[..., contextlib.AbstractAsyncContextManager[RouterProcess]]


async def wait_ready(url: str, process: asyncio.subprocess.Process) -> None:
    deadline = time.monotonic() + ROUTER_START_TIMEOUT
    async with aiohttp.ClientSession() as session:
        while time.monotonic() < deadline:
            if process.returncode is not None:
                err = await process.stderr.read() if process.stderr else b""
                raise AssertionError(f"router exited {process.returncode}: {err.decode()}")
            try:
                async with session.get(url + "/readyz") as response:
                    if response.status == 200:
                        return
            except aiohttp.ClientConnectionError:
                pass
            await asyncio.sleep(0.05)
    raise AssertionError(f"router at {url} not ready within {ROUTER_START_TIMEOUT}s")


def processes() -> Iterator[tuple[int, int, bytes]]:
    """(pid, parent pid, command line) of every process, read from /proc (Linux)."""
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            cmdline = (entry / "cmdline").read_bytes()
        except OSError:
            continue  # it exited while we looked
        # Field 4 of /proc/<pid>/stat is the parent pid; the name (field 2) may hold spaces.
        parent = int(stat.rsplit(")", 1)[1].split()[1])
        yield int(entry.name), parent, cmdline


def root_graph(router_type: str, *steps: dict[str, Any], **options: Any) -> dict[str, Any]:
    """A bare graph spec whose root node has these steps (and node `options`)."""
    return {"nodes": {"root": {"routerType": router_type, "steps": list(steps), **options}}}


async def post_json(
    url: str, body: Any, headers: dict[str, str] | None = None
) -> tuple[int, Any, Any]:
    """POST `body` as JSON on a fresh session: status, parsed answer (raw bytes if not JSON),
    headers."""
    async with (
        aiohttp.ClientSession() as session,
        session.post(url, data=orjson.dumps(body), headers=headers) as response,
    ):
        raw = await response.read()
        try:
            parsed = orjson.loads(raw)
        except orjson.JSONDecodeError:
            parsed = raw
        return response.status, parsed, response.headers
