"""Structured logs: one JSON object per line, one INFO line per request, DEBUG per step call.

`router.server` calls `configure` once at start-up, which makes every log record of the
process (ours and libraries') a JSON line. `router.app` owns one `RequestLog`: it calls
`request_finished` once per answered request and attaches `RequestLog.recorder()` (when DEBUG
is on) to the request's `Execution`, through which the executor reports each step call.
Lines carry the OpenTelemetry trace id when a span is current, to join logs with traces.
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import MutableMapping
from typing import Final, TextIO, cast

from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError

from router.graph import Node, Step
from router.jsonlog import JsonFormatter
from router.recording import Decision, Recorder
from router.tracing import current_trace_id

REQUESTS_LOGGER: Final = "router.requests"


class ClientMistakes(logging.Filter):
    """Turns aiohttp's ERROR-with-traceback for a client's malformed request into one INFO line.

    aiohttp logs every request its HTTP parser refuses (bad request line, header or chunking)
    and every body it cannot decode (a lying Content-Encoding) as an error with a traceback.
    The client already got its 400; a traceback per bad request would let any client flood
    the log and bury real faults. Errors that are not the client's stay as they are.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        error = record.exc_info[1] if record.exc_info else None
        client_fault = (isinstance(error, HttpProcessingError) and 400 <= error.code < 500) or (
            isinstance(error, web.RequestPayloadError)
        )
        if client_fault:
            record.msg = "client sent a malformed request: %s"
            record.args = (" ".join(str(error).split()),)
            record.levelno, record.levelname = logging.INFO, "INFO"
            record.exc_info = record.exc_text = None
        return True


def configure(level: str = "INFO", stream: TextIO | None = None) -> None:
    """JSON lines on `stream` (stderr by default) for every logger, at `level` and above."""
    handler = logging.StreamHandler(stream if stream is not None else sys.stderr)
    handler.setFormatter(JsonFormatter())
    handler.addFilter(ClientMistakes())
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
        old.close()
    root.addHandler(handler)
    root.setLevel(level.upper())


class RequestLog:
    """Request and step-call lines of one graph, on the `router.requests` logger."""

    def __init__(self, graph_name: str) -> None:
        self.graph_name = graph_name
        self._logger = logging.getLogger(REQUESTS_LOGGER)

    def recorder(self) -> Recorder | None:
        """A recorder logging each step call at DEBUG, or None when DEBUG is off (no cost)."""
        if not self._logger.isEnabledFor(logging.DEBUG):
            return None
        return _StepLog(self._logger, self.graph_name)

    def request_finished(
        self, method: str, path: str, status: int, seconds: float, trace_id: str | None
    ) -> None:
        if not self._logger.isEnabledFor(logging.INFO):
            return
        ms = round(seconds * 1000, 3)
        extra: dict[str, object] = {
            "graph": self.graph_name,
            "method": method,
            "path": path,
            "status": status,
            "ms": ms,
        }
        if trace_id is not None:
            extra["trace_id"] = trace_id
        self._logger.info("%s %s %d %.1fms", method, path, status, ms, extra=extra)


class _StepLog:
    """Logs step calls; node events are not logged (the request line and the steps suffice)."""

    __slots__ = ("_graph", "_logger")

    def __init__(self, logger: logging.Logger, graph_name: str) -> None:
        self._logger = logger
        self._graph = graph_name

    def node_started(self, node: Node) -> object:
        return None

    def node_finished(self, token: object, status: int | None, error: str | None) -> None:
        pass

    def step_started(self, step: Step, headers: MutableMapping[str, str]) -> object:
        return (step, time.perf_counter())

    def step_finished(
        self, token: object, status: int | None, error: str | None, attempts: int
    ) -> None:
        step, started = cast("tuple[Step, float]", token)
        ms = round((time.perf_counter() - started) * 1000, 3)
        extra: dict[str, object] = {
            "graph": self._graph,
            "node": step.owner,
            "step": step.key,
            "url": step.url,
            "status": status,
            "attempts": attempts,
            "ms": ms,
        }
        if error is not None:
            extra["error"] = error
        trace_id = current_trace_id()
        if trace_id is not None:
            extra["trace_id"] = trace_id
        self._logger.debug("step %s.%s %s %.1fms", step.owner, step.key, status, ms, extra=extra)

    def decision(self, decision: Decision) -> None:
        pass
