"""router.metrics: series as the executor's recorder events and the app's calls produce them."""

from __future__ import annotations

import random
import time
from typing import Any

import aiohttp
from prometheus_client import REGISTRY, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from router.calls import HttpStepCaller
from router.executor import Execution
from router.graph import CompiledGraph, compile_graph
from router.metrics import Metrics
from router.payload import Payload
from router.recording import Decision, DecisionKind, Outcome
from router.resilience import Breakers
from schemas.graph import CircuitBreakerPolicy
from schemas.valid_graph import validate_graph
from tests.support import Backend


def two_step_graph(url: str = "http://127.0.0.1:9") -> CompiledGraph:
    spec = {"nodes": {"root": {"routerType": "Sequence", "steps": [
        {"name": "a", "serviceUrl": f"{url}/a"},
        {"name": "b", "serviceUrl": f"{url}/b"},
    ]}}}  # fmt: skip
    return compile_graph(validate_graph(spec))


def samples(metrics: Metrics) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    body, _ = metrics.render()
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(body.decode())
        for s in family.samples
    }


def value(metrics: Metrics, name: str, **labels: str) -> float | None:
    return samples(metrics).get((name, frozenset(labels.items())))


def test_a_sequence_records_nodes_steps_errors_and_retries() -> None:
    graph = two_step_graph()
    a, b = graph.root.steps
    metrics = Metrics("g")
    recorder = metrics.recorder()
    node = recorder.node_started(graph.root)
    token = recorder.step_started(a, {})
    recorder.step_finished(token, 200, None, 1)
    token = recorder.step_started(b, {})
    recorder.step_finished(token, 503, None, 3)
    recorder.decision(
        Decision(DecisionKind.RETRY, "root", "b", Outcome.SCHEDULED, "retry 1 in 10 ms")
    )
    recorder.node_finished(node, 503, None)
    metrics.request_finished(503, 0.02)

    step_count = "infergraph_step_duration_seconds_count"
    assert value(metrics, step_count, graph="g", node="root", step="a", status="200") == 1
    assert value(metrics, step_count, graph="g", node="root", step="b", status="503") == 1
    errors = "infergraph_step_errors_total"
    assert value(metrics, errors, graph="g", node="root", step="b", status="503") == 1
    assert value(metrics, errors, graph="g", node="root", step="a", status="200") is None
    retries = "infergraph_step_retries_total"
    assert value(metrics, retries, graph="g", node="root", step="b") == 2
    assert value(metrics, retries, graph="g", node="root", step="a") is None
    node_count = "infergraph_node_duration_seconds_count"
    assert value(metrics, node_count, graph="g", node="root") == 1
    assert value(metrics, "infergraph_requests_total", graph="g", status="503") == 1
    assert value(metrics, "infergraph_request_duration_seconds_count", graph="g") == 1
    assert value(metrics, "infergraph_request_duration_seconds_sum", graph="g") == 0.02
    bucket = "infergraph_request_duration_seconds_bucket"
    assert value(metrics, bucket, graph="g", le="0.01") == 0
    assert value(metrics, bucket, graph="g", le="0.025") == 1


def test_a_step_with_no_answer_counts_under_the_router_error_status() -> None:
    graph = two_step_graph()
    a = graph.root.steps[0]
    metrics = Metrics("g")
    recorder = metrics.recorder()
    for _ in range(2):
        token = recorder.step_started(a, {})
        recorder.step_finished(token, 502, "calling http://127.0.0.1:9/a failed", 1)
    labels = {"graph": "g", "node": "root", "step": "a", "status": "502"}
    assert value(metrics, "infergraph_step_duration_seconds_count", **labels) == 2
    assert value(metrics, "infergraph_step_errors_total", **labels) == 2


def test_a_cancelled_step_is_counted_but_is_no_error() -> None:
    graph = two_step_graph()
    metrics = Metrics("g")
    recorder = metrics.recorder()
    token = recorder.step_started(graph.root.steps[0], {})
    recorder.step_finished(token, None, "cancelled", 1)  # no status: cancelled
    labels = {"graph": "g", "node": "root", "step": "a", "status": "cancelled"}
    assert value(metrics, "infergraph_step_duration_seconds_count", **labels) == 1
    assert value(metrics, "infergraph_step_errors_total", **labels) is None


def test_breaker_states_and_in_flight_are_read_at_scrape_time() -> None:
    breakers = Breakers()
    policy = CircuitBreakerPolicy.model_validate({"failureThreshold": 1, "cooldownSeconds": 3600})
    now = time.monotonic()
    breakers.get("http://closed", policy)
    breakers.get("http://open", policy).record(False, now)
    breakers.get("http://half-open", policy).record(False, now - 7200)  # cooldown long over
    in_flight = [3]
    metrics = Metrics("g", breakers, lambda: in_flight[0])

    state = "infergraph_circuit_breaker_state"
    assert value(metrics, state, graph="g", target="http://closed") == 0
    assert value(metrics, state, graph="g", target="http://half-open") == 1
    assert value(metrics, state, graph="g", target="http://open") == 2
    assert value(metrics, "infergraph_in_flight_requests", graph="g") == 3

    in_flight[0] = 0
    breakers.get("http://open", policy).record(True, time.monotonic())
    assert value(metrics, "infergraph_in_flight_requests", graph="g") == 0
    assert value(metrics, state, graph="g", target="http://open") == 0


def test_registries_are_private() -> None:
    first, second = Metrics("g"), Metrics("g")  # would raise "Duplicated timeseries" if shared
    first.request_finished(200, 0.001)
    assert value(first, "infergraph_requests_total", graph="g", status="200") == 1
    assert value(second, "infergraph_requests_total", graph="g", status="200") is None
    assert b"infergraph_" not in generate_latest(REGISTRY)
    body, content_type = second.render()
    assert content_type.startswith("text/plain; version=")
    assert b"# TYPE infergraph_step_duration_seconds histogram" in body


async def test_a_real_request_through_the_executor(backend: Backend) -> None:
    spec: dict[str, Any] = {
        "nodes": {"root": {"routerType": "Sequence", "steps": [
            {"name": "first", "serviceUrl": backend.at("/echo/first")},
            {"name": "warming", "serviceUrl": backend.at("/flaky/1"),
             "retry": {"maxRetries": 2, "initialDelayMs": 1, "maxDelayMs": 1}},
        ]}},
        "circuitBreaker": {"failureThreshold": 5, "cooldownSeconds": 30},
    }  # fmt: skip
    graph = compile_graph(validate_graph(spec))
    breakers = Breakers()
    metrics = Metrics("demo", breakers, lambda: 1)
    started = time.perf_counter()
    async with aiohttp.ClientSession() as session:
        execution = Execution(
            HttpStepCaller(session, 1 << 20),
            Payload(b'{"instances": [1]}'),
            {"Content-Type": "application/json"},
            random.Random(0),
            deadline=time.monotonic() + 30,
            service_client_timeout=30,
            breakers=breakers,
            recorder=metrics.recorder(),
        )
        reply = await execution.run_node(graph.root, execution.request)
    metrics.request_finished(reply.status, time.perf_counter() - started)

    assert reply.status == 200
    assert backend.paths() == ["/echo/first", "/flaky/1", "/flaky/1"]
    count = "infergraph_step_duration_seconds_count"
    labels = {"graph": "demo", "node": "root"}
    assert value(metrics, count, **labels, step="first", status="200") == 1
    assert value(metrics, count, **labels, step="warming", status="200") == 1
    assert value(metrics, "infergraph_step_retries_total", **labels, step="warming") == 1
    assert value(metrics, "infergraph_node_duration_seconds_count", **labels) == 1
    assert value(metrics, "infergraph_requests_total", graph="demo", status="200") == 1
    # The breakers the executor created for the two targets, both closed again.
    state = "infergraph_circuit_breaker_state"
    assert value(metrics, state, graph="demo", target=backend.at("/echo/first")) == 0
    assert value(metrics, state, graph="demo", target=backend.at("/flaky/1")) == 0
    assert value(metrics, "infergraph_in_flight_requests", graph="demo") == 1
