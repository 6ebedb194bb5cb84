"""Render a bundle as Kubernetes objects, the way KServe lays them out (pure).

Raw deployment mode, as KServe v0.15.2's RawDeployment reconcilers: for each InferenceService a
predictor Deployment, Service and HPA (none for autoscalerClass external/none) from the selected
runtime's container merged with the model's (`planning.container_merge`), the model at
/mnt/models (storage-initializer init container, or the PVC itself for `pvc://`), labels and
annotations of runtime, InferenceService and component, what KServe's pod webhook adds when
annotations ask (the GKE accelerator nodeSelector, Prometheus scrape annotations), a default
TCP readiness probe, and
the same for a `transformer` (`<name>-transformer`, `--predictor_host` to the predictor);
for each InferenceGraph a router Deployment, Service and HPA running our image with
`--graph-json` (serviceNames resolved to the services' cluster addresses), PROPAGATE_HEADERS
and KServe's router defaults (resources, probe, security context). Fields InferGraph does not
implement are refused (`planning.components.unsupported`), never dropped.
Serverless mode: the same pods as Knative Services with autoscaling annotations.

Used by `infergraph render` and the Kubernetes controller; no I/O.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

import orjson

from graph_controller.planning.addressing import cluster_address, ready_at, resolve_graph
from graph_controller.planning.components import (
    AUTOSCALER_HPA,
    AUTOSCALER_NONE,
    DEPLOYMENT_MODE,
    GKE_ACCELERATOR,
    KSERVE_CONTAINER,
    METRIC_AGGREGATION,
    PROMETHEUS_SCRAPING,
    RAW_DEPLOYMENT,
    STORAGE_URI_ENV,
    RuntimeDefaults,
    Target,
    autoscaler_class,
    graph_unsupported,
    predictor_name,
    runtime_defaults,
    transformer_args,
    transformer_name,
    unsupported,
    with_webhook_defaults,
)
from graph_controller.planning.container_merge import (
    MergeError,
    merge_containers,
    merge_pod_specs,
    replace_placeholders,
)
from graph_controller.planning.router_ports import RouterPortError, grpc_port
from graph_controller.planning.runtime_selection import Runtime, select_runtime
from schemas.graph import ScaleMetric
from schemas.inference_service import (
    ComponentExtension,
    InferenceService,
    ModelSpec,
    TransformerSpec,
)
from schemas.pod import Container, PodSpecFields
from schemas.valid_graph import ValidGraph

Manifest = dict[str, Any]

MODEL_DIR = "/mnt/models"  # where KServe mounts the model for the serving container
TRANSFORMER_CONTAINER = "transformer-container"  # a transformer collocated in the predictor pod
STORAGE_INITIALIZER = "storage-initializer"
STORAGE_INITIALIZER_IMAGE = "kserve/storage-initializer:v0.15.2"
PROVISION_VOLUME = "kserve-provision-location"
PVC_VOLUME = "kserve-pvc-source"
READONLY_ANNOTATION = "storage.kserve.io/readonly"
# Where KServe's controller records a component's model URI (its pod webhook reads it).
SOURCE_URI_ANNOTATION = "internal.serving.kserve.io/storage-initializer-sourceuri"
# KServe's default inferenceservice ConfigMap (v0.15.2): storageInitializer and router resources,
# so pods are admitted in namespaces whose ResourceQuota requires requests and limits.
STORAGE_INITIALIZER_RESOURCES = {
    "requests": {"cpu": "100m", "memory": "100Mi"},
    "limits": {"cpu": "1", "memory": "1Gi"},
}
ROUTER_RESOURCES = {
    "requests": {"cpu": "100m", "memory": "100Mi"},
    "limits": {"cpu": "1", "memory": "1Gi"},
}
# KServe's default serviceAnnotationDisallowedList: never copied onto Deployments and pods.
DISALLOWED_ANNOTATIONS = frozenset(
    {
        "autoscaling.knative.dev/min-scale",
        "autoscaling.knative.dev/max-scale",
        "internal.serving.kserve.io/storage-initializer-sourceuri",
        "kubectl.kubernetes.io/last-applied-configuration",
    }
)
INFERENCE_SERVICE_LABEL = "serving.kserve.io/inferenceservice"
COMPONENT_LABEL = "component"
MANAGED = {"app.kubernetes.io/managed-by": "infergraph"}  # what the controller's caches watch
ROUTER_IMAGE = "infergraph/router:0.1.0"
HTTP_PORT = 8080
DEFAULT_SCALE_TARGET = 80  # percent utilisation, KServe's default for cpu
GPU_RESOURCE = "nvidia.com/gpu"  # KServe's NvidiaGPUResourceType
GKE_NODE_SELECTOR = "cloud.google.com/gke-accelerator"  # KServe's GkeAcceleratorNodeSelector
PROMETHEUS_PORT, PROMETHEUS_PATH = "prometheus.io/port", "prometheus.io/path"
# KServe's DefaultPodPrometheusPort and QueueProxyAggregatePrometheusMetricsPort: Knative's
# queue-proxy serves them; KServe's webhook names them in RawDeployment too, where no
# queue-proxy runs (so, as on KServe, nothing answers there unless the pod serves it).
SCRAPE_PORT, AGGREGATE_SCRAPE_PORT = "9091", "9088"


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


def service_address(service: str, options: RenderOptions, transformer: bool = False) -> str:
    """The in-cluster URL KServe gives an InferenceService (its transformer's, if any)."""
    return cluster_address(service, options.namespace, options.cluster_domain, transformer)


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
        name: ready_at(
            service, service_address(name, options, service.spec.transformer is not None)
        )
        for name, service in services.items()
    }
    for name, graph in graphs.items():
        out.extend(render_graph(name, graph, ready, options))
    return out


# --- InferenceServices ----------------------------------------------------------------------


def render_service(
    name: str, service: InferenceService, runtimes: Sequence[Runtime], options: RenderOptions
) -> list[Manifest]:
    """The predictor's (and transformer's) Deployment, Service and HPA, as KServe's
    RawDeployment reconcilers make them."""
    target = Target.CLUSTER if options.mode is Mode.RAW else Target.SERVERLESS
    problems = unsupported(service, target)
    if problems:
        raise RenderError(
            f"InferenceService '{name}': " + "; ".join(str(problem) for problem in problems)
        )
    stored = with_webhook_defaults(service)
    metadata = _service_metadata(name, stored, options)
    try:
        predictor = _predictor(name, stored, runtimes, metadata)
    except MergeError as error:
        raise RenderError(f"InferenceService '{name}': {error}") from None
    owner = _owner("serving.kserve.io/v1beta1", "InferenceService", service.metadata)
    annotations = metadata["annotations"]
    out = _workload(
        predictor_name(name),
        predictor.labels,
        predictor.annotations,
        predictor.pod,
        owner,
        _scaling(stored.spec.predictor, annotations),
        options,
        _pod_webhook(predictor.pod, predictor.annotations),
    )
    transformer = stored.spec.transformer
    if transformer is not None:
        labels = {
            **metadata["labels"],
            **(transformer.labels or {}),
            INFERENCE_SERVICE_LABEL: name,
            COMPONENT_LABEL: "transformer",
            **MANAGED,
        }
        component_annotations = {**annotations, **_allowed(transformer.annotations)}
        pod, source_uri = _transformer_pod(name, transformer, component_annotations, options)
        if source_uri:
            component_annotations[SOURCE_URI_ANNOTATION] = source_uri
        out += _workload(
            transformer_name(name),
            labels,
            component_annotations,
            pod,
            owner,
            _scaling(transformer, annotations),
            options,
            _pod_webhook(pod, component_annotations),
        )
    return out


def _pod_webhook(pod: Manifest, annotations: Mapping[str, str]) -> dict[str, str]:
    """What KServe's pod mutator (v0.15.2 pkg/webhook/admission/pod) does to a Pod of an
    InferenceService when its annotations (the template's: runtime's, InferenceService's,
    component's) ask: InjectGKEAcceleratorSelector adds the GKE accelerator nodeSelector when a
    container has an `nvidia.com/gpu` limit; InjectMetricsAggregator adds Prometheus scrape
    annotations. With no webhook, InferGraph writes the same into the pod template: `pod` is
    changed in place, and the annotations the Pod gets beyond the template's are returned."""
    accelerator = annotations.get(GKE_ACCELERATOR)
    gpu = any(
        GPU_RESOURCE in ((container.get("resources") or {}).get("limits") or {})
        for container in pod["containers"]
    )
    if accelerator is not None and gpu:
        pod["nodeSelector"] = {**pod.get("nodeSelector", {}), GKE_NODE_SELECTOR: accelerator}
    if annotations.get(PROMETHEUS_SCRAPING) != "true":
        return {}
    aggregated = annotations.get(METRIC_AGGREGATION) == "true"
    port = AGGREGATE_SCRAPE_PORT if aggregated else SCRAPE_PORT
    return {PROMETHEUS_PORT: port, PROMETHEUS_PATH: "/metrics"}


@dataclass(frozen=True, slots=True)
class _Component:
    pod: Manifest
    labels: dict[str, str]
    annotations: dict[str, str]


def _service_metadata(name: str, service: InferenceService, options: RenderOptions) -> Manifest:
    """The InferenceService's metadata as KServe's templates and object metadata see it."""
    meta = service.metadata
    extra = meta.model_extra or {}
    annotations = _allowed(meta.annotations)
    if options.mode is Mode.RAW:
        # KServe's webhook stores the mode it defaulted to on the InferenceService, and its
        # controller copies the annotations onto every object of the component.
        annotations = {DEPLOYMENT_MODE: RAW_DEPLOYMENT, **annotations}
    return {
        "name": name,
        "namespace": options.namespace,
        "uid": extra.get("uid", ""),
        "generateName": extra.get("generateName", ""),
        "labels": dict(meta.labels or {}),
        "annotations": annotations,
    }


def _allowed(annotations: Mapping[str, str] | None) -> dict[str, str]:
    """Annotations without those KServe never propagates (its serviceAnnotationDisallowedList)."""
    return {k: v for k, v in (annotations or {}).items() if k not in DISALLOWED_ANNOTATIONS}


def _predictor(
    name: str, service: InferenceService, runtimes: Sequence[Runtime], metadata: Manifest
) -> _Component:
    predictor = service.spec.predictor
    pod_fields = predictor.model_dump(
        by_alias=True, exclude_none=True, include=set(PodSpecFields.model_fields)
    )
    model = predictor.model
    runtime: Runtime | None = None
    if model is not None:
        runtime = select_runtime(model, runtimes)
        defaults = runtime_defaults(runtime.name, name, model)
        metadata = {**metadata, "labels": {**metadata["labels"], **(defaults.labels or {})}}
        pod = _runtime_pod(name, model, runtime, defaults, pod_fields, metadata)
        storage_uri = model.storage_uri
    else:
        pod = dict(pod_fields)
        containers = [dict(c) for c in pod.get("containers", [])]
        if not containers:
            raise RenderError(
                f"InferenceService '{name}': predictor has neither a model nor containers"
            )
        if len(containers) == 1 or not containers[0].get("name"):
            containers[0]["name"] = KSERVE_CONTAINER  # KServe's webhook names it
        if not any(c.get("name") == KSERVE_CONTAINER for c in containers):
            raise RenderError(
                f"InferenceService '{name}': spec.predictor.containers has no container "
                f"named '{KSERVE_CONTAINER}'"
            )
        pod["containers"] = containers
        storage_uri = _env(containers, STORAGE_URI_ENV)
    if storage_uri:
        _provision_model(pod, storage_uri, metadata["annotations"])
    _default_pod_spec(pod)
    runtime_spec = runtime.spec if runtime is not None else None
    labels = {
        **((runtime_spec.labels or {}) if runtime_spec else {}),
        **metadata["labels"],
        **(predictor.labels or {}),
        INFERENCE_SERVICE_LABEL: name,
        COMPONENT_LABEL: "predictor",
        **MANAGED,
    }
    annotations = {
        **_allowed(runtime_spec.annotations if runtime_spec else None),
        **metadata["annotations"],
        **_allowed(predictor.annotations),
    }
    if storage_uri:
        annotations[SOURCE_URI_ANNOTATION] = storage_uri
    return _Component(pod, labels, annotations)


def _runtime_pod(
    name: str,
    model: ModelSpec,
    runtime: Runtime,
    defaults: RuntimeDefaults,
    pod_fields: Manifest,
    metadata: Manifest,
) -> Manifest:
    """KServe's buildPodSpec: the runtime's kserve-container merged with the model's, the
    runtime's pod fields merged with the predictor's, and the other containers of both."""
    runtime_containers = [_container(c) for c in runtime.spec.containers]
    template = _named(runtime_containers, KSERVE_CONTAINER)
    if template is None:
        raise RenderError(
            f"runtime '{runtime.name}': failed to find {KSERVE_CONTAINER} in ServingRuntime "
            "containers (KServe merges the model into the container of that name)"
        )
    own = model.model_dump(by_alias=True, exclude_none=True, exclude=_NOT_CONTAINER_FIELDS)
    env_names = {e.name for e in model.env or []}
    extra_env = [e.model_dump(exclude_none=True) for e in defaults.env if e.name not in env_names]
    if extra_env:
        own["env"] = [*own.get("env", []), *extra_env]
    if defaults.args:
        own["args"] = [*own.get("args", []), *defaults.args]
    container = replace_placeholders(merge_containers(template, own), metadata)
    container["image"] = _image_tag(container.get("image", ""), model, runtime.name, container)
    runtime_pod = runtime.spec.model_dump(by_alias=True, exclude_none=True)
    pod = merge_pod_specs(runtime_pod, pod_fields)
    own_containers = pod_fields.get("containers", [])
    containers = [container]
    in_runtime = _named(runtime_containers, TRANSFORMER_CONTAINER)
    in_service = _named(own_containers, TRANSFORMER_CONTAINER)
    collocated = (
        merge_containers(in_runtime, in_service)
        if in_runtime is not None and in_service is not None
        else in_runtime or in_service
    )
    if collocated is not None:
        containers.append(replace_placeholders(collocated, metadata))
    merged_names = (KSERVE_CONTAINER, TRANSFORMER_CONTAINER)
    containers += [c for c in runtime_containers if c.get("name") not in merged_names]
    containers += [c for c in own_containers if c.get("name") != TRANSFORMER_CONTAINER]
    pod["containers"] = containers
    return pod


# ModelSpec fields that are not v1.Container fields (KServe's PredictorExtensionSpec extras).
_NOT_CONTAINER_FIELDS = {"model_format", "runtime", "storage_uri", "runtime_version",
                         "protocol_version", "storage"}  # fmt: skip
_GPU_IMAGE_RUNTIMES = ("kserve-tensorflow-serving", "kserve-torchserve", "kserve-huggingfaceserver")
_TAG = re.compile(r"(:([\w.\-_]*))$")


def _image_tag(image: str, model: ModelSpec, runtime: str, container: Manifest) -> str:
    """KServe's UpdateImageTag: runtimeVersion replaces the tag; a GPU request on runtimes
    with GPU images adds `-gpu` to a tagged image."""
    if model.runtime_version is not None:
        if _TAG.search(image):
            return _TAG.sub(":" + model.runtime_version, image)
        return f"{image}:{model.runtime_version}"
    limits = (container.get("resources") or {}).get("limits") or {}
    if "nvidia.com/gpu" in limits and _TAG.search(image) and runtime in _GPU_IMAGE_RUNTIMES:
        return image if image.endswith("-gpu") else f"{image}-gpu"
    return image


def _transformer_pod(
    name: str, transformer: TransformerSpec, annotations: Mapping[str, str], options: RenderOptions
) -> tuple[Manifest, str | None]:
    """The transformer's pod, and the model URI its first container names (STORAGE_URI)."""
    pod = transformer.model_dump(
        by_alias=True, exclude_none=True, include=set(PodSpecFields.model_fields)
    )
    containers = [dict(c) for c in pod.get("containers", [])]
    if not containers:
        raise RenderError(f"InferenceService '{name}': spec.transformer has no containers")
    first = containers[0]
    first["name"] = KSERVE_CONTAINER  # KServe's webhook names a transformer's first container
    first["args"] = transformer_args(first.get("args", []), name, options.namespace, None)
    pod["containers"] = containers
    storage_uri = _env(containers[:1], STORAGE_URI_ENV)
    if storage_uri:
        _provision_model(pod, storage_uri, annotations)
    _default_pod_spec(pod)
    return pod, storage_uri


def _named(containers: Sequence[Manifest], name: str) -> Manifest | None:
    return next((c for c in containers if c.get("name") == name), None)


def _env(containers: Sequence[Manifest], name: str) -> str | None:
    container = _named(containers, KSERVE_CONTAINER) or {}
    return next((e.get("value") for e in container.get("env", []) if e.get("name") == name), None)


def _provision_model(pod: Manifest, storage_uri: str, annotations: Mapping[str, str]) -> None:
    """KServe's storage-initializer injector (its default configuration): a `pvc://` URI is
    mounted directly at /mnt/models; any other gets the storage-initializer init container
    writing into an emptyDir the model container reads."""
    if any(c.get("name") == STORAGE_INITIALIZER for c in pod.get("initContainers", [])):
        return  # KServe does not inject a second one
    # Schemes KServe does not support, and oci://, were refused by `unsupported`.
    scheme = storage_uri.split("://", 1)[0] if "://" in storage_uri else ""
    read_only = annotations.get(READONLY_ANNOTATION) != "false"
    containers = pod["containers"]
    targets = [c for c in containers if c.get("name") in (KSERVE_CONTAINER, TRANSFORMER_CONTAINER)]
    volumes = pod.setdefault("volumes", [])
    if scheme == "pvc":
        claim, _, path = storage_uri.removeprefix("pvc://").partition("/")
        volumes.append({"name": PVC_VOLUME, "persistentVolumeClaim": {"claimName": claim}})
        mount: Manifest = {"name": PVC_VOLUME, "mountPath": MODEL_DIR, "readOnly": read_only}
        if path:
            mount["subPath"] = path
    else:
        pod.setdefault("initContainers", []).append(
            {
                "name": STORAGE_INITIALIZER,
                "image": STORAGE_INITIALIZER_IMAGE,
                "args": [storage_uri, MODEL_DIR],
                "terminationMessagePolicy": "FallbackToLogsOnError",
                "volumeMounts": [{"name": PROVISION_VOLUME, "mountPath": MODEL_DIR}],
                "resources": STORAGE_INITIALIZER_RESOURCES,
            }
        )
        volumes.append({"name": PROVISION_VOLUME, "emptyDir": {}})
        mount = {"name": PROVISION_VOLUME, "mountPath": MODEL_DIR, "readOnly": read_only}
    for container in targets:
        container["volumeMounts"] = [*container.get("volumeMounts", []), dict(mount)]
    for env in (_named(containers, KSERVE_CONTAINER) or {}).get("env", []):
        if env.get("name") == STORAGE_URI_ENV and env.get("value"):
            env["value"] = MODEL_DIR


def _default_pod_spec(pod: Manifest) -> None:
    """KServe's setDefaultPodSpec: `IfNotPresent` for a container that sets no pull policy
    (the API server would say Always for a `:latest` image), and a TCP readiness probe on the
    first declared port (else 8080) for the model server and a collocated transformer that
    have none."""
    for container in pod["containers"]:
        container.setdefault("imagePullPolicy", "IfNotPresent")
        if container.get("name") not in (KSERVE_CONTAINER, TRANSFORMER_CONTAINER):
            continue
        if "readinessProbe" in container:
            continue
        ports = container.get("ports") or []
        port = ports[0]["containerPort"] if ports else HTTP_PORT
        container["readinessProbe"] = {
            "tcpSocket": {"port": port},
            "timeoutSeconds": 1,
            "periodSeconds": 10,
            "successThreshold": 1,
            "failureThreshold": 3,
        }


def _container(container: Container) -> Manifest:
    return container.model_dump(by_alias=True, exclude_none=True)


def _scaling(component: ComponentExtension, annotations: Mapping[str, str]) -> _Scaling:
    return _Scaling(
        component.min_replicas,
        component.max_replicas,
        component.scale_target,
        component.scale_metric,
        autoscaler_class(annotations),
        component.deployment_strategy,
    )


# --- InferenceGraphs ------------------------------------------------------------------------


def render_graph(
    name: str,
    graph: ValidGraph,
    services: Mapping[str, InferenceService],
    options: RenderOptions,
) -> list[Manifest]:
    """The router's Deployment, Service and HPA, as KServe's raw_ig.go makes them (a Knative
    Service with `render --mode serverless`)."""
    target = Target.CLUSTER if options.mode is Mode.RAW else Target.SERVERLESS
    refused = graph_unsupported(graph.resource.metadata.annotations, target)
    if refused:
        raise RenderError(f"InferenceGraph '{name}': " + "; ".join(str(e) for e in refused))
    resolution = resolve_graph(graph, services)
    if resolution.missing:
        raise RenderError(
            f"InferenceGraph '{name}' calls InferenceServices not in the bundle: "
            + ", ".join(resolution.missing)
        )
    spec = resolution.graph.spec
    # The router gets the whole spec, as KServe's controller marshals graph.Spec for its router.
    graph_json = kserve_graph_json(orjson.loads(resolution.graph.router_json()))
    container: Manifest = {
        "name": name,
        "image": options.router_image,
        "imagePullPolicy": "IfNotPresent",
        "args": ["--graph-json", graph_json],
        # No declared port, as KServe's router: its Service targets 8080, named after the graph.
        # KServe's router config: spec.resources when given, else its defaults.
        "resources": spec.resources or ROUTER_RESOURCES,
        "readinessProbe": {
            "httpGet": {"path": "/readyz", "port": HTTP_PORT, "scheme": "HTTP"},
            "initialDelaySeconds": 5,
            "timeoutSeconds": 2,
            "periodSeconds": 5,
            "successThreshold": 1,
            "failureThreshold": 3,
        },
        "securityContext": {
            "privileged": False,
            "runAsNonRoot": True,
            "readOnlyRootFilesystem": True,
            "allowPrivilegeEscalation": False,
            "capabilities": {"drop": ["ALL"]},
        },
    }
    if options.propagate_headers:
        value = ",".join(options.propagate_headers)
        container["env"] = [{"name": "PROPAGATE_HEADERS", "value": value}]
    try:
        grpc = grpc_port(graph.resource.metadata.annotations)
    except RouterPortError as error:
        raise RenderError(f"InferenceGraph '{name}': {error}") from None
    if grpc is not None:
        # KServe's router declares no port; ours serving gRPC too declares both, so its
        # Service can expose the second one (appProtocol h2c for the gRPC port).
        container["args"] += ["--grpc-port", str(grpc)]
        container["ports"] = [
            {"containerPort": HTTP_PORT, "name": "http", "protocol": "TCP"},
            {"containerPort": grpc, "name": "grpc", "protocol": "TCP"},
        ]
    # The graph needs no API access (KServe sets the same).
    pod: Manifest = {"containers": [container], "automountServiceAccountToken": False}
    for field in ("affinity", "tolerations", "nodeSelector", "nodeName", "serviceAccountName"):
        value = getattr(spec, _snake(field))
        if value is not None:
            pod[field] = value
    metadata = graph.resource.metadata
    labels = {**(metadata.labels or {}), "serving.kserve.io/inferencegraph": name, **MANAGED}
    annotations = dict(metadata.annotations or {})
    # Either group's InferenceGraph (serving.kserve.io or infergraph.dev) owns its router.
    owner = _owner(graph.resource.api_version, "InferenceGraph", metadata)
    scaling = _Scaling(
        spec.min_replicas,
        spec.max_replicas,
        spec.scale_target,
        spec.scale_metric,
        autoscaler_class(annotations),
        None,
    )
    return _workload(name, labels, annotations, pod, owner, scaling, options)


# KServe's controller hands its router `json.Marshal(graph.Spec)`: Go writes struct fields in
# declaration order (v0.15.2's InferenceGraphSpec, InferenceRouter, InferenceStep,
# ResourceRequirements), map keys sorted, `resources` always (a struct: omitempty keeps it),
# and <, >, & escaped. The same bytes make the same pod template, so a router KServe made is
# taken over without a rollout. Our extension fields follow KServe's, in our order; nested
# Kubernetes objects (affinity, tolerations) keep the order they were written in.
_GO_FIELDS = {
    "spec": ("nodes", "resources", "affinity", "timeout", "minReplicas", "maxReplicas",
             "scaleTarget", "scaleMetric", "tolerations", "nodeSelector", "nodeName",
             "serviceAccountName"),
    "router": ("routerType", "steps"),
    "step": ("name", "nodeName", "serviceName", "serviceUrl", "data", "weight", "condition",
             "dependency"),
    "resources": ("limits", "requests", "claims"),
}  # fmt: skip
_GO_ESCAPES = {"<": "\\u003c", ">": "\\u003e", "&": "\\u0026", "\u2028": "\\u2028",
               "\u2029": "\\u2029"}  # fmt: skip


def _go_order(value: Mapping[str, Any], fields: Sequence[str]) -> dict[str, Any]:
    known = {key: value[key] for key in fields if key in value}
    return {**known, **{k: v for k, v in value.items() if k not in known}}


def kserve_graph_json(spec: Mapping[str, Any]) -> str:
    """The `--graph-json` KServe's controller would write for `spec` (its JSON form)."""
    out = _go_order({**spec, "resources": spec.get("resources") or {}}, _GO_FIELDS["spec"])
    resources = _go_order(out["resources"], _GO_FIELDS["resources"])
    out["resources"] = {
        k: dict(sorted(v.items())) if isinstance(v, dict) else v for k, v in resources.items()
    }
    out["nodes"] = {
        name: {
            **_go_order(node, _GO_FIELDS["router"]),
            **(
                {"steps": [_go_order(step, _GO_FIELDS["step"]) for step in node["steps"]]}
                if "steps" in node
                else {}
            ),
        }
        for name, node in sorted(out["nodes"].items())
    }
    if "nodeSelector" in out:
        out["nodeSelector"] = dict(sorted(out["nodeSelector"].items()))
    text = orjson.dumps(out).decode()
    for char, escape in _GO_ESCAPES.items():
        text = text.replace(char, escape)
    return text


# --- shared ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Scaling:
    min_replicas: int | None
    max_replicas: int | None
    target: int | None
    metric: ScaleMetric | None
    autoscaler: str = AUTOSCALER_HPA
    strategy: Manifest | None = None


def _workload(
    name: str,
    labels: dict[str, str],
    annotations: dict[str, str],
    pod: Manifest,
    owner: Manifest | None,
    scaling: _Scaling,
    options: RenderOptions,
    pod_annotations: Mapping[str, str] | None = None,
) -> list[Manifest]:
    """KServe's raw reconcilers: a Deployment and a Service, selecting `app: isvc.<name>`, and
    an HPA unless the autoscaler class is external or none. The Deployment carries `replicas`
    only for class none (KServe's rule): otherwise the HPA, or whoever scales it, owns it."""
    labels = {**labels, "app": raw_service_label(name)}
    if options.mode is Mode.SERVERLESS:
        return [_knative_service(name, labels, pod, owner, scaling, options, pod_annotations)]
    metadata = _metadata(name, labels, annotations, owner, options)
    # KServe names the pod template after the component, in its namespace (Pods still get
    # generated names; the Deployment spec is then the same as KServe's, field for field).
    template_metadata = {"name": name, "namespace": options.namespace, "labels": labels}
    spec: Manifest = {
        "selector": {"matchLabels": {"app": labels["app"]}},
        "template": {"metadata": template_metadata, "spec": pod},
    }
    if annotations or pod_annotations:
        template_metadata["annotations"] = {**annotations, **(pod_annotations or {})}
    if scaling.autoscaler == AUTOSCALER_NONE and scaling.min_replicas is not None:
        spec["replicas"] = scaling.min_replicas
    if scaling.strategy is not None:
        spec["strategy"] = scaling.strategy
    deployment: Manifest = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": metadata,
        "spec": spec,
    }
    service: Manifest = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": _metadata(name, labels, annotations, owner, options),
        "spec": {"selector": {"app": labels["app"]}, "ports": _service_ports(name, pod)},
    }
    out = [deployment, service]
    if scaling.autoscaler == AUTOSCALER_HPA:
        out.append(_hpa(name, _metadata(name, labels, annotations, owner, options), scaling))
    return out


def raw_service_label(name: str) -> str:
    """KServe's GetRawServiceLabel: the `app` label its raw objects select on."""
    return f"isvc.{name}"


def _service_ports(name: str, pod: Manifest) -> list[Manifest]:
    """KServe's createDefaultSvc: port 80 to the first declared port of the first container
    (a collocated transformer's if there is one), the other ports on their own numbers."""
    containers = pod["containers"]
    container = _named(containers, TRANSFORMER_CONTAINER) or containers[0]
    ports = container.get("ports") or []
    if not ports:
        return [{"name": name, "port": 80, "targetPort": HTTP_PORT, "protocol": "TCP"}]
    out = []
    for index, port in enumerate(ports):
        entry: Manifest = {
            "port": 80 if index == 0 else port["containerPort"],
            "targetPort": port["containerPort"],
            "protocol": port.get("protocol") or "TCP",
        }
        if port.get("name"):
            entry["name"] = port["name"]
        if any(tag in port.get("name", "") for tag in ("grpc", "h2c")):
            entry["appProtocol"] = "kubernetes.io/h2c"
        out.append(entry)
    return out


def _hpa(name: str, metadata: Manifest, scaling: _Scaling) -> Manifest:
    """KServe's createHPA: minReplicas at least 1, maxReplicas at least minReplicas, cpu at
    scaleTarget (default 80%) or memory at scaleTarget (no memory default)."""
    minimum = max(1, scaling.min_replicas or 1)
    maximum = max(minimum, scaling.max_replicas or 0)
    metrics = []
    metric = scaling.metric or ScaleMetric.CPU
    if metric is ScaleMetric.CPU or (metric is ScaleMetric.MEMORY and scaling.target):
        target = scaling.target or DEFAULT_SCALE_TARGET
        metrics.append(
            {
                "type": "Resource",
                "resource": {
                    "name": metric.value,
                    "target": {"type": "Utilization", "averageUtilization": target},
                },
            }
        )
    spec: Manifest = {
        "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": name},
        "minReplicas": minimum,
        "maxReplicas": maximum,
        # KServe sets an empty behavior; the API server fills in its default policies.
        "behavior": {},
    }
    if metrics:
        spec["metrics"] = metrics
    return {
        "apiVersion": "autoscaling/v2",
        "kind": "HorizontalPodAutoscaler",
        "metadata": metadata,
        "spec": spec,
    }


def _knative_service(
    name: str,
    labels: dict[str, str],
    pod: Manifest,
    owner: Manifest | None,
    scaling: _Scaling,
    options: RenderOptions,
    pod_annotations: Mapping[str, str] | None = None,
) -> Manifest:
    annotations: dict[str, str] = dict(pod_annotations or {})
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
        "metadata": _metadata(name, labels, {}, owner, options),
        "spec": {"template": {"metadata": template_metadata, "spec": pod}},
    }


def _metadata(
    name: str,
    labels: dict[str, str],
    annotations: dict[str, str],
    owner: Manifest | None,
    options: RenderOptions,
) -> Manifest:
    metadata: Manifest = {"name": name, "namespace": options.namespace, "labels": dict(labels)}
    if annotations:
        metadata["annotations"] = dict(annotations)
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
