"""A serving runtime's container and pod fields merged with an InferenceService's, as KServe does.

KServe (pkg/controller/v1beta1/inferenceservice/utils: MergeRuntimeContainers, MergePodSpec,
ReplacePlaceholders) JSON-encodes both sides and applies the InferenceService's as a Kubernetes
strategic merge patch over the runtime's, then concatenates the args and fills Go-template
placeholders from the InferenceService's metadata. This module reproduces that on plain JSON:

- lists Kubernetes declares `patchStrategy: merge` are merged by their key (env by `name`, ports
  by `containerPort`, volumeMounts by `mountPath`, volumes and imagePullSecrets by `name`, ...),
  with apimachinery's ordering (items only the patch has come first, see `_merge_keyed`);
- other lists (command, tolerations, envFrom) are replaced; objects (resources, probes,
  affinity, nodeSelector) are merged key by key;
- args are the runtime's followed by the InferenceService's.

Pure; used by `controller.render` (and so by `infergraph render` and the controller).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

Json = dict[str, Any]

# Kubernetes' patchMergeKey for the lists with patchStrategy "merge" (k8s.io/api/core/v1).
CONTAINER_KEYS = {
    "env": "name",
    "ports": "containerPort",
    "volumeMounts": "mountPath",
    "volumeDevices": "devicePath",
}
POD_KEYS = {
    "volumes": "name",
    "imagePullSecrets": "name",
    "hostAliases": "ip",
    "topologySpreadConstraints": "topologyKey",
    "schedulingGates": "name",
    "resourceClaims": "name",
    "containers": "name",
    "initContainers": "name",
    "ephemeralContainers": "name",
}
_CONTAINER_LISTS = ("containers", "initContainers", "ephemeralContainers")
# The runtime's pod-level fields KServe's MergePodSpec starts from (ServingRuntimePodSpec).
RUNTIME_POD_FIELDS = ("nodeSelector", "affinity", "tolerations", "volumes", "imagePullSecrets")


class MergeError(ValueError):
    """The two specs cannot be merged or templated; the message names the field."""


def strategic_merge(original: Json, patch: Json, keys: Mapping[str, str]) -> Json:
    """`patch` applied to `original` as a strategic merge patch; `keys` are the list merge keys
    at this level (CONTAINER_KEYS for a container, POD_KEYS for a pod spec)."""
    out = dict(original)
    for field, value in patch.items():
        if value is None:
            out.pop(field, None)  # null deletes, as in a JSON merge patch
            continue
        before = out.get(field)
        if isinstance(value, dict) and isinstance(before, dict):
            out[field] = strategic_merge(before, value, {})
        elif isinstance(value, list) and isinstance(before, list) and field in keys:
            nested = CONTAINER_KEYS if field in _CONTAINER_LISTS else {}
            out[field] = _merge_keyed(before, value, keys[field], field, nested)
        else:
            out[field] = value
    return out


def _merge_keyed(
    original: Sequence[Any], patch: Sequence[Any], key: str, field: str, nested: Mapping[str, str]
) -> list[Any]:
    """apimachinery's mergeSlice for a keyed list: items of both are merged in place; the
    result interleaves the patch's items (in patch order) with the original-only ones, an
    original-only item going first only when it precedes the patch item in the original."""
    for item in (*original, *patch):
        if not isinstance(item, dict) or key not in item:
            raise MergeError(f"{field}: every item needs '{key}' to be merged, got {item!r}")
    position = {item[key]: index for index, item in enumerate(original)}
    patched_keys = {item[key] for item in patch}
    merged = [
        strategic_merge(original[position[item[key]]], item, nested)
        if item[key] in position
        else item
        for item in patch
    ]
    only_original = [item for item in original if item[key] not in patched_keys]
    out: list[Any] = []
    i = j = 0
    while i < len(only_original) or j < len(merged):
        if j >= len(merged):
            out.append(only_original[i])
            i += 1
        elif i >= len(only_original):
            out.append(merged[j])
            j += 1
        else:
            left, right = only_original[i][key], merged[j][key]
            if right in position and position[left] < position[right]:
                out.append(only_original[i])
                i += 1
            else:
                out.append(merged[j])
                j += 1
    return out


def merge_containers(runtime: Json, service: Json) -> Json:
    """KServe's MergeRuntimeContainers: `service`'s container over the runtime's; args appended."""
    merged = strategic_merge(runtime, service, CONTAINER_KEYS)
    if not merged.get("name"):
        merged["name"] = runtime.get("name")
    args = [*runtime.get("args", []), *service.get("args", [])]
    if args:
        merged["args"] = args
    return merged


def merge_pod_specs(runtime: Json, predictor: Json) -> Json:
    """KServe's MergePodSpec: the predictor's pod fields over the runtime's pod-level fields."""
    base = {field: runtime[field] for field in RUNTIME_POD_FIELDS if field in runtime}
    return strategic_merge(base, predictor, POD_KEYS)


# --- placeholders ---------------------------------------------------------------------------

_ACTION = re.compile(r"\{\{-?\s*(.*?)\s*-?\}\}")
_FIELD = re.compile(r"^\.(Name|Namespace|UID|GenerateName)$")
_MAP_FIELD = re.compile(r"^\.(Labels|Annotations)\.([A-Za-z_][A-Za-z0-9_]*)$")
_INDEX = re.compile(r'^index\s+\.(Labels|Annotations)\s+"([^"\\]*)"$')
SUPPORTED_PLACEHOLDERS = (
    "{{.Name}}, {{.Namespace}}, {{.UID}}, {{.Labels.<key>}}, {{.Annotations.<key>}}, "
    '{{index .Labels "<key>"}}, {{index .Annotations "<key>"}}'
)


def replace_placeholders(value: Any, metadata: Mapping[str, Any]) -> Any:
    """KServe's ReplacePlaceholders: Go-template actions in every string filled from the
    InferenceService's metadata. A missing map key prints `<no value>` through `.Labels.x`
    and an empty string through `index`, as Go's text/template does."""
    if isinstance(value, str):
        return _ACTION.sub(lambda m: _evaluate(m.group(1), metadata), value)
    if isinstance(value, list):
        return [replace_placeholders(v, metadata) for v in value]
    if isinstance(value, dict):
        return {k: replace_placeholders(v, metadata) for k, v in value.items()}
    return value


def _evaluate(action: str, metadata: Mapping[str, Any]) -> str:
    if found := _FIELD.match(action):
        key = {"Name": "name", "Namespace": "namespace", "UID": "uid"}.get(found.group(1))
        return str(metadata.get(key or "generateName") or "")
    if found := _MAP_FIELD.match(action):
        values = metadata.get(found.group(1).lower()) or {}
        return str(values.get(found.group(2), "<no value>"))
    if found := _INDEX.match(action):
        values = metadata.get(found.group(1).lower()) or {}
        return str(values.get(found.group(2), ""))
    raise MergeError(
        f"placeholder '{{{{{action}}}}}' is not supported (supported: {SUPPORTED_PLACEHOLDERS})"
    )
