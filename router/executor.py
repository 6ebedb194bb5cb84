"""Runs a compiled graph for one request: dispatches nodes, builds step bodies, calls services.

The seams are injected so the semantics can be tested without a network or a wall clock: a
`StepCaller` (the only thing that does I/O; `router.calls` is the HTTP one), a `random.Random`
for Splitters and retry jitter, and a `Clock` (monotonic time and sleep) for deadlines and
backoff. One `Execution` exists per request; it holds what every step of that request shares,
including the request's deadline: no step call waits past it, and no retry starts after it.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Awaitable, Callable, Mapping, MutableMapping
from dataclasses import dataclass
from typing import Any, Protocol, cast

from router.errors import (
    BadRequest,
    CircuitOpen,
    GraphTimeout,
    InvalidStepResponse,
    RouterError,
    StepTimeout,
    StepUnreachable,
)
from router.execution import NodeRunner
from router.graph import Node, Step
from router.nodes.ensemble import run_ensemble
from router.nodes.sequence import run_sequence
from router.nodes.splitter import run_splitter
from router.nodes.switch import run_switch
from router.payload import InvalidJSON, Payload, Reply
from router.recording import Decision, DecisionKind, Outcome, Recorder
from router.resilience import Breakers, BreakerState, backoff_seconds
from schemas.graph import RouterType
from schemas.mapping import REQUEST, RESPONSE, MissingValue


class StepCaller(Protocol):
    """Sends one step's body to its URL within `seconds`; returns any answer, whatever its status.

    Raises StepUnreachable when there is no answer and StepTimeout when it comes too late.
    """

    async def __call__(
        self, step: Step, body: bytes, headers: Mapping[str, str], seconds: float
    ) -> Reply: ...


class ShadowJudge(Protocol):
    """Compares a shadow step's answer with the live route's (router.shadow); called in the
    shadow's background task, never on the request's path."""

    def compare(self, shadow: Step, live: Reply, answer: Reply) -> None: ...

    def shadow_failed(self, shadow: Step, error: RouterError) -> None: ...


@dataclass(frozen=True, slots=True)
class Clock:
    now: Callable[[], float] = time.monotonic
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep


SYSTEM_CLOCK = Clock()
log = logging.getLogger("router")
_RUNNERS: dict[RouterType, NodeRunner] = {
    RouterType.SEQUENCE: run_sequence,
    RouterType.SWITCH: run_switch,
    RouterType.ENSEMBLE: run_ensemble,
    RouterType.SPLITTER: run_splitter,
}


class Execution:
    """One request's run through the graph; implements `router.execution.NodeExecution`."""

    __slots__ = (
        "background",
        "breakers",
        "caller",
        "clock",
        "copy_headers",
        "deadline",
        "headers",
        "incoming_headers",
        "recorder",
        "request",
        "rng",
        "service_client_timeout",
        "shadow_judge",
    )

    def __init__(
        self,
        caller: StepCaller,
        request: Payload,
        headers: Mapping[str, str],
        rng: random.Random,
        *,
        deadline: float,
        service_client_timeout: float,
        clock: Clock = SYSTEM_CLOCK,
        breakers: Breakers | None = None,
        recorder: Recorder | None = None,
        incoming_headers: Mapping[str, str] | None = None,
        background: set[asyncio.Task[Any]] | None = None,
        copy_headers: bool = True,
        shadow_judge: ShadowJudge | None = None,
    ) -> None:
        self.caller = caller
        self.request = request
        self.headers = headers  # what every step call sends (propagated + Content-Type)
        self.rng = rng
        self.deadline = deadline  # absolute, on `clock.now()`
        self.service_client_timeout = service_client_timeout
        self.clock = clock
        self.breakers = breakers
        self.recorder = recorder
        self.incoming_headers = incoming_headers or {}  # for sticky routing
        self.background = background  # where shadow calls live; None: no shadows run
        # Whether a recorder may add headers to a step call (tracing's traceparent), so each
        # call needs its own copy; the app says no when none does, sparing a dict per step.
        self.copy_headers = copy_headers
        self.shadow_judge = shadow_judge  # compares shadows' answers with the live one

    # --- nodes ----------------------------------------------------------------------------

    async def run_node(self, node: Node, payload: Payload) -> Reply:
        recorder = self.recorder
        if recorder is None:
            return await _RUNNERS[node.kind](node, payload, self)
        token = recorder.node_started(node)
        try:
            reply = await _RUNNERS[node.kind](node, payload, self)
        except RouterError as error:
            recorder.node_finished(token, error.status, error.explanation)
            raise
        except asyncio.CancelledError:  # quorum/first/disconnect: recorders close what they opened
            recorder.node_finished(token, None, "cancelled")
            raise
        recorder.node_finished(token, reply.status, None)
        return reply

    def decide(
        self,
        kind: DecisionKind,
        node: Node,
        step: Step | None,
        outcome: Outcome,
        detail: str,
        point: int | None = None,
    ) -> None:
        if self.recorder is not None:
            key = step.key if step is not None else None
            self.recorder.decision(Decision(kind, node.name, key, outcome, detail, point))

    # --- steps ----------------------------------------------------------------------------

    async def run_step(
        self, step: Step, node_input: Payload, previous: Payload | None = None
    ) -> Reply:
        """Run `step` with the body its `data` asks for.

        `node_input` is what KServe calls `$request` (the node's input), `previous` is
        `$response` (the previous step's answer in a Sequence; the node's input elsewhere).
        """
        body = self.step_body(step, node_input, previous if previous is not None else node_input)
        if step.node is not None:
            return await self.run_node(step.node, body)
        return await self.call_service(step, body)

    def step_body(self, step: Step, request: Payload, response: Payload) -> Payload:
        mapping = step.data
        if mapping.whole == REQUEST:
            body = request
        elif mapping.whole == RESPONSE:
            body = response
        else:
            assert mapping.build is not None  # compile_data sets one of the two
            request_json = (
                self.parsed(request, f"the input of {step.label}")
                if REQUEST in mapping.uses
                else None
            )
            response_json = (
                self.parsed(response, f"the response {step.label} reads")
                if RESPONSE in mapping.uses
                else None
            )
            try:
                body = Payload.from_json(mapping.build(request_json, response_json))
            except MissingValue as missing:
                error = (
                    BadRequest
                    if missing.source == REQUEST and request is self.request
                    else InvalidStepResponse
                )
                raise error(f"{step.label}: data {missing}") from None
            except InvalidJSON as too_deep:
                error = BadRequest if request is self.request else InvalidStepResponse
                raise error(f"{step.label}: data: {too_deep}") from None
        if step.map_predictions:
            body = map_predictions_to_instances(step, body, body is self.request)
        elif step.map_outputs:
            body = map_outputs_to_inputs(step, body, body is self.request)
        return body

    def parsed(self, payload: Payload, what: str) -> Any:
        """`payload.json()`, with the error a client or an operator can act on."""
        try:
            return payload.json()
        except InvalidJSON as error:
            cls: type[RouterError] = BadRequest if payload is self.request else InvalidStepResponse
            raise cls(f"{what} is not valid JSON: {error}") from None

    async def call_service(self, step: Step, body: Payload) -> Reply:
        """One step call with its circuit breaker, retries and the request's deadline."""
        recorder = self.recorder
        attempts = [0]  # counted by the retry loop, read by the recorder
        if recorder is None:
            return await self._call(step, body.raw, self.headers, attempts)
        headers: MutableMapping[str, str] = (
            dict(self.headers)
            if self.copy_headers
            else cast("MutableMapping[str, str]", self.headers)  # no recorder writes to it
        )
        token = recorder.step_started(step, headers)
        try:
            reply = await self._call(step, body.raw, headers, attempts)
        except RouterError as error:
            recorder.step_finished(token, error.status, error.explanation, attempts[0])
            raise
        except asyncio.CancelledError:
            recorder.step_finished(token, None, "cancelled", attempts[0])
            raise
        recorder.step_finished(token, reply.status, None, attempts[0])
        return reply

    def _call(
        self, step: Step, raw: bytes, headers: Mapping[str, str], attempts: list[int]
    ) -> Awaitable[Reply]:
        """The step call, with retries and its breaker when it has them.

        Without either (the usual step) there is one attempt and nothing to settle after it:
        the caller's own coroutine is handed back, sparing a coroutine that would only await it
        (every resumption of the call walks the chain of coroutines awaiting it).
        """
        if step.retry is not None or (step.breaker is not None and self.breakers is not None):
            return self._call_with_retries(step, raw, headers, attempts)
        remaining = self.deadline - self.clock.now()
        if remaining <= 0:
            raise self._too_late(step)
        attempts[0] += 1
        timeout = min(step.timeout or self.service_client_timeout, remaining)
        return self.caller(step, raw, headers, timeout)

    @staticmethod
    def _too_late(step: Step) -> GraphTimeout:
        return GraphTimeout(
            f"{step.label}: the request's deadline passed before the call",
            node=step.owner,
            step=step.key,
            url=step.url,
        )

    async def _call_with_retries(
        self, step: Step, raw: bytes, headers: Mapping[str, str], attempts: list[int]
    ) -> Reply:
        policy = step.retry
        breaker = None
        if step.breaker is not None and self.breakers is not None and step.url is not None:
            breaker = self.breakers.get(step.url, step.breaker)
        while True:
            now = self.clock.now()
            remaining = self.deadline - now
            if remaining <= 0:
                raise self._too_late(step)
            probe = False
            if breaker is not None:
                probe = breaker.state(now) is BreakerState.HALF_OPEN
                if not breaker.allow(now):
                    raise CircuitOpen(
                        f"{step.label}: circuit open for {step.url} after {breaker.failures} "
                        f"consecutive failures; next probe in {breaker.retry_after(now):.1f}s",
                        retry_after=breaker.retry_after(now),
                        node=step.owner,
                        step=step.key,
                        url=step.url,
                    )
            attempts[0] += 1
            timeout = min(step.timeout or self.service_client_timeout, remaining)
            error: RouterError | None = None
            reply: Reply | None = None
            succeeded: bool | None = None  # stays None when the call is cancelled
            try:
                reply = await self.caller(step, raw, headers, timeout)
                succeeded = reply.status < 500
            except (StepUnreachable, StepTimeout) as failure:
                error = failure
                succeeded = False
            except RouterError:  # an answer the router cannot take (too large): the target's fault
                succeeded = False
                raise
            finally:
                # Every way out of the call settles the breaker, so a probe never keeps the
                # half-open slot: a cancelled one gives it back with no verdict.
                if breaker is not None:
                    if succeeded is not None:
                        breaker.record(succeeded, self.clock.now())
                    elif probe:
                        breaker.release()
            retryable = error is not None and not isinstance(error, StepTimeout)
            if reply is not None and policy is not None:
                retryable = reply.status in policy.retryable_status_codes
            if policy is None or not retryable or attempts[0] > policy.max_retries:
                if error is not None:
                    raise error
                assert reply is not None
                return reply
            delay = backoff_seconds(policy, attempts[0], self.rng)
            if self.clock.now() + delay >= self.deadline:
                # No time left for another try: answer with what we have.
                if error is not None:
                    raise error
                assert reply is not None
                return reply
            if self.recorder is not None:
                what = f"retry {attempts[0]} in {delay * 1000:.0f} ms"
                self.recorder.decision(
                    Decision(DecisionKind.RETRY, step.owner, step.key, Outcome.SCHEDULED, what)
                )
            await self.clock.sleep(delay)

    def spawn_shadow(
        self, step: Step, node_input: Payload, live: asyncio.Future[Reply | None] | None = None
    ) -> None:
        """Send a copy to a shadow step; its answer and failure never reach the response.

        Even its body is built in the background task: a `data` path that matches nothing on
        the shadow must not turn the live answer into an error. With a `shadow_judge`, the
        shadow's answer is compared with `live`'s, in that task too.
        """
        if self.background is None:
            return
        task = asyncio.ensure_future(self._shadow(step, node_input, live))
        self.background.add(task)
        task.add_done_callback(self.background.discard)

    async def _shadow(
        self, step: Step, node_input: Payload, live: asyncio.Future[Reply | None] | None
    ) -> None:
        judge = self.shadow_judge if live is not None else None
        try:
            reply = await self.run_step(step, node_input)
        except RouterError as error:
            if judge is not None:
                judge.shadow_failed(step, error)
            # Shadow traffic must never affect the answer; its failures are logged (and its step
            # calls counted by the metrics recorder like any other).
            log.warning(
                "shadow %s failed: %s",
                step.label,
                error.explanation,
                extra={"node": step.owner, "step": step.key, "status": error.status},
            )
            return
        if judge is not None and live is not None:
            # The live route is bounded by the request's deadline, so this wait is too.
            live_reply = await live
            if live_reply is not None:
                judge.compare(step, live_reply, reply)


def map_predictions_to_instances(step: Step, payload: Payload, from_request: bool) -> Payload:
    """The body with its `predictions` moved to `instances` (v1 chaining between models)."""
    body = _json_for_mapping(step, payload, from_request, "mapPredictionsToInstances")
    if not isinstance(body, dict) or "predictions" not in body:
        cls: type[RouterError] = BadRequest if from_request else InvalidStepResponse
        raise cls(f"{step.label}: mapPredictionsToInstances needs a body with 'predictions'")
    mapped = {k: v for k, v in body.items() if k != "predictions"}
    mapped["instances"] = body["predictions"]
    return Payload.from_json(mapped)


def map_outputs_to_inputs(step: Step, payload: Payload, from_request: bool) -> Payload:
    """v2 chaining: the previous answer's `outputs` become `inputs`, renamed as configured."""
    body = _json_for_mapping(step, payload, from_request, "mapOutputsToInputs")
    outputs = body.get("outputs") if isinstance(body, dict) else None
    if not isinstance(outputs, list):
        cls: type[RouterError] = BadRequest if from_request else InvalidStepResponse
        raise cls(f"{step.label}: mapOutputsToInputs needs a v2 body with 'outputs'")
    renames = step.map_outputs if isinstance(step.map_outputs, dict) else None
    inputs = []
    for tensor in outputs:
        if not isinstance(tensor, dict):
            continue
        name = tensor.get("name")
        if renames is not None:
            if name not in renames:
                continue
            name = renames[name]
        inputs.append({k: v for k, v in tensor.items() if k != "parameters"} | {"name": name})
    if renames is not None and len(inputs) < len(renames):
        found = {t.get("name") for t in outputs if isinstance(t, dict)}
        missing = sorted(set(renames) - found)
        raise InvalidStepResponse(f"{step.label}: outputs {missing} are not in the previous answer")
    return Payload.from_json({"inputs": inputs})


def _json_for_mapping(step: Step, payload: Payload, from_request: bool, what: str) -> Any:
    try:
        return payload.json()
    except InvalidJSON as error:
        cls: type[RouterError] = BadRequest if from_request else InvalidStepResponse
        raise cls(f"{step.label}: {what} needs a JSON body: {error}") from None
