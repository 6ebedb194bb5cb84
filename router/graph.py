"""Compile a validated InferenceGraph (a `ValidGraph`) into the frozen objects the executor runs.

Called once at start-up (and on reload). Everything the request path needs is prepared here:
conditions compiled, `nodeName` references resolved to node objects, splitter weights made
cumulative, ensemble keys and error labels computed. The request path never reads the spec.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from itertools import accumulate

import orjson

from schemas.errors import FieldError, SpecError, render_path
from schemas.expressions import Expression, compile_expression
from schemas.graph import (
    ROOT_NODE,
    Aggregation,
    CircuitBreakerPolicy,
    ConditionLanguage,
    Dependency,
    InferenceGraphSpec,
    InferenceRouter,
    InferenceStep,
    RetryPolicy,
    RouterType,
)
from schemas.mapping import DataMapping, compile_data
from schemas.streaming import streaming_steps
from schemas.valid_graph import ValidGraph

# KServe's defaults, in seconds (Go http.Server ReadTimeout/WriteTimeout/IdleTimeout).
DEFAULT_SERVER_READ = 60.0
DEFAULT_SERVER_WRITE = 60.0
DEFAULT_SERVER_IDLE = 180.0


@dataclass(frozen=True, slots=True, eq=False)
class Step:
    key: str  # the step's name, or its index as a string (KServe's ensemble key)
    owner: str  # the name of the node the step belongs to
    label: str  # "node 'root' step 'x'", for error causes
    url: str | None  # set for service steps
    node: Node | None  # set for nodeName steps
    condition: Expression | None
    data: DataMapping  # which body the step gets (KServe's $request/$response, or a mapping)
    hard: bool
    map_predictions: bool
    map_outputs: bool | dict[str, str] | None  # v2: previous outputs become inputs
    timeout: float | None  # per-step bound, within the request's deadline (to the first byte
    # of a streamed answer)
    idle_timeout: float | None  # most seconds between two chunks of a streamed answer
    streams: bool  # its answer is the graph's, unread: a stream may pass through (README)
    retry: RetryPolicy | None  # the step's own or the graph's default
    breaker: CircuitBreakerPolicy | None
    weight: int  # Splitter share, or the weight in a 'weighted' Ensemble
    shadow: bool


@dataclass(frozen=True, slots=True, eq=False)
class Node:
    name: str
    kind: RouterType
    steps: tuple[Step, ...]
    routes: tuple[Step, ...]  # Splitter: the steps a draw picks from (all but shadows)
    cumulative_weights: tuple[int, ...]  # Splitter: running sums of the routes' weights
    shadows: tuple[Step, ...]  # Splitter: steps that get a copy of every request
    aggregation: Aggregation
    partial_results: bool
    quorum: int | str | None  # Ensemble: answer once this many steps succeeded, or "majority"
    sticky_header: str | None  # Splitter: hash this header's value instead of drawing


@dataclass(frozen=True, slots=True)
class Timeouts:
    server_read: float
    server_write: float
    server_idle: float
    service_client: float  # bound on every step call
    request: float  # the whole request's deadline: spec.timeout, else serverWrite


@dataclass(frozen=True, slots=True, eq=False)
class CompiledGraph:
    root: Node
    nodes: dict[str, Node]
    timeouts: Timeouts
    digest: str = ""  # spec_digest of the spec it was compiled from (recordings carry it)


def compile_graph(graph: ValidGraph) -> CompiledGraph:
    """Prepared objects for a validated graph (no cycles, references exist).

    Raises SpecError when a step names an InferenceService without a `serviceUrl`: the router
    calls URLs, and resolving names is the controller's job (`infergraph up` or Kubernetes).
    """
    spec = graph.spec
    _require_urls(spec)
    compiled: dict[str, Node] = {}
    streaming = streaming_steps(spec)

    def build(name: str) -> Node:
        # Children are compiled before parents; validation guarantees termination (no cycles).
        if name not in compiled:
            compiled[name] = _compile_node(name, spec.nodes[name], spec, build, streaming)
        return compiled[name]

    for name in spec.nodes:
        build(name)
    return CompiledGraph(
        root=compiled[ROOT_NODE],
        nodes=compiled,
        timeouts=_timeouts(spec),
        digest=spec_digest(spec),
    )


def spec_digest(spec: InferenceGraphSpec) -> str:
    """`sha256:<hex>` of the spec as canonical JSON (keys sorted, unset fields left out): the
    same for the same graph however its YAML was written, so a recording says which graph ran."""
    document = spec.model_dump(mode="json", by_alias=True, exclude_none=True)
    return (
        "sha256:" + hashlib.sha256(orjson.dumps(document, option=orjson.OPT_SORT_KEYS)).hexdigest()
    )


def _compile_step(
    node_name: str,
    index: int,
    step: InferenceStep,
    spec: InferenceGraphSpec,
    build: Callable[[str], Node],
    streams: bool,
) -> Step:
    language = step.condition_language or spec.condition_language or ConditionLanguage.GJSON
    return Step(
        key=step.name if step.name else str(index),
        owner=node_name,
        label=f"node '{node_name}' step " + (f"'{step.name}'" if step.name else str(index)),
        url=None if step.node_name else step.service_url,
        node=build(step.node_name) if step.node_name else None,
        condition=compile_expression(step.condition, language) if step.condition else None,
        data=compile_data(step.data),
        hard=step.dependency is Dependency.HARD,
        map_predictions=bool(step.map_predictions_to_instances),
        map_outputs=step.map_outputs_to_inputs or None,
        timeout=step.timeout,
        idle_timeout=step.idle_timeout,
        streams=streams,
        retry=step.retry or spec.retry,
        breaker=step.circuit_breaker or spec.circuit_breaker,
        weight=step.weight or 0,
        shadow=bool(step.shadow),
    )


def _compile_node(
    name: str,
    node: InferenceRouter,
    spec: InferenceGraphSpec,
    build: Callable[[str], Node],
    streaming: frozenset[tuple[str, int]],
) -> Node:
    steps = tuple(
        _compile_step(name, i, step, spec, build, (name, i) in streaming)
        for i, step in enumerate(node.steps)
    )
    routes = tuple(step for step in steps if not step.shadow)
    weights: tuple[int, ...] = ()
    if node.router_type is RouterType.SPLITTER:
        weights = tuple(accumulate(step.weight for step in routes))
    return Node(
        name=name,
        kind=node.router_type,
        steps=steps,
        routes=routes,
        cumulative_weights=weights,
        shadows=tuple(step for step in steps if step.shadow),
        aggregation=node.aggregation or Aggregation.MERGE,
        partial_results=bool(node.partial_results),
        quorum=node.quorum,
        sticky_header=node.sticky_header,
    )


def _require_urls(spec: InferenceGraphSpec) -> None:
    errors = [
        FieldError(
            render_path(("nodes", node_name, "steps", index, "serviceName")),
            f"InferenceService '{step.service_name}' has no serviceUrl: the router calls URLs; "
            "deploy with `infergraph up` or the controller to resolve names, or set serviceUrl",
        )
        for node_name, node in spec.nodes.items()
        for index, step in enumerate(node.steps)
        if step.node_name is None and step.service_url is None
    ]
    if errors:
        raise SpecError(errors, "graph")


def _timeouts(spec: InferenceGraphSpec) -> Timeouts:
    given = spec.router_timeouts

    def pick(field: str, default: float) -> float:
        value = getattr(given, field) if given is not None else None
        return float(value) if value is not None else default

    read = pick("server_read", DEFAULT_SERVER_READ)
    write = pick("server_write", DEFAULT_SERVER_WRITE)
    idle = pick("server_idle", DEFAULT_SERVER_IDLE)
    # KServe's client has no timeout of its own, but Go's WriteTimeout ends the whole response
    # after serverWrite seconds; bounding each call by it gives the same outcome, with an error.
    client = pick("service_client", write)
    request = float(spec.timeout) if spec.timeout else write
    return Timeouts(
        server_read=read,
        server_write=write,
        server_idle=idle,
        service_client=client,
        request=request,
    )
