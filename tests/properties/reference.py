"""A small, pure reference interpreter of KServe's InferenceGraph router semantics.

`interpret(spec, request, backend)` returns every (status, body) the router may answer for
`request` under the graph `spec` (a KServe JSON dict), when calling model `i` with bytes `b`
answers `backend(i, b)`. It is a *set* because a Splitter draws at random and because, when
several Ensemble steps fail to produce an answer, which failure is reported depends on timing.

Deliberately naive: no I/O, no concurrency, no caching of parsed bodies, nothing shared with
`router/` except the GJSON engine (`schemas.conditions`, tested against Go elsewhere). Service
steps must use URLs ending in `/m/<i>`; the host is ignored. The spec is assumed valid.

The rules (router/nodes/*.py docstrings):
- Sequence: steps in order; a step sends the node's input, or with `data: $response` the
  previous step's response body (the node's input for the first step). A step with a condition
  runs only if it holds on the previous response (the node's input for the first step);
  otherwise the node answers that body with status 200. A Hard step answering non-2xx ends the
  node with that answer; Soft steps do not. The node answers its last step's answer.
- Switch: the first step whose condition holds on the node's input runs; a step without a
  condition never matches; no match is a router error 404.
- Ensemble: every step gets the node's input; the answer is a JSON object keyed by step name
  (index when unnamed; later keys overwrite earlier equal ones) of the parsed answers, 200; the
  first Hard step (in step order) answering non-2xx decides status and body instead; an answer
  that is not JSON, or JSON other than an object or null, is a router error 502. A step that
  fails with a router error fails the node with that error (one of them, if several do).
- Splitter: one step with weight > 0, chosen at random.
- A condition (or Switch) needs a JSON body: router error 400 when the body is the client's
  request itself, 502 when it is a step's answer.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from itertools import product
from typing import Any

from schemas.conditions import Condition, compile_condition

Backend = Callable[[int, bytes], tuple[int, bytes]]

_MODEL_URL = re.compile(r"/m/(\d+)$")


class NotJSON(ValueError):
    pass


def _reject_constant(name: str) -> Any:
    raise NotJSON(f"{name} is not JSON")


def parse_json(raw: bytes) -> Any:
    """Strict RFC 8259 parsing (no NaN/Infinity, UTF-8 only); raises NotJSON."""
    try:
        return json.loads(raw.decode("utf-8"), parse_constant=_reject_constant)
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise NotJSON(str(error)) from None


def dump_json(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode()


@dataclass(frozen=True, slots=True)
class Json:
    """A JSON body compared by value: canonical text (sorted keys, compact; 1 != 1.0)."""

    text: str

    @classmethod
    def of(cls, value: Any) -> Json:
        return cls(json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False))

    @property
    def value(self) -> Any:
        return json.loads(self.text)


@dataclass(frozen=True, slots=True)
class RouterError:
    """The router's own error body, `{"error": ..., "cause": ...}`; cause text not compared."""

    def __repr__(self) -> str:
        return "<router error body>"


ROUTER_ERROR = RouterError()

Body = Json | bytes | RouterError
Outcome = tuple[int, Body]


def body_of(raw: bytes) -> Json | bytes:
    """How a body is compared: parsed when it is JSON, as bytes otherwise."""
    try:
        return Json.of(parse_json(raw))
    except NotJSON:
        return raw


def matches(outcome: Outcome, status: int, raw: bytes) -> bool:
    """Whether an HTTP answer (status, raw body) is the outcome `outcome`."""
    expected_status, expected_body = outcome
    if status != expected_status:
        return False
    if isinstance(expected_body, RouterError):
        try:
            parsed = parse_json(raw)
        except NotJSON:
            return False
        return isinstance(parsed, dict) and "error" in parsed and "cause" in parsed
    return body_of(raw) == expected_body


# --- the interpreter ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Data:
    """A body moving through the graph; `is_request` when it is the client's request itself
    (the router decides 400 vs 502 by identity, not by equal bytes)."""

    raw: bytes
    is_request: bool = False


@dataclass(frozen=True, slots=True)
class Reply:
    status: int
    data: Data

    @property
    def ok(self) -> bool:
        return 200 <= self.status <= 299


@dataclass(frozen=True, slots=True)
class Failure:
    """A router error: it ends the whole request with `status`."""

    status: int


Result = Reply | Failure


class _Interpreter:
    def __init__(self, spec: dict[str, Any], backend: Backend) -> None:
        self.nodes: dict[str, Any] = spec["nodes"]
        self.backend = backend
        self.conditions: dict[str, Condition] = {}

    def holds(self, expression: str, document: Any) -> bool:
        condition = self.conditions.get(expression)
        if condition is None:
            condition = self.conditions[expression] = compile_condition(expression)
        return condition.holds(document)

    @staticmethod
    def document(data: Data) -> Any:
        """The parsed body a condition reads; raises _Fail when it is not JSON."""
        try:
            return parse_json(data.raw)
        except NotJSON:
            raise _Fail(400 if data.is_request else 502) from None

    def node(self, name: str, data: Data) -> frozenset[Result]:
        node = self.nodes[name]
        steps: list[dict[str, Any]] = node["steps"]
        kind = node["routerType"]
        try:
            if kind == "Sequence":
                return self.sequence(steps, 0, data, None)
            if kind == "Switch":
                return self.switch(steps, data)
            if kind == "Ensemble":
                return self.ensemble(steps, data)
            if kind == "Splitter":
                return self.splitter(steps, data)
        except _Fail as failure:
            return frozenset({Failure(failure.status)})
        raise ValueError(f"unknown routerType {kind!r}")

    def step(self, step: dict[str, Any], data: Data) -> frozenset[Result]:
        if step.get("nodeName") is not None:
            return self.node(step["nodeName"], data)
        found = _MODEL_URL.search(step["serviceUrl"])
        if found is None:
            raise ValueError(f"serviceUrl {step['serviceUrl']!r} is not .../m/<i>")
        status, raw = self.backend(int(found.group(1)), data.raw)
        return frozenset({Reply(status, Data(raw))})

    def sequence(
        self, steps: list[dict[str, Any]], index: int, data: Data, previous: Reply | None
    ) -> frozenset[Result]:
        if index == len(steps):
            assert previous is not None
            return frozenset({previous})
        step = steps[index]
        last = previous.data if previous is not None else data
        condition = step.get("condition")
        if condition and not self.holds(condition, self.document(last)):
            return frozenset({Reply(200, last)})
        sent = last if step.get("data") == "$response" else data
        out: set[Result] = set()
        for result in self.step(step, sent):
            if isinstance(result, Failure) or (step.get("dependency") == "Hard" and not result.ok):
                out.add(result)  # a router error, or a Hard failure: the sequence ends here
            else:
                try:
                    out |= self.sequence(steps, index + 1, data, result)
                except _Fail as failure:
                    out.add(Failure(failure.status))
        return frozenset(out)

    def switch(self, steps: list[dict[str, Any]], data: Data) -> frozenset[Result]:
        document = self.document(data)
        for step in steps:
            condition = step.get("condition")
            if condition and self.holds(condition, document):
                return self.step(step, data)
        raise _Fail(404)

    def splitter(self, steps: list[dict[str, Any]], data: Data) -> frozenset[Result]:
        out: set[Result] = set()
        for step in steps:
            if step["weight"] > 0:
                out |= self.step(step, data)
        return frozenset(out)

    def ensemble(self, steps: list[dict[str, Any]], data: Data) -> frozenset[Result]:
        per_step = [self.step(step, data) for step in steps]
        out: set[Result] = set()
        for combination in product(*per_step):
            failures = {r for r in combination if isinstance(r, Failure)}
            if failures:
                out |= failures  # whichever failure the router saw first
                continue
            out.add(_merge(steps, combination))
        return frozenset(out)


class _Fail(Exception):
    def __init__(self, status: int) -> None:
        super().__init__(status)
        self.status = status


def _merge(steps: list[dict[str, Any]], replies: Iterable[Result]) -> Result:
    merged: dict[str, Any] = {}
    for index, (step, reply) in enumerate(zip(steps, replies, strict=True)):
        assert isinstance(reply, Reply)
        if step.get("dependency") == "Hard" and not reply.ok:
            return reply
        try:
            body = parse_json(reply.data.raw)
        except NotJSON:
            return Failure(502)
        if body is not None and not isinstance(body, dict):
            return Failure(502)
        merged[step.get("name") or str(index)] = body
    return Reply(200, Data(dump_json(merged)))


def interpret(spec: dict[str, Any], request: bytes, backend: Backend) -> set[Outcome]:
    """Every (status, body) the router may answer; router errors have body ROUTER_ERROR."""
    results = _Interpreter(spec, backend).node("root", Data(request, is_request=True))
    outcomes: set[Outcome] = set()
    for result in results:
        if isinstance(result, Failure):
            outcomes.add((result.status, ROUTER_ERROR))
        else:
            outcomes.add((result.status, body_of(result.data.raw)))
    return outcomes
