"""Switch: the first step whose condition holds on the request runs; no match is a 404.

As in KServe, a step without a condition never matches (GJSON's empty path yields nothing),
and the chosen step's reply is the node's reply whatever its status.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from router.errors import NoRouteMatched
from router.graph import Node
from router.payload import Payload, Reply

if TYPE_CHECKING:
    from router.executor import Execution


async def run_switch(node: Node, request: Payload, execution: Execution) -> Reply:
    document = execution.parsed(request, f"the input to Switch node '{node.name}'")
    for step in node.steps:
        if step.condition is None:
            continue
        if step.condition.holds(document):
            execution.note(node, step, f"condition {step.condition.source!r} held: route")
            return await execution.run_step(step, request)
        execution.note(node, step, f"condition {step.condition.source!r} failed")
    raise NoRouteMatched(
        f"None of the routes matched with the switch condition (node '{node.name}')"
    )
