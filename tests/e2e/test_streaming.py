"""Streaming through the graph, end to end: a real `python -m router` between a real client and
a scripted streaming model (tests/streaming_backend.py), all on 127.0.0.1.

No clocks: a stream is shown to pass through because the model holds its second event until
the test has read the first one through the router (a buffering router would never deliver
it), and a hang-up is shown to reach the model because the model sees its reader go.
"""

from __future__ import annotations

import asyncio
import signal
import struct
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import grpc
import openai
import orjson
import pytest
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from router.inference_proto.grpc_predict_v2_pb2 import ModelInferRequest, ModelInferResponse
from router.tracing import Tracing
from tests.streaming_backend import StreamingModel, streaming_model
from tests.support import Backend, StartRouter, free_port, root_graph

REQUEST = {"prompt": "hi"}
# How long a test waits for something the router must do at once (close, answer); generous
# for a loaded machine, and never what the test measures.
PATIENCE = 20.0


@pytest.fixture
async def model() -> AsyncIterator[StreamingModel]:
    async with streaming_model() as running:
        yield running


def events(raw: bytes) -> list[tuple[str, Any]]:
    """(event name, data) of each SSE event in `raw`; comments are left out."""
    out: list[tuple[str, Any]] = []
    for block in raw.decode().split("\n\n"):
        name, data = "message", []
        for line in block.split("\n"):
            if line.startswith("event: "):
                name = line[7:]
            elif line.startswith("data: "):
                data.append(line[6:])
        if data:
            text = "\n".join(data)
            out.append((name, text if text == "[DONE]" else orjson.loads(text)))
    return out


def comments(raw: bytes) -> list[str]:
    return [line for line in raw.decode().split("\n") if line.startswith(":")]


def seq(*steps: dict[str, Any]) -> dict[str, Any]:
    return root_graph("Sequence", *steps)


# --- pass-through ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "graph",
    [
        pytest.param(lambda url: seq({"serviceUrl": url}), id="sequence-last-step"),
        pytest.param(
            lambda url: root_graph("Switch", {"serviceUrl": url, "condition": "prompt"}),
            id="switch-route",
        ),
        pytest.param(
            lambda url: root_graph("Splitter", {"serviceUrl": url, "weight": 100}),
            id="splitter-route",
        ),
        pytest.param(
            lambda url: {
                "nodes": {
                    "root": {"routerType": "Sequence", "steps": [{"nodeName": "inner"}]},
                    "inner": {"routerType": "Sequence", "steps": [{"serviceUrl": url}]},
                }
            },
            id="nested-node-answer",
        ),
    ],
)
async def test_sse_streams_through_as_it_arrives(
    model: StreamingModel, router: StartRouter, graph: Any
) -> None:
    async with (
        router(graph(model.at("/sse/3"))) as r,
        aiohttp.ClientSession() as session,
        session.post(r.url + "/", json=REQUEST) as response,
    ):
        assert response.status == 200
        assert response.headers["Content-Type"] == "text/event-stream"
        first = await response.content.readuntil(b"\n\n")
        assert events(first) == [("message", {"i": 0})]
        model.gate.set()  # only now may the model send the rest
        rest = await response.read()
    assert events(first + rest) == [
        ("message", {"i": 0}),
        ("message", {"i": 1}),
        ("message", {"i": 2}),
        ("message", "[DONE]"),
    ]


async def test_a_chunked_body_streams_with_its_content_type(
    model: StreamingModel, router: StartRouter
) -> None:
    async with (
        router(seq({"serviceUrl": model.at("/chunked")})) as r,
        aiohttp.ClientSession() as session,
        session.post(r.url + "/", json=REQUEST) as response,
    ):
        assert response.headers["Content-Type"] == "text/plain; charset=utf-8"
        assert response.headers.get("Transfer-Encoding") == "chunked"
        assert await response.content.readline() == b"one\n"
        model.gate.set()
        assert await response.read() == b"two\nthree\n"


# --- collected where the graph reads the answer ---------------------------------------------


async def test_a_stream_the_next_step_reads_is_collected_as_events(
    model: StreamingModel, backend: Backend, router: StartRouter
) -> None:
    model.gate.set()
    spec = seq(
        {"serviceUrl": model.at("/sse/2")},
        {"serviceUrl": backend.at("/echo/next"), "data": "$response"},
    )
    async with router(spec) as r:
        status, body, _ = await r.post(REQUEST)
    assert status == 200
    assert body == {"model": "next", "received": {"events": [{"i": 0}, {"i": 1}]}}


async def test_a_condition_reads_the_collected_events(
    model: StreamingModel, backend: Backend, router: StartRouter
) -> None:
    model.gate.set()
    spec = seq(
        {"serviceUrl": model.at("/sse/2")},
        {"serviceUrl": backend.at("/echo/next"), "condition": "events.#(i==1)"},
    )
    async with router(spec) as r:
        status, body, _ = await r.post(REQUEST)
    assert status == 200
    assert body["model"] == "next"


async def test_an_ensemble_merges_collected_streams(
    model: StreamingModel, router: StartRouter
) -> None:
    model.gate.set()
    spec = root_graph(
        "Ensemble",
        {"serviceUrl": model.at("/sse/1"), "name": "a"},
        {"serviceUrl": model.at("/chunked"), "name": "b"},
    )
    async with router(spec) as r:
        status, body, _ = await r.post(REQUEST)
    # An SSE answer is collected as JSON; a chunked text answer is bytes, not an object.
    assert status == 502
    assert body["step"] == "b"
    assert "did not answer JSON" in body["cause"]


async def test_idle_timeout_where_the_answer_is_collected_is_refused(
    router: StartRouter, model: StreamingModel
) -> None:
    spec = seq(
        {"serviceUrl": model.at("/sse/1"), "idleTimeout": 1},
        {"serviceUrl": model.at("/sse/1")},
    )
    with pytest.raises(AssertionError) as refused:
        async with router(spec):
            pass
    assert "nodes.root.steps[0].idleTimeout" in str(refused.value)
    assert "only for steps whose answer streams" in str(refused.value)


async def test_a_grpc_client_gets_a_streamed_answer_read_whole(
    model: StreamingModel, router: StartRouter
) -> None:
    grpc_port = free_port()
    spec = seq({"serviceUrl": model.at("/v2-in-pieces")})
    async with (
        router(spec, args=["--grpc-port", str(grpc_port)]),
        grpc.aio.insecure_channel(f"127.0.0.1:{grpc_port}") as channel,
    ):
        infer = channel.unary_unary(
            "/inference.GRPCInferenceService/ModelInfer",
            response_deserializer=ModelInferResponse.FromString,
        )
        request = ModelInferRequest(model_name="graph")
        request.inputs.add(name="x", datatype="INT64", shape=[1]).contents.int64_contents.append(1)
        answer = await infer(request.SerializeToString(), timeout=PATIENCE)
    assert answer.model_name == "m"
    assert struct.unpack("<q", answer.raw_output_contents[0]) == (42,)


# --- failures -------------------------------------------------------------------------------


async def test_sse_failing_midway_ends_with_an_error_event(
    model: StreamingModel, router: StartRouter
) -> None:
    async with router(seq({"serviceUrl": model.at("/breaks/sse"), "name": "llm"})) as r:
        status, raw, _ = await r.post(REQUEST)
    assert status == 200  # sent with the first byte; the error comes as an event
    received = events(raw)
    assert received[:2] == [("message", {"i": 0}), ("message", {"i": 1})]
    assert received[-1][0] == "error"
    assert received[-1][1]["step"] == "llm"
    assert "the stream from" in received[-1][1]["cause"]
    assert b'{"half' not in raw  # the half-sent event never reaches the client


async def test_a_chunked_body_failing_midway_is_cut_not_completed(
    model: StreamingModel, router: StartRouter
) -> None:
    async with (
        router(seq({"serviceUrl": model.at("/breaks/text")})) as r,
        aiohttp.ClientSession() as session,
        session.post(r.url + "/", json=REQUEST) as response,
    ):
        assert response.status == 200
        with pytest.raises(aiohttp.ClientPayloadError):
            await response.read()


async def test_no_first_byte_within_the_step_timeout_is_an_ordinary_504(
    model: StreamingModel, router: StartRouter
) -> None:
    spec = seq({"serviceUrl": model.at("/slow-start"), "name": "llm", "timeout": 0.5})
    async with router(spec) as r:
        status, body, headers = await r.post(REQUEST)
        assert status == 504
        assert headers["Content-Type"] == "application/json"
        assert body["step"] == "llm"
        await asyncio.wait_for(model.gone.wait(), PATIENCE)


async def test_a_stream_that_breaks_before_its_first_byte_is_an_ordinary_502(
    model: StreamingModel, router: StartRouter
) -> None:
    async with router(seq({"serviceUrl": model.at("/breaks-at-once"), "name": "llm"})) as r:
        status, body, headers = await r.post(REQUEST)
    assert status == 502
    assert headers["Content-Type"] == "application/json"
    assert body["step"] == "llm"
    assert body["error"] == "Failed to process request"


async def test_a_stall_between_events_ends_the_stream_at_its_idle_timeout(
    model: StreamingModel, router: StartRouter
) -> None:
    spec = seq({"serviceUrl": model.at("/stalls"), "name": "llm", "idleTimeout": 0.5})
    async with router(spec) as r:
        status, raw, _ = await r.post(REQUEST)
        assert status == 200
        received = events(raw)
        assert received[0] == ("message", {"i": 0})
        assert received[-1][0] == "error"
        assert "idleTimeout" in received[-1][1]["cause"]
        await asyncio.wait_for(model.gone.wait(), PATIENCE)  # and the model was hung up on


async def test_the_request_deadline_ends_an_endless_stream(
    model: StreamingModel, router: StartRouter
) -> None:
    spec = seq({"serviceUrl": model.at("/endless/sse")})
    spec["timeout"] = 1
    async with router(spec) as r:
        status, raw, _ = await r.post(REQUEST)
        assert status == 200
        assert events(raw)[-1][0] == "error"
        assert "deadline" in events(raw)[-1][1]["cause"]
        await asyncio.wait_for(model.gone.wait(), PATIENCE)


# --- cancellation and drain -----------------------------------------------------------------


@pytest.mark.parametrize("kind", ["sse", "text"])
async def test_a_client_hanging_up_mid_stream_hangs_up_on_the_model(
    model: StreamingModel, router: StartRouter, kind: str
) -> None:
    async with router(seq({"serviceUrl": model.at(f"/endless/{kind}")})) as r:
        async with (
            aiohttp.ClientSession() as session,
            session.post(r.url + "/", json=REQUEST) as response,
        ):
            await response.content.readuntil(b"\n\n")  # streaming has begun
        # The client is gone: the model must see its reader go, long before its events end.
        await asyncio.wait_for(model.gone.wait(), PATIENCE)


async def test_sigterm_lets_a_running_stream_finish(
    model: StreamingModel, router: StartRouter
) -> None:
    async with (
        router(seq({"serviceUrl": model.at("/sse/3")}), args=["--drain-seconds", "1"]) as r,
        aiohttp.ClientSession() as session,
        session.post(r.url + "/", json=REQUEST) as response,
    ):
        await response.content.readuntil(b"\n\n")
        r.process.send_signal(signal.SIGTERM)
        model.gate.set()
        rest = await response.read()
        assert events(rest)[-1] == ("message", "[DONE]")
        assert await r.process.wait() == 0


# --- observability --------------------------------------------------------------------------


async def test_a_streamed_answer_carries_its_trace_in_a_last_comment(
    model: StreamingModel, router: StartRouter
) -> None:
    model.gate.set()
    async with router(seq({"serviceUrl": model.at("/sse/2"), "name": "llm"})) as r:
        status, raw, headers = await r.post(REQUEST, headers={"X-InferGraph-Trace": "1"})
    assert status == 200
    assert "X-InferGraph-Trace" not in headers
    last = comments(raw)[-1]
    assert last.startswith(": x-infergraph-trace ")
    trace = orjson.loads(last.removeprefix(": x-infergraph-trace "))
    stream = trace[-1]
    assert stream["stream"] == "llm"
    assert stream["events"] == 3  # two events and [DONE]
    assert stream["outcome"] == "complete"


async def test_a_chunked_answer_carries_the_trace_up_to_its_first_byte_in_the_header(
    model: StreamingModel, router: StartRouter
) -> None:
    model.gate.set()
    async with router(seq({"serviceUrl": model.at("/chunked"), "name": "llm"})) as r:
        status, raw, headers = await r.post(REQUEST, headers={"X-InferGraph-Trace": "1"})
    assert (status, raw) == (200, b"one\ntwo\nthree\n")
    trace = orjson.loads(headers["X-InferGraph-Trace"])
    assert [e.get("step") for e in trace if "step" in e] == ["llm"]


async def test_streams_are_counted_in_metrics(model: StreamingModel, router: StartRouter) -> None:
    model.gate.set()
    async with router(seq({"serviceUrl": model.at("/sse/2"), "name": "llm"})) as r:
        await r.post(REQUEST)
        async with aiohttp.ClientSession() as session, session.get(r.url + "/metrics") as got:
            text = await got.text()
    labels = 'graph="graph",node="root",step="llm"'
    assert f"infergraph_stream_events_total{{{labels}}} 3.0" in text
    assert f"infergraph_stream_first_byte_seconds_count{{{labels}}} 1.0" in text
    duration = 'graph="graph",node="root",outcome="complete",step="llm"'
    assert f"infergraph_stream_duration_seconds_count{{{duration}}} 1.0" in text


async def test_the_request_span_gets_a_stream_event(
    model: StreamingModel, graph_server: Any
) -> None:
    model.gate.set()
    exporter = InMemorySpanExporter()
    spec = seq({"serviceUrl": model.at("/sse/2"), "name": "llm"})
    async with (
        graph_server(spec, tracing=Tracing(exporter, batch=False)) as url,
        aiohttp.ClientSession() as session,
        session.post(url + "/", json=REQUEST) as response,
    ):
        await response.read()
    (request_span,) = [s for s in exporter.get_finished_spans() if s.name.startswith("graph ")]
    (stream,) = [e for e in request_span.events if e.name == "stream"]
    assert stream.attributes is not None
    assert stream.attributes["infergraph.step"] == "llm"
    assert stream.attributes["infergraph.stream.events"] == 3
    assert stream.attributes["infergraph.stream.outcome"] == "complete"


# --- OpenAI-compatible ----------------------------------------------------------------------


def when(field: str, value: str) -> str:
    """The GJSON condition that holds when the request's `field` is `value`."""
    return f'[@this].#({field}=="{value}")'


def guarded_chat(model: StreamingModel) -> dict[str, Any]:
    """A guard, then a Switch on its verdict and the request's model, to one of two models."""
    chat = model.at("/openai/v1/chat/completions")
    return {
        "nodes": {
            "root": {
                "routerType": "Sequence",
                "steps": [
                    {"serviceUrl": model.at("/guard"), "name": "guard"},
                    {"nodeName": "generate", "data": "$response"},
                ],
            },
            "generate": {
                "routerType": "Switch",
                "steps": [
                    {
                        "name": "refuse",
                        "serviceUrl": chat + "?refuse",
                        "condition": when("verdict", "block"),
                    },
                    {"name": "small", "serviceUrl": chat, "condition": when("model", "small")},
                    {"name": "large", "serviceUrl": chat, "condition": when("model", "large")},
                ],
            },
        }
    }


@pytest.mark.parametrize("name", ["small", "large"])
async def test_the_openai_client_gets_a_streamed_chat_completion(
    model: StreamingModel, router: StartRouter, name: str
) -> None:
    async with router(guarded_chat(model)) as r:
        client = openai.AsyncOpenAI(base_url=r.url + "/openai/v1", api_key="unused")
        try:
            stream = await client.chat.completions.create(
                model=name, messages=[{"role": "user", "content": "hi"}], stream=True
            )
            pieces = [chunk.choices[0].delta.content async for chunk in stream if chunk.choices]
        finally:
            await client.close()
    assert "".join(p for p in pieces if p) == f"{name} says hello"
    assert model.requests[-1]["stream"] is True
    assert model.requests[-1]["verdict"] == "allow"


async def test_the_guards_verdict_routes_a_blocked_prompt_to_the_refusal(
    model: StreamingModel, router: StartRouter
) -> None:
    async with router(guarded_chat(model)) as r:
        client = openai.AsyncOpenAI(base_url=r.url + "/openai/v1", api_key="unused")
        try:
            stream = await client.chat.completions.create(
                model="small",
                messages=[{"role": "user", "content": "something forbidden"}],
                stream=True,
            )
            pieces = [chunk.choices[0].delta.content async for chunk in stream if chunk.choices]
        finally:
            await client.close()
    assert "".join(p for p in pieces if p) == "I cannot help"


async def test_the_openai_client_gets_a_whole_completion_without_stream(
    model: StreamingModel, router: StartRouter
) -> None:
    async with router(guarded_chat(model)) as r:
        client = openai.AsyncOpenAI(base_url=r.url + "/openai/v1", api_key="unused")
        try:
            answer = await client.chat.completions.create(
                model="small", messages=[{"role": "user", "content": "hi"}]
            )
        finally:
            await client.close()
    assert answer.choices[0].message.content == "small says hello"
