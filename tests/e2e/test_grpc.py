"""gRPC in and out of the graph: real gRPC servers and clients on 127.0.0.1.

The gRPC model is a scripted `inference.GRPCInferenceService` (grpc.aio) whose model name
picks its behaviour; the router is the real app with its gRPC ingress, served in-process.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import signal
import struct
import tomllib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import grpc
import orjson
import pytest
from aiohttp import web
from google.protobuf.message import Message

from router.app import build_app
from router.graph import compile_graph
from router.grpc_server import add_grpc_ingress
from router.inference_proto.grpc_predict_v2_pb2 import (
    ModelInferRequest,
    ModelInferResponse,
    ModelMetadataRequest,
    ModelMetadataResponse,
    ModelReadyRequest,
    ModelReadyResponse,
    ServerLiveRequest,
    ServerLiveResponse,
    ServerMetadataRequest,
    ServerMetadataResponse,
    ServerReadyRequest,
    ServerReadyResponse,
)
from schemas.valid_graph import validate_graph
from tests.conftest import StartRouter
from tests.support import LOOPBACK, Backend, free_port, post_json, root_graph, serving

INFER = "/inference.GRPCInferenceService/ModelInfer"


@dataclass
class GrpcModel:
    address: str
    address6: str  # the same server on ::1: another target, the same model
    calls: list[ModelInferRequest] = field(default_factory=list)
    peers: list[str] = field(default_factory=list)  # each call's connection (client address)
    cancelled: list[str] = field(default_factory=list)
    failures: dict[str, int] = field(default_factory=dict)

    def url(self, model: str) -> str:
        return f"grpc://{self.address}/{model}"

    def url6(self, model: str) -> str:
        return f"grpc://{self.address6}/{model}"


async def _script(model: GrpcModel, raw: bytes, context: Any) -> bytes:
    request = ModelInferRequest.FromString(raw)
    model.calls.append(request)
    model.peers.append(context.peer())
    name, _, arg = request.model_name.partition("-")
    response = ModelInferResponse(model_name=request.model_name, id=request.id)
    if name == "echo":  # inputs back as outputs, raw contents exactly as received
        for tensor in request.inputs:
            response.outputs.add(name=tensor.name, datatype=tensor.datatype, shape=tensor.shape)
        response.raw_output_contents.extend(request.raw_input_contents)
    elif name == "double":  # FP32 inputs doubled, as FP32
        for index, tensor in enumerate(request.inputs):
            values = struct.unpack(f"<{len(request.raw_input_contents[index]) // 4}f",
                                   request.raw_input_contents[index])  # fmt: skip
            response.outputs.add(name=f"{tensor.name}-doubled", datatype="FP32", shape=tensor.shape)
            response.raw_output_contents.append(struct.pack(f"<{len(values)}f",
                                                            *(2 * v for v in values)))  # fmt: skip
    elif name == "unavailable":  # UNAVAILABLE for the first <arg> calls
        seen = model.failures[request.model_name] = model.failures.get(request.model_name, 0) + 1
        if seen <= int(arg):
            await context.abort(grpc.StatusCode.UNAVAILABLE, "warming up")
        response.outputs.add(name="ok", datatype="INT64", shape=[1]).contents.int64_contents.append(
            seen
        )
    elif name == "deadline":  # DEADLINE_EXCEEDED (the model's own) for the first <arg> calls
        seen = model.failures[request.model_name] = model.failures.get(request.model_name, 0) + 1
        if seen <= int(arg):
            await context.abort(grpc.StatusCode.DEADLINE_EXCEEDED, "the model's queue timed out")
        response.outputs.add(name="ok", datatype="INT64", shape=[1]).contents.int64_contents.append(
            seen
        )
    elif name == "exhausted":
        await context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED, "queue full")
    elif name == "invalid":
        await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "input 'x' has the wrong shape")
    elif name == "garbage":  # not a ModelInferResponse
        return b"\xff\xff\xff"
    elif name == "slow":  # answers after <arg> ms; records an RPC cancelled before that
        try:
            await asyncio.sleep(int(arg) / 1000)
        except asyncio.CancelledError:
            model.cancelled.append(request.model_name)
            raise
    return response.SerializeToString()


@pytest.fixture
async def grpc_model() -> AsyncIterator[GrpcModel]:
    server = grpc.aio.server()
    port = server.add_insecure_port(f"{LOOPBACK}:0")
    server.add_insecure_port(f"[::1]:{port}")
    model = GrpcModel(f"{LOOPBACK}:{port}", f"[::1]:{port}")

    async def infer(raw: bytes, context: Any) -> bytes:
        return await _script(model, raw, context)

    server.add_generic_rpc_handlers(
        (
            grpc.method_handlers_generic_handler(
                "inference.GRPCInferenceService",
                {"ModelInfer": grpc.unary_unary_rpc_method_handler(infer)},
            ),
        )
    )
    await server.start()
    try:
        yield model
    finally:
        await server.stop(0)


@dataclass
class Router:
    http: str
    channel: grpc.aio.Channel

    async def infer(
        self, request: ModelInferRequest | bytes, seconds: float = 30
    ) -> ModelInferResponse:
        raw = request if isinstance(request, bytes) else request.SerializeToString()
        method = self.channel.unary_unary(
            INFER, response_deserializer=ModelInferResponse.FromString
        )
        answer: ModelInferResponse = await method(raw, timeout=seconds)
        return answer


@contextlib.asynccontextmanager
async def grpc_router(spec: dict[str, Any], **kwargs: Any) -> AsyncIterator[Router]:
    app = build_app(compile_graph(validate_graph(spec)), **kwargs)
    ports: list[int] = []
    add_grpc_ingress(app, LOOPBACK, 0, bound=ports.append)
    runner = web.AppRunner(app, access_log=None, handler_cancellation=True)
    await runner.setup()
    await web.TCPSite(runner, LOOPBACK, 0).start()
    channel = grpc.aio.insecure_channel(f"{LOOPBACK}:{ports[0]}")
    try:
        yield Router(f"http://{LOOPBACK}:{runner.addresses[0][1]}", channel)
    finally:
        await channel.close()
        await runner.cleanup()


def _request(*tensors: tuple[str, str, list[int], bytes]) -> ModelInferRequest:
    request = ModelInferRequest(model_name="graph", id="req-1")
    for name, datatype, shape, raw in tensors:
        request.inputs.add(name=name, datatype=datatype, shape=shape)
        request.raw_input_contents.append(raw)
    return request


def _sequence(*urls: str, **step_options: Any) -> dict[str, Any]:
    steps = ({"serviceUrl": u, "data": "$response", **step_options} for u in urls)
    return root_graph("Sequence", *steps)


async def test_grpc_client_to_grpc_model_keeps_raw_contents_bit_for_bit(
    grpc_model: GrpcModel,
) -> None:
    nan_with_payload = struct.pack("<I", 0x7FC00123)
    raw_fp32 = nan_with_payload + struct.pack("<f", -0.0)
    raw_bytes = b"\x02\x00\x00\x00\xff\xfe"  # one BYTES element that is not UTF-8
    raw_bf16 = struct.pack("<H", 0x3F80)
    raw_fp16 = struct.pack("<3H", 0x7E01, 0x8000, 0x0001)  # NaN with a payload, -0, 2^-24
    async with grpc_router(_sequence(grpc_model.url("echo"))) as router:
        answer = await router.infer(
            _request(
                ("a", "FP32", [2], raw_fp32),
                ("b", "BYTES", [1], raw_bytes),
                ("c", "BF16", [1], raw_bf16),
                ("d", "FP16", [3], raw_fp16),
            )
        )
    assert list(answer.raw_output_contents) == [raw_fp32, raw_bytes, raw_bf16, raw_fp16]
    assert [o.name for o in answer.outputs] == ["a", "b", "c", "d"]
    assert grpc_model.calls[0].model_name == "echo"  # the URL's model, not the client's


async def test_rest_client_to_grpc_model(grpc_model: GrpcModel) -> None:
    async with grpc_router(_sequence(grpc_model.url("double"))) as router:
        status, body, _ = await post_json(
            router.http,
            {
                "id": "r",
                "inputs": [{"name": "x", "datatype": "FP32", "shape": [1, 2], "data": [[1.5, 2]]}],
            },
        )
    assert status == 200, body
    assert body == {
        "model_name": "double",
        "id": "r",
        "outputs": [{"name": "x-doubled", "datatype": "FP32", "shape": [1, 2], "data": [3.0, 4.0]}],
    }


async def test_grpc_client_to_rest_model(backend: Backend) -> None:
    async with grpc_router(_sequence(backend.at("/v2/rest"))) as router:
        request = ModelInferRequest(model_name="graph")
        tensor = request.inputs.add(name="x", datatype="FP64", shape=[2])
        tensor.contents.fp64_contents.extend([1.25, -3])
        answer = await router.infer(request)
    assert b'"data":[1.25,-3.0]' in backend.calls[0]["body"]
    assert answer.model_name == "rest"
    assert answer.outputs[0].name == "rest-out"
    assert struct.unpack("<2d", answer.raw_output_contents[0]) == (2.5, -6.0)


# FP16 has no typed contents: raw only. Every FP16 value is a double, so JSON carries it exactly:
# 1.5, -0, the largest (65504), the smallest subnormal (2^-24), infinities and NaN.
FP16_BITS = (0x3E00, 0x8000, 0x7BFF, 0x0001, 0x7C00, 0xFC00, 0x7E00)
FP16_JSON = [1.5, -0.0, 65504.0, 2.0**-24, "Infinity", "-Infinity", "NaN"]


def _echo_v2_model() -> web.Application:
    """A REST v2 model that answers its inputs as its outputs, datatypes kept."""

    async def infer(request: web.Request) -> web.Response:
        inputs = (await request.json())["inputs"]
        return web.json_response({"model_name": "echo-rest", "outputs": inputs})

    app = web.Application()
    app.router.add_post("/v2/models/echo-rest/infer", infer)
    return app


async def test_fp16_from_a_grpc_client_through_a_rest_model_comes_back_bit_for_bit() -> None:
    raw = struct.pack(f"<{len(FP16_BITS)}H", *FP16_BITS)
    async with (
        serving(_echo_v2_model()) as model,
        grpc_router(_sequence(f"{model}/v2/models/echo-rest/infer")) as router,
    ):
        answer = await router.infer(_request(("half", "FP16", [1, len(FP16_BITS)], raw)))
    assert answer.outputs[0].datatype == "FP16"
    assert list(answer.outputs[0].shape) == [1, len(FP16_BITS)]
    assert answer.raw_output_contents[0] == raw


async def test_fp16_from_a_rest_client_reaches_a_grpc_model_as_raw_contents_and_back(
    grpc_model: GrpcModel,
) -> None:
    tensor = {"name": "half", "datatype": "FP16", "shape": [len(FP16_JSON)], "data": FP16_JSON}
    async with grpc_router(_sequence(grpc_model.url("echo"))) as router:
        status, answer, _ = await post_json(router.http, {"inputs": [tensor]})
    assert status == 200, answer
    assert list(grpc_model.calls[0].raw_input_contents) == [
        struct.pack(f"<{len(FP16_BITS)}H", *FP16_BITS)
    ]
    assert answer["outputs"] == [tensor]
    assert math.copysign(1, answer["outputs"][0]["data"][1]) == -1  # -0 stays negative


async def test_mixed_ensemble_and_a_two_step_chain(grpc_model: GrpcModel, backend: Backend) -> None:
    spec = {
        "nodes": {
            "root": {
                "routerType": "Ensemble",
                "steps": [
                    {"name": "grpc", "serviceUrl": grpc_model.url("double")},
                    {"name": "rest", "serviceUrl": backend.at("/v2/rest")},
                    {"name": "chain", "nodeName": "chain"},
                ],
            },
            # gRPC then REST: the gRPC answer's outputs become the REST model's inputs.
            "chain": {
                "routerType": "Sequence",
                "steps": [
                    {"serviceUrl": grpc_model.url("double")},
                    {
                        "serviceUrl": backend.at("/v2/rest"),
                        "data": "$response",
                        "mapOutputsToInputs": True,
                    },
                ],
            },
        }
    }
    body = {"inputs": [{"name": "x", "datatype": "FP32", "shape": [1], "data": [1.0]}]}
    async with grpc_router(spec) as router:
        status, answer, _ = await post_json(router.http, body)
    assert status == 200, answer
    assert answer["grpc"]["outputs"][0]["data"] == [2.0]
    assert answer["rest"]["outputs"][0]["data"] == [2.0]
    assert answer["chain"]["outputs"][0] == {
        "name": "rest-out", "shape": [1], "datatype": "FP64", "data": [4.0]
    }  # fmt: skip


async def test_a_step_past_its_timeout_is_deadline_exceeded_naming_the_step(
    grpc_model: GrpcModel,
) -> None:
    spec = root_graph(
        "Sequence", {"name": "slow", "serviceUrl": grpc_model.url("slow-5000"), "timeout": 0.2}
    )
    async with grpc_router(spec) as router:
        with pytest.raises(grpc.aio.AioRpcError) as failure:
            await router.infer(_request(("x", "FP32", [1], struct.pack("<f", 1))))
        status, body, _ = await post_json(router.http, {"inputs": []})
    assert failure.value.code() is grpc.StatusCode.DEADLINE_EXCEEDED
    assert (
        failure.value.details()
        == "rpc error: code = DeadlineExceeded desc = context deadline exceeded"
    )
    assert ("infergraph-step", "slow") in tuple(failure.value.trailing_metadata() or ())
    assert status == 504
    assert body["cause"] == failure.value.details()


async def _until(condition: Any) -> None:
    for _ in range(200):  # bounded: 10 s
        if condition():
            return
        await asyncio.sleep(0.05)
    raise AssertionError("condition never held")


async def test_the_clients_deadline_bounds_the_graph_and_cancels_the_model_call(
    grpc_model: GrpcModel,
) -> None:
    async with grpc_router(_sequence(grpc_model.url("slow-10000"))) as router:
        with pytest.raises(grpc.aio.AioRpcError) as failure:
            await router.infer(_request(("x", "FP32", [1], struct.pack("<f", 1))), seconds=0.5)
        assert failure.value.code() is grpc.StatusCode.DEADLINE_EXCEEDED
        await _until(lambda: grpc_model.cancelled == ["slow-10000"])


async def test_a_rest_client_hanging_up_cancels_the_grpc_call(grpc_model: GrpcModel) -> None:
    async with grpc_router(_sequence(grpc_model.url("slow-10000"))) as router:
        request = asyncio.ensure_future(post_json(router.http, {"inputs": []}))
        await _until(lambda: len(grpc_model.calls) == 1)
        request.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await request
        await _until(lambda: grpc_model.cancelled == ["slow-10000"])


async def test_unavailable_is_retried(grpc_model: GrpcModel) -> None:
    retry = {"maxRetries": 3, "initialDelayMs": 1, "maxDelayMs": 1}
    async with grpc_router(_sequence(grpc_model.url("unavailable-2"), retry=retry)) as router:
        answer = await router.infer(_request(("x", "FP32", [1], struct.pack("<f", 1))))
    assert len(grpc_model.calls) == 3
    assert list(answer.outputs[0].contents.int64_contents) == [3]


async def test_resource_exhausted_is_retried_then_answered_as_unavailable(
    grpc_model: GrpcModel,
) -> None:
    retry = {"maxRetries": 2, "initialDelayMs": 1, "maxDelayMs": 1}
    async with grpc_router(_sequence(grpc_model.url("exhausted"), retry=retry)) as router:
        with pytest.raises(grpc.aio.AioRpcError) as failure:
            await router.infer(_request(("x", "FP32", [1], struct.pack("<f", 1))))
    assert len(grpc_model.calls) == 3
    assert failure.value.code() is grpc.StatusCode.UNAVAILABLE
    assert failure.value.details() == "queue full"


async def test_a_models_deadline_exceeded_is_retried(grpc_model: GrpcModel) -> None:
    # The default retryableStatusCodes (502, 503, 504): the model's DEADLINE_EXCEEDED is a 504.
    retry = {"maxRetries": 2, "initialDelayMs": 1, "maxDelayMs": 1}
    async with grpc_router(_sequence(grpc_model.url("deadline-1"), retry=retry)) as router:
        answer = await router.infer(_request(("x", "FP32", [1], struct.pack("<f", 1))))
    assert len(grpc_model.calls) == 2
    assert list(answer.outputs[0].contents.int64_contents) == [2]


async def test_a_models_deadline_exceeded_without_retries_reaches_both_clients(
    grpc_model: GrpcModel,
) -> None:
    async with grpc_router(_sequence(grpc_model.url("deadline-9"))) as router:
        with pytest.raises(grpc.aio.AioRpcError) as failure:
            await router.infer(_request(("x", "FP32", [1], struct.pack("<f", 1))))
        status, body, _ = await post_json(router.http, {"inputs": []})
    assert failure.value.code() is grpc.StatusCode.DEADLINE_EXCEEDED
    assert failure.value.details() == "the model's queue timed out"
    assert (status, body) == (504, {"error": "the model's queue timed out"})


@pytest.mark.parametrize("protocol", ["http", "grpc"])
async def test_an_attempt_past_the_steps_timeout_is_not_retried_over_http_or_grpc(
    protocol: str, grpc_model: GrpcModel, backend: Backend
) -> None:
    # The step's `timeout` bounds each attempt; one that runs out is the router's StepTimeout,
    # never retried (the model may still be working on it), whatever the protocol.
    url = grpc_model.url("slow-5000") if protocol == "grpc" else backend.at("/slow/5000")
    retry = {"maxRetries": 2, "initialDelayMs": 1, "maxDelayMs": 1}
    spec = root_graph(
        "Sequence", {"name": "slow", "serviceUrl": url, "timeout": 0.2, "retry": retry}
    )
    async with grpc_router(spec) as router:
        status, body, headers = await post_json(
            router.http, {"inputs": []}, headers={"X-InferGraph-Trace": "1"}
        )
    assert status == 504, body
    (step,) = [e for e in orjson.loads(headers["X-InferGraph-Trace"]) if e["kind"] == "step"]
    assert step["attempts"] == 1
    assert len(grpc_model.calls if protocol == "grpc" else backend.calls) == 1


async def test_one_connection_per_target_shared_by_every_call_and_model(
    grpc_model: GrpcModel,
) -> None:
    spec = root_graph(
        "Ensemble",
        {"name": "echo", "serviceUrl": grpc_model.url("echo")},
        {"name": "double", "serviceUrl": grpc_model.url("double")},  # same target, other model
        {"name": "echo6", "serviceUrl": grpc_model.url6("echo")},  # same server, other target
    )
    body = {"inputs": [{"name": "x", "datatype": "FP32", "shape": [1], "data": [1.0]}]}
    async with grpc_router(spec) as router:
        answers = await asyncio.gather(*(post_json(router.http, body) for _ in range(8)))
        answers.append(await post_json(router.http, body))  # and after the burst
    assert [status for status, _, _ in answers] == [200] * 9
    by_target: dict[str, set[str]] = {}
    for call, peer in zip(grpc_model.calls, grpc_model.peers, strict=True):
        family = "ipv6" if peer.startswith("ipv6:") else "ipv4"
        by_target.setdefault(f"{family} {call.model_name}", set()).add(peer)
    assert len(grpc_model.calls) == 27
    (v4,) = by_target["ipv4 echo"]
    (v6,) = by_target["ipv6 echo"]
    assert by_target == {"ipv4 echo": {v4}, "ipv4 double": {v4}, "ipv6 echo": {v6}}


async def test_a_grpc_client_that_cancels_is_counted_499_and_cancels_the_model_call(
    grpc_model: GrpcModel,
) -> None:
    async with grpc_router(_sequence(grpc_model.url("slow-10000"))) as router:
        method = router.channel.unary_unary(
            INFER, response_deserializer=ModelInferResponse.FromString
        )
        call = method(_request(("x", "FP32", [1], struct.pack("<f", 1))).SerializeToString())
        await _until(lambda: len(grpc_model.calls) == 1)
        call.cancel()
        with pytest.raises(asyncio.CancelledError):
            await call
        await _until(lambda: grpc_model.cancelled == ["slow-10000"])
        counted = 'infergraph_requests_total{graph="graph",status="499"} 1.0'
        async with aiohttp.ClientSession() as session:
            for _ in range(200):  # bounded: 10 s; counted once the router's handler unwound
                async with session.get(f"{router.http}/metrics") as response:
                    text = await response.text()
                if counted in text:
                    break
                await asyncio.sleep(0.05)
    assert counted in text, text


async def test_an_unreachable_grpc_model_opens_the_breaker() -> None:
    url = f"grpc://{LOOPBACK}:{free_port()}/gone"
    spec = root_graph(
        "Sequence",
        {"serviceUrl": url, "circuitBreaker": {"failureThreshold": 2, "cooldownSeconds": 60}},
    )
    async with grpc_router(spec) as router:
        for _ in range(2):
            status, body, _ = await post_json(router.http, {"inputs": []})
            assert status == 502, body
            assert body["cause"].startswith("rpc error: code = Unavailable desc = ")
        with pytest.raises(grpc.aio.AioRpcError) as failure:
            await router.infer(_request(("x", "FP32", [1], struct.pack("<f", 1))))
    assert failure.value.code() is grpc.StatusCode.UNAVAILABLE
    assert failure.value.details().startswith(f"node 'root' step 0: circuit open for {url}")


async def test_a_models_invalid_argument_reaches_the_grpc_client(grpc_model: GrpcModel) -> None:
    async with grpc_router(_sequence(grpc_model.url("invalid"))) as router:
        with pytest.raises(grpc.aio.AioRpcError) as failure:
            await router.infer(_request(("x", "FP32", [1], struct.pack("<f", 1))))
    assert failure.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert failure.value.details() == "input 'x' has the wrong shape"


async def test_malformed_protobuf_is_invalid_argument(grpc_model: GrpcModel) -> None:
    async with grpc_router(_sequence(grpc_model.url("echo"))) as router:
        with pytest.raises(grpc.aio.AioRpcError) as failure:
            await router.infer(b"\x2a\xff\xff\xff")
    assert failure.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert failure.value.details().startswith("the request is not an inference.ModelInferRequest")
    assert grpc_model.calls == []


async def test_shape_mismatch_is_invalid_argument_naming_the_input(grpc_model: GrpcModel) -> None:
    request = ModelInferRequest(model_name="graph")
    tensor = request.inputs.add(name="pixels", datatype="FP32", shape=[3])
    tensor.contents.fp32_contents.extend([1, 2])
    async with grpc_router(_sequence(grpc_model.url("echo"))) as router:
        with pytest.raises(grpc.aio.AioRpcError) as failure:
            await router.infer(request)
        # The same from a REST client, refused on the way to the gRPC model.
        status, body, _ = await post_json(
            router.http,
            {"inputs": [{"name": "pixels", "datatype": "FP32", "shape": [3], "data": [1, 2]}]},
        )
    assert failure.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert failure.value.details() == (
        "input 'pixels': shape [3] holds 3 elements, but fp32_contents has 2"
    )
    assert status == 400
    assert body["cause"] == (
        "node 'root' step 0: input 'pixels': shape [3] holds 3 elements, but data has 2"
    )
    assert grpc_model.calls == []


def _rpc(channel: grpc.aio.Channel, name: str, answer: type[Message]) -> Any:
    return channel.unary_unary(
        f"/inference.GRPCInferenceService/{name}",
        request_serializer=_serialize,
        response_deserializer=answer.FromString,
    )


def _serialize(message: Message) -> bytes:
    return message.SerializeToString()


async def test_health_is_the_routers_readiness() -> None:
    spec = _sequence(f"grpc://{LOOPBACK}:1/m")
    async with grpc_router(spec) as router:
        ready = _rpc(router.channel, "ServerReady", ServerReadyResponse)
        live = _rpc(router.channel, "ServerLive", ServerLiveResponse)
        assert (await ready(ServerReadyRequest(), timeout=30)).ready
        assert (await live(ServerLiveRequest(), timeout=30)).live


async def test_model_ready_and_metadata_answer_for_the_graph_under_any_name() -> None:
    # ModelInfer runs the graph whatever model name it carries (KServe's router ignores the
    # path), so no name is an unknown model: KServe's ModelServer answers NOT_FOUND only for a
    # model it would not serve.
    spec = _sequence(f"grpc://{LOOPBACK}:1/m")
    async with grpc_router(spec, graph_name="iris-graph") as router:
        ready = _rpc(router.channel, "ModelReady", ModelReadyResponse)
        metadata = _rpc(router.channel, "ModelMetadata", ModelMetadataResponse)
        server = _rpc(router.channel, "ServerMetadata", ServerMetadataResponse)
        for name in ("iris-graph", "", "resnet"):
            assert (await ready(ModelReadyRequest(name=name), timeout=30)).ready, name
        asked = await metadata(ModelMetadataRequest(name="iris-graph", version="2"), timeout=30)
        unnamed = await metadata(ModelMetadataRequest(), timeout=30)
        other = await metadata(ModelMetadataRequest(name="resnet"), timeout=30)
        about = await server(ServerMetadataRequest(), timeout=30)
    assert asked == ModelMetadataResponse(name="iris-graph", platform="infergraph")
    assert unnamed == asked  # no name: the graph's own
    assert other == ModelMetadataResponse(name="resnet", platform="infergraph")
    project = tomllib.loads((Path(__file__).parents[2] / "pyproject.toml").read_text())
    assert about == ServerMetadataResponse(name="infergraph", version=project["project"]["version"])


async def test_draining_turns_server_and_model_readiness_false_but_keeps_serving(
    grpc_model: GrpcModel, router: StartRouter
) -> None:
    grpc_port = free_port()
    args = ["--grpc-port", str(grpc_port), "--drain-seconds", "3", "--inferencegraph-name", "g"]
    async with (
        router(_sequence(grpc_model.url("echo")), args=args) as process,
        grpc.aio.insecure_channel(f"{LOOPBACK}:{grpc_port}") as channel,
    ):
        server_ready = _rpc(channel, "ServerReady", ServerReadyResponse)
        model_ready = _rpc(channel, "ModelReady", ModelReadyResponse)
        live = _rpc(channel, "ServerLive", ServerLiveResponse)
        assert (await model_ready(ModelReadyRequest(name="g"), timeout=30)).ready
        process.process.send_signal(signal.SIGTERM)
        for _ in range(100):  # bounded: 10 s; the drain lasts 3
            if not (await model_ready(ModelReadyRequest(name="g"), timeout=30)).ready:
                break
            await asyncio.sleep(0.05)
        else:
            raise AssertionError("ModelReady stayed true while draining")
        assert not (await server_ready(ServerReadyRequest(), timeout=30)).ready
        assert (await live(ServerLiveRequest(), timeout=30)).live
        infer = _rpc(channel, "ModelInfer", ModelInferResponse)
        answer = await infer(_request(("x", "INT32", [1], struct.pack("<i", 7))), timeout=30)
    assert answer.raw_output_contents[0] == struct.pack("<i", 7)


async def test_a_non_v2_answer_cannot_go_back_over_grpc(backend: Backend) -> None:
    async with grpc_router(_sequence(backend.at("/classify/cat"))) as router:
        with pytest.raises(grpc.aio.AioRpcError) as failure:
            await router.infer(_request(("x", "FP32", [1], struct.pack("<f", math.pi))))
    assert failure.value.code() is grpc.StatusCode.UNAVAILABLE
    assert "the graph's answer is not a v2 inference response" in failure.value.details()


async def test_a_met_quorum_cancels_the_grpc_calls_still_running(grpc_model: GrpcModel) -> None:
    spec = root_graph(
        "Ensemble",
        {"name": "fast", "serviceUrl": grpc_model.url("echo")},
        {"name": "slow", "serviceUrl": grpc_model.url("slow-10000")},
        quorum=1,
    )
    async with grpc_router(spec) as router:
        body = {"inputs": [{"name": "x", "datatype": "INT64", "shape": [1], "data": [7]}]}
        status, answer, _ = await post_json(router.http, body)
        assert status == 200, answer
        assert answer["fast"]["outputs"][0]["data"] == [7]
        await _until(lambda: grpc_model.cancelled == ["slow-10000"])


async def test_an_answer_that_is_not_a_model_infer_response_is_a_502_naming_the_step(
    grpc_model: GrpcModel,
) -> None:
    async with grpc_router(_sequence(grpc_model.url("garbage"))) as router:
        status, body, _ = await post_json(router.http, {"inputs": []})
    assert status == 502
    assert body["cause"].startswith(
        f"node 'root' step 0: {grpc_model.url('garbage')} answered a ModelInferResponse the "
        "router cannot read"
    )


async def test_the_auth_token_guards_model_infer(grpc_model: GrpcModel) -> None:
    request = _request(("x", "FP32", [1], struct.pack("<f", 1)))
    async with grpc_router(_sequence(grpc_model.url("echo")), auth_token=b"s3cret") as router:
        with pytest.raises(grpc.aio.AioRpcError) as failure:
            await router.infer(request)
        method = router.channel.unary_unary(
            INFER,
            request_serializer=ModelInferRequest.SerializeToString,
            response_deserializer=ModelInferResponse.FromString,
        )
        answer = await method(request, metadata=(("authorization", "Bearer s3cret"),), timeout=30)
    assert failure.value.code() is grpc.StatusCode.UNAUTHENTICATED
    assert answer.raw_output_contents[0] == struct.pack("<f", 1)
    assert len(grpc_model.calls) == 1
