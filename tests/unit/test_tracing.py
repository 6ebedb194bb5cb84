"""router.tracing: the span tree of a request, propagation to steps, and configuration."""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Iterator, MutableMapping
from typing import Any

import aiohttp
import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from router.calls import HttpStepCaller
from router.executor import Execution
from router.graph import CompiledGraph, Step, compile_graph
from router.payload import Payload
from router.recording import Decision, DecisionKind, Outcome
from router.tracing import Tracing, current_trace_id
from schemas.valid_graph import validate_graph
from tests.support import Backend

INCOMING_TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
INCOMING_PARENT = "00f067aa0ba902b7"
INCOMING = f"00-{INCOMING_TRACE}-{INCOMING_PARENT}-01"


@pytest.fixture
def exporter() -> InMemorySpanExporter:
    return InMemorySpanExporter()


@pytest.fixture
def tracing(exporter: InMemorySpanExporter) -> Iterator[Tracing]:
    tracing = Tracing(exporter, batch=False)
    yield tracing
    tracing.shutdown()


def compiled(spec: dict[str, Any]) -> CompiledGraph:
    return compile_graph(validate_graph(spec))


def two_step_graph() -> CompiledGraph:
    return compiled({"nodes": {"root": {"routerType": "Sequence", "steps": [
        {"name": "a", "serviceUrl": "http://127.0.0.1:9/a"},
        {"name": "b", "serviceUrl": "http://127.0.0.1:9/b"},
    ]}}})  # fmt: skip


def by_name(spans: tuple[ReadableSpan, ...]) -> dict[str, ReadableSpan]:
    named = {span.name: span for span in spans}
    assert len(named) == len(spans), "span names are unique in these tests"
    return named


def parent_id(span: ReadableSpan) -> int | None:
    return span.parent.span_id if span.parent is not None else None


def span_id(span: ReadableSpan) -> int:
    assert span.context is not None
    return int(span.context.span_id)


def traceparent_of(span: ReadableSpan) -> str:
    assert span.context is not None
    return (
        f"00-{trace.format_trace_id(span.context.trace_id)}"
        f"-{trace.format_span_id(span.context.span_id)}-{span.context.trace_flags:02x}"
    )


def test_a_sequence_makes_request_node_and_step_spans(
    tracing: Tracing, exporter: InMemorySpanExporter
) -> None:
    graph = two_step_graph()
    a, b = graph.root.steps
    sent: list[MutableMapping[str, str]] = [{}, {"Content-Type": "application/json"}]
    with tracing.request({}, "demo"):
        recorder = tracing.recorder()
        node = recorder.node_started(graph.root)
        token = recorder.step_started(a, sent[0])
        recorder.step_finished(token, 200, None, 1)
        token = recorder.step_started(b, sent[1])
        recorder.decision(
            Decision(DecisionKind.RETRY, "root", "b", Outcome.SCHEDULED, "retry 1 in 10 ms")
        )
        recorder.step_finished(token, 503, None, 3)
        recorder.node_finished(node, 503, None)
        tracing.response(503)

    spans = by_name(exporter.get_finished_spans())
    assert set(spans) == {"graph demo", "node root", "step root.a", "step root.b"}
    request, root = spans["graph demo"], spans["node root"]
    step_a, step_b = spans["step root.a"], spans["step root.b"]
    assert request.parent is None
    assert request.kind is SpanKind.SERVER
    assert request.attributes == {"infergraph.graph": "demo", "http.response.status_code": 503}
    assert request.status.status_code is StatusCode.ERROR
    assert parent_id(root) == span_id(request)
    assert parent_id(step_a) == parent_id(step_b) == span_id(root)
    assert len({s.context.trace_id for s in spans.values() if s.context is not None}) == 1
    assert step_a.kind is step_b.kind is SpanKind.CLIENT
    assert dict(step_a.attributes or {}) == {
        "infergraph.node": "root",
        "infergraph.step": "a",
        "http.request.method": "POST",
        "url.full": "http://127.0.0.1:9/a",
        "http.response.status_code": 200,
        "infergraph.retries": 0,
    }
    assert step_a.status.status_code is StatusCode.UNSET
    assert (step_b.attributes or {})["infergraph.retries"] == 2
    assert step_b.status.status_code is StatusCode.ERROR
    [retry] = step_b.events
    assert retry.name == "retry"
    assert dict(retry.attributes or {}) == {
        "infergraph.node": "root",
        "infergraph.step": "b",
        "infergraph.decision.kind": "retry",
        "infergraph.decision.outcome": "scheduled",
        "infergraph.decision.detail": "retry 1 in 10 ms",
    }
    assert sent[0] == {"traceparent": traceparent_of(step_a)}
    assert sent[1] == {"Content-Type": "application/json", "traceparent": traceparent_of(step_b)}


def test_an_incoming_traceparent_is_continued_and_replaced_towards_steps(
    tracing: Tracing, exporter: InMemorySpanExporter
) -> None:
    graph = two_step_graph()
    incoming = {"traceparent": INCOMING, "tracestate": "vendor=1"}
    # What the header propagator may copy from the caller, in the caller's spelling.
    sent: MutableMapping[str, str] = {"Traceparent": INCOMING, "TraceState": "vendor=1"}
    with tracing.request(incoming, "demo"):
        assert current_trace_id() == INCOMING_TRACE
        recorder = tracing.recorder()
        node = recorder.node_started(graph.root)
        token = recorder.step_started(graph.root.steps[0], sent)
        recorder.step_finished(token, 200, None, 1)
        recorder.node_finished(node, 200, None)
    assert current_trace_id() is None

    spans = by_name(exporter.get_finished_spans())
    request = spans["graph demo"]
    assert request.context is not None
    assert trace.format_trace_id(request.context.trace_id) == INCOMING_TRACE
    assert request.parent is not None
    assert trace.format_span_id(request.parent.span_id) == INCOMING_PARENT
    assert request.parent.is_remote
    step = spans["step root.a"]
    assert sent == {"traceparent": traceparent_of(step), "tracestate": "vendor=1"}


def test_failures_mark_spans_as_errors(tracing: Tracing, exporter: InMemorySpanExporter) -> None:
    graph = two_step_graph()
    with tracing.request({}, "demo"):
        recorder = tracing.recorder()
        node = recorder.node_started(graph.root)
        token = recorder.step_started(graph.root.steps[0], {})
        recorder.step_finished(token, 502, "node 'root' step 'a': calling ... failed", 2)
        recorder.node_finished(node, 502, "node 'root' step 'a': calling ... failed")
    spans = by_name(exporter.get_finished_spans())
    for name in ("node root", "step root.a"):
        span = spans[name]
        assert span.status.status_code is StatusCode.ERROR
        assert span.status.description == "node 'root' step 'a': calling ... failed"
        assert (span.attributes or {})["infergraph.error"] == span.status.description
        assert (span.attributes or {})["http.response.status_code"] == 502
    assert (spans["step root.a"].attributes or {})["infergraph.retries"] == 1


def test_a_cancelled_step_is_marked_so_and_not_failed(
    tracing: Tracing, exporter: InMemorySpanExporter
) -> None:
    graph = two_step_graph()
    with tracing.request({}, "demo"):
        recorder = tracing.recorder()
        token = recorder.step_started(graph.root.steps[0], {})
        recorder.step_finished(token, None, "cancelled", 1)
    step = by_name(exporter.get_finished_spans())["step root.a"]
    assert step.status.status_code is StatusCode.UNSET
    assert (step.attributes or {})["infergraph.cancelled"] is True
    assert "http.response.status_code" not in (step.attributes or {})


def test_spans_left_unfinished_do_not_leak_into_the_next_request(
    tracing: Tracing, exporter: InMemorySpanExporter
) -> None:
    # The executor reports nothing for a node cut off by the request's timeout (cancelled):
    # its span stays attached until the request's block ends, which restores the context.
    graph = two_step_graph()
    with tracing.request({}, "first"):
        recorder = tracing.recorder()
        recorder.node_started(graph.root)
        recorder.step_started(graph.root.steps[0], {})
    assert not trace.get_current_span().get_span_context().is_valid
    with tracing.request({}, "second"):
        node = recorder.node_started(graph.root)
        recorder.node_finished(node, 200, None)
    spans = exporter.get_finished_spans()
    assert [span.name for span in spans] == ["graph first", "node root", "graph second"]
    first, node_span, second = spans
    assert first.context is not None
    assert second.context is not None
    assert first.context.trace_id != second.context.trace_id
    assert parent_id(node_span) == span_id(second)


async def test_concurrent_steps_interleaving_on_one_recorder_keep_their_parents(
    tracing: Tracing, exporter: InMemorySpanExporter
) -> None:
    graph = compiled({"nodes": {"root": {"routerType": "Ensemble", "steps": [
        {"name": "a", "serviceUrl": "http://127.0.0.1:9/a"},
        {"name": "b", "serviceUrl": "http://127.0.0.1:9/b"},
    ]}}})  # fmt: skip
    recorder = tracing.recorder()
    a_started, b_finished = asyncio.Event(), asyncio.Event()
    seen: dict[str, tuple[str, str]] = {}

    async def call(step: Step, wait: asyncio.Event | None, done: asyncio.Event | None) -> None:
        headers: dict[str, str] = {}
        token = recorder.step_started(step, headers)
        current = trace.format_span_id(trace.get_current_span().get_span_context().span_id)
        if done is a_started:
            a_started.set()
        if wait is not None:
            await wait.wait()  # a: started first, finishes last
        recorder.step_finished(token, 200, None, 1)
        after = trace.format_span_id(trace.get_current_span().get_span_context().span_id)
        seen[step.key] = (headers["traceparent"].split("-")[2], current + "/" + after)
        if done is b_finished:
            b_finished.set()

    a, b = graph.root.steps
    with tracing.request({}, "demo"):
        request_span = trace.get_current_span()
        node = recorder.node_started(graph.root)
        node_span = trace.format_span_id(trace.get_current_span().get_span_context().span_id)
        # As the executor's Ensemble does: tasks created while the node's span is current.
        first = asyncio.ensure_future(call(a, b_finished, a_started))
        await a_started.wait()
        second = asyncio.ensure_future(call(b, None, b_finished))
        await asyncio.gather(first, second)
        recorder.node_finished(node, 200, None)
        assert trace.get_current_span() is request_span
    assert not trace.get_current_span().get_span_context().is_valid

    spans = by_name(exporter.get_finished_spans())
    for key in ("a", "b"):
        step = spans[f"step root.{key}"]
        assert parent_id(step) == span_id(spans["node root"])
        injected, current = seen[key]
        # Inside its task the step's span was current, and the node's once it finished.
        assert injected == trace.format_span_id(span_id(step))
        assert current == f"{injected}/{node_span}"
    assert parent_id(spans["node root"]) == span_id(spans["graph demo"])


def test_batched_spans_are_exported_by_shutdown(exporter: InMemorySpanExporter) -> None:
    tracing = Tracing(exporter)  # BatchSpanProcessor, as in service
    graph = two_step_graph()
    with tracing.request({}, "demo"):
        recorder = tracing.recorder()
        recorder.node_finished(recorder.node_started(graph.root), 200, None)
    tracing.shutdown()
    tracing.shutdown()  # idempotent: the app may call it from more than one cleanup path
    assert {span.name for span in exporter.get_finished_spans()} == {"graph demo", "node root"}


@pytest.mark.parametrize(
    "environ",
    [
        {},
        {"OTEL_TRACES_EXPORTER": "none"},
        {"OTEL_TRACES_EXPORTER": " "},
        {"OTEL_TRACES_EXPORTER": "console", "OTEL_SDK_DISABLED": "TRUE"},
    ],
)
def test_from_env_is_off_unless_an_exporter_is_named(environ: dict[str, str]) -> None:
    assert Tracing.from_env(environ) is None


@pytest.mark.parametrize("exporters", ["console", "otlp", "otlp,console", "OTLP"])
def test_from_env_builds_the_named_exporters(exporters: str) -> None:
    tracing = Tracing.from_env({"OTEL_TRACES_EXPORTER": exporters})
    assert tracing is not None
    tracing.shutdown()  # nothing was traced: nothing is printed or sent


@pytest.mark.parametrize(
    ("environ", "message"),
    [
        ({"OTEL_TRACES_EXPORTER": "zipkin"}, "unknown exporter 'zipkin'"),
        (
            {"OTEL_TRACES_EXPORTER": "otlp", "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc"},
            "OTLP protocol 'grpc' is not supported",
        ),
    ],
)
def test_from_env_refuses_what_it_cannot_export(environ: dict[str, str], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        Tracing.from_env(environ)


async def test_a_real_request_with_a_nested_ensemble(
    backend: Backend, tracing: Tracing, exporter: InMemorySpanExporter
) -> None:
    graph = compiled({"nodes": {
        "root": {"routerType": "Sequence", "steps": [
            {"name": "prepare", "serviceUrl": backend.at("/echo/prepare")},
            {"name": "vote", "nodeName": "vote"},
        ]},
        "vote": {"routerType": "Ensemble", "steps": [
            {"name": "slow", "serviceUrl": backend.at("/slow/30")},
            {"name": "fast", "serviceUrl": backend.at("/echo/fast")},
        ]},
    }})  # fmt: skip
    async with aiohttp.ClientSession() as session:
        with tracing.request({"traceparent": INCOMING}, "demo"):
            execution = Execution(
                HttpStepCaller(session, 1 << 20),
                Payload(b'{"instances": [1]}'),
                {"Content-Type": "application/json"},
                random.Random(0),
                deadline=time.monotonic() + 30,
                service_client_timeout=30,
                recorder=tracing.recorder(),
            )
            reply = await execution.run_node(graph.root, execution.request)
    assert reply.status == 200

    spans = by_name(exporter.get_finished_spans())
    assert set(spans) == {
        "graph demo",
        "node root",
        "step root.prepare",
        "node vote",
        "step vote.slow",
        "step vote.fast",
    }
    assert {s.context.trace_id for s in spans.values() if s.context is not None} == {
        int(INCOMING_TRACE, 16)
    }
    tree = {name: parent_id(span) for name, span in spans.items()}
    assert tree == {
        "graph demo": int(INCOMING_PARENT, 16),
        "node root": span_id(spans["graph demo"]),
        "step root.prepare": span_id(spans["node root"]),
        "node vote": span_id(spans["node root"]),  # a nodeName step is the nested node's span
        "step vote.slow": span_id(spans["node vote"]),
        "step vote.fast": span_id(spans["node vote"]),
    }
    # Each service got the traceparent of its own step's span.
    received = {call["path"]: call["headers"].get("traceparent") for call in backend.calls}
    assert received == {
        "/echo/prepare": traceparent_of(spans["step root.prepare"]),
        "/slow/30": traceparent_of(spans["step vote.slow"]),
        "/echo/fast": traceparent_of(spans["step vote.fast"]),
    }
    assert (spans["step vote.slow"].attributes or {})["http.response.status_code"] == 200
