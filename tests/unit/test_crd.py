"""The CRDs in config/crd/: current, structural, valid Kubernetes objects, true to the models.

Structural means what the API server requires of an `apiextensions.k8s.io/v1` schema: every node
typed, no `$ref`, no null types, no defaults. Faithful means a resource our pydantic models accept
also passes the CRD's schema of its group and keeps every field through the API server's
pruning. (Compatibility of the serving.kserve.io CRDs with KServe's own is proved against
KServe's published CRDs and Go types in tests/properties/test_kserve_differential.py.)
"""

from __future__ import annotations

import copy
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal

import jsonschema  # type: ignore[import-untyped]
import kubernetes_validate  # type: ignore[import-untyped]
import pydantic
import pytest
import yaml
from pydantic import BaseModel

from schemas.crd import REGENERATE, CrdError, all_crds, crd, openapi_schema, render_all
from schemas.graph import InferenceGraph, InferenceGraphSpec
from schemas.inference_service import InferenceService
from schemas.serving_runtime import ClusterServingRuntime, ServingRuntime

REPO = Path(__file__).resolve().parents[2]
CRD_DIR = REPO / "config" / "crd"
KSERVE_IG = "kserve/serving.kserve.io_inferencegraphs.yaml"
OURS_IG = "infergraph/infergraph.dev_inferencegraphs.yaml"
# The newest Kubernetes whose API schemas kubernetes-validate ships (1.37.0 ships 1.37).
K8S_VERSION = "1.37"
MODELS: dict[str, type[BaseModel]] = {
    "InferenceGraph": InferenceGraph,
    "InferenceService": InferenceService,
    "ServingRuntime": ServingRuntime,
    "ClusterServingRuntime": ClusterServingRuntime,
}
CRDS = all_crds()
# (group, kind) -> the CRD's schema: InferenceGraph exists in both groups.
SCHEMAS = {
    (document["spec"]["group"], document["spec"]["names"]["kind"]): document["spec"]["versions"][0][
        "schema"
    ]["openAPIV3Schema"]
    for document in CRDS.values()
}

SAMPLE_GRAPH: dict[str, Any] = {
    "apiVersion": "serving.kserve.io/v1alpha1",
    "kind": "InferenceGraph",
    "metadata": {"name": "dog-breed", "namespace": "default", "labels": {"app": "demo"}},
    "spec": {
        "nodes": {
            "root": {
                "routerType": "Sequence",
                "steps": [
                    {"serviceName": "cat-dog-classifier", "name": "cat_dog"},
                    {
                        "nodeName": "breeds",
                        "name": "breed",
                        "data": "$request",
                        "condition": "predictions.#(==1)",
                        "dependency": "Hard",
                    },
                ],
            },
            "breeds": {
                "routerType": "Splitter",
                "steps": [
                    {"serviceName": "dog-breed-a", "weight": 80},
                    {
                        "serviceUrl": "http://dog-breed-b.default.svc/v1/models/b:predict",
                        "weight": 20,
                    },
                ],
            },
        },
        "resources": {"requests": {"cpu": "100m"}, "limits": {"memory": "1Gi"}},
        "affinity": {"nodeAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": []}},
        "tolerations": [{"key": "gpu", "operator": "Exists", "effect": "NoSchedule"}],
        "nodeSelector": {"pool": "inference"},
        "routerTimeouts": {"serverRead": 30, "serverWrite": 30, "serviceClient": 10},
        "minReplicas": 1,
        "maxReplicas": 3,
        "scaleMetric": "rps",
        "scaleTarget": 50,
    },
    "status": {
        "url": "http://dog-breed.default.example.com",
        "observedGeneration": 2,
        "conditions": [{"type": "Ready", "status": "True"}],
    },
}


def schema_nodes(node: Any, path: str) -> Iterator[tuple[str, dict[str, Any]]]:
    """Every schema node below `node` (itself included), with a readable path."""
    assert isinstance(node, dict), f"{path}: a schema must be an object, got {node!r}"
    yield path, node
    for name, child in node.get("properties", {}).items():
        yield from schema_nodes(child, f"{path}.{name}")
    if "items" in node:
        yield from schema_nodes(node["items"], f"{path}[]")
    if isinstance(node.get("additionalProperties"), dict):
        yield from schema_nodes(node["additionalProperties"], f"{path}.*")
    for keyword in ("anyOf", "allOf", "oneOf"):
        for index, child in enumerate(node.get(keyword, [])):
            yield from schema_nodes(child, f"{path}<{keyword}{index}>")
    if "not" in node:
        yield from schema_nodes(node["not"], f"{path}<not>")


def structural_problems(schema: dict[str, Any]) -> list[str]:
    problems = []
    for path, node in schema_nodes(schema, "openAPIV3Schema"):
        untyped_ok = node.get("x-kubernetes-preserve-unknown-fields") or node.get(
            "x-kubernetes-int-or-string"
        )
        if "type" not in node and not untyped_ok:
            problems.append(f"{path}: no type")
        if node.get("type") == "null":
            problems.append(f"{path}: null type")
        for keyword in ("$ref", "$defs", "default", "const", "title", "uniqueItems"):
            if keyword in node:
                problems.append(f"{path}: {keyword}")
        if any(option.get("type") == "null" for option in node.get("anyOf", [])):
            problems.append(f"{path}: anyOf with null")
        if isinstance(node.get("additionalProperties"), bool):
            problems.append(f"{path}: boolean additionalProperties")
        if "properties" in node and "additionalProperties" in node:
            problems.append(f"{path}: both properties and additionalProperties")
    return problems


def to_json_schema(node: Any) -> Any:
    """OpenAPI v3.0 → JSON Schema draft 4 (same exclusive-bound flags): `nullable` becomes null."""
    if isinstance(node, list):
        return [to_json_schema(item) for item in node]
    if not isinstance(node, dict):
        return node
    out: dict[str, Any] = {}
    for key, value in node.items():
        if key in ("properties", "patternProperties"):
            out[key] = {name: to_json_schema(child) for name, child in value.items()}
        elif key in ("nullable", "enum") or key.startswith("x-kubernetes-"):
            continue
        else:
            out[key] = to_json_schema(value)
    if "enum" in node:
        out["enum"] = [*node["enum"], None] if node.get("nullable") else list(node["enum"])
    if node.get("nullable") and "type" in node:
        out["type"] = [node["type"], "null"]
    return out


def pruned_paths(value: Any, schema: dict[str, Any], path: str) -> list[str]:
    """The fields the API server would silently drop from `value` (not declared by `schema`)."""
    if schema.get("x-kubernetes-preserve-unknown-fields"):
        return []
    if isinstance(value, list):
        return [
            pruned
            for index, item in enumerate(value)
            for pruned in pruned_paths(item, schema.get("items", {}), f"{path}[{index}]")
        ]
    if not isinstance(value, dict):
        return []
    pruned = []
    properties = schema.get("properties", {})
    extra = schema.get("additionalProperties")
    for key, child in value.items():
        if key in properties:
            pruned += pruned_paths(child, properties[key], f"{path}.{key}")
        elif isinstance(extra, dict):
            pruned += pruned_paths(child, extra, f"{path}.{key}")
        else:
            pruned.append(f"{path}.{key}")
    return pruned


def schema_of(document: dict[str, Any]) -> dict[str, Any]:
    return SCHEMAS[(document["apiVersion"].split("/")[0], document["kind"])]


def check_against_crd(document: dict[str, Any]) -> None:
    """`document` (accepted by its pydantic model) passes its CRD's schema and loses no field."""
    kind = document["kind"]
    MODELS[kind].model_validate(document)
    schema = schema_of(document)
    jsonschema.Draft4Validator(to_json_schema(schema)).validate(document)
    # metadata is Kubernetes' own ObjectMeta: the API server, not the CRD, keeps its fields.
    body = {key: value for key, value in document.items() if key != "metadata"}
    assert pruned_paths(body, schema, kind) == []


def test_checked_in_crds_are_regenerated() -> None:
    rendered = render_all()
    on_disk = {path.relative_to(CRD_DIR).as_posix() for path in CRD_DIR.rglob("*.yaml")}
    stale = [
        name
        for name, text in rendered.items()
        if not (CRD_DIR / name).is_file() or (CRD_DIR / name).read_bytes() != text.encode()
    ]
    # A leftover file would still be applied by `kubectl apply -f config/crd`.
    unknown = sorted(on_disk - set(rendered))
    problems = [f"stale: {name}" for name in stale] + [f"not generated: {name}" for name in unknown]
    assert problems == [], f"config/crd is out of date with the models; run `{REGENERATE}`"


def test_kustomizations_list_every_crd() -> None:
    rendered = render_all()
    top = yaml.safe_load(rendered["kustomization.yaml"])
    assert top["resources"] == ["kserve", "infergraph"]
    listed = [
        f"{directory}/{name}"
        for directory in top["resources"]
        for name in yaml.safe_load(rendered[f"{directory}/kustomization.yaml"])["resources"]
    ]
    assert sorted(listed) == sorted(CRDS)


def test_groups_by_directory() -> None:
    groups = {name: doc["spec"]["group"] for name, doc in CRDS.items()}
    assert {g for n, g in groups.items() if n.startswith("kserve/")} == {"serving.kserve.io"}
    assert {g for n, g in groups.items() if n.startswith("infergraph/")} == {"infergraph.dev"}


def test_names_are_kserves() -> None:
    names = {
        doc["spec"]["names"]["kind"]: doc["spec"]["names"]
        for doc in CRDS.values()
        if doc["spec"]["group"] == "serving.kserve.io"
    }
    assert names["InferenceGraph"]["shortNames"] == ["ig"]
    assert names["InferenceService"]["shortNames"] == ["isvc"]
    assert {kind: n["plural"] for kind, n in names.items()} == {
        "InferenceGraph": "inferencegraphs",
        "InferenceService": "inferenceservices",
        "ServingRuntime": "servingruntimes",
        "ClusterServingRuntime": "clusterservingruntimes",
    }
    scopes = {doc["spec"]["names"]["kind"]: doc["spec"]["scope"] for doc in CRDS.values()}
    assert scopes["ClusterServingRuntime"] == "Cluster"
    assert scopes["ServingRuntime"] == "Namespaced"


@pytest.mark.parametrize("name", sorted(CRDS))
def test_crd_schema_is_structural(name: str) -> None:
    document = CRDS[name]
    version = document["spec"]["versions"][0]
    assert version["served"] is True
    assert version["storage"] is True
    assert version["subresources"] == {"status": {}}
    schema = version["schema"]["openAPIV3Schema"]
    assert structural_problems(schema) == []
    # Kubernetes owns ObjectMeta's schema and rejects a CRD that describes more than its type.
    assert schema["properties"]["metadata"] == {"type": "object"}


@pytest.mark.parametrize("name", sorted(CRDS))
def test_crd_is_a_valid_kubernetes_object(name: str) -> None:
    # strict: the official schema with additionalProperties false, so a misspelled CRD field
    # (`jsonpath`, `shortname`) fails here rather than being dropped by the API server.
    checked = kubernetes_validate.validate(CRDS[name], K8S_VERSION, strict=True)
    assert checked == K8S_VERSION


def test_kubernetes_validation_is_not_vacuous() -> None:
    broken = copy.deepcopy(CRDS[KSERVE_IG])
    broken["spec"]["versions"][0]["additionalPrinterColumns"][0]["jsonpath"] = ".status.url"
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, K8S_VERSION, strict=True)


def test_sample_graph_round_trips_through_model_and_crd() -> None:
    check_against_crd(SAMPLE_GRAPH)
    # And back: what the model dumps (what the controller would write) passes too.
    dumped = InferenceGraph.model_validate(SAMPLE_GRAPH).model_dump(mode="json", exclude_none=True)
    check_against_crd(dumped)


def test_null_optional_fields_are_accepted_by_both() -> None:
    graph = copy.deepcopy(SAMPLE_GRAPH)
    graph["spec"]["scaleMetric"] = None
    graph["spec"]["routerTimeouts"]["serverIdle"] = None
    graph["spec"]["nodes"]["root"]["steps"][0]["dependency"] = None
    check_against_crd(graph)


@pytest.mark.parametrize(
    ("where", "bad"),
    [
        (("spec", "nodes", "root"), {"routerType": "Sequential"}),
        (("spec", "nodes", "breeds", "steps", 0), {"weight": -1}),
        (("spec", "routerTimeouts"), {"serverRead": "30s"}),
        (("spec",), {"scaleMetric": "gpu"}),
        (("spec", "nodes", "root", "steps", 1), {"dependency": "Maybe"}),
        # (`data` is a string or an object template; its expressions are checked by
        # schemas.graph_rules when the graph loads, which a CRD schema cannot express.)
    ],
)
def test_crd_rejects_what_the_model_rejects(
    where: tuple[str | int, ...], bad: dict[str, Any]
) -> None:
    # Our group's CRD carries every bound; KServe's group's carries only KServe's (see below).
    graph = {**copy.deepcopy(SAMPLE_GRAPH), "apiVersion": "infergraph.dev/v1alpha1"}
    target: Any = graph
    for key in where:
        target = target[key]
    target.update(bad)
    with pytest.raises(pydantic.ValidationError):
        InferenceGraph.model_validate(graph)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.Draft4Validator(to_json_schema(schema_of(graph))).validate(graph)


@pytest.mark.parametrize("group", ["serving.kserve.io", "infergraph.dev"])
def test_missing_required_spec_field_is_rejected(group: str) -> None:
    graph = copy.deepcopy(SAMPLE_GRAPH)
    del graph["spec"]["nodes"]["root"]["routerType"]
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.Draft4Validator(to_json_schema(SCHEMAS[(group, "InferenceGraph")])).validate(
            graph
        )


EXTENDED_GRAPH: dict[str, Any] = {
    "apiVersion": "infergraph.dev/v1alpha1",
    "kind": "InferenceGraph",
    "metadata": {"name": "vote"},
    "spec": {
        "conditionLanguage": "jmespath",
        "retry": {"maxRetries": 2},
        "circuitBreaker": {"failureThreshold": 3},
        "nodes": {
            "root": {
                "routerType": "Ensemble",
                "aggregation": "majority",
                "quorum": "majority",
                "partialResults": True,
                "steps": [
                    {"serviceName": "a", "timeout": 2.5, "data": {"x": "$request.x"}},
                    {"serviceName": "b", "mapOutputsToInputs": {"out": "in"}},
                ],
            },
            "canary": {
                "routerType": "Splitter",
                "stickyHeader": "X-User",
                "steps": [
                    {"serviceName": "a", "weight": 100},
                    {"serviceName": "c", "shadow": True},
                ],
            },
        },
    },
}


def test_extensions_are_kept_by_our_groups_crd() -> None:
    check_against_crd(EXTENDED_GRAPH)


def test_extensions_are_not_in_kserves_groups_crd() -> None:
    # What the API server would do to them under serving.kserve.io: prune every one (which is
    # why schemas.valid_graph refuses them there, naming our group instead).
    schema = SCHEMAS[("serving.kserve.io", "InferenceGraph")]
    body = {key: value for key, value in EXTENDED_GRAPH.items() if key != "metadata"}
    assert sorted(pruned_paths(body, schema, "InferenceGraph")) == sorted(
        [
            "InferenceGraph.spec.conditionLanguage",
            "InferenceGraph.spec.retry",
            "InferenceGraph.spec.circuitBreaker",
            "InferenceGraph.spec.nodes.root.aggregation",
            "InferenceGraph.spec.nodes.root.quorum",
            "InferenceGraph.spec.nodes.root.partialResults",
            "InferenceGraph.spec.nodes.root.steps[0].timeout",
            # (a string there: the object template is refused outright, not pruned)
            "InferenceGraph.spec.nodes.root.steps[0].data.x",
            "InferenceGraph.spec.nodes.root.steps[1].mapOutputsToInputs",
            "InferenceGraph.spec.nodes.canary.stickyHeader",
            "InferenceGraph.spec.nodes.canary.steps[1].shadow",
        ]
    )
    data = schema["properties"]["spec"]["properties"]["nodes"]["additionalProperties"]
    assert data["properties"]["steps"]["items"]["properties"]["data"]["type"] == "string"


def test_kserves_group_has_no_bounds_kserve_lacks() -> None:
    # KServe's CRDs declare no minimum/maximum/pattern on these; ours must not refuse what
    # they accept (our validation still reports them, as KServe's webhook does its own).
    for name, document in CRDS.items():
        if not name.startswith("kserve/"):
            continue
        for path, node in schema_nodes(document["spec"]["versions"][0]["schema"], name):
            bounds = {"minimum", "maximum", "pattern", "minLength", "maxLength"} & set(node)
            assert not bounds, f"{path}: {bounds}"


@pytest.mark.parametrize("name", sorted(CRDS))
def test_status_keeps_unknown_fields(name: str) -> None:
    schema = CRDS[name]["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    assert schema["properties"]["status"]["x-kubernetes-preserve-unknown-fields"] is True


def shipped_documents() -> list[tuple[str, dict[str, Any]]]:
    """The example and built-in resources of our kinds that this repository ships."""
    found = []
    for pattern in ("examples/**/*.yaml", "graph_controller/runtimes/*.yaml"):
        for path in sorted(REPO.glob(pattern)):
            for document in yaml.safe_load_all(path.read_text()):
                if isinstance(document, dict) and document.get("kind") in MODELS:
                    found.append((f"{path.relative_to(REPO)}:{document['kind']}", document))
    return found


@pytest.mark.parametrize(
    ("source", "document"),
    shipped_documents(),
    ids=lambda value: value if isinstance(value, str) else "",
)
def test_shipped_resources_fit_their_crd(source: str, document: dict[str, Any]) -> None:
    check_against_crd(document)


def test_free_form_fields_keep_unknown_keys() -> None:
    spec = openapi_schema(InferenceGraphSpec)
    assert spec["properties"]["affinity"]["x-kubernetes-preserve-unknown-fields"] is True
    tolerations = spec["properties"]["tolerations"]
    assert tolerations["items"] == {"type": "object", "x-kubernetes-preserve-unknown-fields": True}


def test_recursive_models_raise() -> None:
    class Recursive(BaseModel):
        children: list[Recursive] = []

    with pytest.raises(CrdError):
        openapi_schema(Recursive)


def test_unions_keep_their_value_for_our_validation() -> None:
    class Union(BaseModel):
        value: int | list[str]
        count: int | str

    schema = openapi_schema(Union)
    # Unions beyond int-or-string have no structural type: the API server keeps the value and
    # schemas.graph_rules checks it when the graph loads.
    assert schema["properties"]["value"] == {"x-kubernetes-preserve-unknown-fields": True}
    assert schema["properties"]["count"]["x-kubernetes-int-or-string"] is True


def test_status_model_is_optional() -> None:
    document = crd(
        "Thing", "things", "thing", [], "example.com", "v1", "Cluster", InferenceGraphSpec, None
    )
    version = document["spec"]["versions"][0]
    assert version["schema"]["openAPIV3Schema"]["properties"]["status"] == {
        "type": "object",
        "x-kubernetes-preserve-unknown-fields": True,
    }
    assert "additionalPrinterColumns" not in version


def test_constructs_the_models_do_not_use_yet() -> None:
    class Extras(BaseModel):
        port: int | str
        ratio: float = pydantic.Field(gt=0, le=1)
        tags: set[str]
        mode: Literal["fast"]
        anything: Any = None

    properties = openapi_schema(Extras)["properties"]
    assert properties["port"] == {
        "x-kubernetes-int-or-string": True,
        "anyOf": [{"type": "integer"}, {"type": "string"}],
    }
    assert properties["ratio"] == {
        "type": "number",
        "maximum": 1,
        "minimum": 0,
        "exclusiveMinimum": True,
    }
    assert properties["tags"] == {
        "type": "array",
        "items": {"type": "string"},
        "x-kubernetes-list-type": "set",
    }
    assert properties["mode"] == {"type": "string", "enum": ["fast"]}
    assert properties["anything"] == {"x-kubernetes-preserve-unknown-fields": True}
