"""The only outbound HTTP of the router: POST a step's body to its service, pooled.

One rnet `Client` (Rust's hyper through wreq, a reqwest fork: a keep-alive pool per target,
connections driven outside the Python interpreter) serves every step of every request. It
replaced aiohttp's client because the client was most of the cost of a hop; `make bench`
measures the candidates as bare proxies (README, Performance). pyreqwest measured the same, but
cancelling its call leaves the request running in Rust until the model answers, and the router
must hang up on a model whose answer nobody wants (a client gone, a quorum reached).

Failures to get an answer become RouterErrors naming the step and URL; any answer, whatever its
status, is returned for the graph's Hard/Soft rules to judge. What the client does besides the
POST is set here, once, as aiohttp's client did it, so nothing surprises a model service: no
cookies, no Referer, no User-Agent; answers in gzip or deflate decoded (and only those asked
for); redirects followed (at most 10).
"""

from __future__ import annotations

import asyncio
import math
import re
import time
from collections.abc import Mapping
from types import MappingProxyType
from urllib.parse import urlsplit

import rnet
from multidict import CIMultiDictProxy
from rnet import exceptions

from router.errors import (
    GO_CLIENT_TIMEOUT,
    InvalidStepResponse,
    StepTimeout,
    StepUnreachable,
    go_post_error,
)
from router.graph import Step
from router.payload import Payload, Reply
from router.streams import EVENT_STREAM, StreamedBody, collect_events, media_type, passes_through

JSON = "application/json"

# Everything rnet raises for a call that got no usable answer (its exceptions share no base).
CLIENT_ERRORS: tuple[type[Exception], ...] = (
    exceptions.BodyError,
    exceptions.ConnectionError,
    exceptions.ConnectionResetError,
    exceptions.DNSResolverError,
    exceptions.DecodingError,
    exceptions.RedirectError,
    exceptions.RequestError,
    exceptions.StatusError,
    exceptions.TimeoutError,
    exceptions.URLParseError,
    exceptions.BuilderError,
)
MAX_REDIRECTS = 10  # aiohttp's and Go's default, which the router had before


class HttpStepCaller:
    """A `StepCaller` over a shared client; each call is bounded by the seconds it is given."""

    __slots__ = ("_client", "_deadlines", "_headers", "_max_bytes", "_wire_headers")

    def __init__(self, client: rnet.Client, max_response_bytes: int) -> None:
        self._client: rnet.Client | None = client
        # A step's answer is held in memory; a runaway backend must not exhaust the router.
        self._max_bytes = max_response_bytes
        # The last read-only headers converted for the wire, with the mapping they came from
        # (held, so its identity cannot be reused): requests that propagate nothing all share
        # one such constant. A mutable mapping is converted on every call, as it may change.
        self._headers: Mapping[str, str] | None = None
        self._wire_headers = rnet.HeaderMap()
        self._deadlines: _Deadlines | None = None  # made in the loop of the first call

    def _wire(self, headers: Mapping[str, str]) -> rnet.HeaderMap:
        if headers is self._headers:
            return self._wire_headers
        wire = _header_map(headers)
        if isinstance(headers, CIMultiDictProxy | MappingProxyType):
            self._headers, self._wire_headers = headers, wire
        return wire

    async def __call__(
        self, step: Step, body: bytes, headers: Mapping[str, str], seconds: float
    ) -> Reply:
        url = step.url
        assert url is not None  # the executor only calls service steps
        client = self._client
        if client is None:
            raise StepUnreachable(
                go_post_error(url, "the router is shutting down"),
                node=step.owner,
                step=step.key,
                url=url,
                detail=f"{step.label}: not called: the router's client is closed",
            )
        # The budget covers connecting, sending and the whole answer, as Go's Client.Timeout
        # does. rnet takes whole seconds only, so the bound is a loop timer that cancels this
        # task; that cancellation, like any other (a client that hung up, a quorum reached),
        # drops the call in Rust, which closes its connection. It is asyncio.timeout's rule
        # without its context manager and Timeout object (~4% of the router's CPU per call),
        # on a timer shared by the calls whose budgets end in the same millisecond.
        loop = asyncio.get_running_loop()
        task = asyncio.current_task(loop)
        assert task is not None  # called from a request's task
        expiry = _Expiry(task)
        deadlines = self._deadlines
        if deadlines is None or deadlines.loop is not loop:
            deadlines = self._deadlines = _Deadlines(loop)
        slot = deadlines.add(expiry, loop.time() + seconds)
        try:
            started = time.perf_counter()
            response = await client.post(url, body=body, headers=self._wire(headers))
            raw_type = response.headers.get("Content-Type")
            content_type = raw_type.decode("latin-1") if raw_type is not None else None
            json_content = _is_json(content_type)
            # A JSON answer never streams: the common case pays no more than this check.
            if (
                step.streams
                and not json_content
                and passes_through(response.status, content_type, _chunked(response))
            ):
                # The step's `timeout` bounds the wait for the first byte of a stream.
                streamed = await self._first_chunk(step, url, response, content_type, started)
            else:
                declared = response.content_length
                if 0 < declared <= self._max_bytes:
                    # The usual answer, its length declared: read here, not in a coroutine of
                    # its own (hyper reads exactly that length).
                    data = await response.bytes()
                else:
                    data = await self._read(step, url, response)
                streamed = None
        except asyncio.CancelledError:
            if expiry.fired and task.uncancel() <= expiry.cancelling:
                raise StepTimeout(
                    go_post_error(url, GO_CLIENT_TIMEOUT),
                    node=step.owner,
                    step=step.key,
                    url=url,
                    detail=f"{step.label}: {url} did not answer within {seconds:.3g}s",
                ) from None
            raise
        except CLIENT_ERRORS as error:
            if expiry.fired:
                task.uncancel()  # the answer (an error) came first: the timer's cancel is void
            if isinstance(error, exceptions.TimeoutError):  # none set, but a socket may say so
                reason = GO_CLIENT_TIMEOUT
            else:
                reason = _go_reason(url, error)
            raise StepUnreachable(
                go_post_error(url, reason),
                node=step.owner,
                step=step.key,
                url=url,
                detail=f"{step.label}: calling {url} failed: {_describe(error)}",
            ) from None
        except BaseException:
            if expiry.fired:
                task.uncancel()
            raise
        finally:
            deadlines.discard(expiry, slot)
        if expiry.fired:
            task.uncancel()
        if streamed is not None:
            return streamed
        if not json_content and media_type(content_type) == EVENT_STREAM:
            # Read by the graph: collected by the documented rule, as JSON (router.streams).
            return Reply(response.status, collect_events(step, data), True, JSON)
        return Reply(response.status, Payload(data), json_content, content_type)

    async def _first_chunk(
        self,
        step: Step,
        url: str,
        response: rnet.Response,
        content_type: str | None,
        started: float,
    ) -> Reply:
        """The answer as a stream, once its first chunk came: nothing is sent before that, so
        a step that fails or stalls before it gets the ordinary error status and body."""
        streamer = response.stream()
        await streamer.__aenter__()
        closed = False

        async def close() -> None:
            nonlocal closed
            if not closed:
                closed = True
                # Dropping the stream hangs up on the step, so the model stops generating.
                await streamer.__aexit__(None, None, None)
                await response.close()

        async def next_chunk() -> bytes | None:
            try:
                chunk: bytes = await anext(streamer)
            except StopAsyncIteration:
                return None
            except CLIENT_ERRORS as error:
                raise StepUnreachable(
                    f"{step.label}: the stream from {url} broke: {_describe(error)}",
                    node=step.owner,
                    step=step.key,
                    url=url,
                ) from None
            return chunk

        try:
            first = await next_chunk()
            while first == b"":  # an empty chunk is no byte of the answer
                first = await next_chunk()
        except BaseException:
            await close()
            raise
        if first is None:  # an empty stream: an ordinary, empty answer
            await close()
            return Reply(response.status, Payload(b""), False, content_type)
        body = StreamedBody(
            step,
            first,
            next_chunk,
            close,
            sse=media_type(content_type) == EVENT_STREAM,
            first_byte_seconds=time.perf_counter() - started,
            max_event_bytes=self._max_bytes,
        )
        return Reply(response.status, Payload(b""), False, content_type, stream=body)

    def close(self) -> None:
        """Drop the client: rnet has no close, its pool's connections close when it goes."""
        self._client = None

    async def _read(self, step: Step, url: str, response: rnet.Response) -> bytes:
        # rnet's content_length is the Content-Length header; 0 when there is none, or when the
        # answer was decoded from gzip or deflate (its length is then unknown until read).
        declared = response.content_length
        if declared > self._max_bytes:
            await response.close()
            raise InvalidStepResponse(
                f"{step.label}: {url} answered {declared} bytes, more than {self._max_bytes}",
                node=step.owner,
                step=step.key,
                url=url,
            )
        if declared > 0:
            return await response.bytes()  # hyper reads exactly the declared length
        # Chunked or decoded: count as it arrives and stop at the cap. The stream is closed on
        # the way out, whatever ends the read: its connection must not live on as long as a
        # traceback holding this frame does.
        chunks: list[bytes] = []
        size = 0
        async with response.stream() as stream:
            async for chunk in stream:
                size += len(chunk)
                if size > self._max_bytes:
                    raise InvalidStepResponse(
                        f"{step.label}: {url} answered more than {self._max_bytes} bytes",
                        node=step.owner,
                        step=step.key,
                        url=url,
                    )
                chunks.append(chunk)
        return b"".join(chunks)


class _Expiry:
    """One call's timer: cancels the call's task when its budget runs out, and says so."""

    __slots__ = ("cancelling", "fired", "task")

    def __init__(self, task: asyncio.Task[object]) -> None:
        self.task = task
        # Cancellations already requested when the call began (asyncio.timeout's rule): a
        # CancelledError is the timer's only if uncancelling brings the count back to this.
        self.cancelling = task.cancelling()
        self.fired = False

    def fire(self) -> None:
        self.fired = True
        self.task.cancel()


class _Deadlines:
    """The calls' timers: one loop timer per millisecond in which some call's budget ends.

    A loop timer costs ~2 µs to arm and cancel (uvloop); under load, calls starting in the same
    millisecond share one. The loop's clock and timers have millisecond resolution (libuv), so
    rounding a deadline up to its millisecond moves it by less than the loop already does.
    """

    __slots__ = ("_due", "loop")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        # By millisecond: the timer and the calls that end then, each removed when it ends.
        self._due: dict[int, tuple[asyncio.TimerHandle, set[_Expiry]]] = {}

    def add(self, expiry: _Expiry, deadline: float) -> int:
        """Have `expiry` fire at `deadline` (loop time); returns its slot, for `discard`."""
        slot = math.ceil(deadline * 1000)
        due = self._due.get(slot)
        if due is None:
            timer = self.loop.call_at(slot / 1000, self._fire, slot)
            self._due[slot] = (timer, {expiry})
        else:
            due[1].add(expiry)
        return slot

    def discard(self, expiry: _Expiry, slot: int) -> None:
        """`expiry`'s call ended; the slot's timer goes with its last call."""
        due = self._due.get(slot)
        if due is None:
            return  # it fired
        calls = due[1]
        calls.discard(expiry)
        if not calls:
            due[0].cancel()
            del self._due[slot]

    def _fire(self, slot: int) -> None:
        _, calls = self._due.pop(slot)
        for expiry in calls:
            expiry.fire()


def _header_map(headers: Mapping[str, str]) -> rnet.HeaderMap:
    """`headers` as rnet sends them: every value of a repeated header, in order."""
    out = rnet.HeaderMap()
    for name, value in headers.items():
        out.append(name, value if value.isascii() else _utf8(value))
    return out


def _utf8(value: str) -> str:
    # aiohttp decodes incoming header bytes as UTF-8, keeping invalid bytes as surrogates;
    # rnet sends a str as UTF-8 and cannot carry those bytes: they become U+FFFD.
    return value.encode("utf-8", "surrogateescape").decode("utf-8", "replace")


def _chunked(response: rnet.Response) -> bool:
    encoding = response.headers.get("Transfer-Encoding")
    return encoding is not None and b"chunked" in encoding.lower()


def _is_json(value: str | None) -> bool:
    # The media type without parameters, without a full parse of the parameters (about 1% of
    # the router's CPU in the 2-step profile).
    return value is not None and value.partition(";")[0].strip().lower() == "application/json"


def _go_reason(url: str, error: Exception) -> str:
    """What Go's HTTP client says for this failure, where the two clients see the same thing.

    KServe's `cause` is Go's text; clients matching on it (a refused connection, a connection
    closed before any answer) find the same words here. Other failures keep rnet's account.
    """
    text = str(error)
    if isinstance(error, exceptions.ConnectionError) and "ConnectionRefused" in text:
        parts = urlsplit(url)
        host = parts.hostname or ""
        host = f"[{host}]" if ":" in host else host
        port = parts.port or (443 if parts.scheme == "https" else 80)
        return f"dial tcp {host}:{port}: connect: connection refused"
    if "IncompleteMessage" in text:
        return "EOF"  # Go: the server closed the connection before answering
    return _describe(error)


def _describe(error: Exception) -> str:
    """rnet's error in a line: its type and the messages of the chain, e.g.
    `ConnectionError: tcp connect error: Connection refused`.

    rnet's text is Rust's debug form of the whole error chain, URL included (the detail names
    the URL already); its quoted messages, or else the innermost kind (`IncompleteMessage`),
    say what happened. Anything else is kept whole.
    """
    text = _URL_FIELD.sub("", str(error))
    words = _QUOTED.findall(text) or _KIND.findall(text)[-1:]
    account = ": ".join(words) if words else text
    return f"{type(error).__name__}: {account}" if account else type(error).__name__


_URL_FIELD = re.compile(r'url: "(?:[^"\\]|\\.)*",?\s*')
_QUOTED = re.compile(r'"((?:[^"\\]|\\.)*)"')
_KIND = re.compile(r"\b([A-Z][A-Za-z]+)\)")


def new_session(connection_limit: int) -> rnet.Client:
    """The shared client and its pool; created inside the running loop by the app's cleanup_ctx.

    `connection_limit` bounds the connections the pool keeps.
    """
    return rnet.Client(
        pool_max_size=connection_limit,
        cookie_store=False,
        referer=False,
        allow_redirects=True,
        max_redirects=MAX_REDIRECTS,
        gzip=True,
        deflate=True,
        brotli=False,
        zstd=False,
    )


__all__ = ["HttpStepCaller", "new_session"]
