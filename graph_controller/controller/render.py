"""Render a bundle as Kubernetes objects, the way KServe lays them out (pure).

Raw deployment mode: for each InferenceService a Deployment and a Service (and an HPA when
scaling fields ask for one) built from the selected runtime's container template, with KServe's
conventions (model at /mnt/models, a storage-initializer init container for storageUri, labels
linking objects to their owner, ownerReferences when the owner's uid is known); for each
InferenceGraph a router Deployment, Service (and HPA) running our image with `--graph-json`
(serviceNames resolved to the predictors' cluster addresses) and PROPAGATE_HEADERS.
Serverless mode: the same pods as Knative Services with autoscaling annotations.

Used by `infergraph render` and the Kubernetes controller; no I/O.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from graph_controller.planning.addressing import (
    cluster_address,
    predictor_name,
    ready_at,
    resolve_graph,
)
from graph_controller.planning.runtime_selection import Runtime, select_runtime
from schemas.graph import ScaleMetric
from schemas.inference_service import InferenceService, ModelSpec
from schemas.pod import Container
from schemas.valid_graph import ValidGraph

Manifest = dict[str, Any]

MODEL_DIR = "/mnt/models"  # where KServe mounts the model for the serving container
PROVISION_VOLUME = "kserve-provision-location"
STORAGE_INITIALIZER_IMAGE = "kserve/storage-initializer:v0.15.0"
ROUTER_IMAGE = "infergraph/router:0.1.0"
HTTP_PORT = 8080
DEFAULT_SCALE_TARGET = 80  # percent utilisation, KServe's default for cpu/memory


class Mode(StrEnum):
    RAW = "raw"
    SERVERLESS = "serverless"


@dataclass(frozen=True, slots=True)
class RenderOptions:
    namespace: str = "default"
    mode: Mode = Mode.RAW
    router_image: str = ROUTER_IMAGE
    propagate_headers: Sequence[str] = ()
    cluster_domain: str = "cluster.local"


class RenderError(ValueError):
    """The bundle cannot be rendered; the message names the resource."""


def service_address(service: str, options: RenderOptions) -> str:
    """The in-cluster URL KServe gives an InferenceService's predictor."""
    return cluster_address(service, options.namespace, options.cluster_domain)


def render(
    graphs: Mapping[str, ValidGraph],
    services: Mapping[str, InferenceService],
    runtimes: Sequence[Runtime],
    options: RenderOptions,
) -> list[Manifest]:
    out: list[Manifest] = []
    for name, service in services.items():
        out.extend(render_service(name, service, runtimes, options))
    ready = {
        name: ready_at(service, service_address(name, options))
        for name, service in services.items()
    }
    for name, graph in graphs.items():
        out.extend(render_graph(name, graph, ready, options))
    return out


# --- InferenceServices ----------------------------------------------------------------------


def render_service(
    name: str, service: InferenceService, runtimes: Sequence[Runtime], options: RenderOptions
) -> list[Manifest]:
    predictor = service.spec.predictor
    model = predictor.model_spec()
    if model is not None:
        runtime = select_runtime(model, runtimes)
        container = _model_container(name, model, runtime)
    elif predictor.containers:
        container = _container(predictor.containers[0])
        runtime = None
    else:
        raise RenderError(
            f"InferenceService '{name}': predictor has neither a model nor containers"
        )
    labels = {
        "app": f"isvc.{predictor_name(name)}",
        "serving.kserve.io/inferenceservice": name,
        "component": "predictor",
        "app.kubernetes.io/managed-by": "infergraph",
    }
    if runtime is not None:
        labels["serving.kserve.io/servingruntime"] = runtime.name
    pod: Manifest = {"containers": [container]}
    storage_uri = model.storage_uri if model is not None else None
    if storage_uri:
        pod["initContainers"] = [
            {
                "name": "storage-initializer",
                "image": STORAGE_INITIALIZER_IMAGE,
                "args": [storage_uri, MODEL_DIR],
                "volumeMounts": [{"name": PROVISION_VOLUME, "mountPath": MODEL_DIR}],
            }
        ]
        pod["volumes"] = [{"name": PROVISION_VOLUME, "emptyDir": {}}]
        container.setdefault("volumeMounts", []).append(
            {"name": PROVISION_VOLUME, "mountPath": MODEL_DIR, "readOnly": True}
        )
    for field in ("nodeSelector", "tolerations", "affinity", "serviceAccountName"):
        value = getattr(predictor, _snake(field))
        if value is not None:
            pod[field] = value
    owner = _owner("serving.kserve.io/v1beta1", "InferenceService", service.metadata)
    scaling = _Scaling(
        predictor.min_replicas,
        predictor.max_replicas,
        predictor.scale_target,
        predictor.scale_metric,
    )
    return _workload(predictor_name(name), labels, pod, owner, scaling, options)


def _model_container(name: str, model: ModelSpec, runtime: Runtime) -> Manifest:
    if not runtime.spec.containers:
        raise RenderError(f"runtime '{runtime.name}' has no container template")
    container = _container(runtime.spec.containers[0])
    container["name"] = "kserve-container"
    container["args"] = [a.replace("{{.Name}}", name) for a in container.get("args", [])]
    container["args"] += list(model.args or [])
    if model.env:
        container["env"] = [e.model_dump(by_alias=True, exclude_none=True) for e in model.env]
    if model.resources:
        container["resources"] = model.resources
    if model.image:
        container["image"] = model.image
    container.setdefault("ports", [{"containerPort": HTTP_PORT, "name": "http", "protocol": "TCP"}])
    return container


def _container(container: Container) -> Manifest:
    manifest = container.model_dump(by_alias=True, exclude_none=True)
    manifest.setdefault("name", "kserve-container")
    return manifest


# --- InferenceGraphs ------------------------------------------------------------------------


def render_graph(
    name: str,
    graph: ValidGraph,
    services: Mapping[str, InferenceService],
    options: RenderOptions,
) -> list[Manifest]:
    resolution = resolve_graph(graph, services)
    if resolution.missing:
        raise RenderError(
            f"InferenceGraph '{name}' calls InferenceServices not in the bundle: "
            + ", ".join(resolution.missing)
        )
    spec = resolution.graph.spec
    # The router gets the whole spec, as KServe's controller marshals graph.Spec for its router.
    graph_json = resolution.graph.router_json()
    container: Manifest = {
        "name": name,
        "image": options.router_image,
        "args": ["--graph-json", graph_json],
        "ports": [{"containerPort": HTTP_PORT, "name": "http", "protocol": "TCP"}],
        "readinessProbe": {
            "httpGet": {"path": "/readyz", "port": HTTP_PORT},
            "periodSeconds": 5,
        },
        "securityContext": {
            "allowPrivilegeEscalation": False,
            "runAsNonRoot": True,
            "capabilities": {"drop": ["ALL"]},
        },
    }
    if options.propagate_headers:
        value = ",".join(options.propagate_headers)
        container["env"] = [{"name": "PROPAGATE_HEADERS", "value": value}]
    if spec.resources:
        container["resources"] = spec.resources
    pod: Manifest = {"containers": [container]}
    for field in ("affinity", "tolerations", "nodeSelector", "nodeName", "serviceAccountName"):
        value = getattr(spec, _snake(field))
        if value is not None:
            pod[field] = value
    labels = {
        "app": name,
        "serving.kserve.io/inferencegraph": name,
        "app.kubernetes.io/managed-by": "infergraph",
    }
    owner = _owner("serving.kserve.io/v1alpha1", "InferenceGraph", graph.resource.metadata)
    scaling = _Scaling(spec.min_replicas, spec.max_replicas, spec.scale_target, spec.scale_metric)
    return _workload(name, labels, pod, owner, scaling, options)


# --- shared ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Scaling:
    min_replicas: int | None
    max_replicas: int | None
    target: int | None
    metric: ScaleMetric | None


def _workload(
    name: str,
    labels: dict[str, str],
    pod: Manifest,
    owner: Manifest | None,
    scaling: _Scaling,
    options: RenderOptions,
) -> list[Manifest]:
    if options.mode is Mode.SERVERLESS:
        return [_knative_service(name, labels, pod, owner, scaling, options)]
    metadata = _metadata(name, labels, owner, options)
    replicas = scaling.min_replicas if scaling.min_replicas is not None else 1
    deployment: Manifest = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": metadata,
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": labels["app"]}},
            "template": {"metadata": {"labels": labels}, "spec": pod},
        },
    }
    service: Manifest = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": _metadata(name, labels, owner, options),
        "spec": {
            "selector": {"app": labels["app"]},
            "ports": [{"name": "http", "port": 80, "targetPort": HTTP_PORT, "protocol": "TCP"}],
        },
    }
    out = [deployment, service]
    hpa = _hpa(name, labels, owner, scaling, options)
    if hpa is not None:
        out.append(hpa)
    return out


def _hpa(
    name: str,
    labels: dict[str, str],
    owner: Manifest | None,
    scaling: _Scaling,
    options: RenderOptions,
) -> Manifest | None:
    if scaling.max_replicas is None or scaling.metric in (ScaleMetric.CONCURRENCY, ScaleMetric.RPS):
        return None  # concurrency/rps are Knative metrics; without a maximum there is no HPA
    minimum = max(1, scaling.min_replicas or 1)
    maximum = max(minimum, scaling.max_replicas)
    metric = (scaling.metric or ScaleMetric.CPU).value
    return {
        "apiVersion": "autoscaling/v2",
        "kind": "HorizontalPodAutoscaler",
        "metadata": _metadata(name, labels, owner, options),
        "spec": {
            "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": name},
            "minReplicas": minimum,
            "maxReplicas": maximum,
            "metrics": [
                {
                    "type": "Resource",
                    "resource": {
                        "name": metric,
                        "target": {
                            "type": "Utilization",
                            "averageUtilization": scaling.target or DEFAULT_SCALE_TARGET,
                        },
                    },
                }
            ],
        },
    }


def _knative_service(
    name: str,
    labels: dict[str, str],
    pod: Manifest,
    owner: Manifest | None,
    scaling: _Scaling,
    options: RenderOptions,
) -> Manifest:
    annotations: dict[str, str] = {}
    if scaling.min_replicas is not None:
        annotations["autoscaling.knative.dev/min-scale"] = str(scaling.min_replicas)
    if scaling.max_replicas is not None:
        annotations["autoscaling.knative.dev/max-scale"] = str(scaling.max_replicas)
    if scaling.target is not None:
        annotations["autoscaling.knative.dev/target"] = str(scaling.target)
    if scaling.metric is not None:
        annotations["autoscaling.knative.dev/metric"] = scaling.metric.value
        if scaling.metric in (ScaleMetric.CPU, ScaleMetric.MEMORY):
            annotations["autoscaling.knative.dev/class"] = "hpa.autoscaling.knative.dev"
    template_metadata: Manifest = {"labels": labels}
    if annotations:
        template_metadata["annotations"] = annotations
    return {
        "apiVersion": "serving.knative.dev/v1",
        "kind": "Service",
        "metadata": _metadata(name, labels, owner, options),
        "spec": {"template": {"metadata": template_metadata, "spec": pod}},
    }


def _metadata(
    name: str, labels: dict[str, str], owner: Manifest | None, options: RenderOptions
) -> Manifest:
    metadata: Manifest = {"name": name, "namespace": options.namespace, "labels": dict(labels)}
    if owner is not None:
        metadata["ownerReferences"] = [owner]
    return metadata


def _owner(api_version: str, kind: str, metadata: Any) -> Manifest | None:
    """An ownerReference needs the owner's uid, known only for objects read from a cluster."""
    extra = metadata.model_extra or {}
    uid = extra.get("uid")
    if not uid or not metadata.name:
        return None
    return {
        "apiVersion": api_version,
        "kind": kind,
        "name": metadata.name,
        "uid": uid,
        "controller": True,
        "blockOwnerDeletion": True,
    }


def _snake(camel: str) -> str:
    return "".join("_" + c.lower() if c.isupper() else c for c in camel)
