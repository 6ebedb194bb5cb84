"""The router's HTTP connections: serverRead bounds the whole request, headers included.

aiohttp bounds how long a connection may sit idle (`keepalive_timeout`, our serverIdle) but not
how long a client may take to send a request's line and headers, so one trickling a byte a
second held a connection until serverIdle (180 s by default). KServe's router runs Go's
http.Server with ReadTimeout = serverRead, which bounds the whole request read from the moment
it starts. `ReadBoundHandler` does the same:

- the clock starts when a connection opens and, on a kept-alive connection, with the first
  byte of the next request (Go waits for that byte under IdleTimeout, then applies
  ReadTimeout);
- if the headers are not all in when it runs out, a connection that received nothing of a
  request is closed with nothing written, as Go closes it (a 408 written on an idle pooled
  connection would be read by the client as the answer to its next request); one that received
  part of a request gets a 408 with the router's error body and `Connection: close`, and is
  closed;
- once the headers are in, `read_deadline(request)` is when serverRead runs out for that
  request, and `router.app` bounds the body read by it (a 408 as well).

`router.server` serves on a `ReadBoundSite`, a TCP site whose connections are these handlers.
The subclass reads two of aiohttp's RequestHandler internals (`_waiter`, set while the
connection waits for a request; `_messages`, the parsed requests not yet handled); the tests in
tests/reliability/test_faults.py fail if a new aiohttp changes them.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from aiohttp import web
from aiohttp.web_protocol import RequestHandler

from router.errors import RequestTimeout


class ReadBoundHandler(RequestHandler):
    """aiohttp's connection handler, with serverRead over the request line and headers."""

    __slots__ = (
        "_read_seconds",
        "_read_started",
        "_read_timer",
        "_reading",
        "_received",
        "_request_started",
    )

    def __init__(
        self, manager: web.Server, read_seconds: Callable[[], float], **kwargs: Any
    ) -> None:
        """`read_seconds` is read per request: a hot reload may change serverRead."""
        super().__init__(manager, **kwargs)
        self._read_seconds = read_seconds
        # One timer per connection, left pending when a request's headers arrive in time and
        # moved on when it fires early (as aiohttp's keep-alive timer): a timer per request
        # costs measurably at thousands of requests a second.
        self._read_timer: asyncio.TimerHandle | None = None
        self._read_started = 0.0
        self._reading = False  # a request's headers are being waited for
        self._received = False  # any byte of that request came
        self._request_started: float | None = None  # the headers are in: for read_deadline

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        self._start_clock()

    def data_received(self, data: bytes) -> None:
        if not self._reading and self._between_requests():
            self._start_clock()
        if self._reading:
            self._received = True
            super().data_received(data)
            if self._messages:
                # The headers are in (or the parser refused them and aiohttp answers 400).
                self._reading = False
                self._request_started = self._read_started
        else:
            super().data_received(data)

    def connection_lost(self, exc: BaseException | None) -> None:
        if self._read_timer is not None:
            self._read_timer.cancel()
            self._read_timer = None
        super().connection_lost(exc)

    def take_request_start(self) -> float | None:
        """When the request now being handled started arriving (loop time), once; else None.

        None for a pipelined request whose predecessor already took the time: its clock starts
        when its handler does, which is when Go would start reading it.
        """
        started, self._request_started = self._request_started, None
        return started

    def _between_requests(self) -> bool:
        # aiohttp's start() awaits _waiter while no request is being read or handled.
        return self._waiter is not None and not self._waiter.done() and not self._messages

    def _start_clock(self) -> None:
        self._read_started = self._loop.time()
        self._reading = True
        self._received = False
        if self._read_timer is None:
            self._read_timer = self._loop.call_at(
                self._read_started + self._read_seconds(), self._check_read
            )

    def _check_read(self) -> None:
        self._read_timer = None
        if not self._reading or self.transport is None:
            return
        deadline = self._read_started + self._read_seconds()
        if self._loop.time() < deadline:  # a later request's clock: wait for its deadline
            self._read_timer = self._loop.call_at(deadline, self._check_read)
            return
        if self._received:
            error = RequestTimeout(
                f"request headers not received within {self._read_seconds():g}s (serverRead)"
            )
            body = error.body()
            head = (
                f"HTTP/1.1 {error.status} Request Timeout\r\n"
                "Content-Type: application/json\r\n"
                f"Content-Length: {len(body)}\r\n"
                "Connection: close\r\n\r\n"
            )
            self.transport.write(head.encode() + body)
        self.force_close()  # the transport sends what was written, then closes


def read_deadline(request: web.BaseRequest, seconds: float) -> float:
    """The loop time by which `request`'s body must be in: serverRead from its first byte.

    On a connection that is not a ReadBoundHandler's (tests serving the app on a plain
    aiohttp site), serverRead counts from now.
    """
    protocol = request.protocol
    started = protocol.take_request_start() if isinstance(protocol, ReadBoundHandler) else None
    if started is None:
        started = asyncio.get_running_loop().time()
    return started + seconds


class ReadBoundSite(web.BaseSite):
    """A TCP site, as aiohttp's TCPSite, whose connections are ReadBoundHandlers."""

    __slots__ = ("_handler_args", "_host", "_port", "_read_seconds", "_reuse_port")

    def __init__(
        self,
        runner: web.BaseRunner,
        host: str,
        port: int,
        read_seconds: Callable[[], float],
        *,
        ssl_context: Any = None,
        reuse_port: bool = False,
        **handler_args: Any,
    ) -> None:
        """`handler_args` go to each connection's RequestHandler (e.g. keepalive_timeout)."""
        super().__init__(runner, ssl_context=ssl_context)
        self._host = host
        self._port = port
        self._read_seconds = read_seconds
        self._reuse_port = reuse_port
        self._handler_args = handler_args

    @property
    def name(self) -> str:
        scheme = "https" if self._ssl_context else "http"
        return f"{scheme}://{self._host}:{self._port}"

    async def start(self) -> None:
        await super().start()
        server = self._runner.server
        assert server is not None  # the runner was set up before its sites start
        loop = asyncio.get_running_loop()

        def connection() -> ReadBoundHandler:
            return ReadBoundHandler(server, self._read_seconds, loop=loop, **self._handler_args)

        self._server = await loop.create_server(
            connection,
            self._host,
            self._port,
            ssl=self._ssl_context,
            backlog=self._backlog,
            reuse_port=self._reuse_port or None,
        )
