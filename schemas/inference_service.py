"""Pydantic models of KServe's `InferenceService` (serving.kserve.io/v1beta1).

The predictor is what deployers run: `spec.predictor.model` (format, runtime, storageUri,
protocol, and the container fields KServe inlines) or, in the older style, a framework key such
as `spec.predictor.sklearn`. `model_spec()` gives one view of both. PodSpec fields KServe inlines
are declared by name (typos are rejected) but pass through untyped.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Literal

from pydantic import AfterValidator, ConfigDict, Field

from schemas.base import JsonObject, ObjectMeta, Resource, StrictBool, StrictInt
from schemas.graph import ScaleMetric
from schemas.pod import EnvVar, PodSpecFields


class ProtocolVersion(StrEnum):
    """KServe's constants.InferenceServiceProtocol values."""

    V1 = "v1"
    V2 = "v2"
    GRPC_V1 = "grpc-v1"
    GRPC_V2 = "grpc-v2"


def _known_protocol(value: str) -> str:
    # KServe's Go type is a plain string and nothing in KServe validates it, so any string is
    # accepted (a protocol no runtime lists simply selects none); the ones KServe names become
    # ProtocolVersion members so deployers can compare by identity.
    try:
        return ProtocolVersion(value)
    except ValueError:
        return value


Protocol = Annotated[str, AfterValidator(_known_protocol)]


class ModelFormat(Resource):
    name: str
    version: str | None = None


class PredictorExtension(Resource):
    """KServe's PredictorExtensionSpec: storage, protocol and an inlined container."""

    storage_uri: str | None = None
    runtime_version: str | None = None
    protocol_version: Protocol | None = None
    storage: JsonObject | None = None
    # The v1.Container fields KServe inlines here.
    name: str | None = None
    image: str | None = None
    command: list[str] | None = None
    args: list[str] | None = None
    env: list[EnvVar] | None = None
    env_from: list[JsonObject] | None = None
    resources: JsonObject | None = None
    ports: list[JsonObject] | None = None
    volume_mounts: list[JsonObject] | None = None
    working_dir: str | None = None
    image_pull_policy: str | None = None
    liveness_probe: JsonObject | None = None
    readiness_probe: JsonObject | None = None
    security_context: JsonObject | None = None
    startup_probe: JsonObject | None = None
    lifecycle: JsonObject | None = None
    resize_policy: list[JsonObject] | None = None
    restart_policy: str | None = None
    stdin: StrictBool | None = None
    stdin_once: StrictBool | None = None
    tty: StrictBool | None = None
    termination_message_path: str | None = None
    termination_message_policy: str | None = None
    volume_devices: list[JsonObject] | None = None


class ModelSpec(PredictorExtension):
    # Required in practice (runtime selection matches on it) but not by KServe's CRD or Go
    # types, where a missing format is the empty name; selection then reports no runtime.
    model_format: ModelFormat = Field(default_factory=lambda: ModelFormat(name=""))
    runtime: str | None = None


class ComponentExtension(Resource):
    """Scaling and traffic fields common to predictor and transformer."""

    min_replicas: StrictInt | None = Field(default=None, ge=0)
    max_replicas: StrictInt | None = Field(default=None, ge=0)
    scale_target: StrictInt | None = Field(default=None, ge=0)
    scale_metric: ScaleMetric | None = None
    scale_metric_type: str | None = None
    container_concurrency: StrictInt | None = Field(default=None, ge=0)
    timeout: StrictInt | None = Field(default=None, ge=0)
    canary_traffic_percent: StrictInt | None = Field(default=None, ge=0, le=100)
    logger: JsonObject | None = None
    batcher: JsonObject | None = None
    labels: dict[str, str] | None = None
    annotations: dict[str, str] | None = None
    deployment_strategy: JsonObject | None = None
    auto_scaling: JsonObject | None = None


# The older per-framework predictor keys and the model format each one means.
FRAMEWORK_FORMATS = {
    "sklearn": "sklearn",
    "xgboost": "xgboost",
    "lightgbm": "lightgbm",
    "tensorflow": "tensorflow",
    "pytorch": "pytorch",
    "triton": "triton",
    "onnx": "onnx",
    "pmml": "pmml",
    "paddle": "paddle",
    "huggingface": "huggingface",
}


class PredictorSpec(PodSpecFields, ComponentExtension):
    model: ModelSpec | None = None
    sklearn: PredictorExtension | None = None
    xgboost: PredictorExtension | None = None
    lightgbm: PredictorExtension | None = None
    tensorflow: PredictorExtension | None = None
    pytorch: PredictorExtension | None = None
    triton: PredictorExtension | None = None
    onnx: PredictorExtension | None = None
    pmml: PredictorExtension | None = None
    paddle: PredictorExtension | None = None
    huggingface: PredictorExtension | None = None
    worker_spec: JsonObject | None = None

    def model_spec(self) -> ModelSpec | None:
        """The predictor as a ModelSpec, whichever style it was written in (None: custom)."""
        if self.model is not None:
            return self.model
        for key, format_name in FRAMEWORK_FORMATS.items():
            framework: PredictorExtension | None = getattr(self, key)
            if framework is not None:
                fields = framework.model_dump(by_alias=True, exclude_none=True)
                return ModelSpec.model_validate({**fields, "modelFormat": {"name": format_name}})
        return None


class TransformerSpec(PodSpecFields, ComponentExtension):
    pass


class ExplainerSpec(PodSpecFields, ComponentExtension):
    art: JsonObject | None = None


class InferenceServiceSpec(Resource):
    predictor: PredictorSpec
    transformer: TransformerSpec | None = None
    explainer: ExplainerSpec | None = None


class Addressable(Resource):
    url: str | None = None
    name: str | None = None
    ca_certs: str | None = Field(default=None, alias="CACerts")
    audience: str | None = None


class InferenceServiceStatus(Resource):
    """Written by whichever controller runs the InferenceService (ours or KServe's): fields a
    newer KServe adds are kept, not refused."""

    model_config = ConfigDict(extra="allow")

    conditions: list[JsonObject] | None = None
    observed_generation: StrictInt | None = None
    annotations: dict[str, str] | None = None
    url: str | None = None
    address: Addressable | None = None
    components: JsonObject | None = None
    model_status: JsonObject | None = None
    deployment_mode: str | None = None

    def is_ready(self) -> bool:
        """True when a `Ready` condition says True (Knative duck-typed status)."""
        return any(
            c.get("type") == "Ready" and str(c.get("status")) == "True"
            for c in self.conditions or []
        )


class InferenceService(Resource):
    api_version: Literal["serving.kserve.io/v1beta1"]
    kind: Literal["InferenceService"]
    metadata: ObjectMeta = Field(default_factory=ObjectMeta)
    spec: InferenceServiceSpec
    status: InferenceServiceStatus | None = None
