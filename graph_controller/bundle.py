"""A bundle: the InferenceGraphs, InferenceServices and ServingRuntimes a deployment is made of.

`load_bundle` reads a folder (every *.yaml, *.yml, *.json in it, sorted) or one multi-document
file; `bundle_from_documents` is the pure grouping step, with the checks that span documents
(duplicate names). Errors of all files are reported together.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

from graph_controller.runtime_selection import Runtime, Scope
from schemas.errors import FieldError, SpecError
from schemas.graph import InferenceGraph
from schemas.inference_service import InferenceService
from schemas.loading import Document, load_documents
from schemas.serving_runtime import ClusterServingRuntime

SUFFIXES = (".yaml", ".yml", ".json")


@dataclass(frozen=True)
class Bundle:
    root: Path  # the folder relative storageUris are resolved against
    graphs: dict[str, InferenceGraph] = field(default_factory=dict)
    services: dict[str, InferenceService] = field(default_factory=dict)
    runtimes: tuple[Runtime, ...] = ()


def load_bundle(path: str | Path) -> Bundle:
    """Every resource under `path`; SpecError lists the problems of every file at once."""
    path = Path(path)
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.suffix in SUFFIXES and p.is_file())
        root = path
    elif path.is_file():
        files, root = [path], path.parent
    else:
        raise SpecError([FieldError("<path>", "no such file or folder")], str(path))
    documents: list[Document] = []
    errors: list[FieldError] = []
    for file in files:
        try:
            documents.extend(load_documents(file.read_bytes(), str(file)))
        except SpecError as error:
            errors.extend(FieldError(e.path, f"{file.name}: {e.message}") for e in error.errors)
    if errors:
        raise SpecError(errors, str(path))
    return bundle_from_documents(documents, root.resolve())


K = TypeVar("K")
V = TypeVar("V")


def bundle_from_documents(documents: Iterable[Document], root: Path) -> Bundle:
    graphs: dict[str, InferenceGraph] = {}
    services: dict[str, InferenceService] = {}
    runtimes: dict[tuple[Scope, str], Runtime] = {}
    errors: list[FieldError] = []

    def add(target: dict[K, V], key: K, value: V, doc: Document, kind: str) -> None:
        if key in target:
            errors.append(FieldError("metadata.name", f"{doc.source}: a second {kind} {key!r}"))
        else:
            target[key] = value

    for doc in documents:
        resource = doc.resource
        name = resource.metadata.name
        if name is None:
            errors.append(FieldError("metadata.name", f"{doc.source}: every resource needs a name"))
        elif isinstance(resource, InferenceGraph):
            add(graphs, name, resource, doc, "InferenceGraph")
        elif isinstance(resource, InferenceService):
            add(services, name, resource, doc, "InferenceService")
        else:
            scope = (
                Scope.CLUSTER if isinstance(resource, ClusterServingRuntime) else Scope.NAMESPACE
            )
            runtime = Runtime(name, scope, resource.spec, resource.metadata.annotations or {})
            add(runtimes, (scope, name), runtime, doc, str(scope))
    if errors:
        raise SpecError(errors, str(root))
    return Bundle(root, graphs, services, tuple(runtimes.values()))
