"""Splitter: one step drawn at random with probability weight/100.

Weights are validated to sum to 100 and compiled to running sums, so a draw is one random
integer and a short scan. (KServe draws from [0, 100], one value too many, and fails on 100.)
"""

from __future__ import annotations

from bisect import bisect_right
from typing import TYPE_CHECKING

from router.graph import Node
from router.payload import Payload, Reply

if TYPE_CHECKING:
    from router.executor import Execution


def pick_route(cumulative_weights: tuple[int, ...], point: int) -> int:
    """Index of the step that owns `point` in [0, total): the first running sum above it."""
    return bisect_right(cumulative_weights, point)


async def run_splitter(node: Node, request: Payload, execution: Execution) -> Reply:
    point = execution.rng.randrange(node.cumulative_weights[-1])
    step = node.steps[pick_route(node.cumulative_weights, point)]
    return await execution.run_step(step, request)
