"""A validated InferenceGraph: the only form of a graph that the rest of InferGraph accepts.

`validate_graph` is the one function that turns a loaded document into a `ValidGraph`: the
pydantic shape, every rule of `graph_rules` (root node, references, cycles, weights, condition
and data-path syntax) and, for a whole resource, the name rule of KServe's admission webhook and
the API group rule: InferGraph's extensions only under `infergraph.dev/v1alpha1`, never under
KServe's `serving.kserve.io/v1alpha1` (whose CRD would prune them). A bare spec (the router's
`--graph-json`) may use them: it has no apiVersion, and only our router reads it.
The router's compiler, `render`, the Kubernetes controller, `infergraph up`, `explain`, `check`
and `router.testing` all take a `ValidGraph`, so a consumer that skipped validation does not
type-check; and since nothing else may construct one, it cannot be faked at run time either.

The one change a valid graph admits is resolving service names to URLs (what KServe's
controller does before it starts the router); `with_service_urls` does it and keeps validity.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Callable, Mapping
from typing import Any, Final

from pydantic import BaseModel, ValidationError

from schemas.base import ObjectMeta
from schemas.errors import FieldError, PathPart, SpecError, render_path
from schemas.graph import (
    API_VERSION,
    INFERGRAPH_API_VERSION,
    KIND,
    InferenceGraph,
    InferenceGraphSpec,
    InferenceStep,
    is_extension,
    kserve_json_type,
)
from schemas.graph_rules import check_graph_spec, is_http_url
from schemas.pydantic_errors import field_errors

# KServe's webhook (pkg/apis/serving/v1alpha1/inference_graph_validation.go, GraphNameFmt):
# the name becomes the router's Deployment and Service name, so it must be a DNS-1035 label.
NAME_PATTERN: Final = re.compile(r"[a-z]([-a-z0-9]*[a-z0-9])?")

_CONSTRUCTION_KEY: Final = object()
StepUrls = Callable[[str, int, InferenceStep], "str | None"]


class ValidGraph:
    """An InferenceGraph that passed every check; made only by `validate_graph`."""

    __slots__ = ("_resource",)

    def __init__(self, resource: InferenceGraph, key: object) -> None:
        if key is not _CONSTRUCTION_KEY:
            raise TypeError("a ValidGraph is made only by schemas.valid_graph.validate_graph")
        self._resource = resource

    @property
    def resource(self) -> InferenceGraph:
        return self._resource

    @property
    def spec(self) -> InferenceGraphSpec:
        return self._resource.spec

    @property
    def name(self) -> str | None:
        return self._resource.metadata.name

    def referenced_services(self) -> tuple[str, ...]:
        """InferenceServices called by name (steps without a serviceUrl), in first-use order."""
        names: dict[str, None] = {}
        for node in self.spec.nodes.values():
            for step in node.steps:
                if step.service_name is not None and step.service_url is None:
                    names[step.service_name] = None
        return tuple(names)

    def with_service_urls(self, urls: Mapping[str, str]) -> ValidGraph:
        """The graph with `serviceUrl` set on each step naming a service in `urls`.

        Steps that already have a serviceUrl keep it, as KServe's controller does.
        """

        def url_for(node: str, index: int, step: InferenceStep) -> str | None:
            return urls.get(step.service_name or "") if step.service_url is None else None

        return self.with_step_urls(url_for)

    def with_step_urls(self, url_for: StepUrls) -> ValidGraph:
        """The graph with `serviceUrl` replaced on each service step `url_for` gives a URL.

        `url_for(node, index, step)` returns the URL, or None to leave the step alone. Steps
        that call a node are never given one. Pointing a service step at another absolute
        http(s) URL keeps every rule true, so the result is valid by construction; any other
        URL is a ValueError.
        """
        nodes = {}
        for node_name, node in self.spec.nodes.items():
            steps = []
            for index, step in enumerate(node.steps):
                url = None if step.node_name else url_for(node_name, index, step)
                if url is not None and not is_http_url(url):
                    raise ValueError(f"'{url}' is not an absolute http(s) URL")
                steps.append(step if url is None else step.model_copy(update={"service_url": url}))
            nodes[node_name] = node.model_copy(update={"steps": steps})
        spec = self.spec.model_copy(update={"nodes": nodes})
        return ValidGraph(self._resource.model_copy(update={"spec": spec}), _CONSTRUCTION_KEY)

    def router_json(self) -> str:
        """The spec as KServe's controller hands it to its router (`--graph-json`)."""
        return self.spec.model_dump_json(by_alias=True, exclude_none=True)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, ValidGraph) and other._resource == self._resource

    def __hash__(self) -> int:
        return id(self._resource)

    def __repr__(self) -> str:
        return f"ValidGraph(name={self.name!r}, nodes={sorted(self.spec.nodes)})"


def is_whole_resource(doc: Any) -> bool:
    """A whole InferenceGraph (apiVersion/kind/spec) rather than the bare spec the router gets."""
    return isinstance(doc, Mapping) and ("kind" in doc or "apiVersion" in doc or "spec" in doc)


def validate_graph(doc: Any, source: str = "<input>") -> ValidGraph:
    """`doc` (a whole InferenceGraph, or its bare spec) as a ValidGraph.

    Raises SpecError with every problem found, each with its field path: shape errors and rule
    errors together, so one run shows them all. Paths start at `spec.` for a whole resource and
    at `nodes.` for a bare spec.
    """
    if is_whole_resource(doc):
        return _validate_resource(doc, source)
    try:
        spec = InferenceGraphSpec.model_validate(doc)
    except ValidationError as error:
        errors = field_errors(InferenceGraphSpec, error)
        errors.extend(_rules_despite_shape(doc, [d["loc"] for d in error.errors()], ()))
        raise SpecError(errors, source) from None
    _raise_if(check_graph_spec(spec), source)
    # The spec is validated; the envelope is ours (the group that admits every field), so it
    # needs no second validation.
    resource = InferenceGraph.model_construct(
        api_version=INFERGRAPH_API_VERSION, kind=KIND, metadata=ObjectMeta(), spec=spec, status=None
    )
    return ValidGraph(resource, _CONSTRUCTION_KEY)


def _validate_resource(doc: Any, source: str) -> ValidGraph:
    errors = _name_errors(doc)
    kserve = isinstance(doc, Mapping) and doc.get("apiVersion") == API_VERSION
    try:
        graph = InferenceGraph.model_validate(doc)
    except ValidationError as error:
        errors.extend(field_errors(InferenceGraph, error))
        spec_doc = doc.get("spec") if isinstance(doc, Mapping) else None
        spec_errors = [d["loc"][1:] for d in error.errors() if d["loc"][:1] == ("spec",)]
        errors.extend(_rules_despite_shape(spec_doc, spec_errors, ("spec",), kserve))
        raise SpecError(errors, source) from None
    errors.extend(_spec_errors(graph.spec, ("spec",), kserve))
    _raise_if(errors, source)
    return ValidGraph(graph, _CONSTRUCTION_KEY)


def _spec_errors(
    spec: InferenceGraphSpec, prefix: tuple[str, ...], kserve: bool
) -> list[FieldError]:
    errors = extension_errors(spec, prefix) if kserve else []
    return errors + check_graph_spec(spec, prefix)


def extension_errors(model: BaseModel, prefix: tuple[PathPart, ...]) -> list[FieldError]:
    """Every InferGraph extension set in `model`, which KServe's API group does not have."""
    errors = []
    for name, field in type(model).model_fields.items():
        value = getattr(model, name)
        if value is None:
            continue
        key = field.alias or name
        path = render_path((*prefix, key))
        if is_extension(field):
            errors.append(
                FieldError(
                    path,
                    f"'{key}' is an InferGraph extension, not a field of KServe's {API_VERSION} "
                    f"InferenceGraph (whose CRD would drop it); use apiVersion: "
                    f"{INFERGRAPH_API_VERSION}",
                )
            )
            continue
        kserve_type = kserve_json_type(field)
        if kserve_type == "string" and not isinstance(value, str):
            errors.append(
                FieldError(
                    path,
                    f"a non-string '{key}' is an InferGraph extension (KServe's {API_VERSION} "
                    f"has a string here); use apiVersion: {INFERGRAPH_API_VERSION}",
                )
            )
            continue
        errors.extend(_extensions_in(value, (*prefix, key)))
    return errors


def _extensions_in(value: Any, prefix: tuple[PathPart, ...]) -> list[FieldError]:
    if isinstance(value, BaseModel):
        return extension_errors(value, prefix)
    errors: list[FieldError] = []
    if isinstance(value, Mapping):
        for key, item in value.items():
            errors.extend(_extensions_in(item, (*prefix, str(key))))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            errors.extend(_extensions_in(item, (*prefix, index)))
    return errors


def _name_errors(doc: Any) -> list[FieldError]:
    name = (doc.get("metadata") or {}).get("name") if isinstance(doc, Mapping) else None
    if not isinstance(name, str) or NAME_PATTERN.fullmatch(name):
        return []
    return [
        FieldError(
            "metadata.name",
            f"'{name}' is not a valid InferenceGraph name: lower case letters, digits and "
            f"'-', starting with a letter and ending with a letter or digit (KServe's "
            f"webhook: {NAME_PATTERN.pattern})",
        )
    ]


def _rules_despite_shape(
    spec_doc: Any,
    refused: list[tuple[str | int, ...]],
    prefix: tuple[str, ...],
    kserve: bool = False,
) -> list[FieldError]:
    """The graph rules' errors of a document whose shape is wrong, so one run shows both.

    The fields pydantic refused are set aside and the rest is checked. A rule error about a
    field set aside, or about the object that holds one, is left out: the shape error already
    names the cause (a misspelt `serviceUrl` would also read as "step has no target"). When
    what is left has no valid shape either (a required field was the bad one), only the shape
    errors are known.
    """
    if not isinstance(spec_doc, Mapping):
        return []
    trimmed = copy.deepcopy(dict(spec_doc))
    for loc in refused:
        _remove(trimmed, loc)
    try:
        spec = InferenceGraphSpec.model_validate(trimmed)
    except ValidationError:
        return []
    holders = {render_path((*prefix, *loc[:-1])) for loc in refused}
    inside = tuple(h + sep for h in holders for sep in (".", "["))
    return [
        e
        for e in _spec_errors(spec, prefix, kserve)
        if e.path not in holders and not e.path.startswith(inside)
    ]


def _remove(tree: Any, loc: tuple[str | int, ...]) -> None:
    for part in loc[:-1]:
        try:
            tree = tree[part]
        except (KeyError, IndexError, TypeError):
            return
    if isinstance(tree, dict) and loc:
        tree.pop(loc[-1], None)


def _raise_if(errors: list[FieldError], source: str) -> None:
    if errors:
        raise SpecError(errors, source)
