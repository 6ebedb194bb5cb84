"""The rules of a well-formed InferenceGraph that span fields and nodes.

`check_graph_spec` is pure and returns every violation with its path; the loader calls it after
pydantic has checked shapes. KServe's webhook checks fewer of these (it misses cycles, for one);
each rule here turns a request-time failure of KServe's router into a load-time error.
"""

from __future__ import annotations

from collections.abc import Iterator
from urllib.parse import urlsplit

from schemas.conditions import ConditionError
from schemas.errors import FieldError, PathPart, render_path
from schemas.expressions import compile_expression
from schemas.graph import (
    ROOT_NODE,
    Aggregation,
    ConditionLanguage,
    InferenceGraphSpec,
    InferenceRouter,
    InferenceStep,
    RouterType,
)
from schemas.mapping import MappingError, compile_data
from schemas.streaming import streaming_steps

SPLITTER_TOTAL = 100


def check_graph_spec(
    spec: InferenceGraphSpec, prefix: tuple[PathPart, ...] = ()
) -> list[FieldError]:
    """All rule violations of `spec`; paths start with `prefix` (e.g. `("spec",)`)."""
    errors: list[FieldError] = []
    nodes_path = (*prefix, "nodes")
    if ROOT_NODE not in spec.nodes:
        known = ", ".join(sorted(spec.nodes)) or "none"
        errors.append(
            FieldError(
                render_path(nodes_path),
                f"no node named '{ROOT_NODE}': a graph starts at '{ROOT_NODE}' (nodes: {known})",
            )
        )
    for node_name, node in spec.nodes.items():
        errors.extend(_check_node(spec, node_name, node, (*nodes_path, node_name)))
    errors.extend(_check_cycles(spec, nodes_path))
    errors.extend(_check_idle_timeouts(spec, nodes_path))
    return errors


def _check_idle_timeouts(
    spec: InferenceGraphSpec, nodes_path: tuple[PathPart, ...]
) -> Iterator[FieldError]:
    """`idleTimeout` bounds the gaps of a streamed answer: only where an answer can stream."""
    streaming = streaming_steps(spec)
    for node_name, node in spec.nodes.items():
        for index, step in enumerate(node.steps):
            if step.idle_timeout is None or (node_name, index) in streaming:
                continue
            if step.node_name:
                why = "a nodeName step has no answer of its own; set it on the node's steps"
            else:
                why = (
                    f"the answer of this {node.router_type} step is read by the graph "
                    "(a later step, a condition, an aggregation or a shadow), so it is "
                    "collected, never streamed"
                )
            yield FieldError(
                render_path((*nodes_path, node_name, "steps", index, "idleTimeout")),
                f"idleTimeout {step.idle_timeout:g}s is only for steps whose answer streams to "
                f"the client: {why}",
            )


def is_http_url(url: str) -> bool:
    """Whether `url` is what a step may call: an absolute http(s) URL, or a gRPC v2 model."""
    parts = urlsplit(url)
    if parts.scheme == "grpc":
        return grpc_url_problem(url) is None
    return parts.scheme in ("http", "https") and bool(parts.netloc)


def grpc_url_problem(url: str) -> str | None:
    """What is wrong with a `grpc://host:port/<model>` step URL (a gRPC v2 model), or None."""
    parts = urlsplit(url)
    if parts.scheme != "grpc":
        return None
    model = parts.path.removeprefix("/")
    try:
        port = parts.port
    except ValueError:
        port = None
    if not parts.hostname or port is None:
        return f"'{url}' needs a host and a port: grpc://host:port/<model>"
    if not model or "/" in model or parts.query or parts.fragment:
        return f"'{url}' needs exactly a model name as its path: grpc://host:port/<model>"
    return None


def _check_node(
    spec: InferenceGraphSpec, node_name: str, node: InferenceRouter, path: tuple[PathPart, ...]
) -> Iterator[FieldError]:
    if not node.steps:
        yield FieldError(render_path((*path, "steps")), "a node needs at least one step")
    seen_names: dict[str, int] = {}
    for index, step in enumerate(node.steps):
        step_path = (*path, "steps", index)
        yield from _check_step(spec, node, step, step_path)
        if step.name is not None:
            if step.name in seen_names:
                yield FieldError(
                    render_path((*step_path, "name")),
                    f"step name '{step.name}' is already used by steps[{seen_names[step.name]}]"
                    f" of node '{node_name}'; step names must be unique within a node",
                )
            else:
                seen_names[step.name] = index
    yield from _check_node_options(node, path)
    if node.router_type is RouterType.SPLITTER and node.steps:
        weights = [s.weight for s in node.steps if not s.shadow]
        if not weights:
            yield FieldError(render_path((*path, "steps")), "a Splitter needs a non-shadow step")
        elif all(w is not None for w in weights):
            total = sum(w for w in weights if w is not None)
            if total != SPLITTER_TOTAL:
                yield FieldError(
                    render_path((*path, "steps")),
                    f"Splitter step weights sum to {total}, expected {SPLITTER_TOTAL}",
                )


def _check_step(
    spec: InferenceGraphSpec,
    node: InferenceRouter,
    step: InferenceStep,
    path: tuple[PathPart, ...],
) -> Iterator[FieldError]:
    # Go's omitempty: an empty string is an unset field, so `serviceName: ""` is no target.
    service_target = bool(step.service_name) or bool(step.service_url)
    if step.node_name and service_target:
        other = "serviceName" if step.service_name else "serviceUrl"
        yield FieldError(
            render_path(path),
            f"step sets both nodeName and {other}; set exactly one target: "
            "serviceName, serviceUrl or nodeName",
        )
    elif not step.node_name and not service_target:
        yield FieldError(
            render_path(path),
            "step has no target; set exactly one of serviceName, serviceUrl or nodeName",
        )
    if step.node_name and step.node_name not in spec.nodes:
        known = ", ".join(sorted(spec.nodes))
        yield FieldError(
            render_path((*path, "nodeName")),
            f"refers to node '{step.node_name}', which does not exist (nodes: {known})",
        )
    if step.service_url and not is_http_url(step.service_url):
        yield FieldError(
            render_path((*path, "serviceUrl")),
            grpc_url_problem(step.service_url)
            or f"'{step.service_url}' is not an absolute http(s) URL (or grpc://host:port/<model>)",
        )
    weighted = node.router_type is RouterType.ENSEMBLE and node.aggregation is Aggregation.WEIGHTED
    if node.router_type is RouterType.SPLITTER and step.shadow:
        if step.weight is not None:
            yield FieldError(
                render_path((*path, "weight")),
                "a shadow step gets a copy of all traffic: no weight",
            )
    elif node.router_type is RouterType.SPLITTER or weighted:
        if step.weight is None:
            kind = "Splitter node" if not weighted else "Ensemble with aggregation 'weighted'"
            yield FieldError(
                render_path((*path, "weight")), f"every step of a {kind} needs a weight"
            )
    elif step.weight is not None:
        yield FieldError(
            render_path((*path, "weight")),
            f"weight is only allowed on Splitter steps (and on Ensemble steps with aggregation "
            f"'weighted'), not on {node.router_type} steps",
        )
    if step.shadow and node.router_type is not RouterType.SPLITTER:
        yield FieldError(render_path((*path, "shadow")), "shadow steps belong to Splitter nodes")
    if step.condition is not None:
        language = step.condition_language or spec.condition_language or ConditionLanguage.GJSON
        try:
            compile_expression(step.condition, language)
        except ConditionError as error:
            yield FieldError(render_path((*path, "condition")), str(error))
    if step.data is not None:
        try:
            compile_data(step.data)
        except MappingError as error:
            yield FieldError(render_path((*path, "data")), str(error))
    if step.openai is not None and not step.service_name:
        yield FieldError(
            render_path((*path, "openai")),
            f"openai: {step.openai} picks the OpenAI endpoint of the InferenceService named by "
            "serviceName; this step names none (a serviceUrl is called as written)",
        )
    if step.map_outputs_to_inputs and step.map_predictions_to_instances:
        yield FieldError(
            render_path((*path, "mapOutputsToInputs")),
            "choose one of mapPredictionsToInstances (v1) and mapOutputsToInputs (v2)",
        )


def _check_node_options(node: InferenceRouter, path: tuple[PathPart, ...]) -> Iterator[FieldError]:
    ensemble_only = {
        "aggregation": node.aggregation,
        "partialResults": node.partial_results,
        "quorum": node.quorum,
    }
    if node.router_type is not RouterType.ENSEMBLE:
        for field, value in ensemble_only.items():
            if value is not None:
                yield FieldError(render_path((*path, field)), "only Ensemble nodes take this field")
    if node.sticky_header is not None and node.router_type is not RouterType.SPLITTER:
        yield FieldError(
            render_path((*path, "stickyHeader")), "only Splitter nodes take this field"
        )
    aggregation = node.aggregation or Aggregation.MERGE
    if node.partial_results and aggregation is not Aggregation.MERGE:
        yield FieldError(
            render_path((*path, "partialResults")),
            f"partial results apply to aggregation 'merge', not '{aggregation}'",
        )
    if isinstance(node.quorum, int) and not 1 <= node.quorum <= len(node.steps):
        yield FieldError(
            render_path((*path, "quorum")),
            f"quorum {node.quorum} must be between 1 and the {len(node.steps)} steps",
        )
    if node.quorum == "majority" and aggregation is not Aggregation.MAJORITY:
        yield FieldError(
            render_path((*path, "quorum")), "quorum 'majority' needs aggregation 'majority'"
        )


def _check_cycles(spec: InferenceGraphSpec, nodes_path: tuple[PathPart, ...]) -> list[FieldError]:
    """Report each cycle through nodeName references once, at the step that closes it."""
    errors: list[FieldError] = []
    done: set[str] = set()
    reported: set[frozenset[str]] = set()

    def visit(name: str, trail: list[str]) -> None:
        node = spec.nodes.get(name)
        if node is None or name in done:
            return
        trail.append(name)
        for index, step in enumerate(node.steps):
            target = step.node_name
            if target is None:
                continue
            if target in trail:
                cycle = [*trail[trail.index(target) :], target]
                key = frozenset(cycle)
                if key not in reported:
                    reported.add(key)
                    errors.append(
                        FieldError(
                            render_path((*nodes_path, name, "steps", index, "nodeName")),
                            "nodeName references form a cycle: " + " -> ".join(cycle),
                        )
                    )
            else:
                visit(target, trail)
        trail.pop()
        done.add(name)

    start = [ROOT_NODE] if ROOT_NODE in spec.nodes else []
    for name in [*start, *sorted(spec.nodes)]:
        visit(name, [])
    return errors
