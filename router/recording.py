"""What happened in one request, for those who ask: the trace header, explain, OpenTelemetry.

The executor calls a `Recorder` only when one is attached to the request (`Execution.recorder`
is None otherwise), so requests nobody watches pay one attribute check per node and step.
`Trace` is the recorder behind `X-InferGraph-Trace` and explain: a flat list of events that
serialises to JSON. Several recorders can watch one request through `Recorders`.
"""

from __future__ import annotations

import time
from collections.abc import MutableMapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Protocol

from router.graph import Node, Step


class DecisionKind(StrEnum):
    """What was decided."""

    CONDITION = "condition"  # a step's condition was evaluated (Sequence, Switch)
    ROUTE = "route"  # a Splitter picked its route
    SHADOW = "shadow"  # a Splitter sent a copy to a shadow step
    RETRY = "retry"  # a failed step call will be tried again
    HARD_FAILURE = "hard_failure"  # a Hard step failed, so its answer is the node's
    EARLY_ANSWER = "early_answer"  # an Ensemble answers before every step did


class Outcome(StrEnum):
    """How it was decided; each kind has its own outcomes (listed by kind)."""

    HELD = "held"  # condition: the step runs (Sequence), or is the route (Switch)
    FAILED = "failed"  # condition: the Sequence stops; the Switch tries the next step
    DRAWN = "drawn"  # route: by a random draw
    STICKY = "sticky"  # route: by the hash of the sticky header's value
    COPIED = "copied"  # shadow
    SCHEDULED = "scheduled"  # retry
    DECIDES = "decides"  # hard_failure: the node answers with that step's failure
    SETTLED = "settled"  # early_answer: the node's rule (first, quorum) is met
    QUORUM_IMPOSSIBLE = "quorum_impossible"  # early_answer: too few steps can still succeed


@dataclass(frozen=True, slots=True)
class Decision:
    """One decision of the executor, as data: consumers read `kind` and `outcome`, and show
    `detail` (a sentence for people) without parsing it."""

    kind: DecisionKind
    node: str
    step: str | None  # the step's key, when the decision is about one step
    outcome: Outcome
    detail: str
    # route: the point in [0, total) the draw or the sticky hash gave (replay reuses it)
    point: int | None = None

    def as_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"decision": self.kind.value, "node": self.node}
        if self.step is not None:
            out["step"] = self.step
        out["outcome"] = self.outcome.value
        out["detail"] = self.detail
        if self.point is not None:
            out["point"] = self.point
        return out


class Recorder(Protocol):
    def node_started(self, node: Node) -> object: ...

    def node_finished(self, token: object, status: int | None, error: str | None) -> None: ...

    def step_started(self, step: Step, headers: MutableMapping[str, str]) -> object:
        """May add headers to the outbound call (e.g. W3C traceparent)."""
        ...

    def step_finished(
        self, token: object, status: int | None, error: str | None, attempts: int
    ) -> None: ...

    def decision(self, decision: Decision) -> None:
        """A routing decision: a condition's outcome, a splitter draw, a retry, a stop."""
        ...


@dataclass(slots=True)
class Event:
    kind: str  # "node", "step" or "decision"
    node: str
    step: str | None
    started: float
    ended: float | None = None
    status: int | None = None
    error: str | None = None
    attempts: int | None = None
    detail: str | None = None
    decision: str | None = None  # decisions: the DecisionKind's value
    outcome: str | None = None  # decisions: the Outcome's value

    def as_json(self, origin: float) -> dict[str, Any]:
        out: dict[str, Any] = {"kind": self.kind, "node": self.node}
        for name in ("step", "status", "error", "attempts", "decision", "outcome", "detail"):
            value = getattr(self, name)
            if value is not None:
                out[name] = value
        out["startMs"] = round((self.started - origin) * 1000, 3)
        if self.ended is not None:
            out["durationMs"] = round((self.ended - self.started) * 1000, 3)
        return out


@dataclass(slots=True)
class Trace:
    """Records every node, step call and decision of one request, in the order they happen."""

    events: list[Event] = field(default_factory=list)
    decisions: list[Decision] = field(default_factory=list)  # the values, in order
    origin: float = field(default_factory=time.perf_counter)

    def node_started(self, node: Node) -> object:
        event = Event("node", node.name, None, time.perf_counter())
        self.events.append(event)
        return event

    def node_finished(self, token: object, status: int | None, error: str | None) -> None:
        assert isinstance(token, Event)
        token.ended, token.status, token.error = time.perf_counter(), status, error

    def step_started(self, step: Step, headers: MutableMapping[str, str]) -> object:
        event = Event("step", step.owner, step.key, time.perf_counter())
        event.detail = step.url
        self.events.append(event)
        return event

    def step_finished(
        self, token: object, status: int | None, error: str | None, attempts: int
    ) -> None:
        assert isinstance(token, Event)
        token.ended, token.status, token.error = time.perf_counter(), status, error
        token.attempts = attempts

    def decision(self, decision: Decision) -> None:
        self.decisions.append(decision)
        self.events.append(
            Event(
                "decision",
                decision.node,
                decision.step,
                time.perf_counter(),
                detail=decision.detail,
                decision=decision.kind.value,
                outcome=decision.outcome.value,
            )
        )

    def as_json(self) -> list[dict[str, Any]]:
        return [event.as_json(self.origin) for event in self.events]


class Recorders:
    """Fans every call out to several recorders; tokens are kept per recorder."""

    __slots__ = ("_recorders",)

    def __init__(self, recorders: Sequence[Recorder]) -> None:
        self._recorders = tuple(recorders)

    def node_started(self, node: Node) -> object:
        return [r.node_started(node) for r in self._recorders]

    def node_finished(self, token: object, status: int | None, error: str | None) -> None:
        assert isinstance(token, list)
        for recorder, inner in zip(self._recorders, token, strict=True):
            recorder.node_finished(inner, status, error)

    def step_started(self, step: Step, headers: MutableMapping[str, str]) -> object:
        return [r.step_started(step, headers) for r in self._recorders]

    def step_finished(
        self, token: object, status: int | None, error: str | None, attempts: int
    ) -> None:
        assert isinstance(token, list)
        for recorder, inner in zip(self._recorders, token, strict=True):
            recorder.step_finished(inner, status, error, attempts)

    def decision(self, decision: Decision) -> None:
        for recorder in self._recorders:
            recorder.decision(decision)
