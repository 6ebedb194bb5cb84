"""Ensemble: all steps run concurrently on the same input; their JSON answers are merged.

KServe's rules: the answer is an object keyed by step name (index when unnamed) holding each
step's parsed response; a Hard step that answered non-2xx decides the node's status and body
instead (the first such step in step order); a step that could not be called, or that did not
answer a JSON object, fails the node. Remaining calls are cancelled as soon as the outcome is
known, so a failed step never leaves siblings running for nobody.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

import orjson

from router.errors import InvalidStepResponse
from router.graph import Node
from router.payload import InvalidJSON, Payload, Reply

if TYPE_CHECKING:
    from router.executor import Execution


async def run_ensemble(node: Node, request: Payload, execution: Execution) -> Reply:
    if len(node.steps) == 1:
        replies = [await execution.run_step(node.steps[0], request)]
    else:
        replies = await _run_all(node, request, execution)
    merged: dict[str, Any] = {}
    for step, reply in zip(node.steps, replies, strict=True):
        if step.hard and not reply.ok:
            return reply
        try:
            body = reply.payload.json()
        except InvalidJSON as error:
            raise InvalidStepResponse(f"{step.label} did not answer JSON: {error}") from None
        if body is not None and not isinstance(body, dict):
            raise InvalidStepResponse(
                f"{step.label} answered a JSON {type(body).__name__}, an Ensemble merges objects"
            )
        merged[step.key] = body
    return Reply(200, Payload(orjson.dumps(merged), merged), json_content=True)


async def _run_all(node: Node, request: Payload, execution: Execution) -> list[Reply]:
    tasks = [asyncio.ensure_future(execution.run_step(step, request)) for step in node.steps]
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
        for task in tasks:
            # The first failure in step order wins, matching KServe's in-order collection.
            if task.done() and not task.cancelled() and task.exception() is not None:
                raise task.exception()  # type: ignore[misc]
        return [task.result() for task in tasks]
    finally:
        pending = [task for task in tasks if not task.done()]
        for task in pending:
            task.cancel()
        # Awaiting collects every outcome, so no task is left running or with an unread error.
        await asyncio.gather(*tasks, return_exceptions=True)
