"""What KServe derives from an InferenceService's spec and metadata, beyond its runtime (pure).

- `with_webhook_defaults`: what KServe's mutating webhook stores before any controller reads
  the object (framework keys become `model`; Triton, ONNX and HuggingFace default to v2; the
  default resources on framework specs and on a custom predictor's or transformer's first
  container);
- `with_runtime_defaults`: what KServe's predictor reconcile adds for its own runtimes by name
  (`kserve-mlserver`, `kserve-torchserve`, `kserve-tritonserver`) before rendering the pod;
- `model_name` and `protocol`: KServe's GetModelName and GetProtocol, which decide the path of
  the URL a graph step calls (`predict_url`);
- `transformer_args`: the flags KServe's CustomTransformer adds (`--model_name`,
  `--predictor_host`, `--http_port`, `--workers`);
- `unsupported`: every field or annotation InferGraph accepts in the schema but does not
  implement, each with the reason and the targets (`Target`: cluster, serverless, local) that
  refuse it; render, `up`, `validate` and the controller all call it, so each refuses exactly
  what it cannot do and nothing else decides.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum

from schemas.errors import FieldError
from schemas.inference_service import (
    FRAMEWORK_FORMATS,
    ComponentExtension,
    InferenceService,
    ModelSpec,
    PredictorSpec,
    ProtocolVersion,
)
from schemas.pod import Container, EnvVar

MODEL_NAME_ARG = "--model_name"
PREDICTOR_HOST_ARG = "--predictor_host"
HTTP_PORT_ARG = "--http_port"
WORKERS_ARG = "--workers"
DEFAULT_HTTP_PORT = "8080"
MLSERVER_MODEL_NAME = "MLSERVER_MODEL_NAME"
PROTOCOL_ENV = "PROTOCOL"  # a custom container's protocol (KServe's CustomSpecProtocolEnvVarKey)
MODEL_DIR = "/mnt/models"

STOP = "serving.kserve.io/stop"
DEPLOYMENT_MODE = "serving.kserve.io/deploymentMode"
AUTOSCALER_CLASS = "serving.kserve.io/autoscalerClass"
RAW_DEPLOYMENT = "RawDeployment"
AUTOSCALER_HPA, AUTOSCALER_EXTERNAL, AUTOSCALER_NONE = "hpa", "external", "none"

# Framework keys KServe's webhook defaults to protocol v2 when they give none.
_V2_FRAMEWORKS = ("triton", "onnx", "huggingface")


def predictor_name(service: str) -> str:
    """The name KServe gives an InferenceService's predictor Deployment and Service."""
    return f"{service}-predictor"


def transformer_name(service: str) -> str:
    return f"{service}-transformer"


def is_stopped(annotations: Mapping[str, str] | None) -> bool:
    """KServe's GetForceStopRuntime: `serving.kserve.io/stop` equal to "true", any case."""
    return (annotations or {}).get(STOP, "").lower() == "true"


def autoscaler_class(annotations: Mapping[str, str] | None) -> str:
    return (annotations or {}).get(AUTOSCALER_CLASS, AUTOSCALER_HPA)


# --- KServe's defaulting --------------------------------------------------------------------


def with_webhook_defaults(service: InferenceService) -> InferenceService:
    """The object as KServe's mutating webhook stores it: `model` instead of a framework key,
    and KServe's default resources where its defaulter sets them."""
    service = _with_transformer_defaults(service)
    predictor = service.spec.predictor
    if predictor.model is not None:
        model = predictor.model
        if model.protocol_version is None and model.model_format.name == "triton":
            model = model.model_copy(update={"protocol_version": ProtocolVersion.V2})
        return _with_model(service, predictor, model, None)
    for key in (k for k in FRAMEWORK_FORMATS if getattr(predictor, k) is not None):
        converted = predictor.model_spec()
        if converted is None:  # unreachable: a framework key is set
            break
        if converted.protocol_version is None and key in _V2_FRAMEWORKS:
            converted = converted.model_copy(update={"protocol_version": ProtocolVersion.V2})
        # Each framework spec's Default() sets the resources before the conversion to `model`.
        converted = converted.model_copy(
            update={"resources": default_resources(converted.resources)}
        )
        return _with_model(service, predictor, converted, key)
    if predictor.containers:
        # CustomPredictor.Default: the first container gets the default resources.
        containers = _with_first_defaulted(predictor.containers)
        spec = service.spec.model_copy(
            update={"predictor": predictor.model_copy(update={"containers": containers})}
        )
        return service.model_copy(update={"spec": spec})
    return service


# KServe's default inferenceservice ConfigMap (v0.15.2), `inferenceService.resource`: what its
# webhook gives a component container that names no cpu or memory of its own.
DEFAULT_RESOURCES = {
    "requests": {"cpu": "1", "memory": "2Gi"},
    "limits": {"cpu": "1", "memory": "2Gi"},
}


def default_resources(resources: Mapping[str, object] | None) -> dict[str, object]:
    """KServe's setResourceRequirementDefaults: each request and limit (cpu, memory) the
    container does not set gets the default; what it sets is kept."""
    out: dict[str, object] = dict(resources or {})
    for part, defaults in DEFAULT_RESOURCES.items():
        given = out.get(part)
        current = dict(given) if isinstance(given, Mapping) else {}
        out[part] = {**defaults, **current}
    return out


def _with_first_defaulted(containers: Sequence[Container]) -> list[Container]:
    first = containers[0]
    defaulted = first.model_copy(update={"resources": default_resources(first.resources)})
    return [defaulted, *containers[1:]]


def _with_transformer_defaults(service: InferenceService) -> InferenceService:
    """CustomTransformer.Default: the first container gets the default resources."""
    transformer = service.spec.transformer
    if transformer is None or not transformer.containers:
        return service
    containers = _with_first_defaulted(transformer.containers)
    spec = service.spec.model_copy(
        update={"transformer": transformer.model_copy(update={"containers": containers})}
    )
    return service.model_copy(update={"spec": spec})


def _with_model(
    service: InferenceService, predictor: PredictorSpec, model: ModelSpec, framework: str | None
) -> InferenceService:
    update: dict[str, object] = {"model": model}
    if framework is not None:
        update[framework] = None
    spec = service.spec.model_copy(update={"predictor": predictor.model_copy(update=update)})
    return service.model_copy(update={"spec": spec})


@dataclass(frozen=True, slots=True)
class RuntimeDefaults:
    """What KServe's SetRuntimeDefaults adds for the runtime it selected, by runtime name."""

    env: tuple[EnvVar, ...] = ()  # appended to the model's env when not already named there
    args: tuple[str, ...] = ()
    labels: Mapping[str, str] | None = None  # added to the InferenceService's labels
    protocol: str | None = None  # a ProtocolVersion member, or a name KServe does not define


def runtime_defaults(runtime: str, name: str, model: ModelSpec) -> RuntimeDefaults:
    has_storage = model.storage_uri is not None or model.storage is not None
    env: tuple[EnvVar, ...]
    if runtime == "kserve-mlserver":
        if has_storage:
            env = (EnvVar(name=MLSERVER_MODEL_NAME, value=name),
                   EnvVar(name="MLSERVER_MODEL_URI", value=MODEL_DIR))  # fmt: skip
        else:
            env = (EnvVar(name="MLSERVER_LOAD_MODELS_AT_STARTUP", value="false"),)
        model_class = {
            "xgboost": "mlserver_xgboost.XGBoostModel",
            "lightgbm": "mlserver_lightgbm.LightGBMModel",
            "mlflow": "mlserver_mlflow.MLflowRuntime",
        }.get(model.model_format.name, "mlserver_sklearn.SKLearnModel")
        protocol = model.protocol_version or ProtocolVersion.V2
        return RuntimeDefaults(env, (), {"modelClass": model_class}, protocol)
    if runtime == "kserve-torchserve":
        protocol = model.protocol_version or ProtocolVersion.V1
        envelope = "kservev2" if protocol != ProtocolVersion.V1 else "kserve"
        env = (EnvVar(name="PROTOCOL_VERSION", value=str(protocol)),)
        return RuntimeDefaults(env, (), {"serviceEnvelope": envelope}, protocol)
    if runtime == "kserve-tritonserver":
        args = () if has_storage else ("--model-control-mode=explicit",)
        return RuntimeDefaults((), args, None, model.protocol_version or ProtocolVersion.V2)
    return RuntimeDefaults()


# --- addressing facts -----------------------------------------------------------------------


def _model_name_from_args(args: Sequence[str] | None) -> str:
    """KServe's getModelNameFromArgs: `--model_name=x` or `--model_name x`; the last wins."""
    found = ""
    values = list(args or [])
    for index, arg in enumerate(values):
        if arg.startswith(MODEL_NAME_ARG):
            parts = arg.split("=")
            if len(parts) == 2:
                found = parts[1]
            if index + 1 < len(values) and not values[index + 1].startswith("--"):
                found = values[index + 1]
    return found


def model_name(service: InferenceService) -> str:
    """KServe's GetModelName: the name in the URL a graph calls (the InferenceService's unless a
    transformer's or the model's args, or MLServer's env, name another)."""
    name = service.metadata.name or ""
    transformer = service.spec.transformer
    if transformer is not None and transformer.containers:
        found = _model_name_from_args(transformer.containers[0].args)
        if found:
            return found
    predictor = with_webhook_defaults(service).spec.predictor
    if predictor.model is not None:
        for env in predictor.model.env or []:
            if env.name == MLSERVER_MODEL_NAME:
                return env.value or ""
        return _model_name_from_args(predictor.model.args) or name
    if predictor.containers:
        return _model_name_from_args(predictor.containers[0].args) or name
    return name


def _container_protocol(container: Container) -> ProtocolVersion:
    for env in container.env or []:
        if env.name == PROTOCOL_ENV and env.value in ("v1", "v2"):
            return ProtocolVersion(env.value)
    return ProtocolVersion.V1


def protocol(service: InferenceService) -> str:
    """KServe's GetProtocol of the component a graph calls: the transformer's when there is
    one (its container's PROTOCOL env, default v1), else the predictor's (the model's
    protocolVersion after the webhook's defaults, default v1)."""
    transformer = service.spec.transformer
    if transformer is not None:
        containers = transformer.containers or []
        return _container_protocol(containers[0]) if containers else ProtocolVersion.V1
    predictor = with_webhook_defaults(service).spec.predictor
    if predictor.model is not None:
        return predictor.model.protocol_version or ProtocolVersion.V1
    containers = predictor.containers or []
    for container in containers:
        if container.name == "transformer-container":
            return _container_protocol(container)
    return _container_protocol(containers[0]) if containers else ProtocolVersion.V1


def transformer_args(
    args: Sequence[str],
    service: str,
    namespace: str,
    concurrency: int | None,
    predictor_host: str | None = None,
    http_port: str = DEFAULT_HTTP_PORT,
) -> list[str]:
    """KServe's CustomTransformer.GetContainer: each flag added unless an arg starts with it.
    `predictor_host` defaults to the predictor's Service in `namespace`."""

    def given(flag: str) -> bool:
        return any(a == flag or a.startswith(flag) for a in args)

    out = list(args)
    if not given(MODEL_NAME_ARG):
        out += [MODEL_NAME_ARG, service]
    if not given(PREDICTOR_HOST_ARG):
        host = predictor_host or f"{predictor_name(service)}.{namespace}"
        out += [PREDICTOR_HOST_ARG, host]
    if not given(HTTP_PORT_ARG):
        out += [HTTP_PORT_ARG, http_port]
    if not given(WORKERS_ARG) and concurrency is not None:
        out += [WORKERS_ARG, str(concurrency)]
    return out


# --- what is refused ------------------------------------------------------------------------


class Target(StrEnum):
    """Where a bundle is deployed. What InferGraph refuses depends on it: a RawDeployment-only
    setting means nothing to Knative, and pod placement or scaling means nothing to `up`."""

    CLUSTER = "cluster"  # RawDeployment objects: the controller and `render` (raw mode)
    SERVERLESS = "serverless"  # Knative Services: `render --mode serverless`
    LOCAL = "local"  # processes on this machine: `infergraph up`
    # What the controller (and raw `render`) or `up` refuses: `validate --target strict`.
    STRICT = "strict"


_EVERYWHERE = frozenset({Target.CLUSTER, Target.SERVERLESS, Target.LOCAL})
_ON_CLUSTER = frozenset({Target.CLUSTER, Target.SERVERLESS})
_RAW = frozenset({Target.CLUSTER})

_AGENT = "needs KServe's agent sidecar, which InferGraph does not deploy"
_KNATIVE = (
    "is a Knative (Serverless mode) setting; the controller deploys RawDeployment only, and "
    "`render --mode serverless` does not render it"
)
# Component fields accepted by the schema and refused, with why (README: "KServe vs InferGraph").
REFUSED_COMPONENT_FIELDS: dict[str, str] = {
    "logger": f"request logging {_AGENT}",
    "batcher": f"request batching {_AGENT}",
    "canaryTrafficPercent": f"canary rollout {_KNATIVE}",
    "containerConcurrency": f"per-pod concurrency {_KNATIVE}",
    "timeout": f"the request timeout {_KNATIVE}",
    "autoScaling": "autoScaling metrics (KServe's v1beta1 AutoScalingSpec) are not implemented "
    "yet; use scaleMetric and scaleTarget",
    "scaleMetricType": "scaleMetricType (KEDA scaling) is not implemented",
}
REFUSED_PREDICTOR_FIELDS: dict[str, str] = {
    "workerSpec": "multi-node (Ray) predictors are not implemented",
    "model.storage": "storage specs (KServe's storage-config secret) are not implemented; "
    "use storageUri",
}
REFUSED_SPEC_FIELDS: dict[str, str] = {
    "explainer": "explainers are not implemented: InferGraph deploys no explainer and no "
    ":explain route; graphs call :predict through the transformer or predictor",
}
DEPLOYMENT_MODES: dict[str, tuple[frozenset[Target], str]] = {
    "Serverless": (
        _RAW,
        "Serverless mode needs Knative, which InferGraph does not support; use RawDeployment "
        "(or `render --mode serverless`)",
    ),
    "ModelMesh": (_ON_CLUSTER, "ModelMesh is not supported; use RawDeployment"),
    RAW_DEPLOYMENT: (
        frozenset({Target.SERVERLESS}),
        "asks for RawDeployment objects, not Knative Services; render without --mode serverless",
    ),
}
_KNATIVE_SCALED = (
    "a Knative Service is always scaled by Knative: leave the class unset (KPA), or set "
    "scaleMetric cpu or memory for Knative's HPA class"
)
# Annotation values refused, with the targets that refuse them and why.
REFUSED_ANNOTATIONS: dict[str, dict[str, tuple[frozenset[Target], str]]] = {
    AUTOSCALER_CLASS: {
        "keda": (_EVERYWHERE, "KEDA autoscaling is not implemented; use hpa, external or none"),
        "kpa": (
            frozenset({Target.CLUSTER, Target.LOCAL}),
            "the Knative autoscaler needs Serverless mode; use hpa, external or none",
        ),
        # A Knative Service always has an autoscaler: KPA, or Knative's HPA class for a cpu or
        # memory scaleMetric, which is what `render --mode serverless` writes.
        AUTOSCALER_EXTERNAL: (
            frozenset({Target.SERVERLESS}),
            _KNATIVE_SCALED,
        ),
        AUTOSCALER_NONE: (frozenset({Target.SERVERLESS}), _KNATIVE_SCALED),
    },
}
SCALE_METRICS_KNATIVE = ("concurrency", "rps")
# KServe's pod webhook, implemented by `render` (see there): accepted everywhere.
PROMETHEUS_SCRAPING = "serving.kserve.io/enable-prometheus-scraping"
METRIC_AGGREGATION = "serving.kserve.io/enable-metric-aggregation"
GKE_ACCELERATOR = "serving.kserve.io/gke-accelerator"
# Annotations KServe v0.15.2 defines for InferenceServices that InferGraph does not implement,
# refused by name wherever they are set (the InferenceService's or a component's annotations).
REFUSED_ANNOTATION_KEYS: dict[str, tuple[frozenset[Target], str]] = {
    "serving.kserve.io/enable-tag-routing": (
        _ON_CLUSTER,
        "Knative traffic tags (KServe's Serverless routes) are not implemented",
    ),
    "serving.kserve.io/metrics": (
        _ON_CLUSTER,
        "KServe v0.15.2 no longer reads it; use the component's scaleMetric",
    ),
    "serving.kserve.io/targetUtilizationPercentage": (
        _ON_CLUSTER,
        "KServe v0.15.2 no longer reads it; use the component's scaleTarget",
    ),
    "serving.kserve.io/storage-initializer-uid": (
        _ON_CLUSTER,
        "the storage-initializer's user under Istio CNI (KServe's SetIstioCniSecurityContext) "
        "is not implemented",
    ),
    "serving.kserve.io/gpu-resource-types": (
        _ON_CLUSTER,
        "KServe reads it only for multi-node (workerSpec) predictors, which are not implemented",
    ),
}
# Knative's own annotations: RawDeployment has no Knative to read them, and InferGraph's Knative
# rendering takes autoscaling from minReplicas, maxReplicas, scaleTarget and scaleMetric only.
REFUSED_ANNOTATION_PREFIXES: dict[str, tuple[frozenset[Target], str]] = {
    "autoscaling.knative.dev/": (
        _ON_CLUSTER,
        f"Knative autoscaling {_KNATIVE}; use minReplicas, maxReplicas, scaleTarget, scaleMetric",
    ),
    "serving.knative.dev/": (_ON_CLUSTER, f"Knative serving {_KNATIVE}"),
    "serving.knative.openshift.io/": (_ON_CLUSTER, f"OpenShift's Knative serving {_KNATIVE}"),
}
# The schemes KServe's storage initializer accepts (v0.15.2 SupportedStorageURIPrefixList).
STORAGE_SCHEMES = ("gs", "s3", "pvc", "file", "https", "http", "hdfs", "webhdfs", "oci", "hf")
STORAGE_URI_ENV = "STORAGE_URI"  # a custom container's model location (KServe's injector reads it)
KSERVE_CONTAINER = "kserve-container"  # KServe's InferenceServiceContainerName


def unsupported(service: InferenceService, target: Target) -> list[FieldError]:
    """Every field or annotation of `service` that InferGraph accepts in the schema but does
    not implement for `target`, naming the field and why. The one place that decides: render,
    the controller, `up` and `validate` all call it."""
    wanted = _wanted(target)
    return [error for error, targets in _refusals(service) if targets & wanted]


def _wanted(target: Target) -> frozenset[Target]:
    return frozenset({Target.CLUSTER, Target.LOCAL} if target is Target.STRICT else {target})


def graph_unsupported(annotations: Mapping[str, str] | None, target: Target) -> list[FieldError]:
    """What an InferenceGraph's deployment mode asks for that `target` does not implement.
    KServe renders a graph's router as a Knative Service for any mode but RawDeployment. The
    targets refusing each mode are the InferenceServices' (`DEPLOYMENT_MODES`): the controller
    and raw `render` make the router a Deployment, `render --mode serverless` a Knative Service,
    and `up` (local processes) has no deployment mode to honour; only the words are a graph's."""
    mode = (annotations or {}).get(DEPLOYMENT_MODE)
    if mode is None:
        return []
    targets = DEPLOYMENT_MODES[mode][0] if mode in DEPLOYMENT_MODES else _ON_CLUSTER
    refusing = targets & _wanted(target)
    if not refusing:
        return []
    if Target.SERVERLESS in refusing:
        why = (
            f"'{mode}' asks for a RawDeployment router, not a Knative Service; render without "
            "--mode serverless"
            if mode == RAW_DEPLOYMENT
            else f"'{mode}' is not a mode InferGraph renders a graph's router in; use Serverless"
        )
    else:
        why = (
            f"'{mode}': a graph's router on Knative is not implemented on a cluster; InferGraph "
            f"deploys the router as a Deployment ({RAW_DEPLOYMENT}; `render --mode serverless` "
            "renders Knative Services)"
        )
    return [FieldError(f"metadata.annotations.{DEPLOYMENT_MODE}", why)]


def _refusals(service: InferenceService) -> list[tuple[FieldError, frozenset[Target]]]:
    """Every refusal InferGraph knows for `service`, each with the targets that refuse it."""
    out: list[tuple[FieldError, frozenset[Target]]] = []

    def refuse(path: str, why: str, targets: frozenset[Target] = _EVERYWHERE) -> None:
        out.append((FieldError(path, why), targets))

    spec = service.spec
    for field, why in REFUSED_SPEC_FIELDS.items():
        if getattr(spec, field) is not None:
            refuse(f"spec.{field}", why)
    components: list[tuple[str, ComponentExtension]] = [("predictor", spec.predictor)]
    if spec.transformer is not None:
        components.append(("transformer", spec.transformer))
    for component, fields in components:
        for field, why in REFUSED_COMPONENT_FIELDS.items():
            if getattr(fields, _snake(field)) is not None:
                refuse(f"spec.{component}.{field}", why)
        metric = fields.scale_metric
        if metric is not None and metric.value in SCALE_METRICS_KNATIVE:
            refuse(
                f"spec.{component}.scaleMetric",
                f"'{metric.value}' is a Knative (Serverless) metric; RawDeployment's HPA scales "
                "on cpu or memory",
                _RAW,
            )
    predictor = spec.predictor
    if predictor.worker_spec is not None:
        refuse("spec.predictor.workerSpec", REFUSED_PREDICTOR_FIELDS["workerSpec"])
    model = predictor.model_spec()
    if model is not None and model.storage is not None:
        refuse("spec.predictor.model.storage", REFUSED_PREDICTOR_FIELDS["model.storage"])
    if model is None and predictor.containers:
        refuse(
            "spec.predictor.containers",
            "custom predictor containers cannot run locally; use spec.predictor.model with a "
            "runtime that has a local command",
            frozenset({Target.LOCAL}),
        )
    for path, uri, is_model in _storage_uris(service):
        scheme = uri.split("://", 1)[0] if "://" in uri else ""
        if scheme and scheme not in STORAGE_SCHEMES:
            refuse(
                path,
                f"'{uri}' has a scheme KServe's storage initializer does not support "
                f"(supported: {', '.join(STORAGE_SCHEMES)})",
                _ON_CLUSTER,
            )
        elif scheme == "oci":
            refuse(path, f"'{uri}': OCI model images (KServe's modelcar) are not implemented",
                   _ON_CLUSTER)  # fmt: skip
        if scheme and scheme != "file" and is_model:
            refuse(path, f"'{uri}' is not on this machine; locally only file:// URIs and paths "
                   "are read", frozenset({Target.LOCAL}))  # fmt: skip
    annotations = service.metadata.annotations or {}
    for annotation, refused in REFUSED_ANNOTATIONS.items():
        value = annotations.get(annotation)
        if value is not None and value in refused:
            targets, why = refused[value]
            refuse(f"metadata.annotations.{annotation}", f"'{value}': {why}", targets)
    refused_classes = REFUSED_ANNOTATIONS[AUTOSCALER_CLASS]
    known = tuple(
        dict.fromkeys((AUTOSCALER_HPA, AUTOSCALER_EXTERNAL, AUTOSCALER_NONE, *refused_classes))
    )
    if autoscaler_class(annotations) not in known:
        refuse(
            f"metadata.annotations.{AUTOSCALER_CLASS}",
            f"unknown autoscaler class '{autoscaler_class(annotations)}' "
            f"(KServe's: {', '.join(known)})",
        )
    mode = annotations.get(DEPLOYMENT_MODE)
    if mode is not None:
        path = f"metadata.annotations.{DEPLOYMENT_MODE}"
        if mode in DEPLOYMENT_MODES:
            targets, why = DEPLOYMENT_MODES[mode]
            refuse(path, f"'{mode}': {why}", targets)
        else:
            refuse(
                path,
                f"unknown deployment mode '{mode}' (KServe's: {', '.join(DEPLOYMENT_MODES)}; "
                "KServe would silently use its configured default)",
                _ON_CLUSTER,
            )
    placed: list[tuple[str, Mapping[str, str] | None]] = [("metadata", annotations)]
    placed += [(f"spec.{name}", fields.annotations) for name, fields in components]
    for where, given in placed:
        for key in given or {}:
            targets, why = _refused_key(key)
            if targets:
                refuse(f"{where}.annotations.{key}", why, targets)
    return out


def _refused_key(key: str) -> tuple[frozenset[Target], str]:
    if key in REFUSED_ANNOTATION_KEYS:
        return REFUSED_ANNOTATION_KEYS[key]
    for prefix, refusal in REFUSED_ANNOTATION_PREFIXES.items():
        if key.startswith(prefix):
            return refusal
    return frozenset(), ""


def _storage_uris(service: InferenceService) -> list[tuple[str, str, bool]]:
    """Each model location KServe's storage initializer would fetch, with its field path and
    whether it is the predictor's model (which `up` reads): the predictor's storageUri, and
    STORAGE_URI in the serving container of a custom predictor or a transformer's first."""
    out = []
    predictor = service.spec.predictor
    model = predictor.model_spec()
    if model is not None:
        key = next((k for k in FRAMEWORK_FORMATS if getattr(predictor, k) is not None), "model")
        if model.storage_uri:
            out.append((f"spec.predictor.{key}.storageUri", model.storage_uri, True))
    containers = predictor.containers or []
    if model is None and containers:
        # KServe's webhook names a lone (or unnamed first) container kserve-container.
        if len(containers) == 1 or not containers[0].name:
            index = 0
        else:
            names = [c.name for c in containers]
            index = names.index(KSERVE_CONTAINER) if KSERVE_CONTAINER in names else -1
        if index >= 0:
            uri = _env_value(containers[index], STORAGE_URI_ENV)
            if uri:
                path = f"spec.predictor.containers[{index}].env.{STORAGE_URI_ENV}"
                out.append((path, uri, False))
    transformer = service.spec.transformer
    if transformer is not None and transformer.containers:
        uri = _env_value(transformer.containers[0], STORAGE_URI_ENV)
        if uri:
            out.append((f"spec.transformer.containers[0].env.{STORAGE_URI_ENV}", uri, False))
    return out


def _env_value(container: Container, name: str) -> str | None:
    return next((e.value for e in container.env or [] if e.name == name), None)


def _snake(camel: str) -> str:
    return "".join("_" + c.lower() if c.isupper() else c for c in camel)
