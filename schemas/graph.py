"""Pydantic models of KServe's `InferenceGraph` (serving.kserve.io/v1alpha1).

Field for field what KServe's Go types declare, with the JSON names they use. These models check
shapes and types only; the rules that span fields and nodes (a `root` node, one target per step,
splitter weights, references, cycles, conditions) live in `schemas.graph_rules`, so that every
violation is reported at once with its exact path.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Literal

from pydantic import Field

from schemas.base import JsonObject, ObjectMeta, Resource

API_VERSION = "serving.kserve.io/v1alpha1"
KIND = "InferenceGraph"
ROOT_NODE = "root"


class RouterType(StrEnum):
    SEQUENCE = "Sequence"
    SWITCH = "Switch"
    ENSEMBLE = "Ensemble"
    SPLITTER = "Splitter"


class Dependency(StrEnum):
    HARD = "Hard"
    SOFT = "Soft"


class ScaleMetric(StrEnum):
    CPU = "cpu"
    MEMORY = "memory"
    CONCURRENCY = "concurrency"
    RPS = "rps"


StepData = Literal["$request", "$response"]


class InferenceStep(Resource):
    """One step of a node: a call to an InferenceService or a hop into another node."""

    name: str | None = None
    service_name: str | None = None
    # The controller resolves serviceName into serviceUrl and keeps both, so a step may carry
    # both (the router then calls serviceUrl); nodeName excludes the other two.
    service_url: str | None = None
    node_name: str | None = None
    data: StepData | None = None
    condition: str | None = None
    weight: int | None = Field(default=None, ge=0)
    dependency: Dependency | None = None
    map_predictions_to_instances: bool | None = None


class InferenceRouter(Resource):
    """A node: how its steps are combined."""

    router_type: RouterType
    steps: list[InferenceStep] = Field(default_factory=list)


class RouterTimeouts(Resource):
    """Seconds, as in KServe. None means the router's default."""

    server_read: int | None = Field(default=None, ge=0)
    server_write: int | None = Field(default=None, ge=0)
    server_idle: int | None = Field(default=None, ge=0)
    service_client: int | None = Field(default=None, ge=0)


class InferenceGraphSpec(Resource):
    nodes: dict[str, InferenceRouter]
    resources: JsonObject | None = None
    affinity: JsonObject | None = None
    tolerations: list[JsonObject] | None = None
    node_selector: dict[str, str] | None = None
    node_name: str | None = None
    service_account_name: str | None = None
    timeout: int | None = Field(default=None, ge=0)
    router_timeouts: RouterTimeouts | None = None
    min_replicas: int | None = Field(default=None, ge=0)
    max_replicas: int | None = Field(default=None, ge=0)
    scale_target: int | None = Field(default=None, ge=0)
    scale_metric: ScaleMetric | None = None


class InferenceGraphStatus(Resource):
    """Knative duck-typed status plus the graph's URL; written by the controller."""

    conditions: list[JsonObject] | None = None
    observed_generation: int | None = None
    annotations: dict[str, str] | None = None
    url: str | None = None


class InferenceGraph(Resource):
    api_version: Literal["serving.kserve.io/v1alpha1"]
    kind: Literal["InferenceGraph"]
    metadata: ObjectMeta = Field(default_factory=ObjectMeta)
    spec: InferenceGraphSpec
    status: InferenceGraphStatus | None = None
