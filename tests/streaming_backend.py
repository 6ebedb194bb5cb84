"""A scripted streaming model on 127.0.0.1: SSE, chunked text and OpenAI's chat protocol.

Each path scripts one behaviour the streaming suite needs. Streams that must be seen to pass
through wait on a gate the test opens after reading the first event *through the router*: a
router that buffered would never deliver it, and the test would fail on its time limit rather
than on a clock. `gone` is set when a stream's reader hung up (the write failed), which is how
a test sees at the backend that the router closed the upstream connection.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import orjson
from aiohttp import web

from tests.support import serving

# Between two events of an endless stream: often enough that a reader who left is noticed at
# once, rarely enough not to load the machine.
ENDLESS_GAP_SECONDS = 0.02
ENDLESS_LIMIT = 5000  # bounded loop: 100 s of events, far past any test's time limit


@dataclass
class StreamingModel:
    url: str
    gate: asyncio.Event = field(default_factory=asyncio.Event)  # opened by the test
    gone: asyncio.Event = field(default_factory=asyncio.Event)  # a reader hung up mid-stream
    finished: asyncio.Event = field(default_factory=asyncio.Event)  # a stream was sent whole
    requests: list[Any] = field(default_factory=list)

    def at(self, path: str) -> str:
        return f"{self.url}{path}"


def _event(data: Any, name: str | None = None) -> bytes:
    head = f"event: {name}\n".encode() if name else b""
    return head + b"data: " + orjson.dumps(data) + b"\n\n"


def streaming_app(model: StreamingModel) -> web.Application:
    async def start(request: web.Request, content_type: str) -> web.StreamResponse:
        body = await request.read()
        model.requests.append(orjson.loads(body) if body else None)
        response = web.StreamResponse(headers={"Content-Type": content_type})
        response.enable_chunked_encoding()
        await response.prepare(request)
        return response

    async def sse(request: web.Request) -> web.StreamResponse:
        """`/sse/<n>`: n events; the second waits for the gate (after the first arrived)."""
        count = int(request.match_info["n"])
        response = await start(request, "text/event-stream")
        for i in range(count):
            if i == 1:
                await model.gate.wait()
            await response.write(_event({"i": i}))
        await response.write(b"data: [DONE]\n\n")
        await response.write_eof()
        model.finished.set()
        return response

    async def chunked(request: web.Request) -> web.StreamResponse:
        """`/chunked`: three lines of text, the last two after the gate."""
        response = await start(request, "text/plain; charset=utf-8")
        await response.write(b"one\n")
        await model.gate.wait()
        await response.write(b"two\n")
        await response.write(b"three\n")
        await response.write_eof()
        model.finished.set()
        return response

    async def v2_in_pieces(request: web.Request) -> web.StreamResponse:
        """`/v2-in-pieces`: a v2 answer sent chunked as text (a model server that streams)."""
        response = await start(request, "text/plain")
        answer = orjson.dumps(
            {"model_name": "m", "outputs": [{"name": "y", "datatype": "INT64", "shape": [1],
                                             "data": [42]}]}
        )  # fmt: skip
        await response.write(answer[:20])
        await response.write(answer[20:])
        await response.write_eof()
        return response

    async def endless(request: web.Request) -> web.StreamResponse:
        """`/endless/<type>`: events until the reader hangs up (then `gone` is set)."""
        kind = "text/event-stream" if request.match_info["type"] == "sse" else "text/plain"
        response = await start(request, kind)
        try:
            for i in range(ENDLESS_LIMIT):
                await response.write(_event({"i": i}))
                await asyncio.sleep(ENDLESS_GAP_SECONDS)
        except (ConnectionResetError, asyncio.CancelledError):
            model.gone.set()
            raise
        return response

    async def breaks(request: web.Request) -> web.StreamResponse:
        """`/breaks/<type>`: two events, then the connection is cut mid-body."""
        kind = "text/event-stream" if request.match_info["type"] == "sse" else "text/plain"
        response = await start(request, kind)
        await response.write(_event({"i": 0}))
        await response.write(_event({"i": 1}) + b'data: {"half')
        await asyncio.sleep(0)  # let the writes reach the socket before the cut
        assert request.transport is not None
        request.transport.abort()
        return response

    async def breaks_at_once(request: web.Request) -> web.StreamResponse:
        """`/breaks-at-once`: the headers of a stream, then the connection is cut."""
        response = await start(request, "text/event-stream")
        await asyncio.sleep(0)
        assert request.transport is not None
        request.transport.abort()
        return response

    async def stalls(request: web.Request) -> web.StreamResponse:
        """`/stalls`: one event, then nothing until the reader leaves."""
        response = await start(request, "text/event-stream")
        await response.write(_event({"i": 0}))
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.Event().wait()  # never set: the router's idleTimeout must act
        model.gone.set()
        return response

    async def slow_start(request: web.Request) -> web.StreamResponse:
        """`/slow-start`: headers, then no byte until the reader leaves."""
        response = await start(request, "text/event-stream")
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.Event().wait()
        model.gone.set()
        return response

    async def chat(request: web.Request) -> web.StreamResponse:
        """OpenAI's `/openai/v1/chat/completions`: the reply spells the model's name (or, with
        `?refuse`, refuses)."""
        body = orjson.loads(await request.read())
        model.requests.append(body)
        # `?refuse`: the step a guard's verdict routes to answers a refusal instead.
        words = (
            ["I ", "cannot ", "help"]
            if "refuse" in request.query
            else [f"{body['model']} ", "says ", "hello"]
        )
        created = int(time.time())
        if not body.get("stream"):
            return web.json_response(
                {
                    "id": "chatcmpl-1",
                    "object": "chat.completion",
                    "created": created,
                    "model": body["model"],
                    "choices": [
                        {
                            "index": 0,
                            "message": {"role": "assistant", "content": "".join(words)},
                            "finish_reason": "stop",
                        }
                    ],
                }
            )
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        for i, word in enumerate(words):
            delta = {"content": word} if i else {"role": "assistant", "content": word}
            chunk = {
                "id": "chatcmpl-1",
                "object": "chat.completion.chunk",
                "created": created,
                "model": body["model"],
                "choices": [{"index": 0, "delta": delta, "finish_reason": None}],
            }
            await response.write(_event(chunk))
        end = {
            "id": "chatcmpl-1",
            "object": "chat.completion.chunk",
            "created": created,
            "model": body["model"],
            "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}],
        }
        await response.write(_event(end) + b"data: [DONE]\n\n")
        await response.write_eof()
        return response

    async def guard(request: web.Request) -> web.Response:
        """A guard: `{"verdict": "block"}` when any message says "forbidden"."""
        body = orjson.loads(await request.read())
        text = " ".join(str(m.get("content", "")) for m in body.get("messages", []))
        return web.json_response({**body, "verdict": "block" if "forbidden" in text else "allow"})

    app = web.Application()
    app.router.add_post("/sse/{n}", sse)
    app.router.add_post("/chunked", chunked)
    app.router.add_post("/endless/{type}", endless)
    app.router.add_post("/v2-in-pieces", v2_in_pieces)
    app.router.add_post("/breaks/{type}", breaks)
    app.router.add_post("/breaks-at-once", breaks_at_once)
    app.router.add_post("/stalls", stalls)
    app.router.add_post("/slow-start", slow_start)
    app.router.add_post("/openai/v1/chat/completions", chat)
    app.router.add_post("/guard", guard)
    return app


@contextlib.asynccontextmanager
async def streaming_model() -> AsyncIterator[StreamingModel]:
    model = StreamingModel("")
    async with serving(streaming_app(model), handler_cancellation=True) as model.url:
        try:
            yield model
        finally:
            model.gate.set()  # no handler is left waiting on it
