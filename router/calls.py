"""The only outbound HTTP of the router: POST a step's body to its service, pooled.

One `aiohttp.ClientSession` (keep-alive pool) serves every step of every request. Failures to
get an answer become RouterErrors naming the step and URL; any answer, whatever its status, is
returned for the graph's Hard/Soft rules to judge.
"""

from __future__ import annotations

from collections.abc import Mapping

import aiohttp
from yarl import URL

from router.errors import StepTimeout, StepUnreachable
from router.graph import Step
from router.payload import Payload, Reply


class HttpStepCaller:
    """A `StepCaller` over a shared session; each call is bounded by the seconds it is given."""

    __slots__ = ("_session", "_timeouts", "_urls")

    def __init__(self, session: aiohttp.ClientSession) -> None:
        self._session = session
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
                data = await response.read()
                return Reply(
                    response.status, Payload(data), response.content_type == "application/json"
                )
        except TimeoutError:
            raise StepTimeout(f"{step.label}: {url} did not answer within {seconds:.3g}s") from None
        except aiohttp.ClientError as error:
            raise StepUnreachable(
                f"{step.label}: calling {url} failed: {_describe(error)}"
            ) from None


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
