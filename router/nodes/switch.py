"""Switch: the first step whose condition holds on the request runs; no match is a 404.

As in KServe, a step without a condition never matches (GJSON's empty path yields nothing),
and the chosen step's reply is the node's reply whatever its status.
"""

from __future__ import annotations

from router.errors import NO_ROUTE_CAUSE, NoRouteMatched
from router.execution import NodeExecution
from router.graph import Node
from router.payload import Payload, Reply
from router.recording import DecisionKind, Outcome


async def run_switch(node: Node, request: Payload, execution: NodeExecution) -> Reply:
    document = execution.parsed(request, f"the input to Switch node '{node.name}'")
    for step in node.steps:
        if step.condition is None:
            continue
        if step.condition.holds(document):
            execution.decide(
                DecisionKind.CONDITION,
                node,
                step,
                Outcome.HELD,
                f"condition {step.condition.source!r} held: route",
            )
            return await execution.run_step(step, request)
        execution.decide(
            DecisionKind.CONDITION,
            node,
            step,
            Outcome.FAILED,
            f"condition {step.condition.source!r} failed",
        )
    raise NoRouteMatched(
        NO_ROUTE_CAUSE,
        node=node.name,
        detail=f"no condition of Switch node '{node.name}' holds on its input",
    )
