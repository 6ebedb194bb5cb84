"""What a node runner may ask of the request it runs in: the seam between nodes and executor.

`router.nodes.*` implement one node type each against this Protocol; `router.executor`
implements it (`Execution`) and maps each node type to its runner. So imports point one way,
executor -> nodes -> execution, and a node never reaches into how steps are called, retried or
recorded (an import-linter contract keeps `router.nodes` from importing `router.executor`).
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, Protocol

from router.graph import Node, Step
from router.payload import Payload, Reply
from router.recording import DecisionKind, Outcome


class NodeExecution(Protocol):
    """One request's execution, as the node runners see it."""

    @property
    def rng(self) -> random.Random:
        """The request's random source (Splitter draws); seeded in tests."""
        ...

    @property
    def incoming_headers(self) -> Mapping[str, str]:
        """The client's request headers (sticky routing reads one)."""
        ...

    def parsed(self, payload: Payload, what: str) -> Any:
        """`payload.json()`, or the error a client (400) or an operator (502) can act on."""
        ...

    async def run_step(
        self, step: Step, node_input: Payload, previous: Payload | None = None
    ) -> Reply:
        """Run `step` (a service call or a nested node) with the body its `data` asks for."""
        ...

    def spawn_shadow(
        self, step: Step, node_input: Payload, live: asyncio.Future[Reply | None] | None = None
    ) -> None:
        """Send `step` a copy in the background; nothing about it reaches the answer. `live`
        gets the live route's reply (None when it failed), for the shadow comparison."""
        ...

    def decide(
        self,
        kind: DecisionKind,
        node: Node,
        step: Step | None,
        outcome: Outcome,
        detail: str,
        point: int | None = None,
    ) -> None:
        """Record a decision (for traces, explain, `check`); free when nobody records."""
        ...


NodeRunner = Callable[[Node, Payload, NodeExecution], Awaitable[Reply]]
