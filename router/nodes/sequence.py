"""Sequence: steps in order, each fed the request or the previous step's response.

KServe's rules: `data: $response` sends the previous response (the request for the first step);
a `condition` is evaluated on the previous response and, when it does not hold, the sequence
stops and answers that response with 200; a Hard step that fails stops the sequence with its
status and body; a Soft one does not. The sequence answers with its last step's reply.

One deliberate difference: KServe answers 500 to any request when the *first* step has a
condition (there is no previous response to read). We evaluate it on the request instead and,
when it does not hold, answer the request unchanged, so such graphs work rather than always fail.
"""

from __future__ import annotations

from router.execution import NodeExecution
from router.graph import Node
from router.payload import Payload, Reply
from router.recording import DecisionKind, Outcome


async def run_sequence(node: Node, request: Payload, execution: NodeExecution) -> Reply:
    previous: Reply | None = None
    for step in node.steps:
        last = previous.payload if previous is not None else request
        if step.condition is not None:
            document = execution.parsed(last, f"the input to the condition of {step.label}")
            if not step.condition.holds(document):
                execution.decide(
                    DecisionKind.CONDITION,
                    node,
                    step,
                    Outcome.FAILED,
                    f"condition {step.condition.source!r} failed: stop",
                )
                # KServe answers 200 here even when the previous (Soft) step had failed.
                if previous is None:
                    return Reply(200, last)
                return Reply(200, last, previous.json_content, previous.content_type)
            execution.decide(
                DecisionKind.CONDITION,
                node,
                step,
                Outcome.HELD,
                f"condition {step.condition.source!r} held",
            )
        reply = await execution.run_step(step, request, last)
        if step.hard and not reply.ok:
            execution.decide(
                DecisionKind.HARD_FAILURE,
                node,
                step,
                Outcome.DECIDES,
                f"Hard step answered {reply.status}: stop",
            )
            return reply
        previous = reply
    assert previous is not None  # validation guarantees every node has at least one step
    return previous
