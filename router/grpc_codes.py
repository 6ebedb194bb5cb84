"""gRPC status codes <-> the router's HTTP statuses, one table each way. Pure.

Egress (`router.grpc_calls`): a gRPC model's failure becomes the HTTP status a REST model in
the same state answers, so the graph's Hard/Soft rules, the retry policy's
`retryableStatusCodes` and the circuit breaker (>= 500 is a failure) treat both alike. The
codes are grpc-gateway's mapping, with one change: RESOURCE_EXHAUSTED is 503, the status
KServe's REST servers answer when overloaded, so it is retried (by the default retry codes)
and counted by the breaker. Ingress (`router.grpc_server`): a router error or a non-2xx
answer becomes the code a gRPC client expects for that status. The README's gRPC section shows
both tables; tests/unit/test_grpc_codes.py holds it to these.
"""

from __future__ import annotations

from grpc import StatusCode

HTTP_FROM_GRPC: dict[StatusCode, int] = {
    StatusCode.OK: 200,
    StatusCode.CANCELLED: 499,
    StatusCode.UNKNOWN: 500,
    StatusCode.INVALID_ARGUMENT: 400,
    StatusCode.DEADLINE_EXCEEDED: 504,
    StatusCode.NOT_FOUND: 404,
    StatusCode.ALREADY_EXISTS: 409,
    StatusCode.PERMISSION_DENIED: 403,
    StatusCode.UNAUTHENTICATED: 401,
    StatusCode.RESOURCE_EXHAUSTED: 503,
    StatusCode.FAILED_PRECONDITION: 400,
    StatusCode.ABORTED: 409,
    StatusCode.OUT_OF_RANGE: 400,
    StatusCode.UNIMPLEMENTED: 501,
    StatusCode.INTERNAL: 500,
    StatusCode.UNAVAILABLE: 503,
    StatusCode.DATA_LOSS: 500,
}

GRPC_FROM_HTTP: dict[int, StatusCode] = {
    400: StatusCode.INVALID_ARGUMENT,
    401: StatusCode.UNAUTHENTICATED,
    403: StatusCode.PERMISSION_DENIED,
    404: StatusCode.NOT_FOUND,
    405: StatusCode.UNIMPLEMENTED,
    408: StatusCode.DEADLINE_EXCEEDED,
    409: StatusCode.ABORTED,
    413: StatusCode.RESOURCE_EXHAUSTED,
    429: StatusCode.RESOURCE_EXHAUSTED,
    499: StatusCode.CANCELLED,
    500: StatusCode.INTERNAL,
    501: StatusCode.UNIMPLEMENTED,
    502: StatusCode.UNAVAILABLE,
    503: StatusCode.UNAVAILABLE,
    504: StatusCode.DEADLINE_EXCEEDED,
}


def http_status(code: StatusCode) -> int:
    """The HTTP status for a gRPC code a step answered (every code is in the table)."""
    return HTTP_FROM_GRPC.get(code, 500)


def grpc_code(status: int) -> StatusCode:
    """The gRPC code for an HTTP status the graph answered; other 4xx are FAILED_PRECONDITION
    (the request cannot be served as sent), anything else UNKNOWN (as grpc-gateway)."""
    code = GRPC_FROM_HTTP.get(status)
    if code is not None:
        return code
    return StatusCode.FAILED_PRECONDITION if 400 <= status < 500 else StatusCode.UNKNOWN


def go_name(code: StatusCode) -> str:
    """The code as Go's grpc spells it (`Unavailable`, `DeadlineExceeded`): KServe's router is
    Go, and its errors read `rpc error: code = Unavailable desc = ...`."""
    return "OK" if code is StatusCode.OK else code.name.title().replace("_", "")


def go_status_error(code: StatusCode, details: str) -> str:
    """The text of Go's `status.Error(code, details)`, the `cause` a Go router would give."""
    return f"rpc error: code = {go_name(code)} desc = {details}"
