"""Parse YAML or JSON into validated resources, with errors that name the exact field.

Callers: the router (`--graph-json`, `--graph-file`), the `infergraph` CLI and the deployers.
A document is either a whole resource (`apiVersion`/`kind`/`spec`) or, for InferenceGraphs, the
bare spec that KServe hands its router. Pydantic's errors are rewritten here: locations become
paths like `spec.nodes.root.steps[1].weight`, and an unknown field names the nearest known one.
"""

from __future__ import annotations

import difflib
import types
import typing
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Union

import orjson
import yaml
from pydantic import BaseModel, ValidationError
from pydantic_core import ErrorDetails

from schemas.errors import FieldError, PathPart, SpecError, render_path
from schemas.graph import KIND as GRAPH_KIND
from schemas.graph import InferenceGraph, InferenceGraphSpec
from schemas.graph_rules import check_graph_spec
from schemas.inference_service import InferenceService
from schemas.serving_runtime import ClusterServingRuntime, ServingRuntime

AnyResource = InferenceGraph | InferenceService | ServingRuntime | ClusterServingRuntime
# The kinds a file may hold, besides InferenceGraph (which has rules beyond its shape).
_PLAIN_KINDS: dict[str, type[InferenceService | ServingRuntime | ClusterServingRuntime]] = {
    "InferenceService": InferenceService,
    "ServingRuntime": ServingRuntime,
    "ClusterServingRuntime": ClusterServingRuntime,
}


@dataclass(frozen=True, slots=True)
class Document:
    """One parsed document of a file: where it came from and what it holds."""

    source: str
    resource: AnyResource


def parse_text(text: str | bytes, source: str = "<input>") -> list[Any]:
    """Every YAML/JSON document in `text` (JSON is tried first: it is the router's hot input)."""
    raw = text.encode() if isinstance(text, str) else text
    stripped = raw.lstrip()
    if stripped[:1] in (b"{", b"["):
        try:
            return [orjson.loads(raw)]
        except orjson.JSONDecodeError:
            pass  # Not JSON after all (YAML flow style); let YAML parse and report.
    try:
        # Empty documents stay (as None) so documents keep their position in the file.
        docs = list(yaml.safe_load_all(raw))
    except yaml.YAMLError as error:
        raise SpecError(
            [FieldError("<document>", f"not valid YAML or JSON: {error}")], source
        ) from error
    if all(d is None for d in docs):
        raise SpecError([FieldError("<document>", "the document is empty")], source)
    return docs


def load_graph_spec(text: str | bytes, source: str = "<input>") -> InferenceGraphSpec:
    """The graph spec in `text`: a whole InferenceGraph resource or its bare spec (one document)."""
    docs = [d for d in parse_text(text, source) if d is not None]
    if len(docs) != 1:
        raise SpecError(
            [FieldError("<document>", f"expected one InferenceGraph, found {len(docs)} documents")],
            source,
        )
    doc = docs[0]
    if isinstance(doc, Mapping) and ("kind" in doc or "apiVersion" in doc or "spec" in doc):
        return validate_graph(doc, source).spec
    return validate_graph_spec(doc, source)


def load_graph_file(path: str | Path) -> InferenceGraphSpec:
    """`load_graph_spec` of a file; an unreadable file is a SpecError naming the path."""
    try:
        data = Path(path).read_bytes()
    except OSError as error:
        raise SpecError(
            [FieldError("<file>", f"cannot read: {error.strerror}")], str(path)
        ) from error
    return load_graph_spec(data, str(path))


def validate_graph(doc: Any, source: str = "<input>") -> InferenceGraph:
    """A whole InferenceGraph resource, shape and rules checked; SpecError lists all problems."""
    graph = _validate_model(InferenceGraph, doc, source)
    _raise_if(check_graph_spec(graph.spec, ("spec",)), source)
    return graph


def validate_graph_spec(doc: Any, source: str = "<input>") -> InferenceGraphSpec:
    """A bare InferenceGraph spec (what `--graph-json` gets); paths start at `nodes`."""
    spec = _validate_model(InferenceGraphSpec, doc, source)
    _raise_if(check_graph_spec(spec), source)
    return spec


def load_documents(text: str | bytes, source: str = "<input>") -> list[Document]:
    """Every resource of a (multi-document) file; SpecError carries the errors of all of them."""
    out: list[Document] = []
    errors: list[FieldError] = []
    docs = parse_text(text, source)
    for index, doc in enumerate(docs):
        if doc is None:
            continue
        label = source if len(docs) == 1 else f"{source}[{index}]"
        try:
            out.append(Document(label, _validate_any(doc, label)))
        except SpecError as error:
            prefix = "" if len(docs) == 1 else f"document {index}: "
            errors.extend(FieldError(e.path, prefix + e.message) for e in error.errors)
    _raise_if(errors, source)
    return out


def _validate_any(doc: Any, source: str) -> AnyResource:
    if not isinstance(doc, Mapping):
        raise SpecError([FieldError("<document>", "expected a mapping (a resource)")], source)
    kind = doc.get("kind")
    if kind == GRAPH_KIND:
        return validate_graph(doc, source)
    if kind is None and "nodes" in doc:
        spec = validate_graph_spec(doc, source)
        return InferenceGraph.model_validate(
            {"apiVersion": "serving.kserve.io/v1alpha1", "kind": GRAPH_KIND, "spec": spec}
        )
    model = _PLAIN_KINDS.get(kind) if isinstance(kind, str) else None
    if model is not None:
        return _validate_model(model, doc, source)
    known = ", ".join([GRAPH_KIND, *_PLAIN_KINDS])
    raise SpecError(
        [FieldError("kind", f"unsupported kind {kind!r}; expected one of {known}")], source
    )


def _raise_if(errors: list[FieldError], source: str) -> None:
    if errors:
        raise SpecError(errors, source)


M = typing.TypeVar("M", bound=BaseModel)


def _validate_model(model: type[M], doc: Any, source: str) -> M:
    try:
        return model.model_validate(doc)
    except ValidationError as error:
        raise SpecError([_field_error(model, e) for e in error.errors()], source) from None


def _field_error(model: type[BaseModel], detail: ErrorDetails) -> FieldError:
    loc: tuple[PathPart, ...] = tuple(detail["loc"])
    path = render_path(loc)
    if detail["type"] == "extra_forbidden" and loc:
        known = _known_fields(model, loc[:-1])
        unknown = str(loc[-1])
        close = difflib.get_close_matches(unknown, known, n=1, cutoff=0.6)
        hint = f"; did you mean '{close[0]}'?" if close else ""
        return FieldError(path, f"unknown field '{unknown}'{hint} (known: {', '.join(known)})")
    if detail["type"] == "missing":
        return FieldError(path, "required field is missing")
    return FieldError(path, _plain_message(detail))


def _plain_message(detail: ErrorDetails) -> str:
    message = detail["msg"]
    given = detail.get("input")
    if isinstance(given, str | int | float | bool) or given is None:
        return f"{message}, got {given!r}"
    return message


def _known_fields(model: type[BaseModel], loc: tuple[PathPart, ...]) -> list[str]:
    """The JSON field names of the model found at `loc` under `model` (empty if not a model)."""
    current: Any = model
    for part in loc:
        current = _step_into(current, part)
        if current is None:
            return []
    if isinstance(current, type) and issubclass(current, BaseModel):
        return [info.alias or name for name, info in current.model_fields.items()]
    return []


def _step_into(annotation: Any, part: PathPart) -> Any:
    for candidate in _unwrap(annotation):
        if isinstance(candidate, type) and issubclass(candidate, BaseModel):
            if not isinstance(part, str):
                continue
            for name, info in candidate.model_fields.items():
                if part in (info.alias, name):
                    return info.annotation
        origin = typing.get_origin(candidate)
        args = typing.get_args(candidate)
        if origin is dict and len(args) == 2:
            return args[1]
        if origin is list and args and isinstance(part, int):
            return args[0]
    return None


def _unwrap(annotation: Any) -> Iterator[Any]:
    """The members of an Optional/Union annotation, or the annotation itself."""
    origin = typing.get_origin(annotation)
    if origin is Union or origin is types.UnionType:
        for arg in typing.get_args(annotation):
            yield from _unwrap(arg)
    else:
        yield annotation
