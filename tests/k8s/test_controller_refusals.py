"""What the controller refuses, on a real control plane: a graph the validator rejects and an
InferenceService with a field InferGraph does not implement get `Ready=False` with the precise
reason, KServe's Warning Events and (no runtime) KServe's modelStatus, and no workload at all.

The controller writes an object's status after applying its workloads in the same reconcile,
so once the refusal is in the status, any workload it would have made exists: the absence
checks need no waiting."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from graph_controller.planning.components import (
    REFUSED_COMPONENT_FIELDS,
    REFUSED_PREDICTOR_FIELDS,
    REFUSED_SPEC_FIELDS,
)
from tests.k8s.controller import (
    Cluster,
    condition,
    graph,
    is_true,
    isvc,
    running,
    wait_for,
)

WORKLOADS = ("deployments", "services", "horizontalpodautoscalers")
SERVERLESS_MODE_REJECTED = (
    "It is not possible to use Serverless deployment mode when Knative Services are not available"
)


def _events_about(cluster: Cluster, name: str) -> list[dict[str, Any]]:
    listed = cluster.raw(f"/api/v1/namespaces/{cluster.namespace}/events") or {}
    return [e for e in listed.get("items", []) if e["involvedObject"]["name"] == name]


def _event(cluster: Cluster, name: str, reason: str) -> dict[str, Any] | None:
    return next((e for e in _events_about(cluster, name) if e["reason"] == reason), None)


def _refused(cluster: Cluster, kind: str, name: str, reason: str) -> dict[str, Any] | None:
    """The object once its Ready condition is False for `reason`."""
    found = cluster.get(kind, name)
    ready = condition(found, "Ready")
    if ready is None or (ready["status"], ready.get("reason")) != ("False", reason):
        return None
    return found


def test_a_graph_the_validator_rejects_gets_invalid_spec_every_problem_and_no_router(
    cluster: Cluster, tmp_path: Path
) -> None:
    """Three problems `infergraph validate` finds and the pydantic shape does not: Splitter
    weights summing to 110, a step name used twice, nodeName references forming a cycle. The
    graph calls a Ready InferenceService, so a controller that skipped the validation would
    deploy its router (as the valid graph beside it shows)."""
    broken = graph("broken", [])
    broken["spec"]["nodes"] = {
        "root": {
            "routerType": "Splitter",
            "steps": [
                {"name": "a", "serviceName": "m", "weight": 60},
                {"name": "a", "nodeName": "inner", "weight": 50},
            ],
        },
        "inner": {"routerType": "Sequence", "steps": [{"name": "back", "nodeName": "root"}]},
    }
    problems = [
        "spec.nodes.root.steps: Splitter step weights sum to 110, expected 100",
        "spec.nodes.root.steps[1].name: step name 'a' is already used by steps[0] of node 'root'",
        "spec.nodes.inner.steps[0].nodeName: nodeName references form a cycle: "
        "root -> inner -> root",
    ]
    with running(cluster.plane, tmp_path / "c.log", f"--namespace={cluster.namespace}") as c:
        c.wait_ready()
        cluster.create(isvc("m"))
        cluster.create(broken)
        cluster.create(graph("fine", ["m"]))
        knative = graph("knative-graph", ["m"])
        knative["metadata"]["annotations"] = {"serving.kserve.io/deploymentMode": "Serverless"}
        cluster.create(knative)
        refused = wait_for(
            "graph broken refused",
            lambda: _refused(cluster, "InferenceGraph", "broken", "InvalidSpec"),
            controller=c,
            describe=lambda: str(cluster.get("InferenceGraph", "broken")),
        )
        for kind in ("PredictorReady", "RouterReady", "Ready"):
            found = condition(refused, kind)
            assert found is not None, kind
            assert (found["status"], found["reason"]) == ("False", "InvalidSpec"), kind
            for problem in problems:
                assert problem in found["message"], (kind, problem)
        assert "url" not in refused["status"]
        for resource in WORKLOADS:
            assert cluster.owned(resource, "broken") is None, resource
        warning = wait_for(
            "an InternalError Event about graph broken",
            lambda: _event(cluster, "broken", "InternalError"),
            controller=c,
        )
        assert warning["type"] == "Warning"
        assert all(problem in warning["message"] for problem in problems)
        # KServe's InferenceGraph controller without Knative: its Event, word for word.
        serverless = wait_for(
            "graph knative-graph refused",
            lambda: _refused(cluster, "InferenceGraph", "knative-graph", "Unsupported"),
            controller=c,
            describe=lambda: str(cluster.get("InferenceGraph", "knative-graph")),
        )
        assert "'Serverless': a graph's router on Knative is not implemented" in (
            condition(serverless, "Ready") or {}
        ).get("message", "")
        rejected = wait_for(
            "a ServerlessModeRejected Event about knative-graph",
            lambda: _event(cluster, "knative-graph", "ServerlessModeRejected"),
            controller=c,
        )
        assert rejected["message"] == SERVERLESS_MODE_REJECTED
        # The valid graph calling the same InferenceService gets its router.
        wait_for(
            "graph fine Ready",
            lambda: is_true(cluster.get("InferenceGraph", "fine"), "Ready"),
            controller=c,
        )
    assert cluster.owned("deployments", "fine") is not None
    for name in ("broken", "knative-graph"):
        for resource in WORKLOADS:
            assert cluster.owned(resource, name) is None, (name, resource)


def _with(name: str, **predictor: Any) -> dict[str, Any]:
    obj = isvc(name)
    obj["spec"]["predictor"].update(predictor)
    return obj


def _refusals() -> dict[str, tuple[dict[str, Any], str]]:
    """InferenceService -> (object, the condition message it must carry)."""
    explained = isvc("explained")
    explained["spec"]["explainer"] = {
        "containers": [{"name": "kserve-container", "image": "example.invalid/explainer:1"}]
    }
    transformer_logged = isvc("transformer-logged")
    transformer_logged["spec"]["transformer"] = {
        "containers": [{"name": "transformer", "image": "example.invalid/transformer:1"}],
        "logger": {"mode": "all"},
    }
    keda = isvc("keda")
    keda["metadata"]["annotations"] = {"serving.kserve.io/autoscalerClass": "keda"}
    return {
        "logged": (
            _with("logged", logger={"mode": "all", "url": "http://127.0.0.1:1/log"}),
            f"spec.predictor.logger: {REFUSED_COMPONENT_FIELDS['logger']}",
        ),
        "batched": (
            _with("batched", batcher={"maxBatchSize": 32, "maxLatency": 500}),
            f"spec.predictor.batcher: {REFUSED_COMPONENT_FIELDS['batcher']}",
        ),
        "explained": (explained, f"spec.explainer: {REFUSED_SPEC_FIELDS['explainer']}"),
        "transformer-logged": (
            transformer_logged,
            f"spec.transformer.logger: {REFUSED_COMPONENT_FIELDS['logger']}",
        ),
        "canary": (
            _with("canary", canaryTrafficPercent=10),
            "spec.predictor.canaryTrafficPercent: "
            f"{REFUSED_COMPONENT_FIELDS['canaryTrafficPercent']}",
        ),
        "multi-node": (
            _with("multi-node", workerSpec={"tensorParallelSize": 2}),
            f"spec.predictor.workerSpec: {REFUSED_PREDICTOR_FIELDS['workerSpec']}",
        ),
        "keda": (keda, "serving.kserve.io/autoscalerClass: 'keda': KEDA autoscaling"),
    }


def test_refused_inference_services_say_why_get_kserves_events_and_no_workload(
    cluster: Cluster, tmp_path: Path
) -> None:
    refusals = _refusals()
    knative = isvc("knative")
    knative["metadata"]["annotations"] = {"serving.kserve.io/deploymentMode": "Serverless"}
    no_runtime = isvc("no-runtime")
    no_runtime["spec"]["predictor"] = {
        "model": {"modelFormat": {"name": "example-format"}, "storageUri": "gs://b/m"}
    }
    with running(cluster.plane, tmp_path / "c.log", f"--namespace={cluster.namespace}") as c:
        c.wait_ready()
        for obj in [*(o for o, _ in refusals.values()), knative, no_runtime]:
            cluster.create(obj)
        for name, (_, message) in refusals.items():
            refused = wait_for(
                f"InferenceService {name} refused",
                lambda name=name: _refused(cluster, "InferenceService", name, "Unsupported"),
                controller=c,
                describe=lambda name=name: str(cluster.get("InferenceService", name)),
            )
            ready = condition(refused, "Ready")
            assert ready is not None
            assert message in ready["message"], name
            assert condition(refused, "PredictorReady")["reason"] == "Unsupported"  # type: ignore[index]
            assert "url" not in refused["status"], name
        # KServe's Event for a Serverless InferenceService without Knative, word for word.
        rejected = wait_for(
            "a ServerlessModeRejected Event",
            lambda: _event(cluster, "knative", "ServerlessModeRejected"),
            controller=c,
        )
        assert rejected["type"] == "Warning"
        assert rejected["message"] == SERVERLESS_MODE_REJECTED
        assert _event(cluster, "knative", "InternalError") is None
        # No runtime serves this format: KServe's modelStatus and InternalError Event.
        unserved = wait_for(
            "no-runtime refused",
            lambda: _refused(cluster, "InferenceService", "no-runtime", "NoSupportingRuntime"),
            controller=c,
        )
        assert unserved["status"]["modelStatus"] == {
            "transitionStatus": "InvalidSpec",
            "states": {"activeModelState": "", "targetModelState": "FailedToLoad"},
            "lastFailureInfo": {
                "reason": "NoSupportingRuntime",
                "message": "No runtime found to support specified framework/version",
            },
        }
        internal = wait_for(
            "an InternalError Event about no-runtime",
            lambda: _event(cluster, "no-runtime", "InternalError"),
            controller=c,
        )
        assert internal["type"] == "Warning"
        assert "model format 'example-format'" in internal["message"]
        logged = wait_for(
            "an InternalError Event about logged",
            lambda: _event(cluster, "logged", "InternalError"),
            controller=c,
        )
        assert refusals["logged"][1] in logged["message"]
    for resource in WORKLOADS:
        assert cluster.names(resource) == [], resource
