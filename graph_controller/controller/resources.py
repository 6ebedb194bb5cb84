"""The API resources the controller reads and writes, and the keys its work queue holds.

Pure: paths are built here so `kube` stays a thin HTTP layer and the RBAC list in
/work/notes/controller-api-calls.md can be read off this module.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, NamedTuple

Object = dict[str, Any]  # a JSON object exactly as the API server returns it


@dataclass(frozen=True, slots=True)
class Kind:
    kind: str
    group: str  # "" for the core API
    version: str
    plural: str
    namespaced: bool = True

    @property
    def key(self) -> str:
        """How work-queue keys and logs name this kind: KServe's kinds by their kind alone,
        others qualified by group (two groups have an InferenceGraph)."""
        return self.kind if self.group in ("", "serving.kserve.io") else f"{self.kind}.{self.group}"

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    def collection_path(self, namespace: str | None = None) -> str:
        base = f"/apis/{self.group}/{self.version}" if self.group else f"/api/{self.version}"
        if self.namespaced and namespace:
            return f"{base}/namespaces/{namespace}/{self.plural}"
        return f"{base}/{self.plural}"

    def object_path(self, namespace: str | None, name: str, subresource: str = "") -> str:
        path = f"{self.collection_path(namespace)}/{name}"
        return f"{path}/{subresource}" if subresource else path


GRAPH = Kind("InferenceGraph", "serving.kserve.io", "v1alpha1", "inferencegraphs")
# Ours: KServe's spec plus InferGraph's extensions (schemas.graph), never pruned by KServe's CRD.
INFERGRAPH_GRAPH = Kind("InferenceGraph", "infergraph.dev", "v1alpha1", "inferencegraphs")
ISVC = Kind("InferenceService", "serving.kserve.io", "v1beta1", "inferenceservices")
SERVING_RUNTIME = Kind("ServingRuntime", "serving.kserve.io", "v1alpha1", "servingruntimes")
CLUSTER_SERVING_RUNTIME = Kind(
    "ClusterServingRuntime", "serving.kserve.io", "v1alpha1", "clusterservingruntimes", False
)
DEPLOYMENT = Kind("Deployment", "apps", "v1", "deployments")
SERVICE = Kind("Service", "", "v1", "services")
HPA = Kind("HorizontalPodAutoscaler", "autoscaling", "v2", "horizontalpodautoscalers")
# Read only: the predictor's Pods, for the modelStatus KServe derives from their containers.
POD = Kind("Pod", "", "v1", "pods")
LEASE = Kind("Lease", "coordination.k8s.io", "v1", "leases")

OWNERS = (ISVC, GRAPH, INFERGRAPH_GRAPH)
GRAPHS = (GRAPH, INFERGRAPH_GRAPH)
OWNED = (DEPLOYMENT, SERVICE, HPA)  # what render.py produces in raw mode
_BY_API = {(k.api_version, k.kind): k for k in (*OWNERS, *OWNED)}
OWNER_BY_KEY = {k.key: k for k in OWNERS}

MANAGED_BY = "app.kubernetes.io/managed-by=infergraph"  # label selector of owned objects
FIELD_MANAGER = "infergraph"


class Key(NamedTuple):
    """One unit of work: an owner to reconcile."""

    kind: str
    namespace: str
    name: str

    def __str__(self) -> str:
        return f"{self.kind}/{self.namespace}/{self.name}"


def kind_of(manifest: Object) -> Kind:
    """The Kind of a rendered manifest; a manifest of another kind is a bug in render.py."""
    try:
        return _BY_API[(manifest["apiVersion"], manifest["kind"])]
    except KeyError:
        raise ValueError(
            f"cannot apply {manifest.get('apiVersion')}/{manifest.get('kind')}: "
            "the controller manages only Deployments, Services and HPAs"
        ) from None


def owner_key(obj: Object) -> Key | None:
    """The InferenceService/InferenceGraph that controls `obj`, from its ownerReferences."""
    metadata = obj.get("metadata", {})
    for ref in metadata.get("ownerReferences") or []:
        owner = _BY_API.get((ref.get("apiVersion"), ref.get("kind")))
        if ref.get("controller") and owner in OWNERS:
            return Key(owner.key, metadata.get("namespace", ""), ref["name"])
    return None


def owner_uid(obj: Object) -> str | None:
    for ref in obj.get("metadata", {}).get("ownerReferences") or []:
        if ref.get("controller"):
            uid: str | None = ref.get("uid")
            return uid
    return None
