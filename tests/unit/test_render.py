"""Rendering to Kubernetes: every manifest is valid against the official OpenAPI schemas."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import kubernetes_validate
import orjson
import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from graph_controller.cli import main as infergraph
from graph_controller.controller.render import Mode, RenderOptions, render
from graph_controller.planning.builtin_runtimes import builtin_runtimes
from graph_controller.planning.bundle import load_bundle
from schemas.inference_service import InferenceService
from schemas.valid_graph import ValidGraph, validate_graph

K8S = "1.37.0"
EXAMPLES = Path(__file__).parents[2] / "examples"
BUNDLES = [
    "digits-pipeline",
    "iris-ensemble",
    "wine-canary",
    "iris-transformer",
    "iris-kserve-transformer",
    "iris-grpc",
    "llm-stream",
]


def validate(manifest: dict[str, Any]) -> None:
    """Core objects against Kubernetes' schema; a Knative Service through its PodSpec."""
    if manifest["apiVersion"] == "serving.knative.dev/v1":
        template = manifest["spec"]["template"]
        assert set(template) == {"metadata", "spec"}
        pod = {"apiVersion": "v1", "kind": "Pod", "metadata": template["metadata"]}
        pod["metadata"] = {**template["metadata"], "name": manifest["metadata"]["name"]}
        pod["spec"] = template["spec"]
        kubernetes_validate.validate(pod, K8S, strict=True)
    else:
        kubernetes_validate.validate(manifest, K8S, strict=True)


@pytest.mark.parametrize("mode", list(Mode), ids=[m.value for m in Mode])
@pytest.mark.parametrize("example", BUNDLES)
def test_examples_render_to_valid_manifests(example: str, mode: Mode) -> None:
    bundle = load_bundle(EXAMPLES / example)
    manifests = render(
        bundle.graphs,
        bundle.services,
        (*bundle.runtimes, *builtin_runtimes()),
        RenderOptions(mode=mode, propagate_headers=("Authorization", "^X-")),
    )
    assert manifests
    for manifest in manifests:
        validate(manifest)


def router_args(manifests: list[dict[str, Any]], name: str) -> list[str]:
    for manifest in manifests:
        if manifest["kind"] == "Deployment" and manifest["metadata"]["name"] == name:
            args: list[str] = manifest["spec"]["template"]["spec"]["containers"][0]["args"]
            return args
    raise AssertionError(f"no router Deployment {name}")


def test_router_gets_kserve_flags_resolved_urls_and_probe() -> None:
    bundle = load_bundle(EXAMPLES / "digits-pipeline")
    options = RenderOptions(namespace="ml", propagate_headers=("Authorization",))
    manifests = render(bundle.graphs, bundle.services, builtin_runtimes(), options)
    args = router_args(manifests, "digits-pipeline")
    assert args[0] == "--graph-json"
    spec = orjson.loads(args[1])
    urls = [s["serviceUrl"] for s in spec["nodes"]["root"]["steps"]]
    assert urls == [
        "http://digit-high-predictor.ml.svc.cluster.local/v1/models/digit-high:predict",
        "http://digit-high-specialist-predictor.ml.svc.cluster.local"
        "/v1/models/digit-high-specialist:predict",
    ]
    router = next(m for m in manifests if m["metadata"]["name"] == "digits-pipeline")
    container = router["spec"]["template"]["spec"]["containers"][0]
    assert container["readinessProbe"]["httpGet"] == {
        "path": "/readyz",
        "port": 8080,
        "scheme": "HTTP",
    }
    assert container["env"] == [{"name": "PROPAGATE_HEADERS", "value": "Authorization"}]


def test_predictor_follows_kserve_conventions() -> None:
    bundle = load_bundle(EXAMPLES / "wine-canary")
    manifests = render(bundle.graphs, bundle.services, builtin_runtimes(), RenderOptions())
    deployment = next(m for m in manifests if m["metadata"]["name"] == "wine-v1-predictor")
    pod = deployment["spec"]["template"]["spec"]
    (init,) = pod["initContainers"]
    assert init["name"] == "storage-initializer"
    assert init["args"] == ["models/wine-v1", "/mnt/models"]
    assert {"name": "kserve-provision-location", "mountPath": "/mnt/models", "readOnly": True} in (
        pod["containers"][0]["volumeMounts"]
    )
    assert "--model_name=wine-v1" in pod["containers"][0]["args"]
    labels = deployment["metadata"]["labels"]
    assert labels["serving.kserve.io/inferenceservice"] == "wine-v1"
    assert "ownerReferences" not in deployment["metadata"]  # no uid offline


names = st.from_regex(r"[a-z][a-z0-9]{0,8}", fullmatch=True)


@st.composite
def bundles(draw: st.DrawFn) -> tuple[dict[str, ValidGraph], dict[str, InferenceService]]:
    service_names = draw(st.lists(names, min_size=1, max_size=4, unique=True))
    services = {}
    for name in service_names:
        predictor: dict[str, Any] = {
            "model": {"modelFormat": {"name": "sklearn"}, "storageUri": f"s3://b/{name}"}
        }
        if draw(st.booleans()):
            low = draw(st.integers(0, 3))
            predictor |= {
                "minReplicas": low,
                "maxReplicas": low + draw(st.integers(0, 5)),
                # concurrency and rps are Knative metrics, refused in raw mode (a test below)
                "scaleMetric": draw(st.sampled_from(["cpu", "memory"])),
                "scaleTarget": draw(st.integers(1, 100)),
            }
        metadata: dict[str, Any] = {"name": name}
        if draw(st.booleans()):
            metadata["uid"] = f"uid-{name}"
        services[name] = InferenceService.model_validate(
            {
                "apiVersion": "serving.kserve.io/v1beta1",
                "kind": "InferenceService",
                "metadata": metadata,
                "spec": {"predictor": predictor},
            }
        )
    steps = [{"serviceName": n} for n in draw(st.lists(st.sampled_from(service_names), min_size=1))]
    spec: dict[str, Any] = {"nodes": {"root": {"routerType": "Sequence", "steps": steps}}}
    if draw(st.booleans()):
        spec |= {"minReplicas": 1, "maxReplicas": draw(st.integers(1, 9)), "scaleMetric": "cpu"}
    if draw(st.booleans()):
        spec["tolerations"] = [{"key": "gpu", "operator": "Exists", "effect": "NoSchedule"}]
        spec["nodeSelector"] = {"pool": "inference"}
        spec["serviceAccountName"] = "router"
    graph = validate_graph(
        {
            "apiVersion": "serving.kserve.io/v1alpha1",
            "kind": "InferenceGraph",
            "metadata": {"name": "g", "uid": "uid-g"},
            "spec": spec,
        }
    )
    return {"g": graph}, services


@settings(
    derandomize=True,
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
@given(bundles(), st.sampled_from(list(Mode)))
def test_random_bundles_render_valid_manifests(
    bundle: tuple[dict[str, ValidGraph], dict[str, InferenceService]], mode: Mode
) -> None:
    graphs, services = bundle
    manifests = render(graphs, services, builtin_runtimes(), RenderOptions(mode=mode))
    for manifest in manifests:
        validate(manifest)
        owners = manifest["metadata"].get("ownerReferences", [])
        for owner in owners:
            assert owner["uid"].startswith("uid-")
    expected = len(services) + len(graphs)
    assert len([m for m in manifests if m["kind"] in ("Deployment", "Service")]) >= expected


def test_render_cli_prints_multi_document_yaml(capsys: pytest.CaptureFixture[str]) -> None:
    assert infergraph(["render", str(EXAMPLES / "iris-ensemble" / "iris.yaml")]) == 0
    documents = list(yaml.safe_load_all(capsys.readouterr().out))
    kinds = sorted(d["kind"] for d in documents)
    assert kinds == ["Deployment"] * 4 + ["HorizontalPodAutoscaler"] * 4 + ["Service"] * 4


def test_router_gets_the_whole_spec_as_kserve_marshals_it() -> None:
    # KServe's controller passes json.Marshal(graph.Spec); camelCase fields must survive too.
    graph = validate_graph(
        {
            "apiVersion": "infergraph.dev/v1alpha1",  # extensions: our group
            "kind": "InferenceGraph",
            "metadata": {"name": "g"},
            "spec": {
                "nodes": {
                    "root": {"routerType": "Sequence", "steps": [{"serviceUrl": "http://m"}]}
                },
                "routerTimeouts": {"serverRead": 5, "serviceClient": 2},
                "conditionLanguage": "jmespath",
                "circuitBreaker": {"failureThreshold": 3, "cooldownSeconds": 1},
                "timeout": 9,
            },
        }
    )
    manifests = render({"g": graph}, {}, builtin_runtimes(), RenderOptions())
    spec = orjson.loads(router_args(manifests, "g")[1])
    # Go marshals `resources` (a struct) even when empty.
    assert spec == {**graph.spec.model_dump(by_alias=True, exclude_none=True), "resources": {}}
    assert spec["routerTimeouts"] == {"serverRead": 5, "serviceClient": 2}
    assert spec["conditionLanguage"] == "jmespath"


def test_router_graph_json_has_kserve_bytes() -> None:
    """The exact bytes KServe's controller (Go's json.Marshal of v0.15.2's InferenceGraphSpec)
    gives its router for this spec, as the oracle saw them: struct field order, sorted maps,
    `resources` always, <, > and & escaped; so a KServe-made router's pods are not rolled."""
    graph = validate_graph(
        {
            "apiVersion": "serving.kserve.io/v1alpha1",
            "kind": "InferenceGraph",
            "metadata": {"name": "g"},
            "spec": {
                "nodeSelector": {"zone": "b", "pool": "a"},
                "scaleMetric": "cpu",
                "minReplicas": 2,
                "resources": {"requests": {"memory": "1Gi", "cpu": "1"}, "limits": {"cpu": "2"}},
                "nodes": {
                    "root": {
                        "steps": [
                            {
                                "condition": "[@this].#(x>1&&y<2)",
                                "serviceUrl": "http://m",
                                "name": "a",
                                "dependency": "Hard",
                            },
                            {"nodeName": "other", "weight": None},
                        ],
                        "routerType": "Sequence",
                    },
                    "other": {"routerType": "Sequence", "steps": [{"serviceUrl": "http://n"}]},
                },
            },
        }
    )
    manifests = render({"g": graph}, {}, builtin_runtimes(), RenderOptions())
    assert router_args(manifests, "g")[1] == (
        '{"nodes":{"other":{"routerType":"Sequence","steps":[{"serviceUrl":"http://n"}]},'
        '"root":{"routerType":"Sequence","steps":[{"name":"a","serviceUrl":"http://m",'
        '"condition":"[@this].#(x\\u003e1\\u0026\\u0026y\\u003c2)","dependency":"Hard"},'
        '{"nodeName":"other"}]}},'
        '"resources":{"limits":{"cpu":"2"},"requests":{"cpu":"1","memory":"1Gi"}},'
        '"minReplicas":2,"scaleMetric":"cpu","nodeSelector":{"pool":"a","zone":"b"}}'
    )
