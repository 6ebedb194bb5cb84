"""InferenceServices materialised as KServe v0.15.2's RawDeployment does, with runtimes shaped
like KServe's published ones (tests/fixtures/kserve_runtimes.yaml); every manifest is also
checked against Kubernetes' OpenAPI schema."""

from __future__ import annotations

import contextlib
import io
import re
from pathlib import Path
from typing import Any

import orjson
import pytest
import yaml

from graph_controller.controller import decide
from graph_controller.controller.render import Mode, RenderError, RenderOptions, render
from graph_controller.planning.components import DEPLOYMENT_MODE
from graph_controller.planning.runtime_selection import Runtime, Scope
from schemas.inference_service import InferenceService
from schemas.loading import load_documents
from schemas.serving_runtime import ClusterServingRuntime, ServingRuntimeSpec
from schemas.valid_graph import validate_graph
from tests.unit.test_render import validate

FIXTURES = Path(__file__).parents[1] / "fixtures" / "kserve_runtimes.yaml"


def runtimes() -> list[Runtime]:
    out = []
    for doc in load_documents(FIXTURES.read_bytes(), str(FIXTURES)):
        assert isinstance(doc.resource, ClusterServingRuntime)
        name = doc.resource.metadata.name or ""
        out.append(Runtime(name, Scope.CLUSTER, doc.resource.spec))
    return out


def isvc(
    name: str = "m",
    metadata: dict[str, Any] | None = None,
    **predictor: Any,
) -> InferenceService:
    return InferenceService.model_validate(
        {
            "apiVersion": "serving.kserve.io/v1beta1",
            "kind": "InferenceService",
            "metadata": {"name": name, **(metadata or {})},
            "spec": {"predictor": predictor},
        }
    )


def model(fmt: str, **fields: Any) -> dict[str, Any]:
    return {"model": {"modelFormat": {"name": fmt}, "storageUri": "s3://bucket/m", **fields}}


def rendered(service: InferenceService, namespace: str = "ns") -> dict[tuple[str, str], Any]:
    name = service.metadata.name or ""
    manifests = render({}, {name: service}, runtimes(), RenderOptions(namespace=namespace))
    for manifest in manifests:
        validate(manifest)
    return {(m["kind"], m["metadata"]["name"]): m for m in manifests}


def pod(objects: dict[tuple[str, str], Any], name: str = "m-predictor") -> Any:
    return objects[("Deployment", name)]["spec"]["template"]["spec"]


def env(container: dict[str, Any]) -> dict[str, str]:
    return {e["name"]: e.get("value") for e in container.get("env", [])}


# --- ports, probes, runtime shapes ---------------------------------------------------------


@pytest.mark.parametrize(
    ("predictor", "target", "second"),
    [
        pytest.param(model("sklearn"), 8080, None, id="sklearn-no-ports"),
        pytest.param(model("xgboost"), 8080, None, id="xgboost"),
        pytest.param(model("huggingface"), 8080, None, id="huggingface"),
        pytest.param(model("triton"), 8080, None, id="triton"),
        pytest.param(model("pytorch"), 8085, 7070, id="torchserve-8085"),
        pytest.param(model("tensorflow"), 8080, None, id="tf-serving"),
        pytest.param(model("custom-5000"), 5000, None, id="custom-5000"),
        pytest.param(
            model("sklearn", protocolVersion="v2", ports=[{"containerPort": 9000, "name": "grpc"}]),
            9000,
            None,
            id="mlserver-grpc-only",
        ),
    ],
)
def test_service_targets_the_first_declared_port_and_probe_checks_it(
    predictor: dict[str, Any], target: int, second: int | None
) -> None:
    objects = rendered(isvc(**predictor))
    (port, *more) = objects[("Service", "m-predictor")]["spec"]["ports"]
    assert (port["port"], port["targetPort"]) == (80, target)  # KServe keeps 80 in front
    assert [p["port"] for p in more] == ([second] if second else [])
    container = pod(objects)["containers"][0]
    assert container["name"] == "kserve-container"
    assert container["readinessProbe"] == {
        "tcpSocket": {"port": target},
        "timeoutSeconds": 1,
        "periodSeconds": 10,
        "successThreshold": 1,
        "failureThreshold": 3,
    }


def test_grpc_port_gets_kserve_app_protocol() -> None:
    objects = rendered(isvc(**model("pytorch")))
    ports = objects[("Service", "m-predictor")]["spec"]["ports"]
    assert ports[1] == {
        "name": "grpc",
        "port": 7070,
        "targetPort": 7070,
        "protocol": "TCP",
        "appProtocol": "kubernetes.io/h2c",
    }


# --- the container merge ---------------------------------------------------------------------


def test_mlserver_env_merges_by_name_and_templates_the_model_class() -> None:
    predictor = model(
        "sklearn",
        protocolVersion="v2",
        runtime="kserve-mlserver",
        env=[{"name": "MLSERVER_HTTP_PORT", "value": "8081"}, {"name": "EXTRA", "value": "x"}],
    )
    container = pod(rendered(isvc(**predictor)))["containers"][0]
    assert env(container) == {
        "MLSERVER_MODEL_IMPLEMENTATION": "mlserver_sklearn.SKLearnModel",  # {{.Labels.modelClass}}
        "MLSERVER_HTTP_PORT": "8081",  # the model's value wins
        "MLSERVER_GRPC_PORT": "9000",  # the runtime's stays
        "MODELS_DIR": "/mnt/models",
        "EXTRA": "x",
        "MLSERVER_MODEL_NAME": "m",  # KServe's MLServer defaults
        "MLSERVER_MODEL_URI": "/mnt/models",
    }
    # apimachinery's merge order: a runtime-only item goes before a patch item only when it
    # precedes that item in the runtime's list; items new in the patch go first otherwise.
    assert [e["name"] for e in container["env"]] == [
        "MLSERVER_MODEL_IMPLEMENTATION",
        "MLSERVER_HTTP_PORT",
        "EXTRA",
        "MLSERVER_MODEL_NAME",
        "MLSERVER_MODEL_URI",
        "MLSERVER_GRPC_PORT",
        "MODELS_DIR",
    ]


def test_resources_merge_by_key_and_args_are_appended() -> None:
    predictor = model("sklearn", resources={"limits": {"memory": "4Gi"}}, args=["--workers", "2"])
    container = pod(rendered(isvc(**predictor)))["containers"][0]
    assert container["resources"] == {
        "requests": {"cpu": "1", "memory": "2Gi"},
        "limits": {"cpu": "1", "memory": "4Gi"},
    }
    assert container["args"] == [
        "--model_name=m",
        "--model_dir=/mnt/models",
        "--http_port=8080",
        "--workers",
        "2",
    ]
    assert container["securityContext"]["runAsNonRoot"] is True  # the runtime's, kept


def test_huggingface_keeps_its_devshm_volume_and_mount() -> None:
    spec = pod(rendered(isvc(**model("huggingface"))))
    assert {"name": "devshm", "emptyDir": {"medium": "Memory"}} in spec["volumes"]
    mounts = spec["containers"][0]["volumeMounts"]
    assert {"name": "devshm", "mountPath": "/dev/shm"} in mounts


def test_runtime_pod_fields_merge_with_the_predictors() -> None:
    service = isvc(
        metadata={"namespace": "ns", "annotations": {"team": "vision"}},
        **model("custom-5000"),
        nodeSelector={"zone": "a"},
        volumes=[{"name": "data", "emptyDir": {}}],
        imagePullSecrets=[{"name": "mine"}],
        containers=[{"name": "logger", "image": "example.invalid/log:1"}],
    )
    spec = pod(rendered(service))
    assert spec["nodeSelector"] == {"pool": "inference", "zone": "a"}
    assert spec["tolerations"] == [{"key": "gpu", "operator": "Exists", "effect": "NoSchedule"}]
    assert [s["name"] for s in spec["imagePullSecrets"]] == ["mine", "runtime-registry"]
    assert [v["name"] for v in spec["volumes"]] == [
        "data",
        "cache",
        "kserve-provision-location",
    ]
    assert [c["name"] for c in spec["containers"]] == [
        "kserve-container",
        "metrics-sidecar",  # the runtime's extra container
        "logger",  # the predictor's
    ]
    assert spec["containers"][0]["args"] == ["--name=m", "--ns=ns", "--team=vision"]


def test_a_placeholder_kserve_cannot_fill_is_refused() -> None:
    bad = Runtime(
        "bad",
        Scope.CLUSTER,
        runtimes()[0].spec.model_copy(
            update={
                "containers": [
                    runtimes()[0].spec.containers[0].model_copy(update={"args": ["{{.Spec}}"]})
                ]
            }
        ),
    )
    service = isvc(**model("sklearn", runtime="bad"))
    with pytest.raises(RenderError, match=r"placeholder '\{\{.Spec\}\}' is not supported"):
        render({}, {"m": service}, [bad], RenderOptions())


def test_missing_label_prints_like_go_templates() -> None:
    spec = pod(rendered(isvc(**model("custom-5000"))))
    assert spec["containers"][0]["args"][2] == "--team=<no value>"


# --- storage ---------------------------------------------------------------------------------


def test_storage_initializer_gets_kserve_defaults() -> None:
    spec = pod(rendered(isvc(**model("sklearn"))))
    (init,) = spec["initContainers"]
    assert init["resources"] == {
        "requests": {"cpu": "100m", "memory": "100Mi"},
        "limits": {"cpu": "1", "memory": "1Gi"},
    }
    assert init["args"] == ["s3://bucket/m", "/mnt/models"]
    assert init["terminationMessagePolicy"] == "FallbackToLogsOnError"


def test_pvc_storage_is_mounted_without_an_initializer() -> None:
    predictor = model("sklearn", storageUri="pvc://models-claim/iris/v1")
    spec = pod(rendered(isvc(**predictor)))
    assert "initContainers" not in spec
    assert {
        "name": "kserve-pvc-source",
        "persistentVolumeClaim": {"claimName": "models-claim"},
    } in (spec["volumes"])
    assert spec["containers"][0]["volumeMounts"] == [
        {"name": "kserve-pvc-source", "mountPath": "/mnt/models", "readOnly": True,
         "subPath": "iris/v1"}
    ]  # fmt: skip


# --- labels, annotations, scaling ------------------------------------------------------------


def test_labels_and_annotations_propagate_with_kserve_priority() -> None:
    service = isvc(
        metadata={
            "labels": {"team": "isvc", "owner": "isvc"},
            "annotations": {
                "sidecar.istio.io/inject": "true",
                "kubectl.kubernetes.io/last-applied-configuration": "{}",
            },
        },
        **model("custom-5000"),
        labels={"owner": "predictor"},
        annotations={"prometheus.io/scrape": "true"},
    )
    objects = rendered(service)
    deployment = objects[("Deployment", "m-predictor")]
    template = deployment["spec"]["template"]["metadata"]
    for meta in (deployment["metadata"], template, objects[("Service", "m-predictor")]["metadata"]):
        assert meta["labels"]["team"] == "isvc"  # runtime's 'runtime-team' is overridden
        assert meta["labels"]["owner"] == "predictor"
        assert meta["labels"]["app"] == "isvc.m-predictor"
        assert meta["labels"]["component"] == "predictor"
        assert meta["annotations"] == {
            "sidecar.istio.io/inject": "true",
            "prometheus.io/scrape": "true",
            # What KServe's webhook and controller add (the mode it defaulted to, the model's
            # URI for its storage-initializer injector).
            "serving.kserve.io/deploymentMode": "RawDeployment",
            "internal.serving.kserve.io/storage-initializer-sourceuri": "s3://bucket/m",
        }
        assert "serving.kserve.io/servingruntime" not in meta["labels"]  # KServe sets none


# KServe's pod webhook (v0.15.2 pkg/webhook/admission/pod): metrics_aggregate_injector.go sets
# prometheus.io/port to DefaultPodPrometheusPort 9091 (QueueProxyAggregatePrometheusMetricsPort
# 9088 with metric aggregation "true") and prometheus.io/path to /metrics when
# enable-prometheus-scraping is exactly "true"; accelerator_injector.go unions
# cloud.google.com/gke-accelerator into the nodeSelector when a container limits nvidia.com/gpu.
SCRAPING = "serving.kserve.io/enable-prometheus-scraping"
AGGREGATION = "serving.kserve.io/enable-metric-aggregation"
ACCELERATOR = "serving.kserve.io/gke-accelerator"
GPU = {"limits": {"nvidia.com/gpu": "1"}}


@pytest.mark.parametrize(
    ("isvc_annotations", "predictor_annotations", "pod_annotations"),
    [
        pytest.param({SCRAPING: "true"}, {}, {"prometheus.io/port": "9091",
                     "prometheus.io/path": "/metrics"}, id="scraping"),
        pytest.param({SCRAPING: "true", AGGREGATION: "true"}, {}, {"prometheus.io/port": "9088",
                     "prometheus.io/path": "/metrics"}, id="aggregated"),
        pytest.param({}, {SCRAPING: "true"}, {"prometheus.io/port": "9091",
                     "prometheus.io/path": "/metrics"}, id="on-the-predictor"),
        pytest.param({SCRAPING: "True"}, {}, {}, id="only-exactly-true"),
        pytest.param({SCRAPING: "false", AGGREGATION: "true"}, {}, {}, id="off"),
    ],
)  # fmt: skip
def test_prometheus_scraping_annotates_the_pods_as_kserves_webhook(
    isvc_annotations: dict[str, str],
    predictor_annotations: dict[str, str],
    pod_annotations: dict[str, str],
) -> None:
    service = isvc(
        metadata={"annotations": isvc_annotations},
        **model("sklearn"),
        annotations=predictor_annotations,
    )
    with_transformer = service.model_dump(by_alias=True, exclude_none=True)
    with_transformer["spec"]["transformer"] = {"containers": [{"image": "example.invalid/t:1"}]}
    objects = rendered(InferenceService.model_validate(with_transformer))
    for component in ("m-predictor", "m-transformer"):
        deployment = objects[("Deployment", component)]
        template = deployment["spec"]["template"]["metadata"]["annotations"]
        if component == "m-transformer" and predictor_annotations:
            assert "prometheus.io/port" not in template  # the predictor's own annotation
            continue
        assert {k: v for k, v in template.items() if k.startswith("prometheus.io/")} == (
            pod_annotations
        )
        # The webhook mutates Pods, not the Deployment (nor its Service or HPA).
        assert "prometheus.io/port" not in deployment["metadata"]["annotations"]


@pytest.mark.parametrize(
    ("resources", "node_selector", "selected"),
    [
        pytest.param(GPU, None, {"cloud.google.com/gke-accelerator": "nvidia-tesla-t4"},
                     id="gpu"),
        pytest.param(GPU, {"pool": "a"}, {"pool": "a",
                     "cloud.google.com/gke-accelerator": "nvidia-tesla-t4"}, id="union"),
        pytest.param({"requests": {"nvidia.com/gpu": "1"}}, None, None, id="request-only"),
        pytest.param({}, None, None, id="no-gpu"),
    ],
)  # fmt: skip
def test_gke_accelerator_selects_nodes_as_kserves_webhook(
    resources: dict[str, Any], node_selector: dict[str, str] | None, selected: Any
) -> None:
    predictor = model("sklearn", resources=resources)
    if node_selector is not None:
        predictor["nodeSelector"] = node_selector
    service = isvc(metadata={"annotations": {ACCELERATOR: "nvidia-tesla-t4"}}, **predictor)
    assert pod(rendered(service)).get("nodeSelector") == selected


def test_objects_are_laid_out_field_for_field_as_kserve() -> None:
    """What KServe's deployment and HPA reconcilers set beyond the API server's defaults (found
    by the oracle, tests/k8s/test_kserve_oracle.py): the pod template named after the
    component in its namespace, IfNotPresent for a `:latest` image, an empty HPA behavior."""
    objects = rendered(isvc(**model("sklearn")))
    template = objects[("Deployment", "m-predictor")]["spec"]["template"]
    assert (template["metadata"]["name"], template["metadata"]["namespace"]) == (
        "m-predictor",
        "ns",
    )
    assert [c["imagePullPolicy"] for c in template["spec"]["containers"]] == ["IfNotPresent"]
    assert objects[("HorizontalPodAutoscaler", "m-predictor")]["spec"]["behavior"] == {}
    pinned = {"containers": [{"image": "x:latest", "imagePullPolicy": "Always"}]}
    custom = pod(rendered(isvc(**pinned)))
    assert custom["containers"][0]["imagePullPolicy"] == "Always"  # what the user set stays


@pytest.mark.parametrize(
    ("spec", "component", "resources"),
    [
        pytest.param(
            {"predictor": {"containers": [{"image": "x:1"}]}},
            "m-predictor",
            {"requests": {"cpu": "1", "memory": "2Gi"}, "limits": {"cpu": "1", "memory": "2Gi"}},
            id="custom-predictor",
        ),
        pytest.param(
            {
                "predictor": {
                    "model": {"modelFormat": {"name": "sklearn"}, "storageUri": "s3://b"}
                },
                "transformer": {
                    "containers": [{"image": "t:1", "resources": {"limits": {"memory": "1Gi"}}}]
                },
            },
            "m-transformer",
            {"requests": {"cpu": "1", "memory": "2Gi"}, "limits": {"cpu": "1", "memory": "1Gi"}},
            id="transformer-keeps-its-own",
        ),
    ],
)
def test_kserve_webhook_default_resources(
    spec: dict[str, Any], component: str, resources: dict[str, Any]
) -> None:
    """KServe's defaulter gives a custom predictor's or transformer's first container, and a
    framework spec, the ConfigMap's default resources for what they do not set."""
    service = InferenceService.model_validate(
        {
            "apiVersion": "serving.kserve.io/v1beta1",
            "kind": "InferenceService",
            "metadata": {"name": "m"},
            "spec": spec,
        }
    )
    container = pod(rendered(service), component)["containers"][0]
    assert container["resources"] == resources


def test_framework_key_gets_default_resources_before_the_runtime_merge() -> None:
    """`sklearn:` (not `model:`) is defaulted by its own Default() before becoming `model`;
    with a runtime that sets no resources, the defaults are what the container gets."""
    plain = Runtime(
        "plain-sklearn",
        Scope.CLUSTER,
        ServingRuntimeSpec.model_validate(
            {
                "supportedModelFormats": [{"name": "sklearn", "autoSelect": True}],
                "containers": [{"name": "kserve-container", "image": "sk:1"}],
            }
        ),
    )
    service = isvc(sklearn={"storageUri": "s3://b", "resources": {"limits": {"cpu": "2"}}})
    manifests = render({}, {"m": service}, [plain], RenderOptions(namespace="ns"))
    deployment = next(m for m in manifests if m["kind"] == "Deployment")
    assert deployment["spec"]["template"]["spec"]["containers"][0]["resources"] == {
        "requests": {"cpu": "1", "memory": "2Gi"},
        "limits": {"cpu": "2", "memory": "2Gi"},
    }


@pytest.mark.parametrize(
    ("annotations", "extension", "hpa", "replicas"),
    [
        pytest.param({}, {}, True, None, id="hpa-default"),
        pytest.param({}, {"minReplicas": 2, "maxReplicas": 5}, True, None, id="hpa-owns"),
        pytest.param(
            {"serving.kserve.io/autoscalerClass": "external"},
            {"minReplicas": 2},
            False,
            None,
            id="external",
        ),
        pytest.param(
            {"serving.kserve.io/autoscalerClass": "none"}, {"minReplicas": 2}, False, 2, id="none"
        ),
    ],
)
def test_replicas_belong_to_the_hpa_or_whoever_scales(
    annotations: dict[str, str], extension: dict[str, Any], hpa: bool, replicas: int | None
) -> None:
    objects = rendered(isvc(metadata={"annotations": annotations}, **model("sklearn"), **extension))
    assert (("HorizontalPodAutoscaler", "m-predictor") in objects) is hpa
    assert objects[("Deployment", "m-predictor")]["spec"].get("replicas") == replicas


def test_router_matches_kserve_raw_ig() -> None:
    graph = validate_graph(
        {
            "apiVersion": "serving.kserve.io/v1alpha1",
            "kind": "InferenceGraph",
            "metadata": {"name": "g", "labels": {"team": "t"}, "annotations": {"a": "b"}},
            "spec": {
                "nodes": {"root": {"routerType": "Sequence", "steps": [{"serviceUrl": "http://x"}]}}
            },
        }
    )
    manifests = render({"g": graph}, {}, [], RenderOptions())
    objects = {(m["kind"], m["metadata"]["name"]): m for m in manifests}
    deployment = objects[("Deployment", "g")]
    assert deployment["spec"]["selector"] == {"matchLabels": {"app": "isvc.g"}}
    # KServe's router declares no port; its Service's port is named after the graph.
    assert "ports" not in deployment["spec"]["template"]["spec"]["containers"][0]
    assert objects[("Service", "g")]["spec"]["ports"] == [
        {"name": "g", "port": 80, "targetPort": 8080, "protocol": "TCP"}
    ]
    assert deployment["metadata"]["labels"]["team"] == "t"
    assert deployment["metadata"]["annotations"] == {"a": "b"}
    spec = deployment["spec"]["template"]["spec"]
    assert spec["automountServiceAccountToken"] is False
    assert spec["containers"][0]["resources"] == {
        "requests": {"cpu": "100m", "memory": "100Mi"},
        "limits": {"cpu": "1", "memory": "1Gi"},
    }
    assert "replicas" not in deployment["spec"]
    assert ("HorizontalPodAutoscaler", "g") in objects


# --- URLs: protocol, model name, transformer ---------------------------------------------------


def graph_url(service: InferenceService) -> str:
    graph = validate_graph(
        {
            "apiVersion": "serving.kserve.io/v1alpha1",
            "kind": "InferenceGraph",
            "metadata": {"name": "g"},
            "spec": {
                "nodes": {"root": {"routerType": "Sequence", "steps": [{"serviceName": "m"}]}}
            },
        }
    )
    manifests = render({"g": graph}, {"m": service}, runtimes(), RenderOptions(namespace="ns"))
    router = next(
        x for x in manifests if x["kind"] == "Deployment" and x["metadata"]["name"] == "g"
    )
    args = router["spec"]["template"]["spec"]["containers"][0]["args"]
    url: str = orjson.loads(args[1])["nodes"]["root"]["steps"][0]["serviceUrl"]
    return url


PREDICTOR = "http://m-predictor.ns.svc.cluster.local"


@pytest.mark.parametrize(
    ("predictor", "url"),
    [
        pytest.param(model("sklearn"), f"{PREDICTOR}/v1/models/m:predict", id="v1"),
        pytest.param(
            model("sklearn", protocolVersion="v2"), f"{PREDICTOR}/v2/models/m/infer", id="v2"
        ),
        pytest.param(model("triton"), f"{PREDICTOR}/v2/models/m/infer", id="triton-defaults-v2"),
        pytest.param(
            model("sklearn", args=["--model_name", "iris"]),
            f"{PREDICTOR}/v1/models/iris:predict",
            id="model-name-arg",
        ),
        pytest.param(
            model(
                "sklearn",
                protocolVersion="v2",
                runtime="kserve-mlserver",
                env=[{"name": "MLSERVER_MODEL_NAME", "value": "iris"}],
            ),
            f"{PREDICTOR}/v2/models/iris/infer",
            id="mlserver-model-name",
        ),
    ],
)
def test_graph_url_follows_protocol_and_model_name(predictor: dict[str, Any], url: str) -> None:
    assert graph_url(isvc(**predictor)) == url


def with_transformer(**transformer: Any) -> InferenceService:
    base = isvc(**model("sklearn")).model_dump(by_alias=True, exclude_none=True)
    base["spec"]["transformer"] = {
        "containers": [{"name": "t", "image": "example.invalid/transformer:1"}],
        **transformer,
    }
    return InferenceService.model_validate(base)


def test_transformer_gets_its_own_workload_and_the_address() -> None:
    objects = rendered(with_transformer(minReplicas=1, labels={"tier": "pre"}))
    spec = pod(objects, "m-transformer")
    (container,) = spec["containers"]
    assert container["name"] == "kserve-container"
    assert container["args"] == [
        "--model_name",
        "m",
        "--predictor_host",
        "m-predictor.ns",
        "--http_port",
        "8080",
    ]
    assert container["readinessProbe"]["tcpSocket"] == {"port": 8080}
    labels = objects[("Deployment", "m-transformer")]["metadata"]["labels"]
    assert labels["component"] == "transformer"
    assert labels["tier"] == "pre"
    assert labels["app"] == "isvc.m-transformer"
    assert ("Service", "m-transformer") in objects
    assert ("HorizontalPodAutoscaler", "m-transformer") in objects
    assert ("Deployment", "m-predictor") in objects
    assert graph_url(with_transformer()) == (
        "http://m-transformer.ns.svc.cluster.local/v1/models/m:predict"
    )


# --- refused -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("change", "path"),
    [
        ({"predictor": {"logger": {"mode": "all"}}}, "spec.predictor.logger"),
        ({"predictor": {"batcher": {"maxBatchSize": 8}}}, "spec.predictor.batcher"),
        ({"explainer": {"containers": [{"image": "x"}]}}, "spec.explainer"),
        ({"predictor": {"canaryTrafficPercent": 10}}, "spec.predictor.canaryTrafficPercent"),
        ({"predictor": {"scaleMetric": "rps"}}, "spec.predictor.scaleMetric"),
        (
            {"transformer": {"containers": [{"image": "t"}], "logger": {}}},
            "spec.transformer.logger",
        ),
    ],
)
def test_fields_not_implemented_are_refused_by_name(change: dict[str, Any], path: str) -> None:
    base = isvc(**model("sklearn")).model_dump(by_alias=True, exclude_none=True)
    for key, value in change.items():
        base["spec"][key] = {**base["spec"].get(key, {}), **value}
    service = InferenceService.model_validate(base)
    with pytest.raises(RenderError, match=rf"{path}: "):
        render({}, {"m": service}, runtimes(), RenderOptions())


def test_serverless_annotation_is_refused_in_raw_mode_only() -> None:
    service = isvc(
        metadata={"annotations": {"serving.kserve.io/deploymentMode": "Serverless"}},
        **model("sklearn"),
    )
    with pytest.raises(RenderError, match="needs Knative"):
        render({}, {"m": service}, runtimes(), RenderOptions())
    assert render({}, {"m": service}, runtimes(), RenderOptions(mode=Mode.SERVERLESS))


@pytest.mark.parametrize(
    ("mode", "words"),
    [
        pytest.param("RawDeployment", "render without --mode serverless", id="raw"),
        pytest.param("ModelMesh", "ModelMesh is not supported", id="modelmesh"),
        pytest.param("Raw", "unknown deployment mode 'Raw'", id="unknown"),
    ],
)
def test_serverless_rendering_refuses_other_deployment_modes(mode: str, words: str) -> None:
    # Knative Services of an InferenceService that asks for another mode would ignore it.
    service = isvc(
        metadata={"annotations": {"serving.kserve.io/deploymentMode": mode}}, **model("sklearn")
    )
    with pytest.raises(RenderError, match=words):
        render({}, {"m": service}, runtimes(), RenderOptions(mode=Mode.SERVERLESS))


# --- the README table: every refused row is refused --------------------------------------------

README = Path(__file__).parents[2] / "README.md"
# For each refused row of the README table: an InferenceService change that uses it, and the
# field path every refusal of it names.
REFUSED_SAMPLES: dict[str, tuple[dict[str, Any], str]] = {
    "`explainer`": ({"spec": {"explainer": {"containers": [{"image": "x"}]}}}, "spec.explainer"),
    "`logger`": ({"spec": {"predictor": {"logger": {"mode": "all"}}}}, "spec.predictor.logger"),
    "`batcher`": (
        {"spec": {"predictor": {"batcher": {"maxBatchSize": 8}}}},
        "spec.predictor.batcher",
    ),
    "`canaryTrafficPercent`": (
        {"spec": {"predictor": {"canaryTrafficPercent": 10}}},
        "spec.predictor.canaryTrafficPercent",
    ),
    "`containerConcurrency`": (
        {"spec": {"predictor": {"containerConcurrency": 4}}},
        "spec.predictor.containerConcurrency",
    ),
    "`timeout`": ({"spec": {"predictor": {"timeout": 30}}}, "spec.predictor.timeout"),
    "`autoScaling`": (
        {"spec": {"predictor": {"autoScaling": {"metrics": []}}}},
        "spec.predictor.autoScaling",
    ),
    "`scaleMetricType`": (
        {"spec": {"predictor": {"scaleMetricType": "Utilization"}}},
        "spec.predictor.scaleMetricType",
    ),
    "`workerSpec`": ({"spec": {"predictor": {"workerSpec": {}}}}, "spec.predictor.workerSpec"),
    "`model.storage`": (
        {"spec": {"predictor": {"model": {"storage": {"key": "k"}}}}},
        "spec.predictor.model.storage",
    ),
    "`storageUri: oci://...`": (
        {"spec": {"predictor": {"model": {"storageUri": "oci://registry.example/m:1"}}}},
        "spec.predictor.model.storageUri",
    ),
    "`storageUri` with a scheme KServe lacks": (
        {"spec": {"predictor": {"model": {"storageUri": "ftp://host/m"}}}},
        "spec.predictor.model.storageUri",
    ),
    "`scaleMetric: concurrency` / `rps`": (
        {"spec": {"predictor": {"scaleMetric": "rps"}}},
        "spec.predictor.scaleMetric",
    ),
}
_ANNOTATED = {
    "`serving.kserve.io/deploymentMode: Serverless`": (
        "serving.kserve.io/deploymentMode", "Serverless"),
    "`serving.kserve.io/deploymentMode: ModelMesh`": (
        "serving.kserve.io/deploymentMode", "ModelMesh"),
    "`serving.kserve.io/deploymentMode` with another value": (
        "serving.kserve.io/deploymentMode", "Raw"),
    "`serving.kserve.io/autoscalerClass: keda`": ("serving.kserve.io/autoscalerClass", "keda"),
    "`serving.kserve.io/autoscalerClass: kpa`": ("serving.kserve.io/autoscalerClass", "kpa"),
    "`serving.kserve.io/enable-tag-routing`": ("serving.kserve.io/enable-tag-routing", "true"),
    "`serving.kserve.io/metrics`": ("serving.kserve.io/metrics", "cpu"),
    "`serving.kserve.io/targetUtilizationPercentage`": (
        "serving.kserve.io/targetUtilizationPercentage", "60"),
    "`serving.kserve.io/storage-initializer-uid`": (
        "serving.kserve.io/storage-initializer-uid", "1337"),
    "`serving.kserve.io/gpu-resource-types`": (
        "serving.kserve.io/gpu-resource-types", '["example.com/gpu"]'),
    "`autoscaling.knative.dev/...`": ("autoscaling.knative.dev/target", "10"),
    "`serving.knative.dev/...`": ("serving.knative.dev/rollout-duration", "60s"),
    "`serving.knative.openshift.io/...`": (
        "serving.knative.openshift.io/enablePassthrough", "true"),
}  # fmt: skip
for _row, (_key, _value) in _ANNOTATED.items():
    REFUSED_SAMPLES[_row] = (
        {"metadata": {"annotations": {_key: _value}}},
        f"metadata.annotations.{_key}",
    )


def readme_rows() -> dict[str, str]:
    """The table's rows: first cell -> InferGraph's cell."""
    text = README.read_text()
    table = text.split("### InferenceService fields and annotations: KServe vs InferGraph")[1]
    rows = [line for line in table.split("\n\n")[2].splitlines() if line.startswith("| `")]
    cells = [row.removeprefix("| ").removesuffix(" |").split(" | ") for row in rows]
    return {cell[0]: cell[-1] for cell in cells}


def refused_rows() -> list[str]:
    return [row for row, ours in readme_rows().items() if ours.startswith("refused")]


def deep_merge(base: dict[str, Any], change: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in change.items():
        out[key] = deep_merge(out.get(key, {}), value) if isinstance(value, dict) else value
    return out


def test_readme_lists_exactly_the_refused_fields() -> None:
    assert sorted(refused_rows()) == sorted(REFUSED_SAMPLES)


def refused_sample(row: str) -> dict[str, Any]:
    # A model `up` could run (a local path), so only the row's own change is refused.
    base = isvc(**model("sklearn", storageUri="models/m")).model_dump(
        by_alias=True, exclude_none=True
    )
    return deep_merge(base, REFUSED_SAMPLES[row][0])


def validated(obj: dict[str, Any], tmp_path: Path, *target: str) -> tuple[int, str]:
    from graph_controller.cli.main import main as infergraph

    path = tmp_path / "m.json"
    path.write_text(orjson.dumps(obj).decode())
    with (
        contextlib.redirect_stdout(io.StringIO()),
        contextlib.redirect_stderr(io.StringIO()) as err,
    ):
        status = infergraph(["validate", str(path), *(("--target", *target) if target else ())])
    return status, err.getvalue()


@pytest.mark.parametrize("row", sorted(REFUSED_SAMPLES))
def test_every_refused_readme_row_is_refused(row: str, tmp_path: Path) -> None:
    """Through every consumer of `unsupported`: render, the controller's plan_service,
    `validate` (default and --target cluster), and `validate --target local` as the row says."""
    from graph_controller.controller import decide

    obj = refused_sample(row)
    path = REFUSED_SAMPLES[row][1]
    service = InferenceService.model_validate(obj)
    with pytest.raises(RenderError, match=re.escape(f"{path}: ")):
        render({}, {"m": service}, runtimes(), RenderOptions())
    desired = decide.plan_service(obj, runtimes(), None, RenderOptions(), "2026-01-01T00:00:00Z")
    assert desired.manifests == []
    ready = next(c for c in desired.status["conditions"] if c["type"] == "Ready")
    assert (ready["status"], ready["reason"]) == ("False", "Unsupported")
    assert f"{path}: " in ready["message"]
    for target in ((), ("cluster",), ("strict",)):
        status, err = validated(obj, tmp_path, *target)
        assert status == 1
        assert f"  {path}: " in err
    status, err = validated(obj, tmp_path, "local")
    if "on a cluster" in readme_rows()[row]:
        assert (status, err) == (0, "")
    else:
        assert status == 1
        assert f"  {path}: " in err


def test_validate_says_which_target_it_checks(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    obj = refused_sample("`serving.kserve.io/deploymentMode: Serverless`")
    status, err = validated(obj, tmp_path)
    assert status == 1
    assert "refused for target cluster: the controller and `render`" in err
    assert "'Serverless': Serverless mode needs Knative" in err
    assert validated(obj, tmp_path, "serverless") == (0, "")
    from graph_controller.cli.main import main as infergraph

    path = tmp_path / "m.json"
    assert infergraph(["validate", str(path), "--target", "local"]) == 0
    assert capsys.readouterr().out == (f"{path}: ok (1 resource; checked for target local)\n")


def test_validate_and_up_refuse_what_is_not_implemented(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from graph_controller.cli.main import main as infergraph
    from graph_controller.planning.local_plan import LocalPlanError, plan_local

    base = isvc(**model("sklearn")).model_dump(by_alias=True, exclude_none=True)
    service = deep_merge(base, {"spec": {"predictor": {"batcher": {"maxBatchSize": 8}}}})
    path = tmp_path / "m.json"
    path.write_text(orjson.dumps(service).decode())
    assert infergraph(["validate", str(path)]) == 1
    assert (
        "spec.predictor.batcher: request batching needs KServe's agent" in capsys.readouterr().err
    )
    with pytest.raises(LocalPlanError, match=r"spec.predictor.batcher: request batching"):
        plan_local({"m": InferenceService.model_validate(service)}, runtimes(), tmp_path, "py")


@pytest.mark.parametrize("mode", ["Serverless", "ModelMesh", "Knative"])
def test_a_graph_asking_for_a_knative_router_is_refused_on_a_cluster_everywhere(
    mode: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """validate (strict, cluster), render and the controller refuse it alike; `up` has no mode."""
    from graph_controller.cli.main import main as infergraph

    path = tmp_path / "graph.yaml"
    graph = (Path(__file__).parents[2] / "examples/kserve/dog-breed.yaml").read_text()
    annotated = graph.replace(
        "  name: dog-breed-pipeline\n",
        f"  name: dog-breed-pipeline\n  annotations:\n    {DEPLOYMENT_MODE}: {mode}\n",
    )
    assert annotated != graph
    path.write_text(annotated)
    why = f"metadata.annotations.{DEPLOYMENT_MODE}: '{mode}': a graph's router on Knative"
    for target in ("strict", "cluster"):
        assert infergraph(["validate", str(path), "--target", target]) == 1
        assert why in capsys.readouterr().err
    assert infergraph(["validate", str(path), "--target", "local"]) == 0
    assert "checked for target local" in capsys.readouterr().out
    assert infergraph(["render", str(path)]) == 1
    assert why in capsys.readouterr().err
    # `render --mode serverless` makes the router a Knative Service: Serverless is what it renders.
    services = tmp_path / "services.yaml"
    services.write_text(
        yaml.safe_dump_all(
            isvc(name, **model("sklearn")).model_dump(by_alias=True, exclude_none=True)
            for name in ("cat-dog-classifier", "dog-breed-classifier")
        )
    )
    status = infergraph(["render", "--mode", "serverless", str(path), str(services)])
    rendered = capsys.readouterr()
    if mode == "Serverless":
        assert status == 0, rendered.err
        assert "apiVersion: serving.knative.dev/v1" in rendered.out
    else:
        assert status == 1
        assert f"'{mode}' is not a mode InferGraph renders a graph's router in" in rendered.err
    obj = yaml.safe_load(annotated)
    desired = decide.plan_graph(obj, {}, None, RenderOptions(), "2026-01-01T00:00:00Z")
    ready = next(c for c in desired.status["conditions"] if c["type"] == "Ready")
    assert (ready["status"], ready["reason"]) == ("False", "Unsupported")
    assert why in ready["message"]
    assert desired.manifests == []


def test_serverless_rendering_refuses_a_graph_asking_for_a_raw_router(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from graph_controller.cli.main import main as infergraph

    path = tmp_path / "graph.yaml"
    graph = (Path(__file__).parents[2] / "examples/kserve/dog-breed.yaml").read_text()
    path.write_text(
        graph.replace(
            "  name: dog-breed-pipeline\n",
            f"  name: dog-breed-pipeline\n  annotations:\n    {DEPLOYMENT_MODE}: RawDeployment\n",
        )
    )
    assert infergraph(["validate", str(path)]) == 0
    capsys.readouterr()
    for command in (["render", "--mode", "serverless"], ["validate", "--target", "serverless"]):
        assert infergraph([*command, str(path)]) == 1
        assert "'RawDeployment' asks for a RawDeployment router" in capsys.readouterr().err


def test_validate_checks_for_the_cluster_by_default(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Remote storage and custom containers deploy on a cluster; only `up` cannot run them."""
    from graph_controller.cli.main import main as infergraph

    remote = isvc(**model("sklearn")).model_dump(by_alias=True, exclude_none=True)
    remote["spec"]["predictor"]["model"]["storageUri"] = "gs://bucket/models/iris"
    custom = deep_merge(
        {"apiVersion": "serving.kserve.io/v1beta1", "kind": "InferenceService"},
        {
            "metadata": {"name": "custom"},
            "spec": {"predictor": {"containers": [{"name": "c", "image": "example.invalid/m:1"}]}},
        },
    )
    path = tmp_path / "services.yaml"
    path.write_text(yaml.safe_dump_all([remote, custom]))
    assert infergraph(["validate", str(path)]) == 0
    assert "checked for target cluster" in capsys.readouterr().out
    for target in ("local", "strict"):
        assert infergraph(["validate", "--target", target, str(path)]) == 1
        err = capsys.readouterr().err
        assert (
            "spec.predictor.model.storageUri: 'gs://bucket/models/iris' is not on this machine"
            in err
        )
        assert "spec.predictor.containers" in err


@pytest.mark.parametrize(
    ("value", "refused_for"),
    [
        ("kpa", {"cluster", "local", "strict"}),
        ("keda", {"cluster", "serverless", "local", "strict"}),
        ("none", {"serverless"}),
        ("external", {"serverless"}),
        ("hpa", set()),
    ],
)
def test_autoscaler_classes_are_refused_where_they_cannot_work(
    value: str, refused_for: set[str]
) -> None:
    from graph_controller.planning.components import AUTOSCALER_CLASS, Target, unsupported

    obj = isvc(**model("sklearn", storageUri="file:///models/m")).model_dump(
        by_alias=True, exclude_none=True
    )
    assert all(unsupported(InferenceService.model_validate(obj), t) == [] for t in Target)
    obj["metadata"]["annotations"] = {AUTOSCALER_CLASS: value}
    service = InferenceService.model_validate(obj)
    refused = {t.value for t in Target if unsupported(service, t)}
    assert refused == refused_for
