"""Streamed answers: a step's body passed to the client as it arrives, or collected by a rule.

`router.calls` decides per answer (`passes_through`): a 2xx answer of a step whose answer is
the graph's own (`Step.streams`, from `schemas.streaming`) streams when it is Server-Sent
Events, or a chunked body of any type but JSON. It reads the first chunk before returning, so
every failure before the first byte is an ordinary step error with its status and body; the
rest is a `StreamedBody`, which `send_stream` (called by `router.app`) writes to the client.
An SSE answer the graph must read is collected by `collect_events` instead.

After the first byte the status is sent and cannot change: a stream that fails midway (the
step's connection breaks, a gap longer than its `idleTimeout`, the request's deadline) ends
with an `event: error` for SSE, whose data is the router's usual error body; any other body is
cut without its terminating chunk, so the client's HTTP library reports a truncated body
rather than a complete answer. A client that hangs up cancels the handler (aiohttp's
handler_cancellation), which closes the step's connection at once.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import orjson
from aiohttp import web

from router.errors import GraphTimeout, InvalidStepResponse, RouterError, StepTimeout
from router.graph import Step
from router.payload import InvalidJSON, Payload, Reply

log = logging.getLogger("router")
EVENT_STREAM = "text/event-stream"
# OpenAI's end-of-stream marker: a protocol sentinel, not an answer, so collection drops it.
OPENAI_DONE = "[DONE]"
TRACE_COMMENT = ": x-infergraph-trace "  # the SSE comment that carries a streamed answer's trace

NextChunk = Callable[[], Awaitable[bytes | None]]  # None at the end of the body
Close = Callable[[], Awaitable[None]]


def media_type(content_type: str | None) -> str:
    return (content_type or "").partition(";")[0].strip().lower()


def passes_through(status: int, content_type: str | None, chunked: bool) -> bool:
    """Whether an answer of a streaming step goes to the client as it arrives.

    Errors (non-2xx) are collected: they are small, and the graph's Hard/Soft and retry rules
    read their status. A chunked JSON answer is collected too, so a graph of JSON models
    (whose servers may chunk a large answer) answers exactly as before, labelled JSON.
    """
    if not 200 <= status <= 299:
        return False
    kind = media_type(content_type)
    return kind == EVENT_STREAM or (chunked and kind != "application/json")


@dataclass(slots=True)
class StreamStats:
    """What one streamed answer did, for metrics and traces (README, Streaming)."""

    step: Step
    first_byte_seconds: float  # from the step call's start to its first chunk
    started: float = field(default_factory=time.perf_counter)  # at the first byte
    seconds: float = 0.0  # first byte to the end
    bytes: int = 0
    events: int = 0  # SSE events forwarded (0 for other bodies)
    outcome: str = "streaming"  # then: complete, failed, idle_timeout, deadline, client_gone

    def as_json(self) -> dict[str, Any]:
        return {
            "stream": self.step.key,
            "node": self.step.owner,
            "first_byte_ms": round(self.first_byte_seconds * 1000, 3),
            "duration_ms": round(self.seconds * 1000, 3),
            "bytes": self.bytes,
            "events": self.events,
            "outcome": self.outcome,
        }


class StreamedBody:
    """The rest of a step's streamed answer, read on demand; `close` hangs up on the step."""

    __slots__ = ("_close", "_first", "_limit", "_next", "sse", "stats")

    def __init__(
        self,
        step: Step,
        first: bytes,
        next_chunk: NextChunk,
        close: Close,
        *,
        sse: bool,
        first_byte_seconds: float,
        max_event_bytes: int,
    ) -> None:
        self._first = first
        self._next = next_chunk
        self._close = close
        self._limit = max_event_bytes
        self.sse = sse
        self.stats = StreamStats(step, first_byte_seconds)

    async def chunks(self) -> AsyncIterator[bytes]:
        """The body in order: whole events for SSE (so an error event never lands inside a
        half-sent one), chunks as they came otherwise. Raises RouterError when it fails."""
        step = self.stats.step
        pending = b""
        chunk: bytes | None = self._first
        while chunk is not None:
            self.stats.bytes += len(chunk)
            if not self.sse:
                yield chunk
            else:
                pending += chunk
                cut = _last_event_end(pending)
                if cut:
                    ready, pending = pending[:cut], pending[cut:]
                    self.stats.events += _event_count(ready)
                    yield ready
                elif len(pending) > self._limit:
                    raise InvalidStepResponse(
                        f"{step.label}: an event of more than {self._limit} bytes",
                        node=step.owner,
                        step=step.key,
                        url=step.url,
                    )
            chunk = await self._read()
        if pending:
            yield pending  # an unterminated last event: passed on as the step sent it

    async def _read(self) -> bytes | None:
        step = self.stats.step
        if step.idle_timeout is None:
            return await self._next()
        try:
            async with asyncio.timeout(step.idle_timeout):
                return await self._next()
        except TimeoutError:
            raise StepTimeout(
                f"{step.label}: no chunk for {step.idle_timeout:g}s (idleTimeout)",
                node=step.owner,
                step=step.key,
                url=step.url,
            ) from None

    async def close(self) -> None:
        await self._close()


def _last_event_end(data: bytes) -> int:
    """The offset just past the last blank line in `data` (0 when there is none)."""
    best = 0
    for separator in (b"\n\n", b"\r\n\r\n", b"\r\r"):
        at = data.rfind(separator)
        if at >= 0:
            best = max(best, at + len(separator))
    return best


def _event_count(data: bytes) -> int:
    return data.replace(b"\r\n", b"\n").replace(b"\r", b"\n").count(b"\n\n")


def collect_events(step: Step, raw: bytes) -> Payload:
    """An SSE answer the graph must read, as JSON: `{"events": [...]}`.

    Each event's `data` lines are joined with newlines (as an SSE client does); the value is
    that text parsed as JSON when it is JSON, else the text. Events without data (comments,
    keep-alives) and OpenAI's `[DONE]` are left out; `event:` and `id:` names are not kept.
    """
    events: list[Any] = []
    text = raw.decode("utf-8", "replace").replace("\r\n", "\n").replace("\r", "\n")
    for block in text.split("\n\n"):
        data = [
            line[5:].removeprefix(" ")
            for line in block.split("\n")
            if line.startswith("data:") or line == "data"
        ]
        if not data:
            continue
        value = "\n".join(data)
        if value == OPENAI_DONE:
            continue
        try:
            events.append(orjson.loads(value))
        except orjson.JSONDecodeError:
            events.append(value)
    try:
        return Payload.from_json({"events": events})
    except InvalidJSON as error:  # numbers beyond what JSON writers take, say
        raise InvalidStepResponse(
            f"{step.label}: its events cannot be collected as JSON: {error}",
            node=step.owner,
            step=step.key,
            url=step.url,
        ) from None


async def collect_stream(reply: Reply, max_bytes: int) -> Reply:
    """A streamed `reply` read to its end, for a client that takes whole answers (gRPC):
    SSE by `collect_events`, other bodies as their bytes, at most `max_bytes` of them."""
    body = reply.stream
    if body is None:
        return reply
    step = body.stats.step
    chunks: list[bytes] = []
    try:
        async for chunk in body.chunks():
            chunks.append(chunk)
            if body.stats.bytes > max_bytes:
                raise InvalidStepResponse(
                    f"{step.label}: {step.url} answered more than {max_bytes} bytes",
                    node=step.owner,
                    step=step.key,
                    url=step.url,
                )
    finally:
        await body.close()
    raw = b"".join(chunks)
    if body.sse:
        return Reply(reply.status, collect_events(step, raw), True, "application/json")
    return Reply(reply.status, Payload(raw), False, reply.content_type)


async def send_stream(
    request: web.Request,
    status: int,
    content_type: str,
    body: StreamedBody,
    seconds_left: float,
    trace: Callable[[], bytes] | None,
    headers: Mapping[str, str],
) -> web.StreamResponse:
    """Write `body` to the client as it arrives, within the request's `seconds_left`.

    `trace` renders the trace header's JSON once the stream ended; SSE answers carry it in a
    last comment (headers are long gone by then), other bodies cannot and do not.
    """
    response = web.StreamResponse(status=status, headers={**headers, "Content-Type": content_type})
    # No transport compression and no buffering: each write goes out as written.
    await response.prepare(request)
    stats = body.stats
    failure: RouterError | None = None
    try:
        async with asyncio.timeout(seconds_left):
            async for chunk in body.chunks():
                await response.write(chunk)
        stats.outcome = "complete"
    except TimeoutError:
        stats.outcome = "deadline"
        failure = GraphTimeout(
            f"the streamed answer of {stats.step.label} did not end within the request's "
            "deadline (timeout, else serverWrite)",
            node=stats.step.owner,
            step=stats.step.key,
            url=stats.step.url,
        )
    except RouterError as error:
        stats.outcome = "idle_timeout" if isinstance(error, StepTimeout) else "failed"
        failure = error
    except (asyncio.CancelledError, ConnectionResetError):
        stats.outcome = "client_gone"
        raise
    finally:
        stats.seconds = time.perf_counter() - stats.started
        await body.close()
    if failure is not None:
        # The client got a 200 already: only the log, the metrics and the trace say why it ended.
        log.warning(
            "stream of %s ended early (%s): %s",
            stats.step.label,
            stats.outcome,
            failure.explanation,
            extra={"node": stats.step.owner, "step": stats.step.key, "status": failure.status},
        )
    if failure is not None and not body.sse:
        # Without the terminating chunk the client sees a truncated body, not a short answer.
        response.force_close()
        if request.transport is not None:
            request.transport.abort()
        return response
    if failure is not None:
        await response.write(b"event: error\ndata: " + failure.body() + b"\n\n")
    if trace is not None and body.sse:
        await response.write(TRACE_COMMENT.encode() + trace() + b"\n\n")
    await response.write_eof()
    return response
