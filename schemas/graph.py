"""Pydantic models of the `InferenceGraph`: KServe's (serving.kserve.io/v1alpha1) and ours.

Field for field what KServe's Go types declare, with the JSON names they use, plus InferGraph's
extensions, each marked with `extension()`. An extension is valid only in our own API group
(`infergraph.dev/v1alpha1`, same kind): the serving.kserve.io CRD is KServe's, so the API server
there would prune or refuse them, and schemas.crd leaves them out of it. Fields that KServe added
after the version we are checked against (v0.15.2) are marked with `kserve_since()`: they belong
to KServe's group. These models check shapes and types only; the rules that span fields and
nodes (a `root` node, one target per step, splitter weights, references, cycles, conditions)
live in `schemas.graph_rules`, so that every violation is reported at once with its exact path.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any, Final, Literal

from pydantic import ConfigDict, Field
from pydantic.fields import FieldInfo

from schemas.base import JsonObject, ObjectMeta, Resource, StrictBool, StrictInt, StrictNumber

KSERVE_GROUP: Final = "serving.kserve.io"
INFERGRAPH_GROUP: Final = "infergraph.dev"
VERSION: Final = "v1alpha1"
API_VERSION: Final = f"{KSERVE_GROUP}/{VERSION}"  # KServe's: KServe's fields only
INFERGRAPH_API_VERSION: Final = f"{INFERGRAPH_GROUP}/{VERSION}"  # KServe's plus our extensions
KIND: Final = "InferenceGraph"
ROOT_NODE = "root"

# JSON Schema keywords carrying the markers; schemas.crd reads them, the CRDs never show them.
EXTENSION_KEY: Final = "x-infergraph-extension"
KSERVE_TYPE_KEY: Final = "x-infergraph-kserve-type"
KSERVE_SINCE_KEY: Final = "x-infergraph-kserve-since"


def extension(**kwargs: Any) -> Any:
    """A Field that only `infergraph.dev` graphs may set."""
    return Field(default=None, json_schema_extra={EXTENSION_KEY: True}, **kwargs)


def kserve_since(version: str, **kwargs: Any) -> Any:
    """A Field of KServe's own that KServe added in `version` (after v0.15.2)."""
    return Field(default=None, json_schema_extra={KSERVE_SINCE_KEY: version}, **kwargs)


def is_extension(field: FieldInfo) -> bool:
    extra = field.json_schema_extra
    return isinstance(extra, dict) and extra.get(EXTENSION_KEY) is True


def kserve_json_type(field: FieldInfo) -> str | None:
    """The one JSON type KServe allows for a field whose other forms are our extension."""
    extra = field.json_schema_extra
    value = extra.get(KSERVE_TYPE_KEY) if isinstance(extra, dict) else None
    return value if isinstance(value, str) else None


class RouterType(StrEnum):
    SEQUENCE = "Sequence"
    SWITCH = "Switch"
    ENSEMBLE = "Ensemble"
    SPLITTER = "Splitter"


class Dependency(StrEnum):
    HARD = "Hard"
    SOFT = "Soft"


class OpenAIEndpoint(StrEnum):
    """Which of KServe's OpenAI-compatible endpoints a step calls (`/openai/v1/...`)."""

    CHAT = "chat"  # /openai/v1/chat/completions
    COMPLETIONS = "completions"  # /openai/v1/completions

    @property
    def path(self) -> str:
        return (
            "/openai/v1/chat/completions"
            if self is OpenAIEndpoint.CHAT
            else "/openai/v1/completions"
        )


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
    # KServe's is a string; an object template is an InferGraph extension.
    data: StepData | None = Field(default=None, json_schema_extra={KSERVE_TYPE_KEY: "string"})
    condition: str | None = None
    weight: StrictInt | None = Field(default=None, ge=0)
    dependency: Dependency | None = None
    map_predictions_to_instances: StrictBool | None = kserve_since("v0.16.0")
    # InferGraph extensions, all optional; a KServe graph never sets them.
    condition_language: ConditionLanguage | None = extension()
    map_outputs_to_inputs: StrictBool | dict[str, str] | None = extension()
    timeout: StrictNumber | None = extension(gt=0)
    # Seconds a streamed answer may go without a chunk (README, Streaming).
    idle_timeout: StrictNumber | None = extension(gt=0)
    retry: RetryPolicy | None = extension()
    circuit_breaker: CircuitBreakerPolicy | None = extension()
    shadow: StrictBool | None = extension()
    # The InferenceService named by serviceName speaks OpenAI's protocol: its URL resolves to
    # this endpoint instead of the v1/v2 predict path (README, Streaming).
    openai: OpenAIEndpoint | None = extension()


class InferenceRouter(Resource):
    """A node: how its steps are combined."""

    router_type: RouterType
    steps: list[InferenceStep] = Field(default_factory=list)
    # InferGraph extensions (Ensemble: aggregation, partialResults, quorum; Splitter:
    # stickyHeader).
    aggregation: Aggregation | None = extension()
    partial_results: StrictBool | None = extension()
    quorum: StrictInt | Literal["majority"] | None = extension()
    sticky_header: str | None = extension()


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
    router_timeouts: RouterTimeouts | None = kserve_since("v0.16.0")
    min_replicas: StrictInt | None = Field(default=None, ge=0)
    max_replicas: StrictInt | None = Field(default=None, ge=0)
    scale_target: StrictInt | None = Field(default=None, ge=0)
    scale_metric: ScaleMetric | None = None
    # InferGraph extensions: graph-wide defaults for steps.
    condition_language: ConditionLanguage | None = extension()
    retry: RetryPolicy | None = extension()
    circuit_breaker: CircuitBreakerPolicy | None = extension()


class InferenceGraphStatus(Resource):
    """Knative duck-typed status plus the graph's URL; written by the controller (ours, or
    KServe's for its own graphs), so fields a newer KServe adds are kept rather than refused."""

    model_config = ConfigDict(extra="allow")

    conditions: list[JsonObject] | None = None
    observed_generation: StrictInt | None = None
    annotations: dict[str, str] | None = None
    url: str | None = None
    deployment_mode: str | None = None


class InferenceGraph(Resource):
    """Either apiVersion; `schemas.valid_graph` refuses extensions under KServe's."""

    api_version: Literal["serving.kserve.io/v1alpha1", "infergraph.dev/v1alpha1"]
    kind: Literal["InferenceGraph"]
    metadata: ObjectMeta = Field(default_factory=ObjectMeta)
    spec: InferenceGraphSpec
    status: InferenceGraphStatus | None = None
