"""Property-test your own graphs: hypothesis strategies and an in-process harness.

Public API, for users' pytest suites:

- `graphs(...)`: random valid InferenceGraph specs (size, node types, depth are knobs);
- `payloads(protocol=None)`: v1 `{"instances": ...}` and v2 `{"inputs": [...]}` request
  bodies, or only one of them with `protocol="v1"`/`"v2"`;
- `from_schema(schema)`: request bodies matching a JSON Schema you give for a model
  (hypothesis-jsonschema);
- `edge_payloads(protocol=None)`: the boundary bodies every check should try (no rows, one
  row of one feature, zeros, large magnitudes), as a list;
- `GraphHarness(graph, models)`: runs a graph (a `ValidGraph`, e.g. from
  `schemas.loading.load_graph_file`, or a spec/resource as a dict, validated here) through
  the router's real executor and nodes, with each InferenceService played by a plain Python
  callable (sync or async) that returns a body, a `(status, body)` pair, or raises
  `ModelFailure(status, body)`; `run(body, headers)` returns the answer and a record of which
  nodes and steps ran, what each model got and answered, and what was decided;
  `draw_route(node, headers)` is the route a Splitter picks, by the router's own rule;
- the values a `Run` carries: `Decision` (with `DecisionKind` and `Outcome`), `Call` (one model
  call), `Visit` (one run of a node: its input, its steps' replies, its answer's status),
  `ErrorSite` (where the router's own error arose), and the router's errors (`RouterError` and
  its subclasses such as `NoRouteMatched`, `AnswersNotAggregatable`).

Only HTTP is replaced (by calling your functions); conditions, data mapping, aggregation,
retries and errors run exactly as in the router.
"""

from __future__ import annotations

import asyncio
import contextvars
import inspect
import itertools
import random
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import hypothesis_jsonschema
import jsonschema
import orjson
from hypothesis import strategies as st
from multidict import CIMultiDict, CIMultiDictProxy

from router.errors import (
    AnswersNotAggregatable,
    NoRouteMatched,
    RouterError,
    StepUnreachable,
)
from router.executor import Execution
from router.graph import CompiledGraph, Node, Step, compile_graph
from router.nodes.splitter import pick_route, sticky_point
from router.payload import InvalidJSON, Payload, Reply
from router.recording import Decision, DecisionKind, Outcome, Trace
from schemas.graph import InferenceStep
from schemas.valid_graph import ValidGraph, validate_graph

__all__ = [
    "ROUTER_TYPES",
    "AnswersNotAggregatable",
    "Call",
    "Decision",
    "DecisionKind",
    "ErrorSite",
    "GraphHarness",
    "Model",
    "ModelFailure",
    "ModelUnreachable",
    "NoRouteMatched",
    "Outcome",
    "RouterError",
    "Run",
    "Visit",
    "edge_payloads",
    "from_schema",
    "graphs",
    "payloads",
]

ROUTER_TYPES = ("Sequence", "Switch", "Ensemble", "Splitter")
Model = Callable[[Any], Any] | Callable[[Any], Awaitable[Any]]

# --- strategies -------------------------------------------------------------------------------


@st.composite
def _partition(draw: st.DrawFn, parts: int, total: int = 100) -> list[int]:
    cuts = sorted(draw(st.lists(st.integers(0, total), min_size=parts - 1, max_size=parts - 1)))
    bounds = [0, *cuts, total]
    return [b - a for a, b in itertools.pairwise(bounds)]


@st.composite
def graphs(
    draw: st.DrawFn,
    max_nodes: int = 4,
    max_steps: int = 3,
    router_types: Sequence[str] = ROUTER_TYPES,
    services: Sequence[str] = ("model-a", "model-b", "model-c"),
    conditions: Sequence[str] = ("instances", "predictions", 'predictions.#(label=="dog")'),
) -> dict[str, Any]:
    """A random valid InferenceGraph spec (as JSON): nodes in DAG order, so no cycles."""
    count = draw(st.integers(1, max_nodes))
    names = ["root", *(f"node{i}" for i in range(1, count))]
    nodes: dict[str, Any] = {}
    for position, name in enumerate(names):
        kind = draw(st.sampled_from(list(router_types)))
        size = draw(st.integers(1, max_steps))
        later = names[position + 1 :]
        steps: list[dict[str, Any]] = []
        for index in range(size):
            step: dict[str, Any] = {"name": f"s{index}"}
            to_node: bool = draw(st.booleans())
            if later and to_node:
                step["nodeName"] = draw(st.sampled_from(later))
            else:
                step["serviceName"] = draw(st.sampled_from(list(services)))
            if kind in ("Sequence", "Switch") and (kind == "Switch" or draw(st.booleans())):
                step["condition"] = draw(st.sampled_from(list(conditions)))
            if kind == "Sequence" and draw(st.booleans()):
                step["data"] = "$response"
            steps.append(step)
        if kind == "Splitter":
            for step, weight in zip(steps, draw(_partition(len(steps))), strict=True):
                step["weight"] = weight
        nodes[name] = {"routerType": kind, "steps": steps}
    return {"nodes": nodes}


_numbers = st.floats(-1e3, 1e3, allow_nan=False, allow_infinity=False)
PROTOCOLS = ("v1", "v2")


def payloads(
    features: int = 4, max_instances: int = 3, protocol: str | None = None
) -> st.SearchStrategy[dict[str, Any]]:
    """A v1 `{"instances": rows}` body or a v2 `{"inputs": [...]}` body with one FP64 tensor
    holding the same rows; `protocol="v1"` or `"v2"` gives only that kind."""
    if protocol is not None and protocol not in PROTOCOLS:
        raise ValueError(f"payloads: protocol {protocol!r} is not one of {', '.join(PROTOCOLS)}")
    return _payloads(features, max_instances, protocol)


@st.composite
def _payloads(
    draw: st.DrawFn, features: int, max_instances: int, protocol: str | None
) -> dict[str, Any]:
    rows = draw(
        st.lists(
            st.lists(_numbers, min_size=features, max_size=features),
            min_size=1,
            max_size=max_instances,
        )
    )
    if protocol == "v1" or (protocol is None and draw(st.booleans())):
        return {"instances": rows}
    flat = [x for row in rows for x in row]
    tensor = {"name": "input-0", "shape": [len(rows), features], "datatype": "FP64", "data": flat}
    return {"inputs": [tensor]}


def edge_payloads(features: int = 4, protocol: str | None = None) -> list[dict[str, Any]]:
    """The bodies at the edges of what `payloads` draws, which random draws rarely hit: no rows,
    one row of one feature, all zeros, the largest magnitudes `payloads` uses. v1 ones first,
    then v2 ones (only one protocol's with `protocol`)."""
    if protocol is not None and protocol not in PROTOCOLS:
        raise ValueError(
            f"edge_payloads: protocol {protocol!r} is not one of {', '.join(PROTOCOLS)}"
        )
    rows: list[list[list[float]]] = [
        [],
        [[0.0]],
        [[0.0] * features],
        [[1e3] * features, [-1e3] * features],
    ]
    out: list[dict[str, Any]] = []
    if protocol in (None, "v1"):
        out += [{"instances": r} for r in rows]
    if protocol in (None, "v2"):
        for r in rows:
            width = len(r[0]) if r else features
            data = [x for row in r for x in row]
            tensor = {"name": "input-0", "shape": [len(r), width], "datatype": "FP64", "data": data}
            out.append({"inputs": [tensor]})
    return out


# hypothesis-jsonschema knows drafts 4, 6 and 7. Later drafts' keywords are unknown to draft 7,
# so it would generate values as if they were absent: they are refused instead.
_LATER_DRAFT_KEYWORDS = frozenset(
    {
        "prefixItems",
        "unevaluatedItems",
        "unevaluatedProperties",
        "dependentSchemas",
        "dependentRequired",
        "minContains",
        "maxContains",
        "$anchor",
        "$dynamicRef",
        "$dynamicAnchor",
        "$recursiveRef",
        "$recursiveAnchor",
    }
)
_SUPPORTED_DRAFTS = {
    "http://json-schema.org/draft-04/schema": jsonschema.Draft4Validator,
    "http://json-schema.org/draft-06/schema": jsonschema.Draft6Validator,
    "http://json-schema.org/draft-07/schema": jsonschema.Draft7Validator,
}
# Keywords whose value is one subschema, a name -> subschema map, or a list of subschemas.
_ONE_SCHEMA = ("additionalItems", "additionalProperties", "contains", "propertyNames", "not")
_ONE_SCHEMA_CONDITIONAL = ("if", "then", "else")
_SCHEMA_MAPS = ("properties", "patternProperties", "definitions", "$defs", "dependencies")
_SCHEMA_LISTS = ("allOf", "anyOf", "oneOf")


def _later_draft_keywords(schema: Any, where: str) -> list[str]:
    """`<path>: <keyword>` for each later-draft keyword in a schema position."""
    if not isinstance(schema, Mapping):
        return []
    found = [f"{where}: {key}" for key in schema if key in _LATER_DRAFT_KEYWORDS]
    children: list[tuple[str, Any]] = [
        (f"{where}.{key}", schema[key])
        for key in (*_ONE_SCHEMA, *_ONE_SCHEMA_CONDITIONAL)
        if key in schema
    ]
    items = schema.get("items")
    if isinstance(items, list):
        children += [(f"{where}.items[{i}]", item) for i, item in enumerate(items)]
    elif items is not None:
        children.append((f"{where}.items", items))
    for key in _SCHEMA_MAPS:
        if isinstance(schema.get(key), Mapping):
            children += [(f"{where}.{key}.{name}", sub) for name, sub in schema[key].items()]
    for key in _SCHEMA_LISTS:
        if isinstance(schema.get(key), list):
            children += [(f"{where}.{key}[{i}]", sub) for i, sub in enumerate(schema[key])]
    for path, child in children:
        found += _later_draft_keywords(child, path)
    return found


def from_schema(schema: Mapping[str, Any]) -> st.SearchStrategy[Any]:
    """Values valid under a JSON Schema (drafts 4, 6 and 7: every keyword, including `pattern`,
    `format`, `$ref`, `allOf`, `if`/`then`), drawn by hypothesis-jsonschema.

    Raises ValueError, naming the place, for a schema that is itself invalid, one declaring a
    later draft in `$schema`, or one using a later draft's keywords: generating values while
    ignoring a constraint would test something other than what the schema says."""
    declared = str(schema.get("$schema", "http://json-schema.org/draft-07/schema"))
    validator = _SUPPORTED_DRAFTS.get(declared.rstrip("#"))
    if validator is None:
        raise ValueError(
            f"from_schema: $schema {declared!r} is not supported; "
            "hypothesis-jsonschema knows JSON Schema drafts 4, 6 and 7"
        )
    try:
        validator.check_schema(schema)
    except jsonschema.SchemaError as e:
        where = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in e.absolute_path)
        raise ValueError(f"from_schema: invalid schema at <root>{where}: {e.message}") from e
    later = _later_draft_keywords(schema, "<root>")
    if later:
        raise ValueError(
            "from_schema: keywords from JSON Schema 2019-09/2020-12 are not supported "
            f"(drafts 4, 6 and 7 are): {'; '.join(later)}"
        )
    strategy: st.SearchStrategy[Any] = hypothesis_jsonschema.from_schema(dict(schema))
    # JSON allows integers of any size; orjson, which the harness sends bodies with, cannot
    # write one beyond 64 bits (and the router would read it as a float).
    return strategy.filter(_encodable)


def _encodable(value: Any) -> bool:
    try:
        orjson.dumps(value)
    except orjson.JSONEncodeError:
        return False
    return True


# --- the harness ------------------------------------------------------------------------------


class ModelFailure(Exception):
    """Raise from a simulated model to answer `status` (a non-2xx) with `body`."""

    def __init__(self, status: int, body: Any = None) -> None:
        super().__init__(status)
        self.status = status
        self.body = body if body is not None else {"error": f"model failed with {status}"}


class ModelUnreachable(Exception):
    """Raise from a simulated model to act as a service that cannot be connected to."""


def _json_or_raw(raw: bytes) -> Any:
    try:
        return orjson.loads(raw) if raw else None
    except orjson.JSONDecodeError:
        return raw


@dataclass(frozen=True)
class Call:
    """One call of a simulated model: the step that made it, what it sent, what came back.

    `status` is None when the model acted unreachable or raised; `raised` is what a model
    raised when the harness answers for it (`catch_model_errors=True`)."""

    node: str
    step: str  # the step's key: its name, or its index as a string
    service: str
    sent: bytes
    status: int | None
    answer: Any
    raised: Exception | None = None

    @property
    def request(self) -> Any:
        """What the model got, parsed (a fresh copy: models may have changed theirs)."""
        return _json_or_raw(self.sent)


@dataclass(frozen=True)
class StepReply:
    """What a step answered within one visit of its node (a nested node's answer for a
    `nodeName` step); `status` is the router error's status when it raised one."""

    status: int
    raw: bytes

    @property
    def body(self) -> Any:
        return _json_or_raw(self.raw)


@dataclass
class Visit:
    """One run of a node within a request: its input, its steps' replies by key (in the order
    they answered) and the status it answered (its error's status when it raised one)."""

    node: str
    raw_input: bytes
    replies: dict[str, StepReply] = field(default_factory=dict)
    status: int | None = None

    @property
    def input(self) -> Any:
        return _json_or_raw(self.raw_input)


@dataclass(frozen=True)
class ErrorSite:
    """Where the router's own error arose: the innermost node, and the step when it arose in
    one; `building_body` when it arose building the step's body from its `data` or mapping."""

    node: str
    step: str | None
    building_body: bool
    error: RouterError


@dataclass
class Run:
    """One request through the graph: the answer, and what ran.

    `events` is the trace as JSON (what `X-InferGraph-Trace` carries); `decisions` are the
    executor's decisions as values; `error` is the router's own error when it answered one
    (None when the answer came from the graph's steps, whatever its status), and `error_site`
    where it arose; `calls` are the model calls and `visits` the node runs, in order.
    """

    status: int
    body: Any
    events: list[dict[str, Any]] = field(default_factory=list)
    decisions: list[Decision] = field(default_factory=list)
    error: RouterError | None = None
    calls: list[Call] = field(default_factory=list)
    visits: list[Visit] = field(default_factory=list)
    error_site: ErrorSite | None = None
    entered: set[tuple[str, str]] = field(default_factory=set)  # (node, step) of steps begun

    @property
    def steps(self) -> list[tuple[str, str]]:
        """(node, step) of every step that was called, in order."""
        return [(e["node"], e["step"]) for e in self.events if e["kind"] == "step"]

    @property
    def nodes(self) -> list[str]:
        return [e["node"] for e in self.events if e["kind"] == "node"]


# The record of the request being run: set per run, read by the caller and the execution
# (ensembles run steps in tasks, which inherit it).
_RUN: contextvars.ContextVar[Run] = contextvars.ContextVar("infergraph_harness_run")
_VISIT: contextvars.ContextVar[Visit] = contextvars.ContextVar("infergraph_harness_visit")


class _ModelCaller:
    """A StepCaller that plays each InferenceService with a Python callable."""

    def __init__(self, models: Mapping[str, Model], names: Mapping[str, str], catch: bool) -> None:
        self._models = models
        self._names = names  # step url -> service name
        self._catch = catch

    async def __call__(
        self, step: Step, body: bytes, headers: Mapping[str, str], seconds: float
    ) -> Reply:
        service = self._names.get(step.url or "", step.key)
        model = self._models.get(service)
        calls = _RUN.get().calls
        if model is None:
            raise StepUnreachable(f"{step.label}: no simulated model named '{service}'")
        try:
            request = orjson.loads(body) if body else None
        except orjson.JSONDecodeError:
            request = body
        try:
            answer: Any = model(request)
            if inspect.isawaitable(answer):
                answer = await asyncio.wait_for(answer, seconds)
            status, answer = answer if _is_status_pair(answer) else (200, answer)
            payload = answer if isinstance(answer, bytes) else orjson.dumps(answer)
        except ModelFailure as failure:
            payload = orjson.dumps(failure.body)
            calls.append(Call(step.owner, step.key, service, body, failure.status, failure.body))
            return Reply(failure.status, Payload(payload), json_content=True)
        except ModelUnreachable as error:
            calls.append(Call(step.owner, step.key, service, body, None, None))
            raise StepUnreachable(f"{step.label}: {error}") from None
        except Exception as error:
            if not self._catch:
                raise
            # User code: anything it raises (or an answer that is not JSON) is answered as a
            # model server would, 500, and kept on the record for `infergraph check` to report.
            calls.append(Call(step.owner, step.key, service, body, None, None, error))
            failed = {"error": f"{service} raised {error!r}"}
            return Reply(500, Payload.from_json(failed), json_content=True)
        calls.append(Call(step.owner, step.key, service, body, status, answer))
        return Reply(status, Payload(payload), json_content=not isinstance(answer, bytes))


class _RecordingExecution(Execution):
    """The router's Execution, keeping what `Run` reports: node visits with their steps'
    replies, the steps begun, and where the router's own error arose."""

    __slots__ = ("record",)
    record: Run

    async def run_node(self, node: Node, payload: Payload) -> Reply:
        visit = Visit(node.name, payload.raw)
        self.record.visits.append(visit)
        token = _VISIT.set(visit)
        try:
            reply = await super().run_node(node, payload)
        except RouterError as error:
            visit.status = error.status
            self._site(node.name, None, False, error)
            raise
        finally:
            _VISIT.reset(token)
        visit.status = reply.status
        return reply

    async def run_step(
        self, step: Step, node_input: Payload, previous: Payload | None = None
    ) -> Reply:
        visit = _VISIT.get()
        self.record.entered.add((step.owner, step.key))
        try:
            reply = await super().run_step(step, node_input, previous)
        except RouterError as error:
            visit.replies[step.key] = StepReply(error.status, error.body())
            self._site(step.owner, step.key, False, error)
            raise
        visit.replies[step.key] = StepReply(reply.status, reply.payload.raw)
        return reply

    def step_body(self, step: Step, request: Payload, response: Payload) -> Payload:
        try:
            return super().step_body(step, request, response)
        except RouterError as error:
            self._site(step.owner, step.key, True, error)
            raise

    def _site(self, node: str, step: str | None, building: bool, error: RouterError) -> None:
        if self.record.error_site is None:  # the innermost: the first place it was seen
            self.record.error_site = ErrorSite(node, step, building, error)


def _is_status_pair(answer: Any) -> bool:
    return isinstance(answer, tuple) and len(answer) == 2 and isinstance(answer[0], int)


class GraphHarness:
    """Run a graph in-process; service steps call `models[serviceName]` (or the step name).

    A model that raises anything but `ModelFailure`/`ModelUnreachable` fails the run (your test
    sees the traceback) unless `catch_model_errors`: then it answers 500, as a model server
    would, and the `Call` keeps the exception."""

    def __init__(
        self,
        graph: ValidGraph | Mapping[str, Any],
        models: Mapping[str, Model],
        seed: int = 0,
        catch_model_errors: bool = False,
    ) -> None:
        valid = graph if isinstance(graph, ValidGraph) else validate_graph(graph)
        self.valid, names = _with_fake_urls(valid)
        self.spec = self.valid.spec
        self.graph: CompiledGraph = compile_graph(self.valid)
        self._caller = _ModelCaller(models, names, catch_model_errors)
        self._rng = random.Random(seed)

    async def run_async(self, body: Any, headers: Mapping[str, str] | None = None) -> Run:
        raw = body if isinstance(body, bytes) else orjson.dumps(body)
        trace = Trace()
        payload = Payload(raw)
        execution = _RecordingExecution(
            self._caller,
            payload,
            {},
            self._rng,
            deadline=time.monotonic() + self.graph.timeouts.request,
            service_client_timeout=self.graph.timeouts.service_client,
            recorder=trace,
            # aiohttp's request headers are case-insensitive; sticky routing reads them so.
            incoming_headers=CIMultiDictProxy(CIMultiDict(headers or {})),
        )
        run = Run(0, None)
        execution.record = run
        token = _RUN.set(run)
        try:
            reply = await execution.run_node(self.graph.root, payload)
            run.status, run.body = reply.status, _parsed(reply.payload)
        except RouterError as raised:
            run.error = raised
            run.status, run.body = raised.status, orjson.loads(raised.body())
        finally:
            _RUN.reset(token)
        run.events, run.decisions = trace.as_json(), list(trace.decisions)
        return run

    def run(self, body: Any, headers: Mapping[str, str] | None = None) -> Run:
        """Synchronous `run_async`, for plain (non-async) tests."""
        return asyncio.run(self.run_async(body, headers))

    def draw_route(self, node: str, headers: Mapping[str, str] | None = None) -> str:
        """The key of the route Splitter `node` picks for a request with `headers`, by the
        router's rule (the sticky header's hash, else a draw from the harness's seeded
        random source), without running anything."""
        compiled = self.graph.nodes[node]
        total = compiled.cumulative_weights[-1]
        incoming = CIMultiDict(headers or {})
        key = incoming.get(compiled.sticky_header) if compiled.sticky_header else None
        point = sticky_point(key, total) if key is not None else self._rng.randrange(total)
        return compiled.routes[pick_route(compiled.cumulative_weights, point)].key


def _with_fake_urls(graph: ValidGraph) -> tuple[ValidGraph, dict[str, str]]:
    """Every service step pointed at a URL of its own, so calls can be told apart by URL."""
    names: dict[str, str] = {}

    def url_for(node: str, index: int, step: InferenceStep) -> str:
        service = step.service_name or step.name or f"{node}.{index}"
        url = f"http://{service}.harness.invalid/{node}/{index}"
        names[url] = service
        return url

    return graph.with_step_urls(url_for), names


def _parsed(payload: Payload) -> Any:
    try:
        return payload.json()
    except InvalidJSON:
        return payload.raw
