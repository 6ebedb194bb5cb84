"""What `infergraph check` feeds a graph, and with which models.

- models: a user's file (`MODELS = {...}`, which wins, or functions named after services), else
  a model that echoes its input's rows as its predictions/outputs;
- bodies: from a JSON Schema per model (`--schema model=FILE`: the models that get the request
  as it is decide what is generated; the others' schemas check what the graph sends them), or v1
  and/or v2 bodies, the protocol inferred from the graph's conditions and data paths, else from
  which protocol its first models accept; plus the edge cases random draws rarely hit (no rows,
  one value, a schema's smallest instance and that instance missing each required field) and,
  without a schema, boundary bodies (magnitudes up to 1e9 of both signs, zeros, ragged, scalar
  and empty v1 rows, one-dimensional and empty v2 tensors), tried once each and also drawn
  among the generated bodies so that hypothesis shrinks them like the others;
- headers: what every client sends, plus a varied value (many users) for each Splitter's
  `stickyHeader` that clients do not all send alike, and for each PROPAGATE_HEADERS pattern
  (`--propagate-headers`) no client header matches, a header it matches (a name built from its
  literal parts or a common one, else drawn from it): missing, empty, or one value per user.
  A model taking two arguments gets `(body, headers)`: the headers the router forwards to its
  step under those patterns (`router.headers`, the router's own rule);
- intended defaults: a Switch or Sequence condition marked `# default` in the graph's YAML, or
  listed in the annotation `infergraph.dev/check-defaults` ("node/step, node/step").
"""

from __future__ import annotations

import asyncio
import importlib.util
import inspect
import re
import warnings
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import hypothesis
import jsonschema
import re2
import yaml
from hypothesis import strategies as st

from graph_controller.cli.check.findings import step_key
from router.headers import NEVER_FORWARDED, HeaderPropagator, canonical_name
from router.testing import Model, ModelFailure, ModelUnreachable, edge_payloads, payloads
from schemas.graph import InferenceGraphSpec, RouterType
from schemas.valid_graph import ValidGraph

DEFAULTS_ANNOTATION = "infergraph.dev/check-defaults"
# Headers every client sends with the same value: a stickyHeader among them puts all traffic on
# one route. Any other sticky header gets one value per simulated user.
CLIENT_HEADERS: Mapping[str, str] = {
    "Content-Type": "application/json",
    "Accept": "application/json",
    "User-Agent": "infergraph-check",
    "Host": "graph.example",
}
USERS = 997  # distinct sticky values in the generated traffic (a prime: no cycle aligns)
V1_TOKENS = frozenset({"instances", "predictions"})
V2_TOKENS = frozenset({"inputs", "outputs"})
_WORD = re.compile(r"[A-Za-z_]+")


def default_model(request: Any) -> Any:
    if isinstance(request, dict) and "instances" in request:
        return {"predictions": request["instances"]}
    if isinstance(request, dict) and "inputs" in request:
        return {"outputs": request["inputs"]}
    return {"predictions": []}


def load_models(path: str | Path | None, services: list[str]) -> dict[str, Model]:
    """The models for `services`: from `path`'s `MODELS` dict, else its function named after
    the service (`-` read as `_`), else `default_model`. ValueError names a `MODELS` entry
    that is not a service of the graph or not callable."""
    models: dict[str, Model] = {name: default_model for name in services}
    if path is None:
        return models
    spec = importlib.util.spec_from_file_location("infergraph_user_models", path)
    if spec is None or spec.loader is None:
        raise ValueError(f"cannot import models from {path}")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    for name in services:
        function = getattr(module, name.replace("-", "_"), None)
        if callable(function):
            models[name] = function
    given_models = getattr(module, "MODELS", None)
    if given_models is None:
        return models
    if not isinstance(given_models, Mapping):
        raise ValueError(f"{path}: MODELS must be a dict of service name to function")
    for name, function in given_models.items():
        if name not in services:
            raise ValueError(
                f"{path}: MODELS names {name!r}, which no step of the graph calls "
                f"(services: {', '.join(services) or 'none'})"
            )
        if not callable(function):
            raise ValueError(f"{path}: MODELS[{name!r}] is {function!r}, not a function")
        models[name] = function
    return models


def entry_steps(spec: InferenceGraphSpec) -> dict[tuple[str, str], str]:
    """(node, step) -> service of every service step that gets the graph's request as it is."""
    out: dict[tuple[str, str], str] = {}
    seen: set[str] = set()

    def walk(name: str) -> None:
        if name in seen:
            return
        seen.add(name)
        node = spec.nodes[name]
        for index, step in enumerate(node.steps):
            whole = step.data in (None, "$request") or (
                step.data == "$response"
                and (node.router_type is not RouterType.SEQUENCE or index == 0)
            )
            if not whole or step.map_predictions_to_instances or step.map_outputs_to_inputs:
                continue
            if step.node_name is not None:
                walk(step.node_name)
            elif step.service_name is not None:
                out[(name, step_key(node, index))] = step.service_name

    walk("root")
    return out


def graph_protocols(spec: InferenceGraphSpec) -> set[str]:
    """The protocols the graph's conditions, data paths and mappings name."""
    found: set[str] = set()
    for node in spec.nodes.values():
        for step in node.steps:
            texts = [step.condition or ""]
            texts += [step.data] if isinstance(step.data, str) else []
            texts += _strings(step.data) if isinstance(step.data, dict) else []
            words = {w for text in texts for w in _WORD.findall(text)}
            if words & V1_TOKENS or step.map_predictions_to_instances:
                found.add("v1")
            if words & V2_TOKENS or step.map_outputs_to_inputs:
                found.add("v2")
    return found


def _strings(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [s for v in value.values() for s in _strings(v)]
    if isinstance(value, list):
        return [s for v in value for s in _strings(v)]
    return []


def infer_protocol(spec: InferenceGraphSpec, models: Mapping[str, Model]) -> str | None:
    """ "v1" or "v2" when the graph names only one, else when its first models accept only one
    (tried on one body of each); None: both."""
    named = graph_protocols(spec)
    if len(named) == 1:
        return named.pop()
    if named:
        return None
    accepted: set[str] = set()
    for service in sorted(set(entry_steps(spec).values())):
        model = models.get(service)
        if model is None:
            continue
        for protocol in ("v1", "v2"):
            if _accepts(model, edge_payloads(protocol=protocol)[2]):
                accepted.add(protocol)
    return accepted.pop() if len(accepted) == 1 else None


def _accepts(model: Model, body: Any) -> bool:
    try:
        answer = model(body)
        if inspect.isawaitable(answer):
            answer = asyncio.run(_awaited(answer))
    except (ModelFailure, ModelUnreachable):
        return False
    except Exception:  # a user's model refusing a protocol by raising: it does not accept it
        return False
    status = answer[0] if isinstance(answer, tuple) and len(answer) == 2 else 200
    return isinstance(status, int) and status < 400


async def _awaited(answer: Any) -> Any:
    return await answer


def parse_schema_option(option: str) -> tuple[str | None, Path]:
    """`--schema FILE` (the graph's request) or `--schema MODEL=FILE`."""
    model, sep, file = option.partition("=")
    if sep and model and not Path(option).exists():
        return model, Path(file)
    return None, Path(option)


def read_schema(path: Path, label: str) -> dict[str, Any]:
    try:
        schema = yaml.safe_load(path.read_text())
    except OSError as error:
        raise ValueError(f"--schema {label}: cannot read: {error.strerror}") from error
    except yaml.YAMLError as error:
        raise ValueError(f"--schema {label}: not JSON or YAML: {error}") from error
    if not isinstance(schema, dict):
        raise ValueError(f"--schema {label}: a JSON Schema is an object, got {schema!r}")
    return schema


def validator(schema: Mapping[str, Any]) -> Any:
    cls = jsonschema.validators.validator_for(schema)
    return cls(schema)


def schema_inputs(
    schemas: list[Mapping[str, Any]],
) -> tuple[st.SearchStrategy[Any], list[Any]]:
    """Bodies valid under any of `schemas`, and the edge cases: each schema's smallest
    instance, and that instance without each of its required fields."""
    from router.testing import from_schema

    strategies = [from_schema(s) for s in schemas]
    edges: list[Any] = []
    for schema, strategy in zip(schemas, strategies, strict=True):
        try:
            smallest = hypothesis.find(
                strategy,
                lambda _: True,
                settings=hypothesis.settings(database=None, derandomize=True, max_examples=50),
            )
        except hypothesis.errors.NoSuchExample:
            continue
        edges.append(smallest)
        if isinstance(smallest, dict):
            for name in schema.get("required", []):
                edges.append({k: v for k, v in smallest.items() if k != name})
    return st.one_of(strategies), edges


FEATURES = 4  # values per row of the generated bodies (`payloads`' default)
# Values at the edges of what models handle: zero, a negative, magnitudes far beyond the
# +-1000 `payloads` draws from (amounts, counts, unscaled features).
BOUNDARY_VALUES = (0.0, -1.0, 1e6, -1e6, 1e9, -1e9)
BOUNDARY_SHARE = 4  # one generated body in this many is drawn from `boundary_payloads`


def protocol_inputs(protocol: str | None) -> tuple[st.SearchStrategy[Any], list[Any]]:
    """Bodies of `protocol` (both when None): `payloads`' and, one in BOUNDARY_SHARE,
    `boundary_payloads`'; the edge cases are `edge_payloads`' then `boundary_edges`'."""
    usual = payloads(protocol=protocol)
    strategy = st.one_of(*[usual] * (BOUNDARY_SHARE - 1), boundary_payloads(protocol))
    return strategy, edge_payloads(protocol=protocol) + boundary_edges(protocol)


def boundary_edges(protocol: str | None) -> list[dict[str, Any]]:
    """Valid bodies `payloads` never draws, each tried once: large magnitudes of both signs,
    and in v1 ragged rows, a scalar row (a row of one value written as the value) and an
    empty row; in v2 a tensor of one dimension and one of rows without values."""
    out: list[dict[str, Any]] = []
    magnitudes = [1e6, -1e6, 1e9, -1e9]
    if protocol in (None, "v1"):
        out += [{"instances": [[x] * FEATURES]} for x in magnitudes]
        out += [
            {"instances": [[0.0], [0.0, 0.0]]},
            {"instances": [0.0]},
            {"instances": [[]]},
        ]
    if protocol in (None, "v2"):
        out += [_tensor([FEATURES], [x] * FEATURES) for x in magnitudes]
        out += [_tensor([FEATURES], [0.0] * FEATURES), _tensor([1, 0], [])]
    return out


def _tensor(shape: list[int], data: list[float]) -> dict[str, Any]:
    return {"inputs": [{"name": "input-0", "shape": shape, "datatype": "FP64", "data": data}]}


def boundary_payloads(protocol: str | None) -> st.SearchStrategy[dict[str, Any]]:
    """Bodies mixing the boundary cases, so that hypothesis explores and shrinks them like
    the others: v1 rows of any length (none, ragged), scalar rows and BOUNDARY_VALUES among
    the values; v2 tensors of one or two dimensions, possibly without values."""
    return _boundary_payloads(protocol)


_boundary_numbers = st.one_of(
    st.sampled_from(BOUNDARY_VALUES),
    st.floats(-1e9, 1e9, allow_nan=False, allow_infinity=False),
)


@st.composite
def _boundary_payloads(draw: st.DrawFn, protocol: str | None) -> dict[str, Any]:
    if protocol == "v1" or (protocol is None and draw(st.booleans())):
        row = st.one_of(
            st.lists(_boundary_numbers, min_size=0, max_size=FEATURES + 1),
            _boundary_numbers,
        )
        return {"instances": draw(st.lists(row, min_size=1, max_size=3))}
    if draw(st.booleans()):
        data = draw(st.lists(_boundary_numbers, min_size=1, max_size=2 * FEATURES))
        return _tensor([len(data)], data)
    rows = draw(st.integers(1, 3))
    width = draw(st.integers(0, FEATURES))
    data = draw(st.lists(_boundary_numbers, min_size=rows * width, max_size=rows * width))
    return _tensor([rows, width], data)


def traffic_headers(
    spec: InferenceGraphSpec, propagated: Sequence[str] = ()
) -> list[dict[str, str]]:
    """The request headers of the generated traffic, one set per simulated user: a sticky
    header's value is the user's; a `propagated` header (see `propagated_names`) is missing for
    every third user, empty for the next, and the user's own value for the third."""
    constant = {name.lower() for name in CLIENT_HEADERS}
    sticky = sorted(
        {
            node.sticky_header
            for node in spec.nodes.values()
            if node.sticky_header and node.sticky_header.lower() not in constant
        }
    )
    if not sticky and not propagated:
        return [dict(CLIENT_HEADERS)]
    mix: list[dict[str, str]] = []
    for i in range(USERS):
        headers = dict(CLIENT_HEADERS)
        if i % 3:
            headers |= {h: "" if i % 3 == 1 else f"user-{i}" for h in propagated}
        mix.append(headers | {h: f"user-{i}" for h in sticky})
    return mix


_TOKEN = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")  # an HTTP header name (RFC 9110 5.6.2)
# What a pattern holds besides its literal text: sets (`[[:alpha:]]`, `[^a-z]`), escapes (`\pL`,
# `\p{Greek}`, `\d`), group openers and flags (`(?i)`, `(?P<name>`).
_NOT_LITERAL = re.compile(
    r"\[(?:\[:\^?\w+:\]|\\.|[^\]\\])+\]|\\[pP]\{\w+\}|\\[pP]\w|\\.|\(\?[^)]*?[):]|\{\d+(?:,\d*)?\}"
)
_LITERAL = re.compile(r"[A-Za-z0-9-]+")
# Fillers for what a pattern leaves open between or around its literal parts (`[[:alpha:]]+-Id`),
# and names clients commonly send for a pattern without literal parts to build from.
_FILLERS = ("X", "0", "User", "Request", "Tenant", "Trace", "Session", "Api", "Client")
_COMMON_HEADERS = (
    "Authorization",
    "Cookie",
    "Baggage",
    "X-Request-Id",
    "X-Correlation-Id",
    "X-User-Id",
    "X-Tenant-Id",
    "X-Session-Id",
    "X-Trace-Id",
    "X-Api-Key",
    "X-Forwarded-For",
    "X-Real-Ip",
    "X-B3-Traceid",
    "X-B3-Spanid",
    "X-Amzn-Trace-Id",
    "X-Cloud-Trace-Context",
    "Accept-Language",
    "Cache-Control",
    "Origin",
    "Referer",
)


def header_candidates(pattern: str) -> list[str]:
    """Go-canonical header names built from `pattern`'s literal parts (alone, joined in order,
    with a filler around or between them) and common header names, shortest first (those with
    a leading or trailing '-' last).

    They let RE2-only syntax (`[[:alpha:]]`, `\\pL`) work: Python's regex engine, which draws
    names from a pattern, refuses or misreads it."""
    parts = [p for p in _LITERAL.findall(_NOT_LITERAL.sub(" ", pattern)) if p.strip("-")]
    built: set[str] = set(_COMMON_HEADERS)
    for filler in ("", *_FILLERS):
        built |= {filler.join(parts), filler + "-".join(parts), "-".join(parts) + filler}
        for part in parts:
            built |= {part, filler + part, part + filler, f"{filler}-{part}", f"{part}-{filler}"}
    names = {canonical_name(n) for n in built if _TOKEN.fullmatch(n)}
    # A name starting or ending with '-' is valid but unusual: tried after the others.
    return sorted(names, key=lambda n: (n[:1] == "-" or n[-1:] == "-", len(n), n))


def propagated_names(patterns: Sequence[str]) -> list[str]:
    """For each PROPAGATE_HEADERS pattern that no header clients always send matches, a short
    header name the router forwards because of it (`HeaderPropagator`, the router's own rule:
    RE2, unanchored, on the Go-canonical name): the shortest of `header_candidates` it matches,
    else one drawn by hypothesis from the pattern. ValueError names a pattern RE2 refuses, or one
    for which no name was found."""
    forwarded = [n for n in CLIENT_HEADERS if n.lower() not in NEVER_FORWARDED]
    unpatterned = HeaderPropagator(())  # what the router forwards whatever the patterns say
    names: list[str] = []
    for pattern in patterns:
        try:
            re2.compile(pattern)
        except re2.error as error:
            raise ValueError(
                f"--propagate-headers: {pattern!r} is not a Go (RE2) regular expression: {error}"
            ) from error
        propagator = HeaderPropagator((pattern,))

        def matches(name: str, propagator: HeaderPropagator = propagator) -> bool:
            # The trace context reaches every step anyway: not the pattern's doing.
            return (
                _TOKEN.fullmatch(name) is not None
                and _forwards(propagator, name)
                and not _forwards(unpatterned, name)
            )

        if any(_forwards(propagator, n) for n in forwarded):
            continue  # every request already carries one
        candidates = header_candidates(pattern)
        name = next((n for n in candidates if matches(n)), None)
        if name is None:
            name, why = _drawn_name(pattern, matches)
            if name is None:
                raise ValueError(
                    f"--propagate-headers: no header name found that {pattern!r} matches as "
                    "the router matches (RE2, unanchored, on the Go-canonical name, such as "
                    f"'X-User-Id'): none of {len(candidates)} names built from its literal parts "
                    f"and common header names, and {why}; give the headers with --headers instead"
                )
        names.append(name)
    return sorted(set(names))


NAME_DRAWS = 500  # header names drawn per pattern before giving up on it
_MARK = "infergraph-check-mark"


def _forwards(propagator: HeaderPropagator, name: str) -> bool:
    """Whether the router forwards a request header `name` to its steps. Its value tells: the
    router adds a Content-Type of its own when it does not forward the client's."""
    return propagator.outbound({name: _MARK}).get(name) == _MARK


def _drawn_name(pattern: str, matches: Callable[[str], bool]) -> tuple[str | None, str]:
    """A name drawn by hypothesis from `pattern` (as Python reads it) that `matches`, else None
    and why none was found."""
    try:
        with warnings.catch_warnings():
            # Python's re warns on sets RE2 reads otherwise ("[[:alpha:]]"); RE2 decides.
            warnings.simplefilter("ignore", FutureWarning)
            name: str = hypothesis.find(
                st.from_regex(pattern).map(canonical_name),
                matches,
                settings=hypothesis.settings(
                    database=None, derandomize=True, max_examples=NAME_DRAWS
                ),
            )
    except hypothesis.errors.NoSuchExample:
        return None, f"none of {NAME_DRAWS} names drawn from it"
    except re.error as error:
        return None, f"Python cannot draw names from it ({error})"
    return name, ""


def with_headers(model: Model, outbound: Callable[[], Mapping[str, str]]) -> Model:
    """`model` as the harness calls it (one argument), given `outbound()`, the headers of the
    step call, as its second argument when it takes two."""
    if not _takes_two(model):
        return model

    def called(body: Any) -> Any:
        return model(body, outbound())  # type: ignore[call-arg]

    return called


def _takes_two(model: Model) -> bool:
    try:
        parameters = list(inspect.signature(model).parameters.values())
    except (TypeError, ValueError):  # a builtin or C callable: called with the body alone
        return False
    positional = [
        p
        for p in parameters
        if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD) and p.default is p.empty
    ]
    return len(positional) >= 2


# --- intended defaults ---------------------------------------------------------------------


def marked_defaults(graph: ValidGraph, texts: Sequence[str] = ()) -> set[tuple[str, str]]:
    """(node, step) of the conditions the user marked as intended defaults: listed in the
    graph's `infergraph.dev/check-defaults` annotation, or (in YAML `texts`) with a
    `# default` comment on the condition's line."""
    marked: set[tuple[str, str]] = set()
    annotations = graph.resource.metadata.annotations or {}
    listed = annotations.get(DEFAULTS_ANNOTATION, "")
    for item in filter(None, (part.strip() for part in listed.split(","))):
        node, sep, step = item.partition("/")
        if not sep or node not in graph.spec.nodes:
            raise ValueError(
                f"annotation {DEFAULTS_ANNOTATION}: {item!r} is not 'node/step' of this graph"
            )
        keys = {
            step_key(graph.spec.nodes[node], i) for i in range(len(graph.spec.nodes[node].steps))
        }
        if step not in keys:
            raise ValueError(
                f"annotation {DEFAULTS_ANNOTATION}: node '{node}' has no step {step!r} "
                f"(steps: {', '.join(sorted(keys))})"
            )
        marked.add((node, step))
    for text in texts:
        marked |= _commented_defaults(text)
    return marked


_DEFAULT_COMMENT = re.compile(r"#\s*default\b")


def _commented_defaults(text: str) -> set[tuple[str, str]]:
    lines = text.splitlines()
    out: set[tuple[str, str]] = set()
    try:
        documents = list(yaml.compose_all(text))
    except yaml.YAMLError:
        return out
    for document in documents:
        nodes = _child(_child(document, "spec"), "nodes") or _child(document, "nodes")
        if not isinstance(nodes, yaml.MappingNode):
            continue
        for name_node, router in nodes.value:
            steps = _child(router, "steps")
            if not isinstance(steps, yaml.SequenceNode):
                continue
            for index, step in enumerate(steps.value):
                condition = _child(step, "condition")
                if condition is None:
                    continue
                line = lines[condition.end_mark.line]
                if _DEFAULT_COMMENT.search(line[condition.end_mark.column :]):
                    named = _child(step, "name")
                    key = (
                        named.value
                        if isinstance(named, yaml.ScalarNode) and named.value
                        else str(index)
                    )
                    out.add((str(name_node.value), key))
    return out


def _child(node: Any, key: str) -> Any:
    if not isinstance(node, yaml.MappingNode):
        return None
    for k, v in node.value:
        if isinstance(k, yaml.ScalarNode) and k.value == key:
            return v
    return None
