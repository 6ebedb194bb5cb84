"""OpenTelemetry traces of the router: a span per request, per node and per step call.

`router.app` owns one `Tracing` per process when the standard `OTEL_*` variables ask for one
(`Tracing.from_env`). Per request it wraps the handling in `Tracing.request(...)` (a server span
that continues the caller's W3C `traceparent`) and attaches `Tracing.recorder()` to the
`Execution`; the executor then reports nodes and step calls through the `router.recording`
protocol, and each step call's span is propagated to the service as `traceparent`/`tracestate`.
`shutdown()` flushes what is queued; the app calls it on cleanup.

Spans are parented through the OpenTelemetry context, which lives in a contextvar: a node's
span is attached (made current) while the node runs, so step spans started in the same task,
or in the tasks an Ensemble creates inside the node (each gets a copy of the context), are its
children. Every attach is detached by the matching `*_finished`, in the task that attached it.
A `*_finished` with no status means the node or call was cancelled (a quorum was reached, the
request ended): its span is marked `infergraph.cancelled`, not failed.

The tracer provider is private to each `Tracing` (never the global one), so several can live in
one process (tests) and nothing else in the process is traced by accident.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping, MutableMapping, Sequence
from contextvars import Token
from typing import Final, cast

from opentelemetry import context, trace
from opentelemetry.context import Context
from opentelemetry.sdk.resources import SERVICE_NAME, Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import (
    BatchSpanProcessor,
    ConsoleSpanExporter,
    SimpleSpanProcessor,
    SpanExporter,
)
from opentelemetry.trace import SpanKind, Status, StatusCode
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from router.graph import Node, Step
from router.recording import Decision, Recorder
from router.streams import StreamStats

INSTRUMENTATION_NAME: Final = "infergraph.router"

# Attribute names: OpenTelemetry's HTTP semantic conventions where one exists.
NODE: Final = "infergraph.node"
NODE_KIND: Final = "infergraph.node.kind"
STEP: Final = "infergraph.step"
GRAPH: Final = "infergraph.graph"
RETRIES: Final = "infergraph.retries"
ERROR: Final = "infergraph.error"
CANCELLED: Final = "infergraph.cancelled"
DECISION_KIND: Final = "infergraph.decision.kind"
DECISION_OUTCOME: Final = "infergraph.decision.outcome"
DECISION_DETAIL: Final = "infergraph.decision.detail"
URL: Final = "url.full"
HTTP_STATUS: Final = "http.response.status_code"
HTTP_METHOD: Final = "http.request.method"

_PROPAGATOR: Final = TraceContextTextMapPropagator()
_PROPAGATED: Final = frozenset(_PROPAGATOR.fields)  # {"traceparent", "tracestate"}

_Token = tuple[trace.Span, Token[Context]]


class Tracing:
    """A private tracer provider and the per-request pieces the app attaches to requests."""

    def __init__(
        self,
        exporters: SpanExporter | Sequence[SpanExporter],
        *,
        service_name: str = "infergraph-router",
        batch: bool = True,
    ) -> None:
        """Export to `exporters`; `batch=False` exports each span as it ends (for tests)."""
        if isinstance(exporters, SpanExporter):
            exporters = (exporters,)
        # `Resource.create` adds OTEL_RESOURCE_ATTRIBUTES and OTEL_SERVICE_NAME, which win.
        self._provider = TracerProvider(
            resource=Resource.create({SERVICE_NAME: service_name}), shutdown_on_exit=False
        )
        for exporter in exporters:
            # Batching keeps export (and the OTLP exporter's blocking HTTP) off the event loop:
            # the processor's own thread sends; the request path only enqueues.
            processor = BatchSpanProcessor(exporter) if batch else SimpleSpanProcessor(exporter)
            self._provider.add_span_processor(processor)
        self._tracer = self._provider.get_tracer(INSTRUMENTATION_NAME)
        self._recorder = _TracingRecorder(self._tracer)
        self._shut_down = False

    @classmethod
    def from_env(
        cls, environ: Mapping[str, str], service_name: str = "infergraph-router"
    ) -> Tracing | None:
        """Tracing as the standard OpenTelemetry variables configure it, or None when off.

        `OTEL_TRACES_EXPORTER` names the exporters (comma-separated): `otlp` (OTLP over
        HTTP/protobuf, configured by `OTEL_EXPORTER_OTLP_*` in the process environment) and
        `console`. Unset or `none` turns tracing off, as does `OTEL_SDK_DISABLED=true`.
        Raises ValueError for an exporter or OTLP protocol this router cannot provide, so a
        misconfiguration stops start-up instead of silently losing traces.
        """
        if environ.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
            return None
        names = [
            name.strip().lower()
            for name in environ.get("OTEL_TRACES_EXPORTER", "").split(",")
            if name.strip() and name.strip().lower() != "none"
        ]
        if not names:
            return None
        return cls([_exporter(name, environ) for name in names], service_name=service_name)

    @contextlib.contextmanager
    def _request(self, headers: Mapping[str, str], graph_name: str) -> Iterator[None]:
        parent = _PROPAGATOR.extract(headers)
        with self._tracer.start_as_current_span(
            f"graph {graph_name}",
            context=parent,
            kind=SpanKind.SERVER,
            attributes={GRAPH: graph_name},
        ):
            yield

    def request(
        self, headers: Mapping[str, str], graph_name: str
    ) -> contextlib.AbstractContextManager[None]:
        """The request's server span, current while the block runs.

        It continues the trace of an incoming `traceparent` (and `tracestate`); `headers` must
        look names up case-insensitively (aiohttp's request headers do) or use lower case.
        """
        return self._request(headers, graph_name)

    def response(self, status: int) -> None:
        """Records the answer's status on the current request span (call inside `request`)."""
        span = trace.get_current_span()
        span.set_attribute(HTTP_STATUS, status)
        if status >= 500:  # for a server span only 5xx is the server's failure
            span.set_status(Status(StatusCode.ERROR))

    def stream_finished(self, stats: StreamStats) -> None:
        """A `stream` event on the request's span (call inside `request`): which step streamed,
        its time to first byte, duration, events, bytes and how it ended."""
        trace.get_current_span().add_event(
            "stream",
            attributes={
                NODE: stats.step.owner,
                STEP: stats.step.key,
                "infergraph.stream.first_byte_ms": stats.first_byte_seconds * 1000,
                "infergraph.stream.duration_ms": stats.seconds * 1000,
                "infergraph.stream.events": stats.events,
                "infergraph.stream.bytes": stats.bytes,
                "infergraph.stream.outcome": stats.outcome,
            },
        )

    def recorder(self) -> Recorder:
        """The recorder to attach to a request; spans live in the context, so it is shared."""
        return self._recorder

    def shutdown(self) -> None:
        """Exports what is queued and stops the exporters; later calls do nothing."""
        if not self._shut_down:
            self._shut_down = True
            self._provider.shutdown()


def current_trace_id() -> str | None:
    """The current span's trace id as 32 hex digits (for logs), or None outside any trace."""
    span_context = trace.get_current_span().get_span_context()
    if not span_context.is_valid:
        return None
    return trace.format_trace_id(span_context.trace_id)


def _exporter(name: str, environ: Mapping[str, str]) -> SpanExporter:
    if name == "console":
        return ConsoleSpanExporter(service_name=None)
    if name == "otlp":
        protocol = environ.get(
            "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", environ.get("OTEL_EXPORTER_OTLP_PROTOCOL", "")
        ).strip()
        if protocol not in ("", "http/protobuf"):
            raise ValueError(
                f"OTLP protocol {protocol!r} is not supported: the router exports traces over "
                "http/protobuf (unset OTEL_EXPORTER_OTLP_PROTOCOL, or set it to http/protobuf)"
            )
        # Imported here: only deployments that export OTLP need it (and its requests/protobuf).
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        return OTLPSpanExporter()
    raise ValueError(
        f"OTEL_TRACES_EXPORTER: unknown exporter {name!r}; the router supports otlp, console, none"
    )


class _TracingRecorder:
    """Starts a span per node and step call; tokens carry the span and the context to restore."""

    __slots__ = ("_tracer",)

    def __init__(self, tracer: trace.Tracer) -> None:
        self._tracer = tracer

    def node_started(self, node: Node) -> object:
        span = self._tracer.start_span(
            f"node {node.name}", attributes={NODE: node.name, NODE_KIND: node.kind.value}
        )
        return (span, context.attach(trace.set_span_in_context(span)))

    def node_finished(self, token: object, status: int | None, error: str | None) -> None:
        span, attached = cast("_Token", token)
        context.detach(attached)
        _outcome(span, status, error, error_from=500)
        span.end()

    def step_started(self, step: Step, headers: MutableMapping[str, str]) -> object:
        attributes: dict[str, str] = {NODE: step.owner, STEP: step.key, HTTP_METHOD: "POST"}
        if step.url is not None:
            attributes[URL] = step.url
        span = self._tracer.start_span(
            f"step {step.owner}.{step.key}", kind=SpanKind.CLIENT, attributes=attributes
        )
        span_context = trace.set_span_in_context(span)
        # The propagated headers may carry the caller's traceparent, in any case; the service
        # must see ours (one of each, never two spellings of the same header).
        for name in [name for name in headers if name.lower() in _PROPAGATED]:
            del headers[name]
        _PROPAGATOR.inject(headers, context=span_context)
        return (span, context.attach(span_context))

    def step_finished(
        self, token: object, status: int | None, error: str | None, attempts: int
    ) -> None:
        span, attached = cast("_Token", token)
        context.detach(attached)
        span.set_attribute(RETRIES, max(0, attempts - 1))
        _outcome(span, status, error, error_from=400)  # a client span fails on any 4xx or 5xx
        span.end()

    def decision(self, decision: Decision) -> None:
        # A retry, a condition's outcome, a splitter draw: an event on the span running now
        # (the step's for a retry, the node's otherwise), named by its kind, with its values.
        attributes = {
            NODE: decision.node,
            DECISION_KIND: decision.kind.value,
            DECISION_OUTCOME: decision.outcome.value,
            DECISION_DETAIL: decision.detail,
        }
        if decision.step is not None:
            attributes[STEP] = decision.step
        trace.get_current_span().add_event(decision.kind.value, attributes=attributes)


def _outcome(span: trace.Span, status: int | None, error: str | None, error_from: int) -> None:
    if status is None:
        # No outcome: cancelled (an Ensemble's quorum was reached, the request ended), which is
        # by design and not a failure of what the span covers.
        span.set_attribute(CANCELLED, True)
        return
    span.set_attribute(HTTP_STATUS, status)
    if error is not None:
        span.set_attribute(ERROR, error)
        span.set_status(Status(StatusCode.ERROR, error))
    elif status >= error_from:
        span.set_status(Status(StatusCode.ERROR))
