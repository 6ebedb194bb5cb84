"""Runs a compiled graph for one request: dispatches nodes, runs steps, applies step data rules.

The seams are injected so the semantics can be tested without a network: a `StepCaller` (the
only thing that does I/O; `router.calls` is the HTTP one) and a `random.Random` for Splitters.
One `Execution` exists per request; it holds what every step call of that request shares.
"""

from __future__ import annotations

import random
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, Protocol

from router.errors import BadRequest, InvalidStepResponse, RouterError
from router.graph import Node, Step
from router.nodes.ensemble import run_ensemble
from router.nodes.sequence import run_sequence
from router.nodes.splitter import run_splitter
from router.nodes.switch import run_switch
from router.payload import InvalidJSON, Payload, Reply
from schemas.graph import RouterType


class StepCaller(Protocol):
    """Sends one step's body to its URL and returns the answer, whatever its status.

    Raises a RouterError (StepUnreachable, StepTimeout) when there is no answer.
    """

    async def __call__(self, step: Step, body: bytes, headers: Mapping[str, str]) -> Reply: ...


NodeRunner = Callable[[Node, Payload, "Execution"], Awaitable[Reply]]

_RUNNERS: dict[RouterType, NodeRunner] = {
    RouterType.SEQUENCE: run_sequence,
    RouterType.SWITCH: run_switch,
    RouterType.ENSEMBLE: run_ensemble,
    RouterType.SPLITTER: run_splitter,
}


class Execution:
    """One request's run through the graph."""

    __slots__ = ("caller", "headers", "request", "rng")

    def __init__(
        self,
        caller: StepCaller,
        request: Payload,
        headers: Mapping[str, str],
        rng: random.Random,
    ) -> None:
        self.caller = caller
        self.request = request
        self.headers = headers
        self.rng = rng

    def run_node(self, node: Node, payload: Payload) -> Awaitable[Reply]:
        return _RUNNERS[node.kind](node, payload, self)

    async def run_step(self, step: Step, payload: Payload) -> Reply:
        if step.map_predictions:
            payload = map_predictions_to_instances(step, payload, payload is self.request)
        if step.node is not None:
            return await self.run_node(step.node, payload)
        return await self.caller(step, payload.raw, self.headers)

    def parsed(self, payload: Payload, what: str) -> Any:
        """`payload.json()`, with the error a client or an operator can act on."""
        try:
            return payload.json()
        except InvalidJSON as error:
            cls: type[RouterError] = BadRequest if payload is self.request else InvalidStepResponse
            raise cls(f"{what} is not valid JSON: {error}") from None


def map_predictions_to_instances(step: Step, payload: Payload, from_request: bool) -> Payload:
    """The body with its `predictions` moved to `instances` (v1 chaining between models)."""
    try:
        body = payload.json()
    except InvalidJSON as error:
        cls: type[RouterError] = BadRequest if from_request else InvalidStepResponse
        raise cls(f"{step.label}: mapPredictionsToInstances needs a JSON body: {error}") from None
    if not isinstance(body, dict) or "predictions" not in body:
        cls = BadRequest if from_request else InvalidStepResponse
        raise cls(f"{step.label}: mapPredictionsToInstances needs a body with 'predictions'")
    mapped = {k: v for k, v in body.items() if k != "predictions"}
    mapped["instances"] = body["predictions"]
    return Payload.from_json(mapped)
