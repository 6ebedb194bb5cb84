"""The router's gRPC ingress: `inference.GRPCInferenceService` on --grpc-port, beside HTTP.

`add_grpc_ingress(app, ...)` ties a grpc.aio server to the aiohttp app's life: it listens once
the app starts (with SO_REUSEPORT in a --workers pool), and at shutdown, after the drain, it
stops taking RPCs and lets those in flight finish, before the step callers close.

ModelInfer runs the graph from `root` as an HTTP POST would: the request becomes its v2 JSON
form (`router.tensors`) for conditions, `data` paths and REST steps; the graph's answer goes
back as a ModelInferResponse (a gRPC model's own message when it passes through untouched).
The client's deadline bounds the request. A RouterError or a non-2xx answer becomes the gRPC
code `router.grpc_codes` gives, with the `cause` of the HTTP error body as details and
`node`, `step`, `url`, `detail` as trailing metadata (`infergraph-node`, ...). Like KServe's
router, which ignores the URL path, the model name a client asks for is not checked: every
ModelInfer runs the graph. ServerReady and ModelReady are the router's readiness (False while
draining); ServerLive is True while the process serves.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import grpc
import orjson
from aiohttp import web
from google.protobuf.message import DecodeError, Message

from router.app import STATE, ServingState, recorder_for, run_payload
from router.auth import authorized
from router.errors import BadRequest, RouterError, TooBusy, Unauthorized
from router.grpc_codes import grpc_code
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
from router.payload import InvalidJSON, Payload, Reply
from router.settings import version
from router.streams import collect_stream
from router.tensors import TensorError, TensorJSON, json_to_response, request_to_json

SERVICE = "inference.GRPCInferenceService"
DEFAULT_GRPC_PORT = 8081  # KServe's gRPC port convention (its model servers' --grpc_port)
SHUTDOWN_GRACE_SECONDS = 60.0  # as router.server: in-flight calls may finish after the drain
_WHERE = ("node", "step", "url", "detail")

Handler = Callable[[Any, grpc.aio.ServicerContext[Any, Any]], Awaitable[Message]]


def add_grpc_ingress(
    app: web.Application,
    host: str,
    port: int,
    *,
    reuse_port: bool = False,
    tls: tuple[Path, Path] | None = None,
    bound: Callable[[int], None] | None = None,
) -> None:
    """Serve GRPCInferenceService on `host:port` for the life of `app`.

    `tls` is (certificate, key) for --enable-tls; `bound` gets the port (0 picks one: tests).
    """
    holder: list[grpc.aio.Server] = []

    async def lifetime(app: web.Application) -> AsyncIterator[None]:
        state = app[STATE]
        server = grpc.aio.server(
            options=[
                ("grpc.max_receive_message_length", state.max_body_bytes),
                ("grpc.max_send_message_length", state.max_body_bytes),
                # gRPC sets SO_REUSEPORT by default; off unless in a pool, so a port another
                # process holds is an error at start, as for the HTTP port.
                ("grpc.so_reuseport", 1 if reuse_port else 0),
            ]
        )
        server.add_generic_rpc_handlers((_handlers(state),))
        address = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
        if tls is not None:
            certificate, key = tls
            credentials = grpc.ssl_server_credentials(
                [(key.read_bytes(), certificate.read_bytes())]
            )
            chosen = server.add_secure_port(address, credentials)
        else:
            chosen = server.add_insecure_port(address)
        await server.start()
        holder.append(server)
        if bound is not None:
            bound(chosen)
        try:
            yield
        finally:
            await server.stop(0)  # no-op when on_shutdown stopped it; immediate on a failed start

    async def drain(app: web.Application) -> None:
        # on_shutdown: after the listener closed and the drain; RPCs in flight may finish.
        for server in holder:
            await server.stop(SHUTDOWN_GRACE_SECONDS)

    app.cleanup_ctx.append(lifetime)
    app.on_shutdown.append(drain)


def _handlers(state: ServingState) -> grpc.GenericRpcHandler:
    def unary(handler: Handler, request_type: type[Message]) -> grpc.RpcMethodHandler[Any, Any]:
        return grpc.unary_unary_rpc_method_handler(
            handler,
            request_deserializer=request_type.FromString,
            response_serializer=_serialize,
        )

    async def server_live(_: ServerLiveRequest, __: Any) -> ServerLiveResponse:
        return ServerLiveResponse(live=True)

    async def server_ready(_: ServerReadyRequest, __: Any) -> ServerReadyResponse:
        return ServerReadyResponse(ready=not state.shutting_down)

    async def model_ready(_: ModelReadyRequest, __: Any) -> ModelReadyResponse:
        return ModelReadyResponse(ready=not state.shutting_down)

    async def server_metadata(_: ServerMetadataRequest, __: Any) -> ServerMetadataResponse:
        return ServerMetadataResponse(name="infergraph", version=version())

    async def model_metadata(request: ModelMetadataRequest, _: Any) -> ModelMetadataResponse:
        # A graph declares no tensors of its own; its name is what the client asked for.
        return ModelMetadataResponse(name=request.name or state.graph_name, platform="infergraph")

    async def model_infer(raw: bytes, context: grpc.aio.ServicerContext[Any, Any]) -> Message:
        return await _model_infer(state, raw, context)

    return grpc.method_handlers_generic_handler(
        SERVICE,
        {
            "ServerLive": unary(server_live, ServerLiveRequest),
            "ServerReady": unary(server_ready, ServerReadyRequest),
            "ModelReady": unary(model_ready, ModelReadyRequest),
            "ServerMetadata": unary(server_metadata, ServerMetadataRequest),
            "ModelMetadata": unary(model_metadata, ModelMetadataRequest),
            # Bytes in: a message that does not parse is INVALID_ARGUMENT with the router's
            # words, not gRPC's INTERNAL "Exception deserializing request!".
            "ModelInfer": grpc.unary_unary_rpc_method_handler(
                model_infer, response_serializer=_serialize
            ),
        },
    )


def _serialize(message: Message) -> bytes:
    return message.SerializeToString()


async def _model_infer(
    state: ServingState, raw: bytes, context: grpc.aio.ServicerContext[Any, Any]
) -> Message:
    metadata = {
        key: value for key, value in context.invocation_metadata() or () if isinstance(value, str)
    }
    if state.auth_token is not None and not authorized(
        metadata.get("authorization"), state.auth_token
    ):
        await _abort(context, Unauthorized("a valid 'authorization: Bearer <token>' is required"))
    if state.max_in_flight and state.in_flight >= state.max_in_flight:
        await _abort(context, TooBusy(f"{state.in_flight} requests in flight, the limit"))
    state.in_flight += 1
    started = time.perf_counter()
    status = 500
    trace = state.live.stats.trace() if state.live is not None else None
    try:
        graph = state.graph  # one graph for the whole request, even if a reload swaps it
        try:
            payload = _payload(raw)
            recorder = recorder_for(state, trace)
            remaining = context.time_remaining()
            if state.tracing is None:
                reply = await run_payload(state, graph, payload, metadata, recorder, remaining)
            else:
                with state.tracing.request(metadata, state.graph_name):
                    reply = await run_payload(state, graph, payload, metadata, recorder, remaining)
                    state.tracing.response(reply.status)
            # A gRPC answer is one message: a step's stream is read whole first.
            reply = await collect_stream(reply, state.max_body_bytes)
            status = reply.status
            if not reply.ok:
                # A step's own error answer, which the graph answered with: its status, its text.
                await context.abort(grpc_code(reply.status), _error_text(reply))
            return _response(reply)
        except RouterError as error:
            status = error.status
            await _abort(context, error)
            raise  # unreachable: abort raises
        except asyncio.CancelledError:
            status = 499  # the client cancelled or its deadline passed (nginx's "client closed")
            raise
    finally:
        state.in_flight -= 1
        if state.metrics is not None:
            state.metrics.request_finished(status, time.perf_counter() - started)
        if state.live is not None and trace is not None:
            state.live.stats.request_finished(trace, "gRPC", "ModelInfer", status)


def _payload(raw: bytes) -> Payload:
    try:
        request = ModelInferRequest.FromString(raw)
    except DecodeError as error:
        raise BadRequest(f"the request is not an inference.ModelInferRequest: {error}") from None
    try:
        body = request_to_json(request)
    except TensorError as error:
        raise BadRequest(str(error)) from None
    return Payload(TensorJSON(orjson.dumps(body), request), body)


def _response(reply: Reply) -> ModelInferResponse:
    """The graph's 2xx answer as a ModelInferResponse."""
    raw = reply.payload.raw
    if isinstance(raw, TensorJSON) and isinstance(raw.message, ModelInferResponse):
        return raw.message  # a gRPC model's answer, untouched: sent on as it came
    try:
        return json_to_response(reply.payload.json())
    except (InvalidJSON, TensorError) as error:
        raise NotV2Answer(f"the graph's answer is not a v2 inference response: {error}") from None


class NotV2Answer(RouterError):
    """The graph answered 2xx with a body a ModelInferResponse cannot carry (v1, merged)."""

    status = 502


def _error_text(reply: Reply) -> str:
    try:
        body = reply.payload.json()
    except InvalidJSON:
        body = None
    if isinstance(body, dict):
        for field in ("cause", "error"):
            if isinstance(body.get(field), str):
                return str(body[field])
    text = reply.payload.raw.decode(errors="replace")
    return text if len(text) <= 1000 else text[:1000] + "..."


async def _abort(context: grpc.aio.ServicerContext[Any, Any], error: RouterError) -> None:
    trailers = tuple(
        (f"infergraph-{name}", value)
        for name in _WHERE
        if isinstance(value := getattr(error, name), str) and value.isascii()
    )
    if trailers:
        context.set_trailing_metadata(trailers)
    await context.abort(grpc_code(error.status), error.cause)
