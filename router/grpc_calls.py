"""The router's outbound gRPC: a step whose URL is `grpc://host:port/<model>` calls ModelInfer.

`StepsByScheme` is the `StepCaller` the app installs: `grpc://` steps go to `GrpcStepCaller`,
all others to the HTTP caller (`router.calls`). `GrpcStepCaller` keeps one channel per target
(HTTP/2 multiplexes every call of every request on it), sends the step's body as a
ModelInferRequest (converted from its v2 JSON by `router.tensors`, or the client's own message
when the body is one that came in over gRPC), with the step's time budget as the gRPC deadline.
A cancelled step (quorum met, client gone) cancels its RPC.

What comes back is a `Reply` like an HTTP step's, so the executor's rules apply unchanged: the
answer as v2 JSON (carrying the message, for exact pass-through), or a failure code as the
HTTP status `router.grpc_codes` gives with `{"error": <details>}` (KServe's error body).
UNAVAILABLE is StepUnreachable (no usable answer: retried under any retry policy, a breaker
failure) and our own deadline StepTimeout, exactly as for an HTTP step that cannot be
connected to or answers too late.
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import grpc
import orjson
from google.protobuf.message import DecodeError

from router.errors import BadRequest, InvalidStepResponse, StepTimeout, StepUnreachable
from router.executor import StepCaller
from router.graph import Step
from router.grpc_codes import go_status_error, http_status
from router.inference_proto.grpc_predict_v2_pb2 import ModelInferRequest, ModelInferResponse
from router.payload import Payload, Reply
from router.tensors import TensorError, TensorJSON, json_to_request, response_to_json

SCHEME = "grpc://"
MODEL_INFER = "/inference.GRPCInferenceService/ModelInfer"
# A restarted model (a rollout, a crash) is reconnected to within a second of being back;
# gRPC's default backoff grows to two minutes, failing every call meanwhile.
MAX_RECONNECT_BACKOFF_MS = 1000
# Request metadata gRPC sets itself, or that describes the JSON body the router does not send.
_NOT_FORWARDED = frozenset({"content-type", "content-length", "te", "host", "connection"})


@dataclass(frozen=True, slots=True)
class GrpcTarget:
    """A parsed `grpc://host:port/<model>` URL."""

    address: str  # host:port, as gRPC's channel target
    model: str


def parse_grpc_url(url: str) -> GrpcTarget:
    """The target of a step URL; the schema checked its shape (`schemas.graph_rules`)."""
    parts = urlsplit(url)
    return GrpcTarget(parts.netloc, parts.path.strip("/"))


class GrpcStepCaller:
    """A `StepCaller` for `grpc://` steps over pooled channels; `close()` at shutdown."""

    __slots__ = ("_channels", "_max_bytes", "_methods", "_targets")

    def __init__(self, max_message_bytes: int) -> None:
        # A step's answer is held in memory, as for HTTP (--max-body-bytes bounds both).
        self._max_bytes = max_message_bytes
        self._channels: dict[str, grpc.aio.Channel] = {}
        self._methods: dict[str, grpc.aio.UnaryUnaryMultiCallable[bytes, bytes]] = {}
        self._targets: dict[str, GrpcTarget] = {}

    def _method(self, address: str) -> grpc.aio.UnaryUnaryMultiCallable[bytes, bytes]:
        method = self._methods.get(address)
        if method is None:
            channel = grpc.aio.insecure_channel(
                address,
                options=[
                    ("grpc.max_receive_message_length", self._max_bytes),
                    ("grpc.max_send_message_length", self._max_bytes),
                    ("grpc.initial_reconnect_backoff_ms", 100),
                    ("grpc.max_reconnect_backoff_ms", MAX_RECONNECT_BACKOFF_MS),
                    # The channel's connection is its own, not one from gRPC's process-wide
                    # pool that any channel with the same target and options shares: one
                    # channel per target is then one connection per target, as the model
                    # sees it (tests/e2e/test_grpc.py counts them there).
                    ("grpc.use_local_subchannel_pool", 1),
                ],
            )
            self._channels[address] = channel
            # Bytes in and out: a message that does not parse is the router's error to word
            # (naming the step), not gRPC's "Exception deserializing response!".
            method = self._methods[address] = channel.unary_unary(MODEL_INFER)
        return method

    def _target(self, url: str) -> GrpcTarget:
        target = self._targets.get(url)
        if target is None:
            target = self._targets[url] = parse_grpc_url(url)
        return target

    async def __call__(
        self, step: Step, body: bytes, headers: Mapping[str, str], seconds: float
    ) -> Reply:
        url = step.url
        assert url is not None  # the executor only calls service steps
        target = self._target(url)
        try:
            request = _request(body, target.model)
        except TensorError as error:
            # What a REST model answers for a body it cannot read: a 400 the graph's rules judge.
            refused = BadRequest(f"{step.label}: {error}", node=step.owner, step=step.key, url=url)
            return Reply(400, Payload(refused.body()), True, "application/json")
        loop = asyncio.get_running_loop()
        started = loop.time()
        try:
            answer = await self._method(target.address)(
                request.SerializeToString(), timeout=seconds, metadata=_metadata(headers)
            )
        except grpc.aio.AioRpcError as failure:
            return _failure(step, url, failure, seconds, loop.time() - started)
        return _reply(step, url, answer)

    async def close(self) -> None:
        channels = list(self._channels.values())
        self._channels.clear()
        self._methods.clear()
        await asyncio.gather(*(channel.close() for channel in channels))


def _request(body: bytes, model: str) -> ModelInferRequest:
    if isinstance(body, TensorJSON) and isinstance(body.message, ModelInferRequest):
        request = ModelInferRequest()
        request.CopyFrom(body.message)  # the client's tensors as they came, bit for bit
        request.model_name = model
        request.model_version = ""
        return request
    try:
        parsed = orjson.loads(body)
    except orjson.JSONDecodeError as error:
        raise TensorError(
            f"the body is not JSON ({error}); a gRPC v2 model needs v2 JSON"
        ) from None
    return json_to_request(parsed, model)


def _metadata(headers: Mapping[str, str]) -> tuple[tuple[str, str], ...]:
    return tuple(
        (name.lower(), value)
        for name, value in headers.items()
        if name.lower() not in _NOT_FORWARDED
    )


def _reply(step: Step, url: str, answer: bytes) -> Reply:
    try:
        response = ModelInferResponse.FromString(answer)
        body: dict[str, Any] = response_to_json(response)
    except (DecodeError, TensorError) as error:
        raise InvalidStepResponse(
            f"{step.label}: {url} answered a ModelInferResponse the router cannot read: {error}",
            node=step.owner,
            step=step.key,
            url=url,
        ) from None
    return Reply(200, Payload(TensorJSON(orjson.dumps(body), response), body), True, None)


def _failure(
    step: Step, url: str, failure: grpc.aio.AioRpcError, seconds: float, took: float
) -> Reply:
    code = failure.code()
    details = failure.details() or ""
    cause = go_status_error(code, details)
    # Our deadline: gRPC says DEADLINE_EXCEEDED once the budget is spent (1 ms for timer
    # granularity); a model that answers DEADLINE_EXCEEDED sooner ran out of its own.
    if code is grpc.StatusCode.DEADLINE_EXCEEDED and took >= seconds - 0.001:
        raise StepTimeout(
            # What Go's gRPC client says when its context's deadline passes.
            go_status_error(code, "context deadline exceeded"),
            node=step.owner,
            step=step.key,
            url=url,
            detail=f"{step.label}: {url} did not answer within {seconds:.3g}s",
        )
    if code is grpc.StatusCode.UNAVAILABLE:
        raise StepUnreachable(
            cause,
            node=step.owner,
            step=step.key,
            url=url,
            detail=f"{step.label}: calling {url} failed: UNAVAILABLE: {details}",
        )
    return Reply(http_status(code), Payload.from_json({"error": details}), True, "application/json")


class StepsByScheme:
    """The app's `StepCaller`: `grpc://` steps to gRPC, every other step to HTTP."""

    __slots__ = ("grpc", "http")

    def __init__(self, http: StepCaller, grpc_caller: GrpcStepCaller) -> None:
        self.http = http
        self.grpc = grpc_caller

    def __call__(
        self, step: Step, body: bytes, headers: Mapping[str, str], seconds: float
    ) -> Coroutine[Any, Any, Reply]:
        # The chosen caller's own coroutine, not one awaiting it: a coroutine less in the chain
        # that every resumption of a step call walks through.
        url = step.url
        if url is not None and url.startswith(SCHEME):
            return self.grpc(step, body, headers, seconds)
        return self.http(step, body, headers, seconds)


__all__ = ["GrpcStepCaller", "GrpcTarget", "StepsByScheme", "parse_grpc_url"]
