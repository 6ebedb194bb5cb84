"""Replay a recording (`--record`) through a candidate graph and say what would change.

`infergraph replay` is a thin shell over `replay(records, graph, ...)`. Each recorded request
runs through the router's real executor on the candidate graph, its model calls answered:

- offline (default), from the recording: a call is matched by its target URL and its input
  (compared as parsed JSON), first among the same request's recorded calls, then among every
  request's. A call the recording never saw fails that step as an unreachable service would
  (502), and the request is reported with an error naming the step, URL and why;
- live (`live=True`), by the real models at the candidate's URLs.

Splitter draws replay deterministically: the point each recorded draw (or sticky hash) gave is
handed back to that node's next draw, so the same routes with the same weights pick the same
route. With changed weights the same point is reused, so exactly the requests whose point now
falls in another route's share move (what the new weights would do to this traffic), and the
report shows them as route differences. A node with no recorded point (new, or drawn more often
than recorded) draws from `seed`.

What is compared, per request (pure: `compare`): the status and answer (`router.jsondiff`,
with the tolerance; not when replay itself failed the request on a call the recording lacks:
then the error is reported), the decisions that route (Switch/Sequence conditions and Splitter
routes with their points; retries and early answers depend on timing, not the graph, and are
left out),
the steps called (by node, step and target: newly called, no longer called; recorded shadow
calls are left out, as replay does not run shadows), errors, and the latency (live only).
"""

from __future__ import annotations

import asyncio
import base64
import contextvars
import gc
import math
import random
import time
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
from multidict import CIMultiDict, CIMultiDictProxy

from router.calls import HttpStepCaller, new_session
from router.errors import RouterError, StepUnreachable
from router.executor import Execution, StepCaller
from router.graph import CompiledGraph, Node, Step, compile_graph
from router.jsondiff import EXACT, Difference, Tolerance, diff
from router.payload import InvalidJSON, Payload, Reply
from router.recording import DecisionKind, Outcome, Trace
from schemas.valid_graph import ValidGraph

COMPARED_DECISIONS = frozenset({DecisionKind.CONDITION, DecisionKind.ROUTE})
MAX_RESPONSE_BYTES = 16 * 1024 * 1024  # the router's default --max-body-bytes
LIVE_CONNECTIONS = 64  # replay sends one request at a time; a small pool is plenty


class RecordingError(ValueError):
    """A recording file that cannot be read as one; the message names the file and line."""


_OMITTED: Any = object()


@dataclass(frozen=True, slots=True)
class RecordedCall:
    node: str
    step: str
    target: str | None
    input: Any  # parsed JSON, bytes, or _OMITTED
    status: int | None
    answer: Any
    shadow: bool


@dataclass(frozen=True, slots=True)
class RecordedDecision:
    kind: str
    node: str
    step: str | None
    outcome: str
    point: int | None


@dataclass(frozen=True, slots=True)
class Record:
    """One recorded request, as `router.traffic` wrote it."""

    id: str
    where: str  # file:line
    graph_hash: str
    headers: dict[str, str]
    body: Any
    calls: tuple[RecordedCall, ...]
    decisions: tuple[RecordedDecision, ...]
    status: int
    answer: Any
    duration_ms: float


def _body(document: Mapping[str, Any], name: str) -> Any:
    if name in document:
        return document[name]
    if f"{name}Base64" in document:
        return base64.b64decode(document[f"{name}Base64"])
    return _OMITTED


def parse_record(document: Any, where: str) -> Record:
    """A `Record` from one parsed JSONL line; RecordingError names the line and field."""
    try:
        request, response = document["request"], document["response"]
        calls = tuple(
            RecordedCall(
                str(c["node"]),
                str(c["step"]),
                c.get("target"),
                _body(c, "input"),
                c.get("status"),
                _body(c, "answer"),
                bool(c.get("shadow", False)),
            )
            for c in document["steps"]
        )
        decisions = tuple(
            RecordedDecision(
                str(d["decision"]), str(d["node"]), d.get("step"), str(d["outcome"]), d.get("point")
            )
            for d in document["decisions"]
        )
        return Record(
            id=str(document["id"]),
            where=where,
            graph_hash=str(document.get("graphHash", "")),
            headers={str(k): str(v) for k, v in request.get("headers", {}).items()},
            body=_body(request, "body"),
            calls=calls,
            decisions=decisions,
            status=int(response["status"]),
            answer=_body(response, "body"),
            duration_ms=float(response.get("durationMs", 0.0)),
        )
    except (KeyError, TypeError, ValueError, AttributeError) as error:
        name = f"field {error}" if isinstance(error, KeyError) else str(error)
        raise RecordingError(f"{where}: not a recording line: {name}") from None


def load_records(paths: Sequence[Path]) -> list[Record]:
    """Every record of `paths`, in order (give rotated files oldest first: PATH.2 PATH.1 PATH)."""
    records = []
    for path in paths:
        try:
            text = path.read_bytes()
        except OSError as error:
            raise RecordingError(f"{path}: cannot read: {error.strerror}") from None
        for number, line in enumerate(text.splitlines(), 1):
            if not line.strip():
                continue
            where = f"{path}:{number}"
            try:
                document = orjson.loads(line)
            except orjson.JSONDecodeError as error:
                raise RecordingError(f"{where}: not JSON: {error}") from None
            records.append(parse_record(document, where))
    return records


def candidate_graph(graph: ValidGraph, services: Mapping[str, str]) -> CompiledGraph:
    """The candidate compiled, each step naming a service in `services` given its URL (steps
    with a serviceUrl keep it); raises SpecError for a step left without one."""
    return compile_graph(graph.with_service_urls(services))


# --- answering calls from the recording ---------------------------------------------------


def _key(target: str | None, value: Any) -> tuple[str | None, bytes]:
    if isinstance(value, bytes):
        return target, b"raw:" + value
    return target, orjson.dumps(value, option=orjson.OPT_SORT_KEYS)


def _parsed(raw: bytes) -> Any:
    try:
        return orjson.loads(raw) if raw else None
    except orjson.JSONDecodeError:
        return raw


class Answers:
    """Every recorded call's answer, by (target, input): the index offline replay reads."""

    def __init__(self, records: Iterable[Record]) -> None:
        self._all: dict[tuple[str | None, bytes], RecordedCall] = {}
        for record in records:
            for call in record.calls:
                if call.input is not _OMITTED and call.answer is not _OMITTED and call.status:
                    self._all.setdefault(_key(call.target, call.input), call)

    def caller(self, record: Record, misses: list[str]) -> StepCaller:
        own = {
            _key(c.target, c.input): c
            for c in reversed(record.calls)  # the first of equal calls wins
            if c.input is not _OMITTED and c.answer is not _OMITTED and c.status
        }

        async def call(
            step: Step, body: bytes, headers: Mapping[str, str], seconds: float
        ) -> Reply:
            key = _key(step.url, _parsed(body))
            found = own.get(key) or self._all.get(key)
            if found is None:
                why = (
                    "its target was never called"
                    if not any(k[0] == step.url for k in self._all)
                    else "the recording never saw this input"
                )
                misses.append(f"{step.label} called {step.url}: not in the recording ({why})")
                raise StepUnreachable(
                    f"{step.label}: {step.url} with this input is not in the recording ({why})",
                    node=step.owner,
                    step=step.key,
                    url=step.url,
                )
            assert found.status is not None
            answer = found.answer
            raw = answer if isinstance(answer, bytes) else orjson.dumps(answer)
            return Reply(found.status, Payload(raw), json_content=not isinstance(answer, bytes))

        return call


# --- deterministic draws ------------------------------------------------------------------

_NODE: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "infergraph_replay_node", default=None
)


class ReplayRandom(random.Random):
    """Gives each Splitter node its recorded points in turn; draws from the seed beyond them."""

    def __init__(self, points: Mapping[str, Sequence[int]], seed: int) -> None:
        super().__init__(seed)
        self._points = {node: list(values) for node, values in points.items()}

    def randrange(self, start: int, stop: int | None = None, step: int = 1) -> int:
        node = _NODE.get()
        queue = self._points.get(node or "")
        if stop is None and step == 1 and queue:
            point = queue.pop(0)
            if 0 <= point < start:
                return point
        return super().randrange(start, stop, step)


class _ReplayExecution(Execution):
    """The router's Execution, telling `ReplayRandom` which node is drawing."""

    __slots__ = ()

    async def run_node(self, node: Node, payload: Payload) -> Reply:
        token = _NODE.set(node.name)
        try:
            return await super().run_node(node, payload)
        finally:
            _NODE.reset(token)


# --- results --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Run:
    """What the candidate did with one request."""

    status: int
    answer: Any
    steps: tuple[tuple[str, str, str | None], ...]  # (node, step, target)
    decisions: tuple[RecordedDecision, ...]
    errors: tuple[str, ...]
    duration_ms: float | None  # live only


@dataclass(frozen=True, slots=True)
class DecisionChange:
    node: str
    kind: str
    recorded: tuple[str, ...]
    candidate: tuple[str, ...]

    def as_json(self) -> dict[str, Any]:
        return {
            "node": self.node,
            "decision": self.kind,
            "recorded": list(self.recorded),
            "candidate": list(self.candidate),
        }


@dataclass(frozen=True, slots=True)
class Comparison:
    """One request: recorded vs candidate."""

    id: str
    where: str
    route: str  # the recorded routing decisions, for grouping
    status: tuple[int, int]
    answer: tuple[Difference, ...]
    decisions: tuple[DecisionChange, ...]
    steps_added: tuple[str, ...]
    steps_removed: tuple[str, ...]
    errors: tuple[str, ...]
    latency_ms: tuple[float, float] | None  # (recorded, candidate), live only

    @property
    def differs(self) -> bool:
        return bool(
            self.status[0] != self.status[1]
            or self.answer
            or self.decisions
            or self.steps_added
            or self.steps_removed
            or self.errors
        )

    def as_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "id": self.id,
            "where": self.where,
            "route": self.route,
            "differs": self.differs,
            "status": {"recorded": self.status[0], "candidate": self.status[1]},
            "answer": [d.as_json() for d in self.answer],
            "decisions": [d.as_json() for d in self.decisions],
            "stepsAdded": list(self.steps_added),
            "stepsRemoved": list(self.steps_removed),
            "errors": list(self.errors),
        }
        if self.latency_ms is not None:
            out["latencyMs"] = {"recorded": self.latency_ms[0], "candidate": self.latency_ms[1]}
        return out


def _decision_text(d: RecordedDecision) -> str:
    text = f"{d.step} {d.outcome}" if d.step is not None else d.outcome
    return f"{text} at {d.point}" if d.point is not None else text


def route_of(decisions: Iterable[RecordedDecision]) -> str:
    """The routing decisions taken, as `node:step` joined by ` > ` ("(none)" when none)."""
    taken = [
        f"{d.node}:{d.step}"
        for d in decisions
        if d.kind == DecisionKind.ROUTE.value
        or (d.kind == DecisionKind.CONDITION.value and d.outcome == Outcome.HELD.value)
    ]
    return " > ".join(taken) or "(none)"


def compare(record: Record, run: Run, tolerance: Tolerance = EXACT) -> Comparison:
    """Recorded vs candidate for one request (pure)."""
    answer: list[Difference] = []
    if record.answer is _OMITTED or run.errors:
        # Not recorded (not JSON under redaction), or the answer is replay's own error for a
        # call the recording lacks: the status and the error say it all.
        pass
    elif isinstance(record.answer, bytes) or isinstance(run.answer, bytes):
        if record.answer != run.answer:
            answer = diff(record.answer, run.answer)
    else:
        answer = diff(record.answer, run.answer, tolerance)
    recorded_by: dict[tuple[str, str], list[str]] = {}
    candidate_by: dict[tuple[str, str], list[str]] = {}
    for decisions, into in ((record.decisions, recorded_by), (run.decisions, candidate_by)):
        for d in decisions:
            if d.kind in COMPARED_DECISIONS:
                into.setdefault((d.node, d.kind), []).append(_decision_text(d))
    changes = tuple(
        DecisionChange(
            key[0], key[1], tuple(recorded_by.get(key, ())), tuple(candidate_by.get(key, ()))
        )
        for key in sorted(set(recorded_by) | set(candidate_by))
        if sorted(recorded_by.get(key, ())) != sorted(candidate_by.get(key, ()))
    )
    recorded_steps = Counter(
        f"{c.node}.{c.step} ({c.target})" for c in record.calls if not c.shadow
    )
    candidate_steps = Counter(f"{n}.{s} ({t})" for n, s, t in run.steps)
    return Comparison(
        id=record.id,
        where=record.where,
        route=route_of(record.decisions),
        status=(record.status, run.status),
        answer=tuple(answer),
        decisions=changes,
        steps_added=tuple(sorted((candidate_steps - recorded_steps).elements())),
        steps_removed=tuple(sorted((recorded_steps - candidate_steps).elements())),
        errors=run.errors,
        latency_ms=(record.duration_ms, run.duration_ms) if run.duration_ms is not None else None,
    )


@dataclass
class Report:
    """Every request's comparison and the aggregate; `differs` sets the exit status."""

    graph_hash: str
    live: bool
    tolerance: Tolerance
    comparisons: list[Comparison] = field(default_factory=list)
    recorded_graphs: Counter[str] = field(default_factory=Counter)

    @property
    def differing(self) -> list[Comparison]:
        return [c for c in self.comparisons if c.differs]

    @property
    def differs(self) -> bool:
        return bool(self.differing)

    def by_route(self) -> dict[str, tuple[int, int]]:
        """route -> (requests, agreeing)."""
        out: dict[str, list[int]] = {}
        for c in self.comparisons:
            counts = out.setdefault(c.route, [0, 0])
            counts[0] += 1
            counts[1] += 0 if c.differs else 1
        return {route: (n, ok) for route, (n, ok) in sorted(out.items())}

    def summary(self) -> dict[str, Any]:
        compared = self.comparisons
        added: Counter[str] = Counter(s for c in compared for s in c.steps_added)
        removed: Counter[str] = Counter(s for c in compared for s in c.steps_removed)
        decisions: Counter[str] = Counter(
            f"{d.node} {d.kind}" for c in compared for d in c.decisions
        )
        out: dict[str, Any] = {
            "requests": len(compared),
            "differing": len(self.differing),
            "statusDiffers": sum(c.status[0] != c.status[1] for c in compared),
            "answerDiffers": sum(bool(c.answer) for c in compared),
            "decisionsDiffer": sum(bool(c.decisions) for c in compared),
            "decisionChanges": dict(sorted(decisions.items())),
            "stepsAdded": dict(sorted(added.items())),
            "stepsRemoved": dict(sorted(removed.items())),
            "errors": sum(bool(c.errors) for c in compared),
            "byRoute": {
                route: {"requests": n, "agreeing": ok} for route, (n, ok) in self.by_route().items()
            },
        }
        latencies = [c.latency_ms for c in compared if c.latency_ms is not None]
        if latencies:
            out["latencyMs"] = {
                "recorded": percentiles([r for r, _ in latencies]),
                "candidate": percentiles([c for _, c in latencies]),
                "delta": percentiles([c - r for r, c in latencies]),
            }
        return out

    def as_json(self) -> dict[str, Any]:
        return {
            "graphHash": self.graph_hash,
            "recordedGraphs": dict(self.recorded_graphs),
            "mode": "live" if self.live else "offline",
            "tolerance": {"abs": self.tolerance.absolute, "rel": self.tolerance.relative},
            "summary": self.summary(),
            "requests": [c.as_json() for c in self.comparisons],
        }


def percentiles(values: Sequence[float]) -> dict[str, float]:
    """p50, p90, p99 and max of `values` (nearest rank), rounded to 0.1 ms."""
    ordered = sorted(values)

    def rank(p: float) -> float:
        index = max(0, math.ceil(p / 100 * len(ordered)) - 1)
        return round(ordered[index], 1)

    return {"p50": rank(50), "p90": rank(90), "p99": rank(99), "max": round(ordered[-1], 1)}


def _answer(payload: Payload) -> Any:
    try:
        return payload.json()
    except InvalidJSON:
        return payload.raw


def _request_body(record: Record) -> bytes:
    if isinstance(record.body, bytes):
        return record.body
    return orjson.dumps(record.body)


async def run_one(
    graph: CompiledGraph, record: Record, caller: StepCaller, seed: int, misses: list[str]
) -> Run:
    """The candidate's run of one recorded request."""
    if record.body is _OMITTED:
        # Redaction left out a body that is not JSON: there is nothing to send.
        missing = "the request's body was not recorded (not JSON, and redaction was on)"
        return Run(0, None, (), (), (missing,), None)
    points: dict[str, list[int]] = {}
    for d in record.decisions:
        if d.kind == DecisionKind.ROUTE.value and d.point is not None:
            points.setdefault(d.node, []).append(d.point)
    trace = Trace()
    payload = Payload(_request_body(record))
    execution = _ReplayExecution(
        caller,
        payload,
        {"Content-Type": "application/json"},
        ReplayRandom(points, seed),
        deadline=time.monotonic() + graph.timeouts.request,
        service_client_timeout=graph.timeouts.service_client,
        recorder=trace,
        incoming_headers=CIMultiDictProxy(CIMultiDict(record.headers)),
    )
    started = time.perf_counter()
    try:
        reply = await execution.run_node(graph.root, payload)
        status, answer = reply.status, _answer(reply.payload)
    except RouterError as error:
        status, answer = error.status, orjson.loads(error.body())
    elapsed = (time.perf_counter() - started) * 1000
    steps = tuple((e.node, e.step or "", e.detail) for e in trace.events if e.kind == "step")
    decisions = tuple(
        RecordedDecision(d.kind.value, d.node, d.step, d.outcome.value, d.point)
        for d in trace.decisions
    )
    return Run(status, answer, steps, decisions, tuple(misses), elapsed)


async def replay(
    records: Sequence[Record],
    graph: CompiledGraph,
    *,
    live: bool = False,
    tolerance: Tolerance = EXACT,
    seed: int = 0,
) -> Report:
    """Replay `records` through `graph`, one at a time, in order."""
    report = Report(graph.digest, live, tolerance)
    report.recorded_graphs.update(r.graph_hash for r in records)
    answers = Answers(records) if not live else None
    http = HttpStepCaller(new_session(LIVE_CONNECTIONS), MAX_RESPONSE_BYTES) if live else None
    try:
        for record in records:
            misses: list[str] = []
            caller: StepCaller
            if answers is not None:
                caller = answers.caller(record, misses)
            else:
                assert http is not None
                caller = http
            run = await run_one(graph, record, caller, seed, misses)
            if not live:
                run = Run(run.status, run.answer, run.steps, run.decisions, run.errors, None)
            report.comparisons.append(compare(record, run, tolerance))
    finally:
        if http is not None:
            http.close()
    return report


def run_replay(
    records: Sequence[Record],
    graph: CompiledGraph,
    *,
    live: bool = False,
    tolerance: Tolerance = EXACT,
    seed: int = 0,
) -> Report:
    """`replay` from synchronous code (the CLI), on uvloop as the router runs when it is there.

    The collection afterwards is deliberate: rnet objects left for the interpreter's exit to
    finalise, after asyncio's loop is gone, crash it (SIGSEGV, seen with asyncio's loop).
    """
    coroutine = replay(records, graph, live=live, tolerance=tolerance, seed=seed)
    try:
        import uvloop
    except ImportError:
        report = asyncio.run(coroutine)
    else:
        report = uvloop.run(coroutine)
    gc.collect()
    return report


def render_text(report: Report) -> str:
    """The report for people: each differing request, then the totals."""
    lines = [
        f"replay of {len(report.comparisons)} recorded requests through graph "
        f"{report.graph_hash[:19]} ({'live models' if report.live else 'recorded answers'})"
    ]
    others = sorted(h for h in report.recorded_graphs if h != report.graph_hash)
    if others:
        recorded = ", ".join(f"{h[:19]} ({report.recorded_graphs[h]})" for h in others)
        lines.append(f"recorded on graph {recorded}")
    else:
        lines.append("recorded on the same graph")
    for c in report.differing:
        lines.append(f"request {c.id[:12]} ({c.where}), route {c.route}:")
        if c.status[0] != c.status[1]:
            lines.append(f"  status {c.status[0]} -> {c.status[1]}")
        for change in c.decisions:
            lines.append(
                f"  {change.node} {change.kind}: {', '.join(change.recorded) or '-'} -> "
                f"{', '.join(change.candidate) or '-'}"
            )
        for step in c.steps_added:
            lines.append(f"  newly called: {step}")
        for step in c.steps_removed:
            lines.append(f"  no longer called: {step}")
        for d in c.answer:
            recorded = "-" if d.change.value == "added" else _short(d.expected)
            candidate = "-" if d.change.value == "missing" else _short(d.actual)
            lines.append(f"  answer {d.path}: {recorded} -> {candidate}")
        for error in c.errors:
            lines.append(f"  error: {error}")
    summary = report.summary()
    lines.append(
        f"{summary['differing']} of {summary['requests']} requests differ: "
        f"{summary['statusDiffers']} in status, {summary['answerDiffers']} in answer, "
        f"{summary['decisionsDiffer']} in decisions, {summary['errors']} with errors"
    )
    for route, counts in summary["byRoute"].items():
        lines.append(f"  route {route}: {counts['agreeing']} of {counts['requests']} agree")
    if "latencyMs" in summary:
        for name, values in summary["latencyMs"].items():
            shown = " ".join(f"{k} {v:g}" for k, v in values.items())
            lines.append(f"  latency ms, {name}: {shown}")
    return "\n".join(lines) + "\n"


def _short(value: Any) -> str:
    text = (
        value.decode(errors="replace") if isinstance(value, bytes) else orjson.dumps(value).decode()
    )
    return text if len(text) <= 60 else text[:57] + "..."
