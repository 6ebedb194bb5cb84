"""The router's own errors, each mapped once to an HTTP status and KServe's error body.

KServe's router answers `{"error": "Failed to process request", "cause": "<why>"}`; we keep that
shape and `error` string so clients written for KServe parse ours, and make `cause` name the
node, the step and the target. Errors a backend returns are not these: they pass through.
"""

from __future__ import annotations

from typing import ClassVar

import orjson

KSERVE_ERROR = "Failed to process request"


class RouterError(Exception):
    status: ClassVar[int] = 500

    def __init__(self, cause: str) -> None:
        super().__init__(cause)
        self.cause = cause

    def body(self) -> bytes:
        return orjson.dumps({"error": KSERVE_ERROR, "cause": self.cause})


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

    def __init__(self, cause: str, retry_after: float) -> None:
        super().__init__(cause)
        self.retry_after = retry_after


class TooBusy(RouterError):
    """More requests in flight than --max-in-flight allows; the client should retry soon."""

    status = 503


class GraphTimeout(RouterError):
    """The whole request exceeded routerTimeouts.serverWrite."""

    status = 504


class ShuttingDown(RouterError):
    status = 503
