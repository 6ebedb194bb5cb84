"""Ensemble: all steps run concurrently on the same input; their answers are combined.

KServe's rules (aggregation `merge`, the default): the answer is an object keyed by step name
(index when unnamed) holding each step's parsed response; a Hard step that answered non-2xx
decides the node's status and body instead (the first such step in step order); a step that
could not be called, or that did not answer a JSON object, fails the node.

InferGraph's extensions, each opt-in per node:
- `aggregation`: `majority` (vote per instance), `mean`, `weighted` (by step weight) over v1
  predictions or v2 output tensors (see router.aggregation), or `first` (the first successful
  answer, the others cancelled). Steps that fail Softly are left out; `contributors` in the
  answer lists the steps whose answers were used.
- `partialResults`: `{"results": {...}, "errors": {"<step>": {"status", "reason"}}}` instead of
  merging an error body as if it were a prediction.
- `quorum`: answer once `k` steps succeeded, or (`majority`) once one answer has more than half
  of all votes for every instance; the remaining calls are cancelled.
Outside KServe's mode, a failing Hard step still decides the answer, in the order answers come.
Remaining calls are always cancelled once the outcome is known: nothing runs on for nobody.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from router import aggregation
from router.errors import (
    AnswersNotAggregatable,
    InvalidStepResponse,
    QuorumUnreachable,
    RouterError,
)
from router.execution import NodeExecution
from router.graph import Node, Step
from router.payload import InvalidJSON, Payload, Reply
from router.recording import DecisionKind, Outcome
from schemas.graph import Aggregation


async def run_ensemble(node: Node, request: Payload, execution: NodeExecution) -> Reply:
    if node.aggregation is Aggregation.MERGE and not node.partial_results and node.quorum is None:
        return await _kserve_merge(node, request, execution)
    return await _extended(node, request, execution)


# --- KServe's merge -----------------------------------------------------------------------


async def _kserve_merge(node: Node, request: Payload, execution: NodeExecution) -> Reply:
    if len(node.steps) == 1:
        replies = [await execution.run_step(node.steps[0], request)]
    else:
        replies = await _run_all(node, request, execution)
    merged: dict[str, Any] = {}
    for step, reply in zip(node.steps, replies, strict=True):
        if step.hard and not reply.ok:
            execution.decide(
                DecisionKind.HARD_FAILURE,
                node,
                step,
                Outcome.DECIDES,
                f"Hard step answered {reply.status}: it decides",
            )
            return reply
        merged[step.key] = _object_body(step, reply)
    return _json_reply(merged)


async def _run_all(node: Node, request: Payload, execution: NodeExecution) -> list[Reply]:
    tasks = [asyncio.ensure_future(execution.run_step(step, request)) for step in node.steps]
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
        for task in tasks:
            # The first failure in step order wins, matching KServe's in-order collection.
            if task.done() and not task.cancelled() and task.exception() is not None:
                raise task.exception()  # type: ignore[misc]
        return [task.result() for task in tasks]
    finally:
        await _cancel(tasks)


async def _cancel(tasks: Sequence[asyncio.Future[Reply]]) -> None:
    for task in tasks:
        if not task.done():
            task.cancel()
    # Awaiting collects every outcome, so no task is left running or with an unread error.
    await asyncio.gather(*tasks, return_exceptions=True)


# --- extensions -----------------------------------------------------------------------------


@dataclass(slots=True)
class _Outcome:
    step: Step
    reply: Reply | None = None
    error: RouterError | None = None

    @property
    def ok(self) -> bool:
        return self.reply is not None and self.reply.ok


async def _extended(node: Node, request: Payload, execution: NodeExecution) -> Reply:
    outcomes = await _collect(node, request, execution)
    for outcome in outcomes:
        if outcome.step.hard and not outcome.ok:
            execution.decide(
                DecisionKind.HARD_FAILURE,
                node,
                outcome.step,
                Outcome.DECIDES,
                "Hard step failed: it decides",
            )
            if outcome.error is not None:
                raise outcome.error
            assert outcome.reply is not None
            return outcome.reply
    successes = [o for o in outcomes if o.ok]
    needed = _quorum_size(node)
    if len(successes) < needed:
        raise QuorumUnreachable(_quorum_failed(node, outcomes, needed), node=node.name)
    if node.aggregation is Aggregation.FIRST:
        if not successes:
            raise InvalidStepResponse(_none_succeeded(node, outcomes), node=node.name)
        assert successes[0].reply is not None
        return successes[0].reply
    if node.partial_results:
        return _partial(node, outcomes)
    if not successes:
        raise InvalidStepResponse(_none_succeeded(node, outcomes), node=node.name)
    if node.aggregation is Aggregation.MERGE:  # with a quorum: what arrived in time
        return _json_reply({o.step.key: _object_body(o.step, _reply(o)) for o in successes})
    answers = [
        aggregation.Answer(o.step.key, _object_body(o.step, _reply(o)), float(o.step.weight))
        for o in successes
    ]
    try:
        if node.aggregation is Aggregation.MAJORITY:
            combined = aggregation.majority(answers)
        else:
            combined = aggregation.mean(answers, weighted=node.aggregation is Aggregation.WEIGHTED)
    except aggregation.NotAggregatable as error:
        raise AnswersNotAggregatable(
            f"Ensemble node '{node.name}' cannot aggregate: {error}",
            node=node.name,
            step=error.step,
        ) from None
    combined["contributors"] = [a.step for a in answers]
    return _json_reply(combined)


async def _collect(node: Node, request: Payload, execution: NodeExecution) -> list[_Outcome]:
    """Run every step; stop early when the node's rule says the outcome is known."""
    tasks = {asyncio.ensure_future(execution.run_step(s, request)): s for s in node.steps}
    finished: dict[Step, _Outcome] = {}
    try:
        pending = set(tasks)
        while pending:
            done, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
            for task in done:
                step = tasks[task]
                error = task.exception()
                if error is not None and not isinstance(error, RouterError):
                    raise error
                outcome = (
                    _Outcome(step, error=error)
                    if isinstance(error, RouterError)
                    else _Outcome(step, reply=task.result())
                )
                finished[step] = outcome
            if pending and _settled(node, list(finished.values())):
                execution.decide(
                    DecisionKind.EARLY_ANSWER,
                    node,
                    None,
                    Outcome.SETTLED,
                    f"settled with {len(finished)} of {len(tasks)} steps",
                )
                break
            if pending and _quorum_impossible(node, list(finished.values()), len(pending)):
                # However the rest answer, too few can succeed: waiting only delays the error.
                execution.decide(
                    DecisionKind.EARLY_ANSWER,
                    node,
                    None,
                    Outcome.QUORUM_IMPOSSIBLE,
                    f"quorum impossible after {len(finished)} steps",
                )
                break
    finally:
        await _cancel(list(tasks))
    return [finished[s] for s in node.steps if s in finished]


def _settled(node: Node, outcomes: list[_Outcome]) -> bool:
    if any(o.step.hard and not o.ok for o in outcomes):
        return True
    successes = [o for o in outcomes if o.ok]
    if node.aggregation is Aggregation.FIRST:
        return bool(successes)
    if isinstance(node.quorum, int):
        return len(successes) >= node.quorum
    if node.quorum == "majority" and successes:
        answers = [aggregation.Answer(o.step.key, _parsed_or_none(o)) for o in successes]
        try:
            return aggregation.leading_votes(answers) * 2 > len(node.steps)
        except aggregation.NotAggregatable:
            return False  # decided (and reported) once every answer is in
    return False


def _quorum_size(node: Node) -> int:
    """How many steps must succeed: the node's quorum, or more than half for `majority`."""
    if isinstance(node.quorum, int):
        return node.quorum
    if node.quorum == "majority":
        return len(node.steps) // 2 + 1
    return 0


def _quorum_impossible(node: Node, outcomes: list[_Outcome], pending: int) -> bool:
    successes = sum(1 for o in outcomes if o.ok)
    return successes + pending < _quorum_size(node)


def _quorum_failed(node: Node, outcomes: list[_Outcome], needed: int) -> str:
    failed = ", ".join(
        f"'{o.step.key}' ({o.error.explanation if o.error else _reply(o).status})"
        for o in outcomes
        if not o.ok
    )
    return (
        f"Ensemble node '{node.name}' cannot reach its quorum of {needed} successful steps: "
        f"{failed} failed"
    )


def _partial(node: Node, outcomes: list[_Outcome]) -> Reply:
    results: dict[str, Any] = {}
    errors: dict[str, Any] = {}
    for outcome in outcomes:
        if outcome.ok:
            try:
                results[outcome.step.key] = _object_body(outcome.step, _reply(outcome))
            except InvalidStepResponse as error:  # a 2xx that is not a JSON object
                errors[outcome.step.key] = {"status": error.status, "reason": error.explanation}
        elif outcome.error is not None:
            errors[outcome.step.key] = {
                "status": outcome.error.status,
                "reason": outcome.error.explanation,
            }
        else:
            reply = _reply(outcome)
            errors[outcome.step.key] = {"status": reply.status, "reason": _reason(reply)}
    status = 200 if results else 502
    return _json_reply({"results": results, "errors": errors}, status)


def _none_succeeded(node: Node, outcomes: list[_Outcome]) -> str:
    parts = [
        f"'{o.step.key}': {o.error.explanation if o.error else _reply(o).status}"
        for o in outcomes
        if not o.ok
    ]
    return f"no step of Ensemble node '{node.name}' answered successfully ({'; '.join(parts)})"


# --- bodies ---------------------------------------------------------------------------------


def _reply(outcome: _Outcome) -> Reply:
    assert outcome.reply is not None  # callers check ok / error first
    return outcome.reply


def _object_body(step: Step, reply: Reply) -> Any:
    try:
        body = reply.payload.json()
    except InvalidJSON as error:
        raise InvalidStepResponse(
            f"{step.label} did not answer JSON: {error}", node=step.owner, step=step.key
        ) from None
    if body is not None and not isinstance(body, dict):
        raise InvalidStepResponse(
            f"{step.label} answered a JSON {type(body).__name__}, an Ensemble merges objects",
            node=step.owner,
            step=step.key,
        )
    return body


def _parsed_or_none(outcome: _Outcome) -> Any:
    try:
        return _reply(outcome).payload.json()
    except InvalidJSON:
        return None


def _reason(reply: Reply) -> Any:
    try:
        return reply.payload.json()
    except InvalidJSON:
        return reply.payload.raw.decode(errors="replace")


def _json_reply(body: dict[str, Any], status: int = 200) -> Reply:
    try:
        return Reply(status, Payload.from_json(body), json_content=True)
    except InvalidJSON as error:
        raise InvalidStepResponse(f"the step answers cannot be merged: {error}") from None
