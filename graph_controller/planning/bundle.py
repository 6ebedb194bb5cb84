"""A bundle: the InferenceGraphs, InferenceServices and ServingRuntimes a deployment is made of.

`load_bundle` reads a folder (every *.yaml, *.yml, *.json in it, sorted) or one multi-document
file (`load_files` reads any mix of both); `bundle_from_documents` is the pure grouping step,
with the checks that span documents (duplicate names). Errors of all files are reported together.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

from graph_controller.planning.runtime_selection import Runtime, Scope
from schemas.errors import FieldError, SpecError
from schemas.inference_service import InferenceService
from schemas.loading import Document, load_documents
from schemas.serving_runtime import ClusterServingRuntime
from schemas.valid_graph import ValidGraph

SUFFIXES = (".yaml", ".yml", ".json")


@dataclass(frozen=True)
class Bundle:
    root: Path  # the folder relative storageUris are resolved against
    graphs: dict[str, ValidGraph] = field(default_factory=dict)
    services: dict[str, InferenceService] = field(default_factory=dict)
    runtimes: tuple[Runtime, ...] = ()


def files_of(path: Path) -> list[Path]:
    """The resource files `path` stands for: itself, or every YAML/JSON file of a folder."""
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.suffix in SUFFIXES and p.is_file())
        if not files:
            # Nothing to check or run is a mistake (a wrong folder), not a silent success.
            wanted = ", ".join(sorted(SUFFIXES))
            raise SpecError([FieldError("<path>", f"a folder with no {wanted} file")], str(path))
        return files
    if path.is_file():
        return [path]
    raise SpecError([FieldError("<path>", "no such file or folder")], str(path))


def load_files(paths: Iterable[str | Path]) -> list[Document]:
    """Every document under `paths` (files or folders); SpecError lists every file's problems."""
    documents: list[Document] = []
    errors: list[FieldError] = []
    for given in paths:
        try:
            files = files_of(Path(given))
        except SpecError as error:
            errors.extend(FieldError(e.path, f"{given}: {e.message}") for e in error.errors)
            continue
        for file in files:
            try:
                documents.extend(load_documents(file.read_bytes(), str(file)))
            except OSError as error:
                errors.append(FieldError("<file>", f"{file}: cannot read: {error.strerror}"))
            except SpecError as error:
                errors.extend(FieldError(e.path, f"{file.name}: {e.message}") for e in error.errors)
    if errors:
        raise SpecError(errors, ", ".join(str(p) for p in paths))
    return documents


def load_bundle(path: str | Path) -> Bundle:
    """Every resource under `path`; SpecError lists the problems of every file at once."""
    path = Path(path)
    root = path if path.is_dir() else path.parent
    return bundle_from_documents(load_files([path]), root.resolve())


K = TypeVar("K")
V = TypeVar("V")


def bundle_from_documents(documents: Iterable[Document], root: Path) -> Bundle:
    graphs: dict[str, ValidGraph] = {}
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
        name = resource.name if isinstance(resource, ValidGraph) else resource.metadata.name
        if name is None:
            errors.append(FieldError("metadata.name", f"{doc.source}: every resource needs a name"))
        elif isinstance(resource, ValidGraph):
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
