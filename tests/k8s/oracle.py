"""The differential oracle: the same InferenceServices, runtimes and graphs applied once under
KServe's controller and once under ours; what each produced, normalised, compared field by
field; the differences checked against a reviewed list of accepted ones.

A *case* is one InferenceService or InferenceGraph of the corpus. Its *outputs* are what the
two sides made for it: the objects it owns (Deployments, Services, HPAs), the Pods of those
Deployments (where KServe's pod webhook acts), and its own metadata and status after
reconciliation. Each is keyed by kind and name, so an object only one side made shows up as a
difference at path `(object)`.
"""

from __future__ import annotations

import copy
import fnmatch
import json
import re
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from tests.k8s.envtest import REPO, ControlPlane

FIXTURES = Path(__file__).parent / "kserve_oracle"
ACCEPTED_FILE = Path(__file__).parent / "kserve_oracle_accepted.yaml"
SETTLE_TIMEOUT = 150.0  # every object of a side quiet; ~30 s unloaded
QUIET = 4.0  # seconds without any change to the side's objects: settled
POLL = 1.0
ABSENT = "(object)"
OUTPUT_RESOURCES = "deployments.apps,services,horizontalpodautoscalers.autoscaling,pods"
# Listed only to follow a Pod's owner to its Deployment; KCM, not a controller, makes them.
LINK_RESOURCES = "replicasets.apps"
INPUT_RESOURCES = "inferenceservices.serving.kserve.io,inferencegraphs.serving.kserve.io"
CASE_KINDS = ("InferenceService", "InferenceGraph")


@dataclass(frozen=True)
class Group:
    """Objects applied together into one namespace per side. `published_runtimes`: KServe's
    published ServingRuntimes (namespaced) go in too; otherwise config/runtimes (cluster-wide)
    select the runtimes, as they do for a user of this repo."""

    name: str
    files: tuple[Path, ...]
    published_runtimes: bool

    def objects(self) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        for path in self.files:
            out.extend(d for d in yaml.safe_load_all(path.read_text()) if d and _kserves(d))
        return out


def _kserves(obj: dict[str, Any]) -> bool:
    """Whether KServe has a behaviour for `obj` to compare ours with: a graph of our own group
    (infergraph.dev, for our extensions: examples/llm-stream's `openai` steps) has none."""
    return not str(obj.get("apiVersion", "")).startswith("infergraph.dev/")


# Each example folder is its own bundle (`infergraph up examples/<folder>`), so its own group:
# in one namespace their names collide (examples/iris-kserve-transformer's InferenceService
# `iris` has a transformer Deployment `iris-transformer`, the name of
# examples/iris-transformer's router), and both controllers would fight over that Deployment.
GROUPS = (
    *(
        Group(folder.name, tuple(sorted(folder.glob("*.yaml"))), published_runtimes=False)
        for folder in sorted((REPO / "examples").iterdir())
        if folder.is_dir() and folder.name != "kserve" and any(folder.glob("*.yaml"))
    ),
    Group(
        "kserve-examples",
        (*sorted((REPO / "examples" / "kserve").glob("*.yaml")), FIXTURES / "kserve-examples.yaml"),
        published_runtimes=True,
    ),
    Group("runtimes", (FIXTURES / "runtimes.yaml",), published_runtimes=True),
)
SIDES = ("kserve", "ours")


def namespace(group: str, side: str) -> str:
    return f"{group}-{side}"


def case_ids() -> list[str]:
    """`group/Kind/name` for every InferenceService and InferenceGraph of the corpus."""
    return [
        f"{g.name}/{o['kind']}/{o['metadata']['name']}"
        for g in GROUPS
        for o in g.objects()
        if o["kind"] in CASE_KINDS
    ]


def published_runtimes(home: Path) -> list[dict[str, Any]]:
    """KServe's published runtimes (its config/runtimes, copied by tools/kserve/build.sh) as
    namespaced ServingRuntimes, with the images its kustomization substitutes. The multi-node
    Hugging Face runtime is left out: multi-node needs a worker spec neither side is tested on."""
    directory = home / "runtimes"
    kustomization = yaml.safe_load((directory / "kustomization.yaml").read_text())
    images = {i["name"]: f"{i['newName']}:{i['newTag']}" for i in kustomization["images"]}
    runtimes = []
    for name in kustomization["resources"]:
        if "multinode" in name:
            continue
        runtime = yaml.safe_load((directory / name).read_text())
        runtime["kind"] = "ServingRuntime"
        for container in runtime["spec"]["containers"]:
            container["image"] = images[container["image"].split(":")[0]]
        runtimes.append(runtime)
    return runtimes


# --- applying and waiting ---------------------------------------------------------------------

_PLURAL = {
    "InferenceService": "inferenceservices",
    "InferenceGraph": "inferencegraphs",
    "ServingRuntime": "servingruntimes",
    "ClusterServingRuntime": "clusterservingruntimes",
}


def create_all(api: Any, ns: str, objects: Iterable[dict[str, Any]]) -> dict[str, str]:
    """Create each object in `ns`; returns the refusals (`Kind/name` -> the API's message),
    e.g. from KServe's validating webhook, which count as outputs too."""
    from kubernetes import client
    from kubernetes.client import ApiException

    custom = client.CustomObjectsApi(api)
    refused = {}
    for obj in objects:
        group, version = obj["apiVersion"].split("/")
        body = copy.deepcopy(obj)
        try:
            custom.create_namespaced_custom_object(group, version, ns, _PLURAL[obj["kind"]], body)
        except ApiException as e:
            message = json.loads(e.body).get("message", e.body) if e.body else str(e)
            refused[f"{obj['kind']}/{obj['metadata']['name']}"] = message
    return refused


def list_namespace(plane: ControlPlane, ns: str) -> list[dict[str, Any]]:
    answer = plane.kubectl(
        "get", f"{INPUT_RESOURCES},{OUTPUT_RESOURCES},{LINK_RESOURCES}", "-n", ns, "-o", "json"
    )
    items: list[dict[str, Any]] = json.loads(answer.stdout)["items"]
    return items


def settle(plane: ControlPlane, namespaces: list[str], alive: Callable[[], str | None]) -> None:
    """Wait until every case object has a status with a Ready condition and nothing in the
    namespaces has changed for QUIET seconds. `alive` names a dead controller, if one is."""
    deadline = time.monotonic() + SETTLE_TIMEOUT
    last: dict[str, str] = {}
    changed: list[str] = []
    since = time.monotonic()
    pending: list[str] = []
    while time.monotonic() < deadline:
        dead = alive()
        if dead:
            raise AssertionError(dead)
        items = [(ns, o) for ns in namespaces for o in list_namespace(plane, ns)]
        pending = [
            f"{ns}/{o['kind']}/{o['metadata']['name']}"
            for ns, o in items
            if o["kind"] in CASE_KINDS and not _has_ready(o)
        ]
        now = {
            f"{ns}/{o['kind']}/{o['metadata']['name']}": o["metadata"]["resourceVersion"]
            for ns, o in items
        }
        if now != last:
            changed = sorted(k for k in set(now) | set(last) if now.get(k) != last.get(k))
            last, since = now, time.monotonic()
        elif not pending and time.monotonic() - since >= QUIET:
            return
        time.sleep(POLL)
    raise AssertionError(
        f"{', '.join(namespaces)} not settled after {SETTLE_TIMEOUT:.0f}s; "
        f"without a Ready condition: {pending or 'none'}; "
        f"changed in the last poll: {changed[:20] or 'none'}"
    )


def _has_ready(obj: dict[str, Any]) -> bool:
    conditions = (obj.get("status") or {}).get("conditions") or []
    return any(c.get("type") == "Ready" for c in conditions)


# --- snapshot and normalisation ---------------------------------------------------------------


@dataclass
class Side:
    """What one side produced for one group: case key -> output key -> normalised object."""

    outputs: dict[str, dict[str, Any]] = field(default_factory=dict)


def snapshot(items: list[dict[str, Any]], ns: str, refused: dict[str, str]) -> Side:
    by_uid = {o["metadata"]["uid"]: o for o in items}
    side = Side()
    for obj in items:
        case = _case_of(obj, by_uid)
        if case is None or obj["kind"] == "ReplicaSet":
            continue
        key = _output_key(obj, by_uid)
        side.outputs.setdefault(case, {})[key] = normalise(obj, ns)
    for key, message in refused.items():
        side.outputs.setdefault(key, {})["Admission"] = {"refused": message.replace(ns, "<ns>")}
    return side


def _case_of(obj: dict[str, Any], by_uid: dict[str, dict[str, Any]]) -> str | None:
    """`Kind/name` of the case object that (transitively) controls `obj`."""
    seen = 0
    while obj["kind"] not in CASE_KINDS:
        owner = next(
            (r for r in obj["metadata"].get("ownerReferences") or [] if r.get("controller")),
            None,
        )
        if owner is None or seen > 4:
            return None
        if owner["kind"] == "ReplicaSet" and owner["uid"] not in by_uid:
            return None
        obj = by_uid.get(owner["uid"]) or {
            "kind": owner["kind"],
            "metadata": {"name": owner["name"]},
        }
        seen += 1
    return f"{obj['kind']}/{obj['metadata']['name']}"


def _output_key(obj: dict[str, Any], by_uid: dict[str, dict[str, Any]]) -> str:
    if obj["kind"] in CASE_KINDS:
        return obj["kind"]
    if obj["kind"] == "Pod":
        # Pods are named by generated hashes; one per Deployment is enough to compare (the
        # corpus's minReplicas are the same on both sides), so key by the Deployment.
        replica_set = next(iter(obj["metadata"].get("ownerReferences") or []), {})
        owner = by_uid.get(replica_set.get("uid", ""), {})
        deployment = next(iter(owner.get("metadata", {}).get("ownerReferences") or []), {})
        return f"Pod/{deployment.get('name', '?')}/{_pod_ordinal(obj, by_uid)}"
    return f"{obj['kind']}/{obj['metadata']['name']}"


def _pod_ordinal(obj: dict[str, Any], by_uid: dict[str, dict[str, Any]]) -> int:
    owner = next(iter(obj["metadata"].get("ownerReferences") or []), {}).get("uid")
    siblings = sorted(
        o["metadata"]["name"]
        for o in by_uid.values()
        if o["kind"] == "Pod"
        and next(iter(o["metadata"].get("ownerReferences") or []), {}).get("uid") == owner
    )
    return siblings.index(obj["metadata"]["name"])


_DROP_METADATA = (
    "managedFields",
    "uid",
    "resourceVersion",
    "creationTimestamp",
    "generation",
    "namespace",
    "selfLink",
    "generateName",
)
_TIMESTAMPS = {"lastTransitionTime", "lastUpdateTime", "lastProbeTime", "startTime", "startedAt"}
_GENERATED = [
    # ReplicaSet/Pod hashes and the ServiceAccount token volume's random suffix.
    (re.compile(r"kube-api-access-[a-z0-9]{5}"), "kube-api-access-<gen>"),
    (re.compile(r"(-[0-9a-f]{8,10})(-[a-z0-9]{5})?\b"), "-<hash>"),
]


def normalise(obj: dict[str, Any], ns: str) -> Any:
    """Drop what the API server or the cluster (not the controller) decides, and the namespace
    wherever it appears, so the two sides compare."""
    obj = copy.deepcopy(obj)
    metadata = obj["metadata"]
    for key in _DROP_METADATA:
        metadata.pop(key, None)
    for ref in metadata.get("ownerReferences") or []:
        ref.pop("uid", None)
    labels = metadata.get("labels") or {}
    labels.pop("pod-template-hash", None)
    annotations = metadata.get("annotations") or {}
    annotations.pop("deployment.kubernetes.io/revision", None)
    annotations.pop("kubectl.kubernetes.io/last-applied-configuration", None)
    kind = obj["kind"]
    if kind in CASE_KINDS:
        obj.pop("spec", None)  # the input itself, the same on both sides (less KServe's defaults)
    if kind == "Service":
        spec = obj.get("spec", {})
        for key in ("clusterIP", "clusterIPs"):
            spec.pop(key, None)
    if kind == "Pod":
        metadata.pop("name", None)
        spec = obj.get("spec", {})
        spec.pop("nodeName", None)
        # The API server's ServiceAccount admission adds the token volume, before KServe's
        # webhook adds its own; its place in the lists is not the controller's doing.
        spec["volumes"] = [v for v in spec.get("volumes", []) if not _token(v)]
        for container in spec.get("containers", []) + spec.get("initContainers", []):
            mounts = [m for m in container.get("volumeMounts", []) if not _token(m)]
            container["volumeMounts"] = mounts
            if not mounts:
                del container["volumeMounts"]
        if not spec["volumes"]:
            del spec["volumes"]
        status = obj.get("status", {})
        obj["status"] = {"phase": status.get("phase")}
    return _strings(_drop_timestamps(obj), ns)


def _token(volume_or_mount: dict[str, Any]) -> bool:
    return str(volume_or_mount.get("name", "")).startswith("kube-api-access-")


def _drop_timestamps(value: Any) -> Any:
    """Also drops nulls: to the API a null field and a missing one are the same."""
    if isinstance(value, dict):
        return {
            k: _drop_timestamps(v)
            for k, v in value.items()
            if k not in _TIMESTAMPS and v is not None
        }
    if isinstance(value, list):
        return [_drop_timestamps(v) for v in value]
    return value


def _strings(value: Any, ns: str) -> Any:
    if isinstance(value, dict):
        return {_strings(k, ns): _strings(v, ns) for k, v in value.items()}
    if isinstance(value, list):
        return [_strings(v, ns) for v in value]
    if isinstance(value, str):
        text = value.replace(ns, "<ns>")
        for pattern, replacement in _GENERATED:
            text = pattern.sub(replacement, text)
        return text
    return value


# --- differences ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Difference:
    output: str  # "Deployment/iris-logreg-predictor", "InferenceService", "Pod/x-predictor/0"
    path: str  # "spec.template.spec.containers[0].image", or ABSENT
    kserve: Any
    ours: Any

    @property
    def kind(self) -> str:
        return self.output.split("/")[0]

    def __str__(self) -> str:
        def show(v: Any) -> str:
            return "<absent>" if v is _MISSING else json.dumps(v, sort_keys=True)[:300]

        return f"{self.output} {self.path}: kserve={show(self.kserve)} ours={show(self.ours)}"


class _Missing:
    def __repr__(self) -> str:
        return "<absent>"


_MISSING: Any = _Missing()


def _key_path(path: str, key: str) -> str:
    if re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", key):
        return f"{path}.{key}" if path else key
    return f'{path}["{key}"]'


def diff(kserve: Any, ours: Any, path: str = "") -> list[tuple[str, Any, Any]]:
    if isinstance(kserve, dict) and isinstance(ours, dict):
        out = []
        for key in sorted(set(kserve) | set(ours)):
            out.extend(
                diff(kserve.get(key, _MISSING), ours.get(key, _MISSING), _key_path(path, key))
            )
        return out
    if isinstance(kserve, list) and isinstance(ours, list):
        # Conditions are a set keyed by type; other lists are ordered.
        if all(isinstance(c, dict) and "type" in c for c in kserve + ours):
            by_type_k = {c["type"]: c for c in kserve}
            by_type_o = {c["type"]: c for c in ours}
            return diff(by_type_k, by_type_o, path)
        out = []
        for i in range(max(len(kserve), len(ours))):
            k = kserve[i] if i < len(kserve) else _MISSING
            o = ours[i] if i < len(ours) else _MISSING
            out.extend(diff(k, o, f"{path}[{i}]"))
        return out
    return [] if kserve == ours else [(path, kserve, ours)]


def case_differences(kserve: dict[str, Any], ours: dict[str, Any]) -> list[Difference]:
    out = []
    for output in sorted(set(kserve) | set(ours)):
        if output not in ours or output not in kserve:
            out.append(
                Difference(output, ABSENT, output in kserve or _MISSING, output in ours or _MISSING)
            )
            continue
        out.extend(Difference(output, p, k, o) for p, k, o in diff(kserve[output], ours[output]))
    return out


# --- the accepted list ------------------------------------------------------------------------


@dataclass(frozen=True)
class Accepted:
    kind: str  # output kind: Deployment, Service, HorizontalPodAutoscaler, Pod, InferenceService...
    path: str  # glob over Difference.path: `*` matches anything, everything else literally
    reason: str
    cases: str = "*"  # glob over case ids (`group/Kind/name`)

    def matches(self, case: str, difference: Difference) -> bool:
        return (
            fnmatch.fnmatchcase(difference.kind, self.kind)
            and _glob(self.path).fullmatch(difference.path) is not None
            and _glob(self.cases).fullmatch(case) is not None
        )


def _glob(pattern: str) -> re.Pattern[str]:
    return re.compile(".*".join(re.escape(part) for part in pattern.split("*")))


def load_accepted(path: Path = ACCEPTED_FILE) -> list[Accepted]:
    entries = yaml.safe_load(path.read_text()) or []
    accepted = []
    for i, entry in enumerate(entries):
        missing = {"kind", "path", "reason"} - set(entry)
        if missing or not str(entry.get("reason", "")).strip():
            raise ValueError(f"{path.name}[{i}]: needs kind, path and a reason; got {entry}")
        accepted.append(Accepted(**entry))
    return accepted


README_BEGIN = "<!-- accepted differences: generated from tests/k8s/kserve_oracle_accepted.yaml -->"
README_END = "<!-- end of accepted differences -->"


def accepted_table(entries: list[Accepted]) -> str:
    """The README's table of accepted differences, one row per entry of the YAML, so the two
    cannot drift (tests/k8s/test_kserve_oracle.py compares them)."""
    rows = ["| output | field | why it differs |", "|---|---|---|"]
    for entry in entries:
        output = "any" if entry.kind == "*" else entry.kind
        if entry.cases != "*":
            output += f" (cases `{entry.cases}`)"
        reason = " ".join(entry.reason.split()).replace("|", "\\|")
        rows.append(f"| {output} | `{entry.path}` | {reason} |")
    return "\n".join(rows)


def report(case: str, differences: list[Difference], dump: Path | None = None) -> str:
    lines = [f"{case}: {len(differences)} difference(s) from KServe's controller not accepted"]
    lines += [f"  {d}" for d in differences]
    if dump is not None:
        lines.append(f"Both sides' normalised outputs: {dump}")
    lines.append(
        f"Fix the controller, or if the difference is deliberate add it with its reason to "
        f"{ACCEPTED_FILE.relative_to(REPO)}."
    )
    return "\n".join(lines)
