"""Pydantic models of KServe's `ServingRuntime` and `ClusterServingRuntime` (v1alpha1).

A runtime says which model formats and protocols it serves and how to run it (containers).
InferGraph adds one optional annotation, `LOCAL_COMMAND_ANNOTATION`, for running it as a local
process; the built-in runtimes know theirs.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from schemas.base import JsonObject, ObjectMeta, Resource, StrictBool, StrictInt
from schemas.inference_service import Protocol
from schemas.pod import Container

CLUSTER_KIND = "ClusterServingRuntime"

# A JSON list of argv strings; placeholders {model_name}, {model_dir}, {port}, {python}.
LOCAL_COMMAND_ANNOTATION = "infergraph.dev/local-command"


class SupportedModelFormat(Resource):
    name: str
    version: str | None = None
    auto_select: StrictBool | None = None
    # KServe documents "greater than zero" but neither its CRD nor its webhook enforces it, so
    # a KServe-valid runtime may say 0: refusing it would refuse what KServe runs.
    priority: StrictInt | None = None


class ServingRuntimeSpec(Resource):
    supported_model_formats: list[SupportedModelFormat] = Field(default_factory=list)
    protocol_versions: list[Protocol] | None = None
    containers: list[Container] = Field(default_factory=list)
    multi_model: StrictBool | None = None
    disabled: StrictBool | None = None
    grpc_endpoint: str | None = None
    grpc_data_endpoint: str | None = None
    http_data_endpoint: str | None = None
    replicas: StrictInt | None = None
    storage_helper: JsonObject | None = None
    built_in_adapter: JsonObject | None = None
    worker_spec: JsonObject | None = None
    volumes: list[JsonObject] | None = None
    node_selector: dict[str, str] | None = None
    affinity: JsonObject | None = None
    tolerations: list[JsonObject] | None = None
    labels: dict[str, str] | None = None
    annotations: dict[str, str] | None = None
    image_pull_secrets: list[JsonObject] | None = None
    host_ipc: StrictBool | None = Field(default=None, alias="hostIPC")


class ServingRuntime(Resource):
    api_version: Literal["serving.kserve.io/v1alpha1"]
    kind: Literal["ServingRuntime"]
    metadata: ObjectMeta = Field(default_factory=ObjectMeta)
    spec: ServingRuntimeSpec
    status: JsonObject | None = None  # KServe declares an (empty) status; nothing reads it


class ClusterServingRuntime(Resource):
    api_version: Literal["serving.kserve.io/v1alpha1"]
    kind: Literal["ClusterServingRuntime"]
    metadata: ObjectMeta = Field(default_factory=ObjectMeta)
    spec: ServingRuntimeSpec
    status: JsonObject | None = None  # KServe declares an (empty) status; nothing reads it
