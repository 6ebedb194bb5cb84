"""The ClusterServingRuntimes InferGraph ships (graph_controller/runtimes/*.yaml).

The same YAML is what `config/` installs on Kubernetes; each also carries the local command
that `infergraph up` runs. Read once per call; small files, read only at planning time.
"""

from __future__ import annotations

from importlib import resources

from graph_controller.planning.runtime_selection import Runtime, Scope
from schemas.loading import load_documents
from schemas.serving_runtime import ClusterServingRuntime


def builtin_runtimes() -> tuple[Runtime, ...]:
    found: list[Runtime] = []
    folder = resources.files("graph_controller") / "runtimes"
    for entry in sorted(folder.iterdir(), key=lambda e: e.name):
        if not entry.name.endswith(".yaml"):
            continue
        for doc in load_documents(entry.read_bytes(), f"builtin {entry.name}"):
            resource = doc.resource
            assert isinstance(resource, ClusterServingRuntime)  # our own shipped files
            name = resource.metadata.name or entry.name
            annotations = resource.metadata.annotations or {}
            found.append(Runtime(name, Scope.CLUSTER, resource.spec, annotations))
    return tuple(found)
