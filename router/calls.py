"""The only outbound HTTP of the router: POST a step's body to its service, pooled.

One `aiohttp.ClientSession` (keep-alive pool) serves every step of every request. Failures to
get an answer become RouterErrors naming the step and URL; any answer, whatever its status, is
returned for the graph's Hard/Soft rules to judge.
"""

from __future__ import annotations

from collections.abc import Mapping

import aiohttp
from yarl import URL

from router.errors import (
    GO_CLIENT_TIMEOUT,
    InvalidStepResponse,
    StepTimeout,
    StepUnreachable,
    go_post_error,
)
from router.graph import Step
from router.payload import Payload, Reply


class HttpStepCaller:
    """A `StepCaller` over a shared session; each call is bounded by the seconds it is given."""

    __slots__ = ("_max_bytes", "_session", "_timeouts", "_urls")

    def __init__(self, session: aiohttp.ClientSession, max_response_bytes: int) -> None:
        self._session = session
        # A step's answer is held in memory; a runaway backend must not exhaust the router.
        self._max_bytes = max_response_bytes
        # ClientTimeout objects by duration: most calls use one of a few fixed budgets.
        self._timeouts: dict[float, aiohttp.ClientTimeout] = {}
        # Parsed once per target rather than on every call; `encoded=True` uses the URL exactly
        # as the graph spells it, with no re-quoting, as KServe's Go client does.
        self._urls: dict[str, URL] = {}

    def _url(self, raw: str) -> URL:
        url = self._urls.get(raw)
        if url is None:
            url = self._urls[raw] = URL(raw, encoded=True)
        return url

    def _timeout(self, seconds: float) -> aiohttp.ClientTimeout:
        timeout = self._timeouts.get(seconds)
        if timeout is None:
            timeout = aiohttp.ClientTimeout(total=seconds)
            if len(self._timeouts) < 256:  # deadlines make odd budgets; cache the common ones
                self._timeouts[seconds] = timeout
        return timeout

    async def __call__(
        self, step: Step, body: bytes, headers: Mapping[str, str], seconds: float
    ) -> Reply:
        url = step.url
        assert url is not None  # the executor only calls service steps
        try:
            async with self._session.post(
                self._url(url), data=body, headers=headers, timeout=self._timeout(seconds)
            ) as response:
                data = await self._read(step, url, response)
                content_type = response.headers.get("Content-Type")
                return Reply(response.status, Payload(data), _is_json(content_type), content_type)
        except TimeoutError:
            raise StepTimeout(
                go_post_error(url, GO_CLIENT_TIMEOUT),
                node=step.owner,
                step=step.key,
                url=url,
                detail=f"{step.label}: {url} did not answer within {seconds:.3g}s",
            ) from None
        except aiohttp.ClientError as error:
            raise StepUnreachable(
                go_post_error(url, _go_reason(error)),
                node=step.owner,
                step=step.key,
                url=url,
                detail=f"{step.label}: calling {url} failed: {_describe(error)}",
            ) from None

    async def _read(self, step: Step, url: str, response: aiohttp.ClientResponse) -> bytes:
        declared = response.content_length
        if declared is not None:
            if declared > self._max_bytes:
                raise InvalidStepResponse(
                    f"{step.label}: {url} answered {declared} bytes, more than {self._max_bytes}",
                    node=step.owner,
                    step=step.key,
                    url=url,
                )
            return await response.read()  # aiohttp reads exactly the declared length
        # Chunked, no length given: count as it arrives and stop at the cap.
        chunks: list[bytes] = []
        size = 0
        async for chunk in response.content.iter_any():
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


def _is_json(value: str | None) -> bool:
    # The media type without parameters, as `response.content_type` gives, but without its
    # full parse of the parameters (about 1% of the router's CPU in the 2-step profile).
    return value is not None and value.partition(";")[0].strip().lower() == "application/json"


def _go_reason(error: aiohttp.ClientError) -> str:
    """What Go's HTTP client says for this failure, where the two clients see the same thing.

    KServe's `cause` is Go's text; clients matching on it (a refused connection, a connection
    closed before any answer) find the same words here. Other failures keep aiohttp's account.
    """
    if isinstance(error, aiohttp.ClientConnectorError) and isinstance(
        error.os_error, ConnectionRefusedError
    ):
        host = f"[{error.host}]" if ":" in error.host else error.host
        return f"dial tcp {host}:{error.port}: connect: connection refused"
    if isinstance(error, aiohttp.ServerDisconnectedError):
        return "EOF"  # Go: the server closed the connection before answering
    return _describe(error)


def _describe(error: aiohttp.ClientError) -> str:
    text = str(error)
    return f"{type(error).__name__}: {text}" if text else type(error).__name__


def new_session(connection_limit: int) -> aiohttp.ClientSession:
    """The shared client session; created inside the running loop by the app's cleanup_ctx."""
    connector = aiohttp.TCPConnector(
        limit=connection_limit,
        limit_per_host=connection_limit,
        # Step services are few and long-lived; caching DNS avoids a lookup per new connection.
        ttl_dns_cache=300,
    )
    return aiohttp.ClientSession(
        connector=connector,
        # Headers are exactly what the graph propagates plus Content-Type; no cookies kept.
        cookie_jar=aiohttp.DummyCookieJar(),
        skip_auto_headers=("User-Agent",),
        auto_decompress=True,
    )


__all__ = ["HttpStepCaller", "new_session"]
