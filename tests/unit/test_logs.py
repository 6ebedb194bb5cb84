"""router.logs: JSON lines, the per-request INFO line and the per-step DEBUG lines."""

from __future__ import annotations

import io
import logging
import random
import sys
import time
from collections.abc import Callable, Iterator
from typing import Any

import aiohttp
import orjson
import pytest
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from router.calls import HttpStepCaller
from router.executor import Execution
from router.graph import CompiledGraph, compile_graph
from router.logs import REQUESTS_LOGGER, JsonFormatter, RequestLog, configure
from router.payload import Payload
from router.recording import Decision, DecisionKind, Outcome
from router.tracing import Tracing, current_trace_id
from schemas.valid_graph import validate_graph
from tests.support import Backend

Lines = Callable[[], list[dict[str, Any]]]


@pytest.fixture
def configured() -> Iterator[Callable[[str], Lines]]:
    """`lines = configured("DEBUG")`: JSON logging into a buffer; the root logger is restored."""
    root = logging.getLogger()
    saved_handlers, saved_level = list(root.handlers), root.level

    def install(level: str) -> Lines:
        stream = io.StringIO()
        configure(level, stream)
        return lambda: [orjson.loads(line) for line in stream.getvalue().splitlines()]

    yield install
    for handler in list(root.handlers):
        root.removeHandler(handler)
    for handler in saved_handlers:
        root.addHandler(handler)
    root.setLevel(saved_level)


def two_step_graph(url: str = "http://127.0.0.1:9") -> CompiledGraph:
    spec = {"nodes": {"root": {"routerType": "Sequence", "steps": [
        {"name": "a", "serviceUrl": f"{url}/a"},
        {"name": "b", "serviceUrl": f"{url}/b"},
    ]}}}  # fmt: skip
    return compile_graph(validate_graph(spec))


def test_the_formatter_renders_one_json_object_with_the_extras() -> None:
    record = logging.LogRecord("router.x", logging.WARNING, __file__, 1, "hi %s", ("there",), None)
    record.__dict__.update({"status": 503, "url": "http://m", "level": "not the level"})
    line = JsonFormatter().format(record)
    assert "\n" not in line
    out = orjson.loads(line)
    assert out.pop("ts").endswith("+00:00")
    assert out == {
        "level": "WARNING",
        "logger": "router.x",
        "msg": "hi there",
        "status": 503,
        "url": "http://m",
    }


def test_the_formatter_keeps_exceptions_and_odd_values() -> None:
    try:
        raise RuntimeError("boom")
    except RuntimeError:
        record = logging.getLogger("x").makeRecord(
            "x", logging.ERROR, __file__, 1, "failed", (), sys.exc_info()
        )
    record.__dict__["where"] = object()  # not JSON: rendered with str(), never an error
    out = orjson.loads(JsonFormatter().format(record))
    assert "RuntimeError: boom" in out["exc"]
    assert out["where"].startswith("<object object")


def test_configure_replaces_the_root_handlers(configured: Callable[[str], Lines]) -> None:
    configured("WARNING")
    lines = configured("info")
    assert len(logging.getLogger().handlers) == 1
    logging.getLogger("anything").debug("hidden")
    logging.getLogger("anything").info("shown", extra={"k": [1, 2]})
    assert [(line["msg"], line.get("k")) for line in lines()] == [("shown", [1, 2])]


def test_the_request_line_is_written_at_info(configured: Callable[[str], Lines]) -> None:
    lines = configured("INFO")
    log = RequestLog("demo")
    assert log.recorder() is None  # DEBUG is off: no recorder, no cost
    log.request_finished("POST", "/v1/models/x:predict", 200, 0.0123, "ab" * 16)
    log.request_finished("POST", "/", 504, 1.5, None)
    first, second = lines()
    del first["ts"], second["ts"]
    assert first == {
        "level": "INFO",
        "logger": REQUESTS_LOGGER,
        "msg": "POST /v1/models/x:predict 200 12.3ms",
        "graph": "demo",
        "method": "POST",
        "path": "/v1/models/x:predict",
        "status": 200,
        "ms": 12.3,
        "trace_id": "ab" * 16,
    }
    assert "trace_id" not in second
    assert second["status"] == 504


def test_nothing_is_logged_below_the_level(configured: Callable[[str], Lines]) -> None:
    lines = configured("WARNING")
    log = RequestLog("demo")
    log.request_finished("POST", "/", 200, 0.001, None)
    assert log.recorder() is None
    assert lines() == []


def test_step_lines_at_debug_carry_the_trace_id(configured: Callable[[str], Lines]) -> None:
    lines = configured("DEBUG")
    graph = two_step_graph()
    a, b = graph.root.steps
    tracing = Tracing(InMemorySpanExporter(), batch=False)
    log = RequestLog("demo")
    with tracing.request({}, "demo"):
        trace_id = current_trace_id()
        recorder = log.recorder()
        assert recorder is not None
        node = recorder.node_started(graph.root)
        token = recorder.step_started(a, {})
        recorder.step_finished(token, 200, None, 1)
        token = recorder.step_started(b, {})
        recorder.decision(
            Decision(DecisionKind.RETRY, "root", "b", Outcome.SCHEDULED, "retry 1 in 5 ms")
        )
        recorder.step_finished(token, 502, "node 'root' step 'b': calling failed", 2)
        recorder.node_finished(node, 502, "node 'root' step 'b': calling failed")
    tracing.shutdown()

    steps = lines()
    assert len(steps) == 2
    for line in steps:
        assert line["level"] == "DEBUG"
        assert line["logger"] == REQUESTS_LOGGER
        assert line["trace_id"] == trace_id
        assert isinstance(line.pop("ms"), float)
        del line["ts"], line["msg"], line["level"], line["logger"], line["trace_id"]
    assert steps == [
        {"graph": "demo", "node": "root", "step": "a", "url": "http://127.0.0.1:9/a",
         "status": 200, "attempts": 1},
        {"graph": "demo", "node": "root", "step": "b", "url": "http://127.0.0.1:9/b",
         "status": 502, "attempts": 2, "error": "node 'root' step 'b': calling failed"},
    ]  # fmt: skip


async def test_a_real_request_logs_its_steps_and_itself(
    backend: Backend, configured: Callable[[str], Lines]
) -> None:
    lines = configured("DEBUG")
    graph = two_step_graph(backend.url + "/echo")
    log = RequestLog("demo")
    recorder = log.recorder()
    assert recorder is not None
    started = time.perf_counter()
    async with aiohttp.ClientSession() as session:
        execution = Execution(
            HttpStepCaller(session, 1 << 20),
            Payload(b'{"instances": [1]}'),
            {"Content-Type": "application/json"},
            random.Random(0),
            deadline=time.monotonic() + 30,
            service_client_timeout=30,
            recorder=recorder,
        )
        reply = await execution.run_node(graph.root, execution.request)
    log.request_finished("POST", "/", reply.status, time.perf_counter() - started, None)

    ours = [line for line in lines() if line["logger"] == REQUESTS_LOGGER]
    assert [(line["level"], line.get("step"), line["status"]) for line in ours] == [
        ("DEBUG", "a", 200),
        ("DEBUG", "b", 200),
        ("INFO", None, 200),
    ]
    assert [line.get("url") for line in ours[:2]] == [backend.at("/echo/a"), backend.at("/echo/b")]


def test_a_clients_malformed_request_is_one_info_line_not_a_traceback(
    configured: Callable[[str], Lines],
) -> None:
    from aiohttp.http_exceptions import BadHttpMessage

    lines = configured("INFO")
    server = logging.getLogger("aiohttp.server")
    for error in (BadHttpMessage("Duplicate 'Content-Length' header found."), ValueError("ours")):
        try:
            raise error
        except Exception as caught:
            server.error("Error handling request from %s", "127.0.0.1", exc_info=caught)
    client, ours = lines()
    assert client["level"] == "INFO"
    assert client["msg"] == (
        "client sent a malformed request: 400, message: Duplicate 'Content-Length' header found."
    )
    assert "exc" not in client
    assert ours["level"] == "ERROR"  # the router's own faults keep their traceback
    assert "ValueError: ours" in ours["exc"]
