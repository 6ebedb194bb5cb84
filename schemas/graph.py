"""Pydantic models of KServe's `InferenceGraph` (serving.kserve.io/v1alpha1).

Field for field what KServe's Go types declare, with the JSON names they use. These models check
shapes and types only; the rules that span fields and nodes (a `root` node, one target per step,
splitter weights, references, cycles, conditions) live in `schemas.graph_rules`, so that every
violation is reported at once with its exact path.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any, Literal

from pydantic import Field

from schemas.base import JsonObject, ObjectMeta, Resource, StrictBool, StrictInt, StrictNumber

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


class ConditionLanguage(StrEnum):
    GJSON = "gjson"
    JMESPATH = "jmespath"
    JSONPATH = "jsonpath"


class Aggregation(StrEnum):
    MERGE = "merge"  # KServe's: an object keyed by step name
    MAJORITY = "majority"
    MEAN = "mean"
    WEIGHTED = "weighted"
    FIRST = "first"


# `data` is KServe's "$request" / "$response", or (InferGraph) a path into either, such as
# "$response.predictions[0]", or an object template whose string leaves may be such paths.
StepData = str | dict[str, Any]


class RetryPolicy(Resource):
    """Retries of one step call, in the spelling proposed upstream in KServe."""

    max_retries: StrictInt = Field(default=0, ge=0, le=10)
    initial_delay_ms: StrictInt = Field(default=100, ge=0)
    max_delay_ms: StrictInt = Field(default=2000, ge=0)
    # Connection errors are always retried; these answers are too.
    retryable_status_codes: list[int] = Field(default_factory=lambda: [502, 503, 504])


class CircuitBreakerPolicy(Resource):
    failure_threshold: StrictInt = Field(default=5, ge=1)
    cooldown_seconds: StrictNumber = Field(default=10.0, gt=0)


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
    weight: StrictInt | None = Field(default=None, ge=0)
    dependency: Dependency | None = None
    map_predictions_to_instances: StrictBool | None = None
    # InferGraph extensions, all optional; a KServe graph never sets them.
    condition_language: ConditionLanguage | None = None
    map_outputs_to_inputs: StrictBool | dict[str, str] | None = None
    timeout: StrictNumber | None = Field(default=None, gt=0)
    retry: RetryPolicy | None = None
    circuit_breaker: CircuitBreakerPolicy | None = None
    shadow: StrictBool | None = None


class InferenceRouter(Resource):
    """A node: how its steps are combined."""

    router_type: RouterType
    steps: list[InferenceStep] = Field(default_factory=list)
    # InferGraph extensions (Ensemble: aggregation, partialResults, quorum; Splitter:
    # stickyHeader).
    aggregation: Aggregation | None = None
    partial_results: StrictBool | None = None
    quorum: StrictInt | Literal["majority"] | None = None
    sticky_header: str | None = None


class RouterTimeouts(Resource):
    """Seconds, as in KServe. None means the router's default."""

    server_read: StrictInt | None = Field(default=None, ge=0)
    server_write: StrictInt | None = Field(default=None, ge=0)
    server_idle: StrictInt | None = Field(default=None, ge=0)
    service_client: StrictInt | None = Field(default=None, ge=0)


class InferenceGraphSpec(Resource):
    nodes: dict[str, InferenceRouter]
    resources: JsonObject | None = None
    affinity: JsonObject | None = None
    tolerations: list[JsonObject] | None = None
    node_selector: dict[str, str] | None = None
    node_name: str | None = None
    service_account_name: str | None = None
    timeout: StrictInt | None = Field(default=None, ge=0)
    router_timeouts: RouterTimeouts | None = None
    min_replicas: StrictInt | None = Field(default=None, ge=0)
    max_replicas: StrictInt | None = Field(default=None, ge=0)
    scale_target: StrictInt | None = Field(default=None, ge=0)
    scale_metric: ScaleMetric | None = None
    # InferGraph extensions: graph-wide defaults for steps.
    condition_language: ConditionLanguage | None = None
    retry: RetryPolicy | None = None
    circuit_breaker: CircuitBreakerPolicy | None = None


class InferenceGraphStatus(Resource):
    """Knative duck-typed status plus the graph's URL; written by the controller."""

    conditions: list[JsonObject] | None = None
    observed_generation: StrictInt | None = None
    annotations: dict[str, str] | None = None
    url: str | None = None


class InferenceGraph(Resource):
    api_version: Literal["serving.kserve.io/v1alpha1"]
    kind: Literal["InferenceGraph"]
    metadata: ObjectMeta = Field(default_factory=ObjectMeta)
    spec: InferenceGraphSpec
    status: InferenceGraphStatus | None = None
