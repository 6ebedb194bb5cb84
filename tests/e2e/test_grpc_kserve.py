"""gRPC against KServe's own ModelServer: `infergraph up` starts a grpc-v2 predictor with its
gRPC port, the router calls it over gRPC, and a router process serves gRPC clients (--grpc-port,
--workers, SIGTERM drain). Slow: real processes, a real scikit-learn model."""

from __future__ import annotations

import asyncio
import re
import signal
import struct
from pathlib import Path

import grpc
import pytest
from sklearn.datasets import load_iris

from graph_controller.local.deploy import deployment
from graph_controller.planning.bundle import load_bundle
from router.inference_proto.grpc_predict_v2_pb2 import (
    ModelInferRequest,
    ModelInferResponse,
    ServerReadyRequest,
    ServerReadyResponse,
)
from tests.conftest import StartRouter
from tests.support import LOOPBACK, free_port, post_json, root_graph

pytestmark = pytest.mark.slow
EXAMPLE = Path(__file__).parents[2] / "examples" / "iris-grpc"


def _iris_request(rows: list[list[float]]) -> ModelInferRequest:
    request = ModelInferRequest(model_name="iris")
    request.inputs.add(name="input-0", datatype="FP32", shape=[len(rows), 4])
    request.raw_input_contents.append(
        struct.pack(f"<{4 * len(rows)}f", *(x for row in rows for x in row))
    )
    return request


async def test_rest_and_grpc_clients_reach_kserves_grpc_endpoint(router: StartRouter) -> None:
    if not (EXAMPLE / "models" / "iris" / "model.joblib").exists():
        pytest.fail("run `python examples/train.py` first: the iris model is missing")
    iris = load_iris()
    rows = [iris.data[i].tolist() for i in (0, 60, 120)]
    lines: list[str] = []
    async with deployment(load_bundle(EXAMPLE), lines.append) as running:
        # REST client -> router -> the ModelServer's gRPC endpoint.
        body = {"inputs": [{"name": "input-0", "datatype": "FP32", "shape": [3, 4], "data": rows}]}
        status, answer, _ = await post_json(running.graphs[0].url, body)
        assert status == 200, answer
        assert answer["outputs"][0]["data"] == [0, 1, 2]
        found = re.search(r"  iris serves gRPC v2 on (\S+)", "\n".join(lines))
        assert found is not None, lines
        # gRPC client -> the router `up` started with a gRPC port (the annotation).
        ingress = re.search(r"graph iris-grpc serves gRPC v2 on (\S+)", "\n".join(lines))
        assert ingress is not None, lines
        async with grpc.aio.insecure_channel(ingress[1]) as channel:
            infer = channel.unary_unary(
                "/inference.GRPCInferenceService/ModelInfer",
                request_serializer=ModelInferRequest.SerializeToString,
                response_deserializer=ModelInferResponse.FromString,
            )
            assert _ints(await infer(_iris_request(rows), timeout=30)) == [0, 1, 2]
        # gRPC client -> a router process with --grpc-port and two workers -> gRPC model.
        grpc_port = free_port()
        spec = root_graph("Sequence", {"serviceUrl": f"grpc://{found[1]}/iris"})
        args = ["--grpc-port", str(grpc_port), "--workers", "2", "--drain-seconds", "5"]
        async with (
            router(spec, args=args) as process,
            grpc.aio.insecure_channel(f"{LOOPBACK}:{grpc_port}") as channel,
        ):
            infer = channel.unary_unary(
                "/inference.GRPCInferenceService/ModelInfer",
                request_serializer=ModelInferRequest.SerializeToString,
                response_deserializer=ModelInferResponse.FromString,
            )
            reply = await infer(_iris_request(rows), timeout=30)
            assert reply.model_name == "iris"
            assert _ints(reply) == [0, 1, 2]
            ready = channel.unary_unary(
                "/inference.GRPCInferenceService/ServerReady",
                request_serializer=ServerReadyRequest.SerializeToString,
                response_deserializer=ServerReadyResponse.FromString,
            )
            assert (await ready(ServerReadyRequest(), timeout=10)).ready
            process.process.send_signal(signal.SIGTERM)
            for _ in range(100):  # bounded: 10 s; the drain lasts 5
                if not (await ready(ServerReadyRequest(), timeout=10)).ready:
                    break
                await asyncio.sleep(0.1)
            else:
                raise AssertionError("ServerReady stayed true while draining")
            # Draining: not ready, but still serving.
            assert _ints(await infer(_iris_request(rows[:1]), timeout=30)) == [0]


def _ints(reply: ModelInferResponse) -> list[int]:
    output = reply.outputs[0]
    if reply.raw_output_contents:
        raw = reply.raw_output_contents[0]
        return list(struct.unpack(f"<{len(raw) // 8}q", raw))
    return list(output.contents.int64_contents)
