"""The router's own errors, each mapped once to an HTTP status and KServe's error body.

KServe's router (cmd/router/main.go) answers every error as
`{"error": "Failed to process request", "cause": "<the Go error's text>"}`. Ours have that
shape and `error` string, and where KServe has the same case, its `cause` text too: a Switch
that matches no route (`NO_ROUTE_CAUSE`), a step that cannot be called or does not answer in
time (Go's `Post "<url>": <reason>`). What we know beyond KServe goes in additional fields:
`node`, `step`, `url` and `detail` (our sentence naming node, step and URL). Where KServe has
no equivalent, `cause` is our own sentence. Errors a backend returns are not these: they pass
through.
"""

from __future__ import annotations

from typing import Any, ClassVar

import orjson

KSERVE_ERROR = "Failed to process request"
# KServe's texts for the cases it shares with us, verbatim.
NO_ROUTE_CAUSE = "None of the routes matched with the switch condition"
GO_CLIENT_TIMEOUT = "context deadline exceeded (Client.Timeout exceeded while awaiting headers)"


def go_post_error(url: str, reason: str) -> str:
    """The text of Go's `*url.Error` for a failed POST, which KServe puts in `cause`."""
    return f'Post "{url}": {reason}'


class RouterError(Exception):
    status: ClassVar[int] = 500

    def __init__(
        self,
        cause: str,
        *,
        node: str | None = None,
        step: str | None = None,
        url: str | None = None,
        detail: str | None = None,
    ) -> None:
        super().__init__(cause)
        self.cause = cause
        self.node = node
        self.step = step
        self.url = url
        self.detail = detail

    @property
    def explanation(self) -> str:
        """The most specific sentence we have: `detail` when the cause is KServe's text."""
        return self.detail or self.cause

    def fields(self) -> dict[str, Any]:
        """The JSON body: KServe's two fields, then ours when known."""
        out: dict[str, Any] = {"error": KSERVE_ERROR, "cause": self.cause}
        for name in ("node", "step", "url", "detail"):
            value = getattr(self, name)
            if value is not None:
                out[name] = value
        return out

    def body(self) -> bytes:
        return orjson.dumps(self.fields())


class BadRequest(RouterError):
    """The client's request cannot be processed as sent (e.g. a condition needs JSON)."""

    status = 400


class Unauthorized(RouterError):
    status = 401


class MethodNotAllowed(RouterError):
    status = 405


class RequestTimeout(RouterError):
    """The client did not send its body within routerTimeouts.serverRead."""

    status = 408


class ExpectationFailed(RouterError):
    """An `Expect` header other than 100-continue, the only expectation HTTP/1.1 defines."""

    status = 417


class BodyTooLarge(RouterError):
    status = 413


class NoRouteMatched(RouterError):
    """A Switch node found no step whose condition holds (KServe: 404)."""

    status = 404


class AnswersNotAggregatable(RouterError):
    """An Ensemble's answers cannot be combined by its aggregation (shapes, non-numbers)."""

    status = 502


class StepUnreachable(RouterError):
    """A step's service could not be connected to or broke the connection."""

    status = 502


class InvalidStepResponse(RouterError):
    """A step answered, but with a body the graph needs as JSON and that is not JSON."""

    status = 502


class QuorumUnreachable(RouterError):
    """An Ensemble's failed steps leave too few that could succeed to meet its quorum."""

    status = 502


class StepTimeout(RouterError):
    """A step did not answer within its time budget."""

    status = 504


class CircuitOpen(RouterError):
    """A step's target failed too often lately; it is not called until its cooldown ends."""

    status = 503

    def __init__(self, cause: str, retry_after: float, **where: str | None) -> None:
        super().__init__(cause, **where)
        self.retry_after = retry_after


class TooBusy(RouterError):
    """More requests in flight than --max-in-flight allows; the client should retry soon."""

    status = 503


class GraphTimeout(RouterError):
    """The whole request exceeded routerTimeouts.serverWrite."""

    status = 504
