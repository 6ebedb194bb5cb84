"""aiohttp wiring: routes, per-request execution, error mapping, shared resources.

`build_app` is what tests and `router.server` use. Routes are KServe's: `GET /readyz`, and a
POST to any other path runs the graph from `root`. The client session lives in one cleanup_ctx,
so it is created inside the running loop and closed after in-flight requests finish.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import AsyncIterator, Awaitable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
from aiohttp import web

from router.auth import authorized
from router.calls import HttpStepCaller, new_session
from router.errors import (
    BadRequest,
    BodyTooLarge,
    CircuitOpen,
    ExpectationFailed,
    GraphTimeout,
    MethodNotAllowed,
    RequestTimeout,
    RouterError,
    TooBusy,
    Unauthorized,
)
from router.executor import SYSTEM_CLOCK, Clock, Execution, StepCaller
from router.explain import EXPLAIN_HEADER, explain
from router.graph import CompiledGraph
from router.grpc_calls import GrpcStepCaller, StepsByScheme
from router.headers import HeaderPropagator
from router.jsondiff import EXACT, Tolerance
from router.live.page import Handler, LivePage
from router.live.stats import LiveStats
from router.logs import RequestLog
from router.metrics import Metrics
from router.payload import Payload, Reply
from router.protocol import read_deadline
from router.recording import Recorder, Recorders, Trace
from router.resilience import Breakers
from router.shadow import ShadowComparison
from router.streams import send_stream
from router.tracing import Tracing, current_trace_id
from router.traffic import RecordingSettings, RequestRecord, TrafficRecorder

JSON = "application/json"
TRACE_HEADER = "X-InferGraph-Trace"  # request it with any value but "0"; the answer carries it


@dataclass(slots=True)
class ServingState:
    """Mutable per-process state: the graph in service and whether we are draining."""

    graph: CompiledGraph
    propagator: HeaderPropagator
    rng: random.Random
    caller: StepCaller | None = None
    shutting_down: bool = False
    max_body_bytes: int = 16 * 1024 * 1024
    connection_limit: int = 1024
    max_in_flight: int = 0  # 0: no limit (KServe's behaviour)
    auth_token: bytes | None = None  # --auth-token-file: required bearer token
    graph_name: str = "graph"
    metrics: Metrics | None = None
    tracing: Tracing | None = None  # None unless OTEL_* configures an exporter: no cost
    request_log: RequestLog | None = None
    live: LivePage | None = None  # --live-page: every request traced and tallied for /graph
    in_flight: int = 0
    clock: Clock = SYSTEM_CLOCK
    breakers: Breakers = field(default_factory=Breakers)
    # Shadow calls outlive their request; they live here until they finish or shutdown.
    background: set[asyncio.Task[Any]] = field(default_factory=set)
    traffic: TrafficRecorder | None = None  # --record
    shadow_judge: ShadowComparison | None = None


STATE = web.AppKey("state", ServingState)


def build_app(
    graph: CompiledGraph,
    propagator: HeaderPropagator | None = None,
    *,
    rng: random.Random | None = None,
    max_body_bytes: int = 16 * 1024 * 1024,
    connection_limit: int = 1024,
    max_in_flight: int = 0,
    auth_token: bytes | None = None,
    caller: StepCaller | None = None,
    clock: Clock = SYSTEM_CLOCK,
    graph_name: str = "graph",
    tracing: Tracing | None = None,
    request_log: RequestLog | None = None,
    recording: RecordingSettings | None = None,
    shadow_tolerance: Tolerance = EXACT,
    shadow_log_every: int = 100,
    live_page: bool = False,
    live_share_dir: Path | None = None,
) -> web.Application:
    """The router application for `graph`. `caller` and `clock` replace I/O and time in tests."""
    state = ServingState(
        graph=graph,
        propagator=propagator or HeaderPropagator(()),
        rng=rng or random.Random(),
        caller=caller,
        max_body_bytes=max_body_bytes,
        connection_limit=connection_limit,
        max_in_flight=max_in_flight,
        auth_token=auth_token,
        clock=clock,
        graph_name=graph_name,
        tracing=tracing,
        request_log=request_log,
    )
    state.metrics = Metrics(graph_name, state.breakers, lambda: state.in_flight)
    state.shadow_judge = ShadowComparison(
        graph_name, state.metrics.registry, shadow_tolerance, shadow_log_every
    )
    if recording is not None:
        state.traffic = TrafficRecorder(recording, graph_name, state.metrics.registry)
    # client_max_size + 1 lets us see "too large" ourselves and answer with our error body.
    app = web.Application(client_max_size=max_body_bytes + 1)
    app[STATE] = state
    app.cleanup_ctx.append(_client_session)
    app.cleanup_ctx.append(_grpc_steps)
    app.cleanup_ctx.append(_traffic)
    app.router.add_get("/readyz", readyz, expect_handler=_expect)
    app.router.add_get("/metrics", metrics, expect_handler=_expect_with_token)
    if live_page:
        # Before the catch-all: GET /graph is the page, a POST to /graph still runs the graph.
        state.live = LivePage(
            LiveStats(), lambda: state.graph, state.breakers, graph_name, live_share_dir
        )
        state.live.add_routes(app, _with_token)
    app.router.add_route("*", "/{tail:.*}", run_graph, expect_handler=_expect_with_token)
    return app


async def _client_session(app: web.Application) -> AsyncIterator[None]:
    state = app[STATE]
    if state.caller is not None:
        yield
        return
    caller = HttpStepCaller(new_session(state.connection_limit), state.max_body_bytes)
    state.caller = caller
    try:
        yield
    finally:
        if state.tracing is not None:
            state.tracing.shutdown()
        for task in list(state.background):
            task.cancel()
        await asyncio.gather(*state.background, return_exceptions=True)
        caller.close()


async def _grpc_steps(app: web.Application) -> AsyncIterator[None]:
    """Steps with `grpc://` URLs go to pooled gRPC channels; the rest to the HTTP caller."""
    state = app[STATE]
    assert state.caller is not None  # _client_session runs first
    grpc_caller = GrpcStepCaller(state.max_body_bytes)
    state.caller = StepsByScheme(state.caller, grpc_caller)
    try:
        yield
    finally:
        await grpc_caller.close()


async def _traffic(app: web.Application) -> AsyncIterator[None]:
    """--record: the step caller keeps sampled calls' bodies; a thread writes the records."""
    state = app[STATE]
    if state.traffic is None:
        yield
        return
    assert state.caller is not None  # _client_session runs first
    state.caller = state.traffic.caller(state.caller)
    state.traffic.open()
    try:
        yield
    finally:
        await asyncio.to_thread(state.traffic.close)


async def _expect(request: web.Request) -> web.StreamResponse | None:
    """aiohttp's Expect handling, but an unknown expectation gets the router's error body."""
    if request.version != (1, 1):
        return None  # HTTP/1.0 has no Expect semantics
    expect = request.headers.get("Expect", "")
    if expect.lower() != "100-continue":
        return error_response(
            ExpectationFailed(f"Expect: {expect!r} is not supported; only 100-continue is")
        )
    limit = request.app[STATE].max_body_bytes
    if request.content_length is not None and request.content_length > limit:
        # The point of Expect: refuse before the client sends a body we would not read.
        response: web.Response = error_response(
            BodyTooLarge(f"request body of {request.content_length} bytes exceeds {limit} bytes")
        )
        # RFC 9110 10.1.1: a final answer before the content says whether the connection stays;
        # it cannot, as the client may still send the body on it.
        response.force_close()
        return response
    await request.writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
    request.writer.output_size = 0  # as aiohttp's own: the 100 is not part of the response
    return None


async def _expect_with_token(request: web.Request) -> web.StreamResponse | None:
    """As `_expect`, and a request without the --auth-token-file token gets its 401 first."""
    if request.version == (1, 1):
        refused = _unauthorized(request, request.app[STATE])
        if refused is not None:
            refused.force_close()  # as for the 413: the unsent body may still follow
            return refused
    return await _expect(request)


def _unauthorized(request: web.Request, state: ServingState) -> web.Response | None:
    """The 401 for a request without the --auth-token-file token, or None when it may pass."""
    if state.auth_token is None or authorized(
        request.headers.get("Authorization"), state.auth_token
    ):
        return None
    response = error_response(Unauthorized("a valid 'Authorization: Bearer <token>' is required"))
    response.headers["WWW-Authenticate"] = "Bearer"
    return response


def _with_token(handler: Handler) -> Handler:
    """`handler` behind the --auth-token-file check, as every graph request is."""

    async def guarded(request: web.Request) -> web.StreamResponse:
        refused = _unauthorized(request, request.app[STATE])
        return refused if refused is not None else await handler(request)

    return guarded


def metrics_app(app: web.Application) -> web.Application:
    """`GET /metrics` of `app`'s router, unauthenticated, for a separate port (--metrics-port).

    With --auth-token-file, Prometheus would otherwise need the clients' token; a port of its
    own, reachable only where the operator exposes it, is the usual answer (controller-runtime
    managers, such as KServe's controller, have a metrics address of their own too).
    """
    side = web.Application()
    side[STATE] = app[STATE]
    side.router.add_get("/metrics", open_metrics)
    return side


async def readyz(request: web.Request) -> web.Response:
    if request.app[STATE].shutting_down:
        return web.Response(status=503, text="shutting down\n")
    return web.Response(status=200)


async def metrics(request: web.Request) -> web.Response:
    """`/metrics` on the main port: behind --auth-token-file like the graph (see metrics_app)."""
    refused = _unauthorized(request, request.app[STATE])
    return refused if refused is not None else await open_metrics(request)


async def open_metrics(request: web.Request) -> web.Response:
    state = request.app[STATE]
    assert state.metrics is not None  # build_app always creates it
    body, content_type = state.metrics.render()
    # aiohttp's content_type= refuses parameters; Prometheus's type carries a version.
    return web.Response(body=body, headers={"Content-Type": content_type})


def error_response(error: RouterError) -> web.Response:
    response = web.Response(status=error.status, body=error.body(), content_type=JSON)
    if isinstance(error, CircuitOpen):
        response.headers["Retry-After"] = str(max(1, round(error.retry_after)))
    elif isinstance(error, TooBusy):
        response.headers["Retry-After"] = "1"
    return response


async def run_graph(request: web.Request) -> web.StreamResponse:
    state = request.app[STATE]
    refused = _unauthorized(request, state)
    if refused is not None:
        return refused
    if state.max_in_flight and state.in_flight >= state.max_in_flight:
        # Refuse at once rather than queue: a queue only turns overload into timeouts.
        return error_response(TooBusy(f"{state.in_flight} requests in flight, the limit"))
    state.in_flight += 1
    started = time.perf_counter()
    trace_id = None
    try:
        if state.tracing is None:
            response = await _run_graph(request, state)
        else:
            with state.tracing.request(request.headers, state.graph_name):
                response = await _run_graph(request, state)
                state.tracing.response(response.status)
                trace_id = current_trace_id()
    finally:
        state.in_flight -= 1
    if state.shutting_down:
        # Draining: close each keep-alive connection after its answer, so none is left idle
        # when the listener closes. Otherwise a client writing its next request on one just
        # as the router closes it gets a reset and cannot know whether the request ran.
        response.force_close()
    seconds = time.perf_counter() - started
    if state.metrics is not None:
        state.metrics.request_finished(response.status, seconds)
    if state.request_log is not None:
        state.request_log.request_finished(
            request.method, request.path, response.status, seconds, trace_id
        )
    return response


async def _run_graph(request: web.Request, state: ServingState) -> web.StreamResponse:
    graph = state.graph  # one graph for the whole request, even if a reload swaps it meanwhile
    if request.headers.get(EXPLAIN_HEADER, "0") != "0" and request.method == "POST":
        return await _explain(request, state, graph)
    asked = request.headers.get(TRACE_HEADER, "0") != "0"
    trace: Trace | None = None
    if state.live is not None:
        trace = state.live.stats.trace()  # also the header's, when asked for
    elif asked:
        trace = Trace()
    record: RequestRecord | None = None
    if state.traffic is not None:
        record = state.traffic.start(request.method, request.path, request.headers, graph)
    recorder = recorder_for(state, trace, record)
    started = state.clock.now()
    try:
        if request.method != "POST":
            raise MethodNotAllowed(f"{request.method} is not supported: POST the request body")
        body = await _read_body(request, state.max_body_bytes, graph.timeouts.server_read)
        if record is not None:
            record.body = body
        reply = await run_payload(state, graph, Payload(body), request.headers, recorder)
    except RouterError as error:
        response = error_response(error)
    else:
        if reply.stream is not None:
            streamed = await _stream_reply(
                request, state, graph, reply, trace if asked else None, started
            )
            # Its bytes went to the client as they came: a record keeps the status alone.
            _finished(request, state, streamed, trace, record, b"")
            return streamed
        response = _reply_response(reply)
    if trace is not None and asked:
        response.headers[TRACE_HEADER] = orjson.dumps(trace.as_json()).decode()
    answer = response.body if isinstance(response.body, bytes) else b""
    _finished(request, state, response, trace, record, answer)
    return response


def _finished(
    request: web.Request,
    state: ServingState,
    response: web.StreamResponse,
    trace: Trace | None,
    record: RequestRecord | None,
    answer: bytes,
) -> None:
    """Hand the answered request to --record and the live page, when they watch."""
    if record is not None and state.traffic is not None:
        state.traffic.finish(record, response.status, answer)
    if state.live is not None and trace is not None:
        state.live.stats.request_finished(trace, request.method, request.path, response.status)


async def _stream_reply(
    request: web.Request,
    state: ServingState,
    graph: CompiledGraph,
    reply: Reply,
    trace: Trace | None,
    started: float,
) -> web.StreamResponse:
    """A streamed answer, written as it arrives (router.streams), bounded by the request's
    deadline; its trace goes in a last SSE comment, for other bodies in the header as it stood
    at the first byte (README, Streaming)."""
    body = reply.stream
    assert body is not None
    limit = min(graph.timeouts.request, graph.timeouts.server_write)
    content_type = reply.content_type or "application/octet-stream"

    def trace_json() -> bytes:
        assert trace is not None
        return orjson.dumps([*trace.as_json(), body.stats.as_json()])

    if trace is not None and not body.sse:
        # Headers go before the body: this trace ends at the stream's first byte.
        extra_headers = {TRACE_HEADER: orjson.dumps(trace.as_json()).decode()}
    else:
        extra_headers = {}
    try:
        response = await send_stream(
            request,
            reply.status,
            content_type,
            body,
            limit - (state.clock.now() - started),
            trace_json if trace is not None else None,
            extra_headers,
        )
    finally:
        if state.metrics is not None:
            state.metrics.stream_finished(body.stats)
        if state.tracing is not None:
            state.tracing.stream_finished(body.stats)
    return response


def run_payload(
    state: ServingState,
    graph: CompiledGraph,
    payload: Payload,
    incoming_headers: Mapping[str, str],
    recorder: Recorder | None,
    client_seconds: float | None = None,
) -> Awaitable[Reply]:
    """Run `graph` from its root on a request body; raises RouterError. HTTP and gRPC share it.

    `client_seconds` is the time the client still waits (a gRPC deadline); the request's
    deadline is the earlier of it and the graph's. A plain function returning the root node's
    run, so no coroutine of its own sits in the chain each step call's resumption walks.
    """
    caller = state.caller
    assert caller is not None  # set by the cleanup_ctx before the first request
    budget = graph.timeouts.request
    if client_seconds is not None:
        budget = min(budget, client_seconds)
    execution = Execution(
        caller,
        payload,
        state.propagator.outbound(incoming_headers),
        state.rng,
        deadline=state.clock.now() + budget,
        service_client_timeout=graph.timeouts.service_client,
        clock=state.clock,
        breakers=state.breakers,
        recorder=recorder,
        incoming_headers=incoming_headers,
        background=state.background,
        # Only OpenTelemetry adds headers (traceparent) to step calls.
        copy_headers=state.tracing is not None,
        shadow_judge=state.shadow_judge,
    )
    if graph.timeouts.request <= graph.timeouts.server_write:
        # The request's deadline already bounds every step call and retry, so serverWrite
        # cannot fire first: no timer (a Timeout object and a loop handle per request, ~4%
        # of the router's CPU in the 2-step profile).
        return execution.run_node(graph.root, payload)
    return _within_server_write(execution, graph, payload)


async def _within_server_write(
    execution: Execution, graph: CompiledGraph, payload: Payload
) -> Reply:
    try:
        async with asyncio.timeout(graph.timeouts.server_write):
            return await execution.run_node(graph.root, payload)
    except TimeoutError:
        raise GraphTimeout(
            f"the graph did not finish within {graph.timeouts.server_write:g}s (serverWrite)"
        ) from None


async def _explain(request: web.Request, state: ServingState, graph: CompiledGraph) -> web.Response:
    """The path this request would take, models answering `200 {}`; nothing is called."""
    try:
        body = await _read_body(request, state.max_body_bytes, graph.timeouts.server_read)
    except RouterError as error:
        return error_response(error)
    result = await explain(graph, body, rng=state.rng, headers=request.headers)
    return web.Response(body=orjson.dumps(result), content_type=JSON)


def recorder_for(
    state: ServingState, trace: Trace | None, record: RequestRecord | None = None
) -> Recorder | None:
    """Whoever watches this request: the trace header, --record, metrics, tracing, step logs."""
    if trace is None and record is None and state.tracing is None and state.request_log is None:
        return state.metrics.recorder() if state.metrics is not None else None  # the usual case
    watchers: list[Recorder] = []
    if trace is not None:
        watchers.append(trace)
    if record is not None:
        watchers.append(record)
    if state.metrics is not None:
        watchers.append(state.metrics.recorder())
    if state.tracing is not None:
        watchers.append(state.tracing.recorder())
    if state.request_log is not None:
        step_log = state.request_log.recorder()
        if step_log is not None:
            watchers.append(step_log)
    if not watchers:
        return None
    return watchers[0] if len(watchers) == 1 else Recorders(watchers)


def _reply_response(reply: Reply) -> web.Response:
    # KServe labels the answer JSON only when it is; a backend's own label saves re-parsing.
    # Any other answer keeps the type its step declared (an image, text), unlike KServe's.
    if reply.json_content or reply.payload.is_json():
        content_type = JSON
    else:
        content_type = reply.content_type or "application/octet-stream"
    # Through headers: `content_type=` refuses parameters such as charset.
    return web.Response(
        status=reply.status, body=reply.payload.raw, headers={"Content-Type": content_type}
    )


async def _read_body(request: web.Request, limit: int, seconds: float) -> bytes:
    declared = request.content_length  # parsed from the header at each read of the property
    if declared is not None and declared > limit:
        raise BodyTooLarge(f"request body of {declared} bytes exceeds {limit} bytes")
    try:
        if request.content.is_eof():
            # The whole body came with the headers (the usual small request): reading cannot
            # wait, so no serverRead timer is armed.
            return await request.read()
        # serverRead bounds the whole request, from its first byte (router.protocol).
        async with asyncio.timeout_at(read_deadline(request, seconds)):
            return await request.read()
    except TimeoutError:
        raise RequestTimeout(
            f"request body not received within {seconds:g}s (serverRead)"
        ) from None
    except web.HTTPRequestEntityTooLarge:
        raise BodyTooLarge(f"request body exceeds {limit} bytes") from None
    except web.RequestPayloadError as error:
        # The body arrived but cannot be decoded as framed: bad chunking, or a Content-Encoding
        # (gzip, deflate, br) the bytes do not follow. The client's mistake, not ours.
        reason = " ".join(str(error).split()).removeprefix("400, message: ")
        raise BadRequest(f"request body cannot be read: {reason}") from None
