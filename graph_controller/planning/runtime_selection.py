"""Pick the serving runtime for an InferenceService's predictor, exactly as KServe does.

Pure: given the predictor's ModelSpec and the runtimes that exist, return the chosen runtime or
raise `RuntimeSelectionError` saying why none fits. KServe's rules (pkg/apis/serving/v1beta1):

- An explicit `runtime` is looked up by name, namespace ServingRuntimes first; it must exist, be
  enabled, support the requested protocol and list the model's format (autoSelect not needed).
- Otherwise candidates are enabled, single-model, single-node runtimes that list the format with
  `autoSelect: true` (and the exact version when the model gives one) and support the protocol
  (a runtime listing no protocols supports all). Namespace runtimes come before cluster ones;
  within each group, higher `priority` for the format first (unset last), then KServe's list
  order: lowest protocol first, then name.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum

from schemas.inference_service import ModelSpec, ProtocolVersion
from schemas.serving_runtime import ServingRuntimeSpec


class Scope(StrEnum):
    NAMESPACE = "ServingRuntime"
    CLUSTER = "ClusterServingRuntime"


@dataclass(frozen=True, slots=True)
class Runtime:
    name: str
    scope: Scope
    spec: ServingRuntimeSpec
    annotations: Mapping[str, str] = field(default_factory=dict)


# KServe's FailureInfo reasons for a predictor no runtime can serve (modelStatus).
NO_SUPPORTING_RUNTIME = "NoSupportingRuntime"
RUNTIME_NOT_RECOGNIZED = "RuntimeNotRecognized"
RUNTIME_DISABLED = "RuntimeDisabled"


class RuntimeSelectionError(ValueError):
    """No runtime can serve this predictor; the message names the format and the reason.

    `reason` and `summary` are the FailureInfo KServe's predictor reconcile writes to
    `status.modelStatus.lastFailureInfo` for the same case, word for word, so tools reading
    KServe's status see what they would under KServe."""

    def __init__(self, message: str, reason: str, summary: str) -> None:
        super().__init__(message)
        self.reason, self.summary = reason, summary


# KServe's constants.ProtocolVersion order, used to sort runtime lists.
_PROTOCOL_RANK: dict[str, int] = {
    ProtocolVersion.V1: 0,
    ProtocolVersion.V2: 1,
    ProtocolVersion.GRPC_V1: 2,
    ProtocolVersion.GRPC_V2: 3,
}
_UNKNOWN_RANK = 4


def model_protocol(model: ModelSpec) -> str:
    """The model's protocol: a ProtocolVersion member, or a name KServe does not define."""
    return model.protocol_version or ProtocolVersion.V1


def supports_protocol(spec: ServingRuntimeSpec, protocol: str) -> bool:
    return not spec.protocol_versions or protocol in spec.protocol_versions


def supports_model(spec: ServingRuntimeSpec, model: ModelSpec, explicit: bool) -> bool:
    """KServe's label match: `mt:<name>` or `mt:<name>:<version>` among the runtime's formats."""
    wanted = model.model_format
    for supported in spec.supported_model_formats:
        if not (explicit or supported.auto_select):
            continue
        if supported.name != wanted.name:
            continue
        if wanted.version is None or wanted.version == supported.version:
            return True
    return False


def _describe(model: ModelSpec) -> str:
    fmt = model.model_format
    version = f" version {fmt.version}" if fmt.version is not None else ""
    return f"model format '{fmt.name}'{version} with protocol {model_protocol(model)}"


def select_runtime(model: ModelSpec, runtimes: Sequence[Runtime]) -> Runtime:
    """The runtime KServe would choose for `model` among `runtimes`."""
    if model.runtime is not None:
        return _explicit(model, model.runtime, runtimes)
    protocol = model_protocol(model)
    chosen: list[Runtime] = []
    for scope in (Scope.NAMESPACE, Scope.CLUSTER):
        group = sorted(
            (r for r in runtimes if r.scope is scope and _eligible(r, model, protocol)),
            key=lambda r: (_protocol_rank(r.spec), r.name),
        )
        chosen.extend(sorted(group, key=lambda r: _priority_key(r.spec, model)))
    if not chosen:
        known = ", ".join(sorted({r.name for r in runtimes})) or "none"
        raise RuntimeSelectionError(
            f"no serving runtime supports {_describe(model)} with autoSelect "
            f"(runtimes: {known}); add one or name it in spec.predictor.model.runtime",
            NO_SUPPORTING_RUNTIME,
            "No runtime found to support specified framework/version",
        )
    return chosen[0]


def _eligible(runtime: Runtime, model: ModelSpec, protocol: str) -> bool:
    spec = runtime.spec
    return (
        not spec.disabled
        and not spec.multi_model
        and spec.worker_spec is None
        and supports_model(spec, model, explicit=False)
        and supports_protocol(spec, protocol)
    )


def _protocol_rank(spec: ServingRuntimeSpec) -> int:
    if not spec.protocol_versions:
        return _UNKNOWN_RANK
    return min(_PROTOCOL_RANK.get(p, _UNKNOWN_RANK) for p in spec.protocol_versions)


def _priority_key(spec: ServingRuntimeSpec, model: ModelSpec) -> tuple[int, int]:
    for supported in spec.supported_model_formats:
        if supported.name == model.model_format.name:
            if supported.priority is None:
                break
            return (0, -supported.priority)
    return (1, 0)  # unset priority sorts after every set one; sorted() keeps the prior order


def _explicit(model: ModelSpec, name: str, runtimes: Sequence[Runtime]) -> Runtime:
    matches = [r for r in runtimes if r.name == name]
    if not matches:
        raise RuntimeSelectionError(
            f"runtime '{name}' named by the predictor does not exist",
            RUNTIME_NOT_RECOGNIZED,
            "Waiting for runtime to become available",
        )
    runtime = min(matches, key=lambda r: r.scope is not Scope.NAMESPACE)
    if runtime.spec.disabled:
        raise RuntimeSelectionError(
            f"runtime '{name}' is disabled", RUNTIME_DISABLED, "Specified runtime is disabled"
        )
    protocol = model_protocol(model)
    if model.protocol_version is not None and not supports_protocol(runtime.spec, protocol):
        raise RuntimeSelectionError(
            f"runtime '{name}' does not support protocol {protocol}",
            NO_SUPPORTING_RUNTIME,
            "Specified runtime does not support specified protocol version",
        )
    if not supports_model(runtime.spec, model, explicit=True):
        raise RuntimeSelectionError(
            f"runtime '{name}' does not support {_describe(model)}",
            NO_SUPPORTING_RUNTIME,
            "Specified runtime does not support specified framework/version",
        )
    return runtime
