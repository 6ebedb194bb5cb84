"""Parse YAML or JSON into validated resources, with errors that name the exact field.

Callers: the router (`--graph-json`, `--graph-file`), the `infergraph` CLI and the deployers.
A document is either a whole resource (`apiVersion`/`kind`/`spec`) or, for InferenceGraphs, the
bare spec that KServe hands its router; graphs come out as `ValidGraph`s (schemas.valid_graph).
Pydantic's errors are rewritten by schemas.pydantic_errors into paths such as
`spec.nodes.root.steps[1].weight`.
"""

from __future__ import annotations

import typing
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
import yaml
from pydantic import BaseModel, ValidationError

from schemas.errors import FieldError, SpecError
from schemas.graph import KIND as GRAPH_KIND
from schemas.inference_service import InferenceService
from schemas.pydantic_errors import field_errors
from schemas.serving_runtime import ClusterServingRuntime, ServingRuntime
from schemas.valid_graph import ValidGraph, validate_graph

AnyResource = ValidGraph | InferenceService | ServingRuntime | ClusterServingRuntime
# The kinds a file may hold, besides InferenceGraph (validate_graph has rules beyond its shape).
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


def load_graph(text: str | bytes, source: str = "<input>") -> ValidGraph:
    """The one graph in `text`: a whole InferenceGraph resource or its bare spec, validated."""
    docs = [d for d in parse_text(text, source) if d is not None]
    if len(docs) != 1:
        raise SpecError(
            [FieldError("<document>", f"expected one InferenceGraph, found {len(docs)} documents")],
            source,
        )
    return validate_graph(docs[0], source)


def load_graph_file(path: str | Path) -> ValidGraph:
    """`load_graph` of a file; an unreadable file is a SpecError naming the path."""
    try:
        data = Path(path).read_bytes()
    except OSError as error:
        raise SpecError(
            [FieldError("<file>", f"cannot read: {error.strerror}")], str(path)
        ) from error
    return load_graph(data, str(path))


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
    if kind == GRAPH_KIND or (kind is None and "nodes" in doc):
        return validate_graph(doc, source)
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
        raise SpecError(field_errors(model, error), source) from None
