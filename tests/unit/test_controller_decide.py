"""graph_controller.controller.decide: desired objects and status from observed objects (pure)."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from graph_controller.controller import decide
from graph_controller.render import RenderOptions

NOW = "2026-01-01T00:00:00Z"
LATER = "2026-01-01T00:01:00Z"
OPTIONS = RenderOptions(namespace="ns")


def isvc(name: str = "m", ready: bool | None = None, **predictor: Any) -> dict[str, Any]:
    obj: dict[str, Any] = {
        "apiVersion": "serving.kserve.io/v1beta1",
        "kind": "InferenceService",
        "metadata": {"name": name, "namespace": "ns", "uid": f"uid-{name}", "generation": 2},
        "spec": {
            "predictor": {"containers": [{"name": "c", "image": "example.invalid/m"}], **predictor}
        },
    }
    if ready is not None:
        url = f"http://{name}-predictor.ns.svc.cluster.local"
        status = "True" if ready else "False"
        obj["status"] = {"conditions": [{"type": "Ready", "status": status}], "url": url}
    return obj


def graph(*services: str) -> dict[str, Any]:
    steps = [{"name": s, "serviceName": s} for s in services]
    return {
        "apiVersion": "serving.kserve.io/v1alpha1",
        "kind": "InferenceGraph",
        "metadata": {"name": "g", "namespace": "ns", "uid": "uid-g", "generation": 1},
        "spec": {"nodes": {"root": {"routerType": "Sequence", "steps": steps}}},
    }


def deployment(available: str | None, generation: int = 1, observed: int = 1) -> dict[str, Any]:
    status: dict[str, Any] = {"observedGeneration": observed}
    if available is not None:
        status["conditions"] = [{"type": "Available", "status": available, "reason": "R"}]
    return {"metadata": {"generation": generation}, "status": status}


def conditions(status: dict[str, Any]) -> dict[str, tuple[str, str]]:
    return {c["type"]: (c["status"], c["reason"]) for c in status["conditions"]}


@pytest.mark.parametrize(
    ("observed", "ready", "reason"),
    [
        pytest.param(None, False, "DeploymentNotFound", id="absent"),
        pytest.param(deployment("True"), True, "R", id="available"),
        pytest.param(deployment("False"), False, "R", id="unavailable"),
        pytest.param(deployment(None), False, "DeploymentUnavailable", id="no-condition"),
        pytest.param(deployment("True", 2, 1), False, "RolloutInProgress", id="stale"),
    ],
)
def test_deployment_readiness(observed: dict[str, Any] | None, ready: bool, reason: str) -> None:
    found = decide.deployment_readiness(observed, "x")
    assert (found.ready, found.reason) == (ready, reason)


def test_service_ready_follows_its_deployment() -> None:
    waiting = decide.plan_service(isvc(), [], deployment("False"), OPTIONS, NOW)
    assert conditions(waiting.status) == {
        "PredictorReady": ("False", "R"),
        "Ready": ("False", "R"),
    }
    ready = decide.plan_service(isvc(), [], deployment("True"), OPTIONS, NOW)
    assert conditions(ready.status)["Ready"] == ("True", "Ready")
    assert ready.status["url"] == "http://m-predictor.ns.svc.cluster.local"
    assert ready.status["observedGeneration"] == 2
    kinds = [m["kind"] for m in ready.manifests]
    assert kinds == ["Deployment", "Service"]
    assert ready.prune == frozenset({"HorizontalPodAutoscaler"})
    owner = ready.manifests[0]["metadata"]["ownerReferences"][0]
    assert owner["uid"] == "uid-m"
    assert owner["controller"] is True


def test_service_without_runtime_says_why() -> None:
    obj = isvc()
    obj["spec"]["predictor"] = {"model": {"modelFormat": {"name": "onnx"}}}
    desired = decide.plan_service(obj, [], None, OPTIONS, NOW)
    assert desired.manifests == []
    ready = next(c for c in desired.status["conditions"] if c["type"] == "Ready")
    assert ready["reason"] == "NoSupportingRuntime"
    assert "model format 'onnx'" in ready["message"]


def test_invalid_service_spec_is_reported_not_raised() -> None:
    obj = isvc()
    obj["spec"]["predictor"]["minReplicas"] = "many"
    desired = decide.plan_service(obj, [], None, OPTIONS, NOW)
    assert conditions(desired.status)["Ready"] == ("False", "InvalidSpec")


@pytest.mark.parametrize(
    ("services", "reason", "rendered"),
    [
        pytest.param({}, "InferenceServiceNotFound", False, id="missing"),
        pytest.param({"m": isvc(ready=False)}, "InferenceServiceNotReady", False, id="unready"),
        pytest.param({"m": isvc(ready=True)}, "AllInferenceServicesReady", True, id="ready"),
    ],
)
def test_graph_predictor_ready(
    services: dict[str, dict[str, Any]], reason: str, rendered: bool
) -> None:
    desired = decide.plan_graph(graph("m"), services, None, OPTIONS, NOW)
    predictor = next(c for c in desired.status["conditions"] if c["type"] == "PredictorReady")
    assert predictor["reason"] == reason
    assert bool(desired.manifests) is rendered
    if not rendered:
        assert "InferenceService 'm'" in predictor["message"]
        assert "url" not in desired.status


def test_graph_ready_needs_its_router() -> None:
    services = {"m": isvc(ready=True)}
    starting = decide.plan_graph(graph("m"), services, None, OPTIONS, NOW)
    assert conditions(starting.status)["Ready"] == ("False", "DeploymentNotFound")
    assert starting.status["url"] == "http://g.ns.svc.cluster.local"
    ready = decide.plan_graph(graph("m"), services, deployment("True"), OPTIONS, NOW)
    assert conditions(ready.status) == {
        "PredictorReady": ("True", "AllInferenceServicesReady"),
        "RouterReady": ("True", "R"),
        "Ready": ("True", "Ready"),
    }


def test_transition_time_kept_while_status_unchanged() -> None:
    first = decide.with_transition_times([{"type": "Ready", "status": "False"}], [], NOW)
    same = decide.with_transition_times([{"type": "Ready", "status": "False"}], first, LATER)
    flipped = decide.with_transition_times([{"type": "Ready", "status": "True"}], first, LATER)
    assert same[0]["lastTransitionTime"] == NOW
    assert flipped[0]["lastTransitionTime"] == LATER
    assert not decide.status_differs({"conditions": first}, {"conditions": same})
    assert decide.status_differs({"conditions": first}, {"conditions": flipped})


@given(st.lists(st.sampled_from(["a", "b", "c"]), max_size=6), st.booleans())
def test_referenced_services_are_the_named_steps_without_url(names: list[str], url: bool) -> None:
    obj = graph(*names)
    if url and names:
        obj["spec"]["nodes"]["root"]["steps"][0]["serviceUrl"] = "http://x"
        expected = set(names[1:])
    else:
        expected = set(names)
    assert decide.referenced_services(obj) == expected


def test_service_url_only_when_ready() -> None:
    assert decide.service_url(isvc(ready=False)) is None
    assert decide.service_url(isvc(ready=True)) == "http://m-predictor.ns.svc.cluster.local"
