"""Splitter: one step drawn with probability weight/100; optionally sticky, optionally shadowed.

Weights are validated to sum to 100 and compiled to running sums, so a draw is one integer and
a bisection. (KServe draws from [0, 100], one value too many, and fails on 100.)

InferGraph extensions: with `stickyHeader`, the header's value is hashed to the point instead
of drawing it, so one user always reaches the same step while the shares over many users stay
the weights; requests without the header are drawn at random. Shadow steps get a copy of every
request in the background; their answers and failures never touch the response.
"""

from __future__ import annotations

import asyncio
import hashlib
from bisect import bisect_right

from router.execution import NodeExecution
from router.graph import Node
from router.payload import Payload, Reply
from router.recording import DecisionKind, Outcome


def pick_route(cumulative_weights: tuple[int, ...], point: int) -> int:
    """Index of the step that owns `point` in [0, total): the first running sum above it."""
    return bisect_right(cumulative_weights, point)


def sticky_point(key: str, total: int) -> int:
    """A stable point in [0, total) for `key`: the same on every router, process and restart."""
    digest = hashlib.blake2b(key.encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") % total


async def run_splitter(node: Node, request: Payload, execution: NodeExecution) -> Reply:
    total = node.cumulative_weights[-1]
    key = execution.incoming_headers.get(node.sticky_header) if node.sticky_header else None
    point = sticky_point(key, total) if key is not None else execution.rng.randrange(total)
    step = node.routes[pick_route(node.cumulative_weights, point)]
    how = Outcome.STICKY if key is not None else Outcome.DRAWN
    execution.decide(
        DecisionKind.ROUTE,
        node,
        step,
        how,
        f"{'sticky' if key is not None else 'draw'} {point} of {total}: route",
        point,
    )
    if not node.shadows:
        return await execution.run_step(step, request)
    # The shadows' comparison (router.shadow) waits for the live reply in the background.
    live: asyncio.Future[Reply | None] = asyncio.get_running_loop().create_future()
    for shadow in node.shadows:
        execution.decide(DecisionKind.SHADOW, node, shadow, Outcome.COPIED, "shadow copy")
        execution.spawn_shadow(shadow, request, live)
    try:
        reply = await execution.run_step(step, request)
    except BaseException:
        live.set_result(None)
        raise
    live.set_result(reply)
    return reply
