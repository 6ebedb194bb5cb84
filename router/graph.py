"""Compile a validated InferenceGraph spec into the frozen objects the executor runs.

Called once at start-up (and on reload). Everything the request path needs is prepared here:
conditions compiled, `nodeName` references resolved to node objects, splitter weights made
cumulative, ensemble keys and error labels computed. The request path never reads the spec.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from itertools import accumulate

from schemas.conditions import Condition, compile_condition
from schemas.errors import FieldError, SpecError, render_path
from schemas.graph import ROOT_NODE, Dependency, InferenceGraphSpec, InferenceRouter, RouterType

# KServe's defaults, in seconds (Go http.Server ReadTimeout/WriteTimeout/IdleTimeout).
DEFAULT_SERVER_READ = 60.0
DEFAULT_SERVER_WRITE = 60.0
DEFAULT_SERVER_IDLE = 180.0


@dataclass(frozen=True, slots=True, eq=False)
class Step:
    key: str  # the step's name, or its index as a string (KServe's ensemble key)
    label: str  # "node 'root' step 'x'", for error causes
    url: str | None  # set for service steps
    node: Node | None  # set for nodeName steps
    condition: Condition | None
    use_response: bool  # data: $response
    hard: bool
    map_predictions: bool


@dataclass(frozen=True, slots=True, eq=False)
class Node:
    name: str
    kind: RouterType
    steps: tuple[Step, ...]
    cumulative_weights: tuple[int, ...]  # Splitter only: running sums of step weights


@dataclass(frozen=True, slots=True)
class Timeouts:
    server_read: float
    server_write: float
    server_idle: float
    service_client: float  # bound on every step call


@dataclass(frozen=True, slots=True, eq=False)
class CompiledGraph:
    root: Node
    nodes: dict[str, Node]
    timeouts: Timeouts


def compile_graph(spec: InferenceGraphSpec) -> CompiledGraph:
    """Prepared objects for a spec that `schemas` validated (no cycles, references exist).

    Raises SpecError when a step names an InferenceService without a `serviceUrl`: the router
    calls URLs, and resolving names is the controller's job (`infergraph up` or Kubernetes).
    """
    _require_urls(spec)
    compiled: dict[str, Node] = {}

    def build(name: str) -> Node:
        # Children are compiled before parents; validation guarantees termination (no cycles).
        if name not in compiled:
            compiled[name] = _compile_node(name, spec.nodes[name], build)
        return compiled[name]

    for name in spec.nodes:
        build(name)
    return CompiledGraph(root=compiled[ROOT_NODE], nodes=compiled, timeouts=_timeouts(spec))


def _compile_node(name: str, node: InferenceRouter, build: Callable[[str], Node]) -> Node:
    steps = tuple(
        Step(
            key=step.name if step.name else str(index),
            label=f"node '{name}' step '{step.name}'"
            if step.name
            else f"node '{name}' step {index}",
            url=None if step.node_name else step.service_url,
            node=build(step.node_name) if step.node_name else None,
            condition=compile_condition(step.condition) if step.condition else None,
            use_response=step.data == "$response",
            hard=step.dependency is Dependency.HARD,
            map_predictions=bool(step.map_predictions_to_instances),
        )
        for index, step in enumerate(node.steps)
    )
    weights: tuple[int, ...] = ()
    if node.router_type is RouterType.SPLITTER:
        weights = tuple(accumulate(step.weight or 0 for step in node.steps))
    return Node(name=name, kind=node.router_type, steps=steps, cumulative_weights=weights)


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
    return Timeouts(server_read=read, server_write=write, server_idle=idle, service_client=client)
