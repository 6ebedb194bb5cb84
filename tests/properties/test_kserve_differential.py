"""Our serving.kserve.io schema against KServe's own: its Go API types and its published CRDs.

KServe's side is KServe itself, at the version our router benchmark builds (v0.15.2):
`tests/kserve_oracle` decodes objects with `pkg/apis/serving/v1beta1` and `v1alpha1` strictly
(an unknown field is an error) and encodes them again, and `kserve_crds` are the CRDs KServe
publishes in that module. Invariants:

1. whatever our serving.kserve.io schema accepts, KServe's Go types accept and give back
   unchanged (Go's `omitempty` may drop empty values; quantities come back as strings);
2. whatever KServe's Go types accept, our pydantic models accept;
3. every property path of KServe's CRDs exists in ours with a compatible type, with no enum
   or required field KServe lacks, and ours has nothing KServe lacks but the fields KServe
   added after v0.15.2 (schemas.graph marks them);
4. InferGraph's extensions are never in a serving.kserve.io object: stripped of them, an
   infergraph.dev graph is a KServe graph.

The corpus: every example under examples/ and the built-in runtimes, objects shaped like
KServe's published runtimes, one object per kind with every field KServe's CRD declares, and
hypothesis objects drawn from our CRD (free-form nodes filled from KServe's schema at the same
path), from KServe's CRD and from `router.testing.graphs`.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import BaseModel

from router.testing import graphs
from schemas.crd import all_crds
from schemas.graph import (
    KSERVE_SINCE_KEY,
    InferenceGraph,
    InferenceGraphSpec,
    InferenceRouter,
    InferenceStep,
    is_extension,
)
from schemas.inference_service import InferenceService
from schemas.serving_runtime import ClusterServingRuntime, ServingRuntime

if TYPE_CHECKING:
    from tests.properties.conftest import KserveOracle

REPO = Path(__file__).resolve().parents[2]
FILES = {
    "InferenceGraph": "serving.kserve.io_inferencegraphs.yaml",
    "InferenceService": "serving.kserve.io_inferenceservices.yaml",
    "ServingRuntime": "serving.kserve.io_servingruntimes.yaml",
    "ClusterServingRuntime": "serving.kserve.io_clusterservingruntimes.yaml",
}
API_VERSIONS = {
    "InferenceGraph": "serving.kserve.io/v1alpha1",
    "InferenceService": "serving.kserve.io/v1beta1",
    "ServingRuntime": "serving.kserve.io/v1alpha1",
    "ClusterServingRuntime": "serving.kserve.io/v1alpha1",
}
MODELS: dict[str, type[BaseModel]] = {
    "InferenceGraph": InferenceGraph,
    "InferenceService": InferenceService,
    "ServingRuntime": ServingRuntime,
    "ClusterServingRuntime": ClusterServingRuntime,
}
OURS = {
    doc["spec"]["names"]["kind"]: doc["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    for name, doc in all_crds().items()
    if doc["spec"]["group"] == "serving.kserve.io"
}
METADATA = {"name": "m", "namespace": "ns"}
Schema = Mapping[str, Any]


def kserve_schema(crds: Path, kind: str) -> dict[str, Any]:
    document = yaml.safe_load((crds / FILES[kind]).read_text())
    schema: dict[str, Any] = document["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    return schema


def with_spec(schema: Schema) -> dict[str, Any]:
    """`schema` requiring `spec`: neither CRD's schema requires it of KServe's kinds, but
    KServe's webhooks refuse an object without one (no predictor, no root node), so an
    object without it is not KServe-valid and our models refuse it too."""
    return {**schema, "required": ["spec"]}


def later_kserve_fields() -> dict[str, set[str]]:
    """Fields of KServe's own that KServe added after v0.15.2, by the model declaring them."""
    out: dict[str, set[str]] = {}
    for model in (InferenceGraphSpec, InferenceRouter, InferenceStep):
        for name, field in model.model_fields.items():
            extra = field.json_schema_extra
            if isinstance(extra, dict) and KSERVE_SINCE_KEY in extra:
                out.setdefault(model.__name__, set()).add(field.alias or name)
    return out


# --- comparing Go's answer with what went in ------------------------------------------------


def _empty(value: Any) -> bool:
    # Go's `omitempty` drops zero values (so KServe cannot tell `maxReplicas: 0` from unset);
    # a non-pointer struct comes back holding only zero values.
    if isinstance(value, dict):
        return all(_empty(item) for item in value.values())
    return value is None or value == [] or value == "" or value is False or value == 0


def _scalar_equal(ours: Any, go: Any) -> bool:
    if isinstance(ours, bool) or isinstance(go, bool):
        return ours is go
    if isinstance(ours, int | float) and isinstance(go, str):
        return str(ours) == go  # a resource.Quantity encodes as a string
    return bool(ours == go)


def differences(ours: Any, go: Any, path: str = "") -> list[str]:
    """Where Go's re-encoding of `ours` says something else, beyond `omitempty`."""
    if isinstance(ours, dict) and isinstance(go, dict):
        out = []
        for key in sorted(set(ours) | set(go)):
            mine, theirs = ours.get(key), go.get(key)
            if (key not in go and _empty(mine)) or (key not in ours and _empty(theirs)):
                continue
            if key not in ours and theirs == "0":
                # A non-pointer resource.Quantity (e.g. resourceFieldRef.divisor): omitempty
                # keeps a struct, and its zero value encodes as "0".
                continue
            out += differences(mine, theirs, f"{path}.{key}")
        return out
    if isinstance(ours, list) and isinstance(go, list):
        if len(ours) != len(go):
            return [f"{path}: {len(ours)} items, Go has {len(go)}"]
        return [
            d
            for i, (a, b) in enumerate(zip(ours, go, strict=True))
            for d in differences(a, b, f"{path}[{i}]")
        ]
    if _empty(ours) and _empty(go) and type(ours) is type(go):
        return []
    if _scalar_equal(ours, go):
        return []
    return [f"{path}: ours {ours!r}, Go {go!r}"]


def _without_metadata(obj: Mapping[str, Any]) -> dict[str, Any]:
    # metadata is Kubernetes' ObjectMeta: neither CRD describes it.
    return {key: value for key, value in obj.items() if key != "metadata"}


def assert_kserve_keeps(oracle: KserveOracle, obj: dict[str, Any]) -> None:
    """KServe's types accept `obj` and give it back unchanged (invariant 1)."""
    answer = oracle(obj)
    assert isinstance(answer, dict), f"KServe's Go types refuse it: {answer}"
    assert differences(_without_metadata(obj), _without_metadata(answer)) == []


def assert_we_accept(obj: dict[str, Any]) -> None:
    """Our pydantic model of its kind accepts `obj` (invariant 2)."""
    MODELS[obj["kind"]].model_validate(obj)


# --- generating objects from a CRD schema ---------------------------------------------------

STRINGS = st.sampled_from(["a", "b-1", "x.y"])
# Strings that Go parses as times (metav1.Time, knative's VolatileTime) though KServe's CRD
# declares them as plain strings.
TIME_FIELDS = frozenset({"lastTransitionTime", "time"})
QUANTITIES = st.one_of(st.integers(0, 3), st.sampled_from(["1", "500m", "1Gi"]))
DATE = "2025-01-01T00:00:00Z"
# Beyond this depth only required properties are drawn: a PodSpec nests deeper than that.
MAX_DEPTH = 12
OPTIONAL_PER_OBJECT = 3  # keeps each example far below hypothesis's buffer


def _free_form(node: Schema) -> bool:
    return bool(node.get("x-kubernetes-preserve-unknown-fields")) and not (
        "properties" in node or "items" in node or "additionalProperties" in node
    )


def objects_from(
    ours: Schema, kserve: Schema | None, depth: int = 0, name: str = ""
) -> st.SearchStrategy[Any]:
    """Values valid for schema `ours`; where it is free-form, values from KServe's schema at the
    same path (nothing when KServe has none). Integers are small and non-negative, so they
    pass KServe's webhook rules and ours alike."""
    if _free_form(ours):
        if kserve is None or _free_form(kserve):
            return st.just({}) if ours.get("type") == "object" else st.nothing()
        return objects_from(kserve, kserve, depth, name)
    if ours.get("x-kubernetes-int-or-string"):
        return QUANTITIES
    kind = ours.get("type")
    if "enum" in ours:
        return st.sampled_from(ours["enum"])
    if kind == "string":
        return (
            st.just(DATE) if ours.get("format") == "date-time" or name in TIME_FIELDS else STRINGS
        )
    if kind in ("integer", "number"):
        low = max(0, int(ours.get("minimum", 0)))
        return st.integers(low, low + 3)
    if kind == "boolean":
        return st.booleans()
    if kind == "array":
        items = objects_from(ours.get("items", {}), (kserve or {}).get("items"), depth + 1)
        return st.lists(items, max_size=2)
    if kind == "object" and isinstance(ours.get("additionalProperties"), Mapping):
        values = objects_from(
            ours["additionalProperties"], (kserve or {}).get("additionalProperties"), depth + 1
        )
        return st.dictionaries(STRINGS, values, max_size=2)
    properties: Mapping[str, Schema] = ours.get("properties", {})
    theirs: Mapping[str, Schema] = (kserve or {}).get("properties", {})
    required = set(ours.get("required", []))

    def child(key: str) -> st.SearchStrategy[Any]:
        return objects_from(properties[key], theirs.get(key), depth + 1, key)

    optional = sorted(set(properties) - required) if depth < MAX_DEPTH else []

    @st.composite
    def draw_object(draw: st.DrawFn) -> dict[str, Any]:
        out = {name: draw(child(name)) for name in sorted(required)}
        chosen = (
            draw(st.lists(st.sampled_from(optional), max_size=OPTIONAL_PER_OBJECT, unique=True))
            if optional
            else []
        )
        for name in chosen:
            value = draw(child(name) | st.just(None))
            if value is not None:
                out[name] = value
        return out

    return draw_object()


def fullest(node: Schema, name: str = "") -> Any:
    """One value with every property `node` declares, all the way down."""
    if node.get("x-kubernetes-int-or-string"):
        return 1
    if "enum" in node:
        return node["enum"][0]
    kind = node.get("type")
    if kind == "string":
        return DATE if node.get("format") == "date-time" or name in TIME_FIELDS else "a"
    if kind in ("integer", "number"):
        return 1
    if kind == "boolean":
        return True
    if kind == "array":
        return [fullest(node.get("items", {}))]
    if isinstance(node.get("additionalProperties"), Mapping):
        return {"k": fullest(node["additionalProperties"])}
    return {key: fullest(child, key) for key, child in node.get("properties", {}).items()}


def resource(kind: str, body: Mapping[str, Any]) -> dict[str, Any]:
    return {**body, "apiVersion": API_VERSIONS[kind], "kind": kind, "metadata": METADATA}


# --- the corpus: what this repository ships, and KServe-shaped runtimes ------------------------


def _strip_extensions(value: Any, model: type[BaseModel] | None) -> Any:
    """An infergraph.dev graph's spec without InferGraph's extensions (invariant 4)."""
    if model is None or not isinstance(value, dict):
        return value
    out = {}
    for name, field in model.model_fields.items():
        key = field.alias or name
        if key not in value or is_extension(field):
            continue
        nested: type[BaseModel] | None = {
            "nodes": InferenceRouter,
            "steps": InferenceStep,
        }.get(key)
        item = value[key]
        if key == "nodes":
            out[key] = {n: _strip_extensions(v, nested) for n, v in item.items()}
        elif key == "steps":
            out[key] = [_strip_extensions(s, nested) for s in item]
        elif key == "data" and not isinstance(item, str):
            continue
        else:
            out[key] = item
    return out


def shipped() -> list[tuple[str, dict[str, Any]]]:
    found = []
    patterns = ("examples/**/*.yaml", "graph_controller/runtimes/*.yaml", "config/runtimes/*.yaml")
    for pattern in patterns:
        for path in sorted(REPO.glob(pattern)):
            for document in yaml.safe_load_all(path.read_text()):
                if isinstance(document, dict) and document.get("kind") in MODELS:
                    found.append((f"{path.relative_to(REPO)}:{document['kind']}", document))
    return found


def _runtime(name: str, spec: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    return name, resource("ClusterServingRuntime", {"spec": spec})


# Shaped after the runtimes KServe v0.15.2 publishes (config/runtimes): their ports, protocols,
# volumes, env and args, in our own words.
KSERVE_SHAPED_RUNTIMES = [
    _runtime(
        "sklearn",
        {
            "annotations": {"prometheus.kserve.io/port": "8080"},
            "supportedModelFormats": [
                {"name": "sklearn", "version": "1", "autoSelect": True, "priority": 1}
            ],
            "protocolVersions": ["v1", "v2"],
            "containers": [
                {
                    "name": "kserve-container",
                    "image": "kserve/sklearnserver:v0.15.2",
                    "args": [
                        "--model_name={{.Name}}",
                        "--model_dir=/mnt/models",
                        "--http_port=8080",
                    ],
                    "securityContext": {
                        "allowPrivilegeEscalation": False,
                        "privileged": False,
                        "runAsNonRoot": True,
                        "capabilities": {"drop": ["ALL"]},
                    },
                    "resources": {
                        "requests": {"cpu": "1", "memory": "2Gi"},
                        "limits": {"cpu": "1", "memory": "2Gi"},
                    },
                }
            ],
        },
    ),
    _runtime(
        "xgboost",
        {
            "supportedModelFormats": [{"name": "xgboost", "version": "2", "autoSelect": True}],
            "protocolVersions": ["v1", "v2"],
            "containers": [
                {
                    "name": "kserve-container",
                    "image": "kserve/xgbserver:v0.15.2",
                    "args": ["--model_name={{.Name}}", "--model_dir=/mnt/models", "--nthread=1"],
                }
            ],
        },
    ),
    _runtime(
        "mlserver",
        {
            "supportedModelFormats": [
                {"name": "sklearn", "version": "1", "autoSelect": True, "priority": 2},
                {"name": "lightgbm", "version": "3", "autoSelect": True},
            ],
            "multiModel": True,
            "protocolVersions": ["v2"],
            "containers": [
                {
                    "name": "kserve-container",
                    "image": "docker.io/seldonio/mlserver:1.5.0",
                    "env": [
                        {
                            "name": "MLSERVER_MODEL_IMPLEMENTATION",
                            "value": "{{.Labels.modelClass}}",
                        },
                        {"name": "MLSERVER_HTTP_PORT", "value": "8080"},
                        {"name": "MLSERVER_GRPC_PORT", "value": "9000"},
                        {"name": "MODELS_DIR", "value": "/mnt/models"},
                    ],
                }
            ],
        },
    ),
    _runtime(
        "huggingface",
        {
            "supportedModelFormats": [{"name": "huggingface", "version": "1", "autoSelect": True}],
            "protocolVersions": ["v2", "v1"],
            "containers": [
                {
                    "name": "kserve-container",
                    "image": "kserve/huggingfaceserver:v0.15.2",
                    "args": ["--model_name={{.Name}}"],
                    "volumeMounts": [{"name": "devshm", "mountPath": "/dev/shm"}],
                    "startupProbe": {
                        "httpGet": {"path": "/", "port": 8080},
                        "failureThreshold": 60,
                    },
                }
            ],
            "volumes": [{"name": "devshm", "emptyDir": {"medium": "Memory"}}],
            "hostIPC": False,
        },
    ),
    _runtime(
        "triton",
        {
            "supportedModelFormats": [
                {"name": "tensorrt", "version": "8", "autoSelect": True},
                {"name": "onnx", "version": "1", "autoSelect": True},
            ],
            "protocolVersions": ["v2", "grpc-v2"],
            "containers": [
                {
                    "name": "kserve-container",
                    "image": "nvcr.io/nvidia/tritonserver:23.05-py3",
                    "args": ["tritonserver", "--model-store=/mnt/models", "--http-port=8080"],
                    "ports": [{"containerPort": 8080, "protocol": "TCP"}],
                    "resources": {"limits": {"nvidia.com/gpu": 1}},
                }
            ],
        },
    ),
    _runtime(
        "torchserve",
        {
            "supportedModelFormats": [{"name": "pytorch", "version": "1", "autoSelect": True}],
            "protocolVersions": ["v1", "v2", "grpc-v2"],
            "containers": [
                {
                    "name": "kserve-container",
                    "image": "pytorch/torchserve-kfs:0.9.0",
                    "args": ["torchserve", "--start", "--model-store=/mnt/models/model-store"],
                    "env": [
                        {"name": "TS_SERVICE_ENVELOPE", "value": "{{.Labels.serviceEnvelope}}"}
                    ],
                    "ports": [{"containerPort": 8085, "name": "h2c", "protocol": "TCP"}],
                }
            ],
        },
    ),
    _runtime(
        "tfserving",
        {
            "supportedModelFormats": [{"name": "tensorflow", "version": "2", "autoSelect": True}],
            "protocolVersions": ["v1", "grpc-v1"],
            "grpcEndpoint": "port:9000",
            "containers": [
                {
                    "name": "kserve-container",
                    "image": "tensorflow/serving:2.6.2",
                    "command": ["/usr/bin/tensorflow_model_server"],
                    "args": [
                        "--port=9000",
                        "--rest_api_port=8080",
                        "--model_base_path=/mnt/models",
                    ],
                    "ports": [{"containerPort": 9000, "name": "grpc", "protocol": "TCP"}],
                }
            ],
        },
    ),
]

KSERVE_SHAPED_SERVICES = [
    (
        "isvc-storage-uris-and-probes",
        resource(
            "InferenceService",
            {
                "spec": {
                    "predictor": {
                        "minReplicas": 1,
                        "maxReplicas": 3,
                        "scaleMetric": "cpu",
                        "scaleMetricType": "Utilization",
                        "model": {
                            "modelFormat": {"name": "tensorflow"},
                            "protocolVersion": "grpc-v1",
                            "storageUri": "gs://kfserving-examples/models/tensorflow/flowers",
                            "startupProbe": {"tcpSocket": {"port": 8080}},
                            "resources": {"requests": {"cpu": "100m"}},
                        },
                        "logger": {"mode": "all", "url": "http://logger"},
                        "batcher": {"maxBatchSize": 32, "maxLatency": 500},
                    },
                    "transformer": {
                        "containers": [
                            {"name": "kserve-container", "image": "t:1", "stdinOnce": True}
                        ]
                    },
                }
            },
        ),
    ),
]


def named(pairs: list[tuple[str, dict[str, Any]]]) -> Any:
    return pytest.mark.parametrize(("source", "obj"), pairs, ids=[name for name, _ in pairs])


# --- invariants 1, 2, 4 on the corpus ---------------------------------------------------------


@named(shipped() + KSERVE_SHAPED_RUNTIMES + KSERVE_SHAPED_SERVICES)
def test_corpus_is_kept_by_kserve_and_accepted_by_us(
    kserve_oracle: KserveOracle, source: str, obj: dict[str, Any]
) -> None:
    assert_we_accept(obj)
    if obj["apiVersion"] == "infergraph.dev/v1alpha1":
        obj = {**obj, "apiVersion": "serving.kserve.io/v1alpha1"}
        obj["spec"] = _strip_extensions(obj["spec"], InferenceGraphSpec)
    assert_kserve_keeps(kserve_oracle, obj)


@pytest.mark.parametrize("kind", sorted(MODELS))
def test_every_kserve_field_at_once(
    kserve_oracle: KserveOracle, kserve_crds: Path, kind: str
) -> None:
    # One object per kind holding every field KServe's CRD declares: KServe's Go types keep
    # it whole (so the object is KServe-valid) and our models accept it.
    body = fullest(kserve_schema(kserve_crds, kind))
    obj = resource(kind, _without_metadata(body))
    assert_kserve_keeps(kserve_oracle, obj)
    assert_we_accept(obj)


# --- invariants 1 and 2 on generated objects --------------------------------------------------

DIFFERENTIAL = settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)


@pytest.mark.parametrize("kind", sorted(MODELS))
def test_what_our_schema_accepts_kserve_keeps(
    kserve_oracle: KserveOracle, kserve_crds: Path, kind: str
) -> None:
    theirs = kserve_schema(kserve_crds, kind)
    later = {f for fields in later_kserve_fields().values() for f in fields}

    @DIFFERENTIAL
    @given(objects_from(with_spec(OURS[kind]), theirs))
    def check(body: dict[str, Any]) -> None:
        obj = resource(kind, _without_metadata(body))
        assert_we_accept(obj)
        assert_kserve_keeps(kserve_oracle, _without_later_fields(obj, later))

    check()


@pytest.mark.parametrize("kind", sorted(MODELS))
def test_what_kserve_accepts_we_accept(
    kserve_oracle: KserveOracle, kserve_crds: Path, kind: str
) -> None:
    theirs = kserve_schema(kserve_crds, kind)

    @DIFFERENTIAL
    @given(objects_from(with_spec(theirs), theirs))
    def check(body: dict[str, Any]) -> None:
        obj = resource(kind, _without_metadata(body))
        answer = kserve_oracle(obj)
        assert isinstance(answer, dict), f"generated from KServe's CRD, refused by Go: {answer}"
        assert_we_accept(obj)

    check()


@DIFFERENTIAL
@given(graphs(max_nodes=4, max_steps=3))
def test_generated_graphs_are_kserve_graphs(
    kserve_oracle: KserveOracle, spec: dict[str, Any]
) -> None:
    obj = resource("InferenceGraph", {"spec": spec})
    assert_we_accept(obj)
    assert_kserve_keeps(kserve_oracle, obj)


def _without_later_fields(obj: dict[str, Any], later: set[str]) -> dict[str, Any]:
    """`obj` without the fields KServe added after v0.15.2 (KServe's newer Go types have them)."""
    if obj.get("kind") != "InferenceGraph":
        return obj
    out = copy.deepcopy(obj)
    spec = out.get("spec", {})
    for name in later:
        spec.pop(name, None)
    for node in (spec.get("nodes") or {}).values():
        for step in node.get("steps") or []:
            for name in later:
                step.pop(name, None)
    return out


def test_later_kserve_fields_are_the_ones_v0_15_2_refuses(kserve_oracle: KserveOracle) -> None:
    # If KServe v0.15.2's types knew them, they would not need the mark.
    assert later_kserve_fields() == {
        "InferenceGraphSpec": {"routerTimeouts"},
        "InferenceStep": {"mapPredictionsToInstances"},
    }
    graph = resource(
        "InferenceGraph",
        {"spec": {"nodes": {"root": {"routerType": "Sequence", "steps": [{"serviceName": "a"}]}}}},
    )
    with_timeouts = copy.deepcopy(graph)
    with_timeouts["spec"]["routerTimeouts"] = {"serverRead": 1}
    with_map = copy.deepcopy(graph)
    with_map["spec"]["nodes"]["root"]["steps"][0]["mapPredictionsToInstances"] = True
    for obj in (with_timeouts, with_map):
        assert not isinstance(kserve_oracle(obj), dict)


def test_the_oracle_is_strict(kserve_oracle: KserveOracle) -> None:
    # An extension under KServe's group is exactly what KServe's types refuse.
    graph = resource(
        "InferenceGraph",
        {
            "spec": {
                "nodes": {
                    "root": {"routerType": "Sequence", "steps": [{"serviceName": "a", "retry": {}}]}
                }
            }
        },
    )
    answer = kserve_oracle(graph)
    assert not isinstance(answer, dict)
    assert "retry" in answer.error


# --- invariant 3: the CRDs, path by path ------------------------------------------------------


def _type_of(node: Schema) -> str | None:
    if node.get("x-kubernetes-int-or-string"):
        return "int-or-string"
    kind = node.get("type")
    return kind if isinstance(kind, str) else None


def crd_differences(
    theirs: Schema, ours: Schema, path: str, allowed_extra: Callable[[str], bool]
) -> list[str]:
    """Where our schema would refuse, prune or mistype what KServe's accepts."""
    if _free_form(ours):
        return []  # keeps whatever it is given
    if _type_of(theirs) != _type_of(ours):
        return [f"{path}: KServe {_type_of(theirs)}, ours {_type_of(ours)}"]
    out = []
    if "enum" in ours and not set(theirs.get("enum", [None])) <= set(ours["enum"]):
        out.append(f"{path}: enum {ours['enum']}, KServe {theirs.get('enum', 'any value')}")
    extra_required = set(ours.get("required", [])) - set(theirs.get("required", []))
    if extra_required:
        out.append(f"{path}: requires {sorted(extra_required)}, KServe does not")
    for keyword in (
        "minimum",
        "maximum",
        "pattern",
        "minLength",
        "maxLength",
        "minItems",
        "maxItems",
    ):
        if keyword in ours and ours[keyword] != theirs.get(keyword):
            out.append(f"{path}: {keyword} {ours[keyword]!r}, KServe {theirs.get(keyword)!r}")
    theirs_props: Mapping[str, Schema] = theirs.get("properties", {})
    ours_props: Mapping[str, Schema] = ours.get("properties", {})
    for name, child in theirs_props.items():
        if name in ours_props:
            out += crd_differences(child, ours_props[name], f"{path}.{name}", allowed_extra)
        elif not ours.get("x-kubernetes-preserve-unknown-fields"):
            out.append(f"{path}.{name}: missing (would be pruned)")
    for name in ours_props:
        if name not in theirs_props and not allowed_extra(f"{path}.{name}"):
            out.append(f"{path}.{name}: not KServe's")
    if "items" in theirs:
        out += crd_differences(theirs["items"], ours.get("items", {}), f"{path}[]", allowed_extra)
    if isinstance(theirs.get("additionalProperties"), Mapping):
        ours_values = ours.get("additionalProperties")
        if isinstance(ours_values, Mapping):
            out += crd_differences(
                theirs["additionalProperties"], ours_values, f"{path}.*", allowed_extra
            )
        elif not ours.get("x-kubernetes-preserve-unknown-fields"):
            out.append(f"{path}: a map in KServe's, not in ours")
    return out


LATER_PATHS = {
    "InferenceGraph": {
        "InferenceGraph.spec.routerTimeouts",
        "InferenceGraph.spec.nodes.*.steps[].mapPredictionsToInstances",
    }
}


@pytest.mark.parametrize("kind", sorted(MODELS))
def test_crd_is_field_compatible_with_kserves(kserve_crds: Path, kind: str) -> None:
    later = LATER_PATHS.get(kind, set())
    problems = crd_differences(
        kserve_schema(kserve_crds, kind), OURS[kind], kind, later.__contains__
    )
    assert problems == []


def test_crd_comparison_is_not_vacuous(kserve_crds: Path) -> None:
    theirs = kserve_schema(kserve_crds, "ServingRuntime")
    ours = copy.deepcopy(OURS["ServingRuntime"])
    spec = ours["properties"]["spec"]["properties"]
    del spec["hostIPC"]
    spec["protocolVersions"]["items"]["enum"] = ["v1", "v2"]
    spec["retry"] = {"type": "object"}
    problems = crd_differences(theirs, ours, "ServingRuntime", lambda path: False)
    assert sorted(problems) == [
        "ServingRuntime.spec.hostIPC: missing (would be pruned)",
        "ServingRuntime.spec.protocolVersions[]: enum ['v1', 'v2'], KServe any value",
        "ServingRuntime.spec.retry: not KServe's",
    ]


def test_a_zero_quantity_go_adds_is_no_difference_but_a_changed_one_is() -> None:
    # Found by the differential test: an env var's resourceFieldRef without a divisor.
    ref = {"resource": "limits.cpu"}
    assert differences({"ref": ref}, {"ref": {**ref, "divisor": "0"}}) == []
    assert differences({"ref": {**ref, "divisor": "1m"}}, {"ref": {**ref, "divisor": "0"}}) == [
        ".ref.divisor: ours '1m', Go '0'"
    ]
