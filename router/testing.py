"""Property-test your own graphs: hypothesis strategies and an in-process harness.

Public API, for users' pytest suites:

- `graphs(...)`: random valid InferenceGraph specs (size, node types, depth are knobs);
- `payloads()`: v1 `{"instances": ...}` and v2 `{"inputs": [...]}` request bodies;
- `from_schema(schema)`: request bodies matching a JSON Schema you give for a model;
- `GraphHarness(graph, models)`: runs a graph (a `ValidGraph`, e.g. from
  `schemas.loading.load_graph_file`, or a spec/resource as a dict, validated here) through
  the router's real executor and nodes, with each InferenceService played by a plain Python
  callable (sync or async) that returns a body, a `(status, body)` pair, or raises
  `ModelFailure(status, body)`; `run(body)` returns the answer and a record of which nodes
  and steps ran and what was decided;
- the values a `Run` carries: `Decision` (with `DecisionKind` and `Outcome`), and the router's
  errors (`RouterError` and its subclasses such as `NoRouteMatched`, `AnswersNotAggregatable`).

Only HTTP is replaced (by calling your functions); conditions, data mapping, aggregation,
retries and errors run exactly as in the router.
"""

from __future__ import annotations

import asyncio
import inspect
import itertools
import random
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson
from hypothesis import strategies as st

from router.errors import (
    AnswersNotAggregatable,
    NoRouteMatched,
    RouterError,
    StepUnreachable,
)
from router.executor import Execution
from router.graph import CompiledGraph, Step, compile_graph
from router.payload import InvalidJSON, Payload, Reply
from router.recording import Decision, DecisionKind, Outcome, Trace
from schemas.graph import InferenceStep
from schemas.valid_graph import ValidGraph, validate_graph

__all__ = [
    "ROUTER_TYPES",
    "AnswersNotAggregatable",
    "Decision",
    "DecisionKind",
    "GraphHarness",
    "Model",
    "ModelFailure",
    "ModelUnreachable",
    "NoRouteMatched",
    "Outcome",
    "RouterError",
    "Run",
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


@st.composite
def payloads(draw: st.DrawFn, features: int = 4, max_instances: int = 3) -> dict[str, Any]:
    """A v1 `instances` body or a v2 `inputs` body with one FP64 tensor."""
    rows = draw(
        st.lists(
            st.lists(_numbers, min_size=features, max_size=features),
            min_size=1,
            max_size=max_instances,
        )
    )
    if draw(st.booleans()):
        return {"instances": rows}
    flat = [x for row in rows for x in row]
    tensor = {"name": "input-0", "shape": [len(rows), features], "datatype": "FP64", "data": flat}
    return {"inputs": [tensor]}


def from_schema(schema: Mapping[str, Any]) -> st.SearchStrategy[Any]:
    """Values matching a JSON Schema: type, properties/required, items/minItems/maxItems,
    enum, const, minimum/maximum, minLength/maxLength, anyOf/oneOf (first matching branch)."""
    if "const" in schema:
        return st.just(schema["const"])
    if "enum" in schema:
        return st.sampled_from(list(schema["enum"]))
    for key in ("anyOf", "oneOf"):
        if key in schema:
            return st.one_of([from_schema(option) for option in schema[key]])
    kind = schema.get("type")
    if isinstance(kind, list):
        return st.one_of([from_schema({**schema, "type": t}) for t in kind])
    if kind == "object" or (kind is None and "properties" in schema):
        properties: Mapping[str, Any] = schema.get("properties", {})
        required = set(schema.get("required", []))
        return st.fixed_dictionaries(
            {k: from_schema(v) for k, v in properties.items() if k in required},
            optional={k: from_schema(v) for k, v in properties.items() if k not in required},
        )
    if kind == "array":
        return st.lists(
            from_schema(schema.get("items", {})),
            min_size=schema.get("minItems", 0),
            max_size=schema.get("maxItems", max(5, schema.get("minItems", 0))),
        )
    if kind == "integer":
        return st.integers(schema.get("minimum"), schema.get("maximum"))
    if kind == "number":
        return st.floats(
            schema.get("minimum"), schema.get("maximum"), allow_nan=False, allow_infinity=False
        )
    if kind == "string":
        return st.text(min_size=schema.get("minLength", 0), max_size=schema.get("maxLength", 20))
    if kind == "boolean":
        return st.booleans()
    if kind == "null":
        return st.none()
    return st.recursive(
        st.none() | st.booleans() | _numbers | st.text(max_size=5),
        lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner),
        max_leaves=5,
    )


# --- the harness ------------------------------------------------------------------------------


class ModelFailure(Exception):
    """Raise from a simulated model to answer `status` (a non-2xx) with `body`."""

    def __init__(self, status: int, body: Any = None) -> None:
        super().__init__(status)
        self.status = status
        self.body = body if body is not None else {"error": f"model failed with {status}"}


class ModelUnreachable(Exception):
    """Raise from a simulated model to act as a service that cannot be connected to."""


@dataclass
class Run:
    """One request through the graph: the answer, and what ran.

    `events` is the trace as JSON (what `X-InferGraph-Trace` carries); `decisions` are the
    executor's decisions as values; `error` is the router's own error when it answered one
    (None when the answer came from the graph's steps, whatever its status).
    """

    status: int
    body: Any
    events: list[dict[str, Any]] = field(default_factory=list)
    decisions: list[Decision] = field(default_factory=list)
    error: RouterError | None = None

    @property
    def steps(self) -> list[tuple[str, str]]:
        """(node, step) of every step that was called, in order."""
        return [(e["node"], e["step"]) for e in self.events if e["kind"] == "step"]

    @property
    def nodes(self) -> list[str]:
        return [e["node"] for e in self.events if e["kind"] == "node"]


class _ModelCaller:
    """A StepCaller that plays each InferenceService with a Python callable."""

    def __init__(self, models: Mapping[str, Model], names: Mapping[str, str]) -> None:
        self._models = models
        self._names = names  # step url -> service name

    async def __call__(
        self, step: Step, body: bytes, headers: Mapping[str, str], seconds: float
    ) -> Reply:
        service = self._names.get(step.url or "", step.key)
        model = self._models.get(service)
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
        except ModelFailure as failure:
            return Reply(failure.status, Payload.from_json(failure.body), json_content=True)
        except ModelUnreachable as error:
            raise StepUnreachable(f"{step.label}: {error}") from None
        status, answer = answer if _is_status_pair(answer) else (200, answer)
        if isinstance(answer, bytes):
            return Reply(status, Payload(answer))
        return Reply(status, Payload.from_json(answer), json_content=True)


def _is_status_pair(answer: Any) -> bool:
    return isinstance(answer, tuple) and len(answer) == 2 and isinstance(answer[0], int)


class GraphHarness:
    """Run a graph in-process; service steps call `models[serviceName]` (or the step name)."""

    def __init__(
        self,
        graph: ValidGraph | Mapping[str, Any],
        models: Mapping[str, Model],
        seed: int = 0,
    ) -> None:
        valid = graph if isinstance(graph, ValidGraph) else validate_graph(graph)
        self.valid, names = _with_fake_urls(valid)
        self.spec = self.valid.spec
        self.graph: CompiledGraph = compile_graph(self.valid)
        self._caller = _ModelCaller(models, names)
        self._rng = random.Random(seed)

    async def run_async(self, body: Any, headers: Mapping[str, str] | None = None) -> Run:
        raw = body if isinstance(body, bytes) else orjson.dumps(body)
        trace = Trace()
        payload = Payload(raw)
        execution = Execution(
            self._caller,
            payload,
            {},
            self._rng,
            deadline=time.monotonic() + self.graph.timeouts.request,
            service_client_timeout=self.graph.timeouts.service_client,
            recorder=trace,
            incoming_headers=headers or {},
        )
        error: RouterError | None = None
        try:
            reply = await execution.run_node(self.graph.root, payload)
            status, answer = reply.status, _parsed(reply.payload)
        except RouterError as raised:
            error = raised
            status, answer = raised.status, orjson.loads(raised.body())
        return Run(status, answer, trace.as_json(), list(trace.decisions), error)

    def run(self, body: Any, headers: Mapping[str, str] | None = None) -> Run:
        """Synchronous `run_async`, for plain (non-async) tests."""
        return asyncio.run(self.run_async(body, headers))


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
