"""graph_controller.controller.decide: desired objects and status from observed objects (pure)."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from graph_controller.controller import decide, events
from graph_controller.controller.render import RenderOptions

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
    steps = [{"name": f"{s}-{i}", "serviceName": s} for i, s in enumerate(services)]
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
    return {c["type"]: (c["status"], c.get("reason", "")) for c in status["conditions"]}


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
        "IngressReady": ("True", ""),
        "PredictorReady": ("False", "R"),
        "Ready": ("False", "R"),
    }
    ready = decide.plan_service(isvc(), [], deployment("True"), OPTIONS, NOW)
    assert conditions(ready.status)["Ready"] == ("True", "")
    assert ready.status["url"] == "http://m-predictor.ns.svc.cluster.local"
    assert ready.status["observedGeneration"] == 2
    kinds = [m["kind"] for m in ready.manifests]
    assert kinds == ["Deployment", "Service", "HorizontalPodAutoscaler"]  # KServe: always an HPA
    assert ready.prune == frozenset(
        (kind, "m-transformer") for kind in ("Deployment", "Service", "HorizontalPodAutoscaler")
    )
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
    obj["spec"]["predictor"]["maxReplica"] = 3
    desired = decide.plan_service(obj, [], None, OPTIONS, NOW)
    ready = next(c for c in desired.status["conditions"] if c["type"] == "Ready")
    assert (ready["status"], ready["reason"]) == ("False", "InvalidSpec")
    assert "spec.predictor.minReplicas: Input should be a valid integer" in ready["message"]
    assert "spec.predictor.maxReplica: unknown field 'maxReplica'" in ready["message"]


def splitter_graph(*weights: int) -> dict[str, Any]:
    obj = graph()
    steps = [{"name": f"s{w}-{i}", "serviceName": "m", "weight": w} for i, w in enumerate(weights)]
    obj["spec"]["nodes"] = {"root": {"routerType": "Splitter", "steps": steps}}
    return obj


def with_cycle() -> dict[str, Any]:
    obj = graph("m")
    obj["spec"]["nodes"]["inner"] = {"routerType": "Sequence", "steps": [{"nodeName": "root"}]}
    obj["spec"]["nodes"]["root"]["steps"].append({"nodeName": "inner"})
    return obj


def without_root() -> dict[str, Any]:
    obj = graph("m")
    obj["spec"]["nodes"] = {"main": obj["spec"]["nodes"]["root"]}
    return obj


def duplicate_steps() -> dict[str, Any]:
    obj = graph("m", "m")
    obj["spec"]["nodes"]["root"]["steps"][1]["name"] = "m-0"
    return obj


@pytest.mark.parametrize(
    ("obj", "words"),
    [
        pytest.param(splitter_graph(60, 50), "weights sum to 110, expected 100", id="weights-110"),
        pytest.param(without_root(), "no node named 'root'", id="no-root"),
        pytest.param(with_cycle(), "cycle", id="nodeName-cycle"),
        pytest.param(duplicate_steps(), "already used by steps[0]", id="duplicate-step-name"),
    ],
)
def test_a_graph_the_validator_rejects_gets_invalid_spec_and_no_router(
    obj: dict[str, Any], words: str
) -> None:
    # The same function as `infergraph validate`: every rule, not just the pydantic shape.
    desired = decide.plan_graph(obj, {"m": isvc(ready=True)}, None, OPTIONS, NOW)
    assert desired.manifests == []
    for condition in desired.status["conditions"]:
        assert (condition["status"], condition["reason"]) == ("False", "InvalidSpec")
        assert words in condition["message"]


def test_invalid_spec_lists_every_problem() -> None:
    obj = splitter_graph(60, 50)
    obj["metadata"]["name"] = "Bad_Name"
    desired = decide.plan_graph(obj, {"m": isvc(ready=True)}, None, OPTIONS, NOW)
    message = next(c["message"] for c in desired.status["conditions"] if c["type"] == "Ready")
    assert "metadata.name: 'Bad_Name' is not a valid InferenceGraph name" in message
    assert "spec.nodes.root.steps: Splitter step weights sum to 110" in message


@pytest.mark.parametrize(
    ("services", "reason", "rendered"),
    [
        pytest.param({}, "InferenceServiceNotFound", False, id="missing"),
        pytest.param({"m": isvc(ready=False)}, "InferenceServiceNotReady", False, id="unready"),
        pytest.param({"m": isvc(ready=True)}, "", True, id="ready"),
    ],
)
def test_graph_predictor_ready(
    services: dict[str, dict[str, Any]], reason: str, rendered: bool
) -> None:
    desired = decide.plan_graph(graph("m"), services, None, OPTIONS, NOW)
    predictor = next(c for c in desired.status["conditions"] if c["type"] == "PredictorReady")
    assert predictor.get("reason", "") == reason
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
        "PredictorReady": ("True", ""),
        "RouterReady": ("True", ""),
        "Ready": ("True", ""),
    }


def test_transition_time_kept_while_status_unchanged() -> None:
    first = decide.with_transition_times([{"type": "Ready", "status": "False"}], [], NOW)
    same = decide.with_transition_times([{"type": "Ready", "status": "False"}], first, LATER)
    flipped = decide.with_transition_times([{"type": "Ready", "status": "True"}], first, LATER)
    assert same[0]["lastTransitionTime"] == NOW
    assert flipped[0]["lastTransitionTime"] == LATER
    assert not decide.status_differs({"conditions": first}, {"conditions": same})
    assert decide.status_differs({"conditions": first}, {"conditions": flipped})


@given(st.lists(st.sampled_from(["a", "b", "c"]), min_size=1, max_size=6), st.booleans())
def test_referenced_services_are_the_named_steps_without_url(names: list[str], url: bool) -> None:
    obj = graph(*names)
    if url:
        obj["spec"]["nodes"]["root"]["steps"][0]["serviceUrl"] = "http://x"
        expected = set(names[1:])
    else:
        expected = set(names)
    assert decide.referenced_services(obj) == expected


def test_an_invalid_graph_waits_for_no_service() -> None:
    # It is never deployed, so no InferenceService's readiness may re-queue it.
    obj = graph("a", "b")
    obj["spec"]["nodes"]["root"]["steps"][1]["name"] = "a-0"  # duplicate step name
    assert decide.referenced_services(obj) == frozenset()


def test_service_url_only_when_ready() -> None:
    assert decide.service_url(isvc(ready=False)) is None
    assert decide.service_url(isvc(ready=True)) == "http://m-predictor.ns.svc.cluster.local"


def test_stop_annotation_removes_everything_and_says_stopped() -> None:
    stopped = isvc()
    stopped["metadata"]["annotations"] = {"serving.kserve.io/stop": "True"}
    desired = decide.plan_service(stopped, [], deployment("True"), OPTIONS, NOW)
    assert desired.manifests == []
    assert conditions(desired.status) == {
        "PredictorReady": ("False", "Stopped"),
        "Stopped": ("True", ""),
        "Ready": ("False", "Stopped"),
    }
    assert ("Deployment", "m-predictor") in desired.prune
    assert ("Service", "m-transformer") in desired.prune


@pytest.mark.parametrize(
    ("annotations", "predictor", "words"),
    [
        pytest.param(
            {"serving.kserve.io/deploymentMode": "Serverless"},
            {},
            "Knative, which InferGraph does not support",
            id="serverless",
        ),
        pytest.param({}, {"logger": {"mode": "all"}}, "spec.predictor.logger", id="logger"),
        pytest.param({}, {"batcher": {}}, "spec.predictor.batcher", id="batcher"),
        pytest.param({"serving.kserve.io/autoscalerClass": "keda"}, {}, "KEDA", id="keda"),
    ],
)
def test_unsupported_fields_and_annotations_are_refused(
    annotations: dict[str, str], predictor: dict[str, Any], words: str
) -> None:
    obj = isvc(**predictor)
    obj["metadata"]["annotations"] = annotations
    desired = decide.plan_service(obj, [], None, OPTIONS, NOW)
    assert desired.manifests == []
    ready = next(c for c in desired.status["conditions"] if c["type"] == "Ready")
    assert (ready["status"], ready["reason"]) == ("False", "Unsupported")
    assert words in ready["message"]


def test_transformer_readiness_and_address() -> None:
    obj = isvc()
    obj["spec"]["transformer"] = {"containers": [{"image": "example.invalid/t:1"}]}
    waiting = decide.plan_service(obj, [], deployment("True"), OPTIONS, NOW, None)
    assert conditions(waiting.status)["TransformerReady"] == ("False", "DeploymentNotFound")
    assert conditions(waiting.status)["Ready"] == ("False", "DeploymentNotFound")
    ready = decide.plan_service(obj, [], deployment("True"), OPTIONS, NOW, deployment("True"))
    assert conditions(ready.status)["Ready"] == ("True", "")
    assert ready.status["address"] == {"url": "http://m-transformer.ns.svc.cluster.local"}
    assert ("Deployment", "m-transformer") not in ready.prune


def pod(name: str, init: dict[str, Any] | None = None, main: dict[str, Any] | None = None) -> Any:
    """A predictor Pod with the container states KServe's PropagateModelStatus reads."""
    status: dict[str, Any] = {}
    if init is not None:
        status["initContainerStatuses"] = [{"name": "storage-initializer", **init}]
    if main is not None:
        status["containerStatuses"] = [{"name": "kserve-container", **main}]
    return {"metadata": {"name": name}, "status": status}


def test_service_status_as_kserve_writes_it() -> None:
    """KServe's RawDeployment status with Ingress creation off (the oracle's measurement): True
    conditions carry no reason, IngressReady is True, each Available component has its url,
    deploymentMode and modelStatus are written, and Stopped appears only when stopped."""
    obj = isvc()
    obj["spec"]["transformer"] = {"containers": [{"image": "example.invalid/t:1"}]}
    pods = [pod("m-predictor-a"), pod("m-predictor-b")]
    ready = decide.plan_service(obj, [], deployment("True"), OPTIONS, NOW, deployment("True"), pods)
    assert [(c["type"], c["status"], set(c) - {"lastTransitionTime"})
            for c in ready.status["conditions"]] == [
        ("IngressReady", "True", {"type", "status"}),
        ("PredictorReady", "True", {"type", "status"}),
        ("TransformerReady", "True", {"type", "status"}),
        ("Ready", "True", {"type", "status"}),
    ]  # fmt: skip
    assert ready.status["components"] == {
        "predictor": {"url": "http://m-predictor.ns.svc.cluster.local"},
        "transformer": {"url": "http://m-transformer.ns.svc.cluster.local"},
    }
    assert ready.status["deploymentMode"] == "RawDeployment"
    assert ready.status["modelStatus"] == {
        "copies": {"failedCopies": 0, "totalCopies": 2},
        "states": {"activeModelState": "Loaded", "targetModelState": "Loaded"},
        "transitionStatus": "UpToDate",
    }
    fresh = decide.plan_service(isvc(), [], None, OPTIONS, NOW)
    assert fresh.status["modelStatus"] == {
        "states": {"activeModelState": "", "targetModelState": "Pending"},
        "transitionStatus": "InProgress",
    }


CRASHED = {"terminated": {"reason": "Error", "exitCode": 1, "message": "no such bucket"}}


@pytest.mark.parametrize(
    ("pods", "expected"),
    [
        pytest.param(
            [pod("p", init={"state": {"running": {}}})],
            {"targetModelState": "Loading", "transitionStatus": "InProgress"},
            id="downloading",
        ),
        pytest.param(
            [pod("p", init={"state": CRASHED})],
            {"targetModelState": "FailedToLoad", "transitionStatus": "BlockedByFailedLoad",
             "lastFailureInfo": {"reason": "ModelLoadFailed", "message": "no such bucket",
                                 "exitCode": 1}},
            id="download-failed",
        ),
        pytest.param(
            [pod("p", main={"state": {"waiting": {"reason": "CrashLoopBackOff"}},
                            "lastState": CRASHED})],
            {"targetModelState": "FailedToLoad", "transitionStatus": "BlockedByFailedLoad",
             "lastFailureInfo": {"reason": "ModelLoadFailed", "message": "no such bucket",
                                 "exitCode": 1}},
            id="server-crash-looping",
        ),
        pytest.param(
            [pod("p", main={"state": {"running": {}}})],
            {"targetModelState": "Pending", "transitionStatus": "InProgress"},
            id="starting",
        ),
    ],
)  # fmt: skip
def test_model_status_reads_the_predictor_pods_as_kserve(
    pods: list[Any], expected: dict[str, Any]
) -> None:
    """KServe's PropagateModelStatus: a running storage-initializer is Loading, a failed one or
    a crash-looping model server FailedToLoad with the container's message and exit code; an
    earlier Loaded's active state and copies stay (KServe updates the status in place)."""
    loaded = {"modelStatus": decide.model_status(True, [pod("p")], {})}
    obj = {**isvc(), "status": loaded}
    desired = decide.plan_service(obj, [], deployment("False"), OPTIONS, NOW, None, pods)
    status = desired.status["modelStatus"]
    got = {"targetModelState": status["states"]["targetModelState"],
           "transitionStatus": status["transitionStatus"]}  # fmt: skip
    if "lastFailureInfo" in status:
        got["lastFailureInfo"] = status["lastFailureInfo"]
    assert got == expected
    assert status["states"]["activeModelState"] == "Loaded"
    assert status["copies"] == {"failedCopies": 0, "totalCopies": 1}


def test_a_name_another_owner_controls_is_a_conflict() -> None:
    """InferenceService `iris`'s transformer and a graph named `iris-transformer` both need
    the Deployment `iris-transformer`: the one that does not control it says so, not takes it."""
    service = isvc("iris")
    service["metadata"]["uid"] = "uid-iris"
    service["spec"]["transformer"] = {"containers": [{"image": "example.invalid/t:1"}]}
    desired = decide.plan_service(service, [], deployment("True"), OPTIONS, NOW)
    router = {"metadata": {"ownerReferences": [
        {"kind": "InferenceGraph", "name": "iris-transformer", "uid": "uid-g", "controller": True}
    ]}}  # fmt: skip
    existing = {("Deployment", "iris-transformer"): router}
    taken = decide.controlled_elsewhere(service, desired.manifests, existing)
    assert taken == [
        "Deployment 'iris-transformer' is controlled by InferenceGraph 'iris-transformer'"
    ]
    mine = {"metadata": {"ownerReferences": [
        {"kind": "InferenceService", "name": "iris", "uid": "uid-iris", "controller": True}
    ]}}  # fmt: skip
    assert decide.controlled_elsewhere(service, desired.manifests, {
        ("Deployment", "iris-transformer"): mine
    }) == []  # fmt: skip
    conflict = decide.name_conflict(service, taken, NOW, decide.SERVICE_CONDITIONS)
    assert conflict.manifests == []
    ready = next(c for c in conflict.status["conditions"] if c["type"] == "Ready")
    assert (ready["status"], ready["reason"]) == ("False", "NameConflict")
    assert "controlled by InferenceGraph 'iris-transformer'; rename one of them" in ready["message"]


# --- Events and modelStatus of a failed reconcile, as KServe v0.15.2 writes them ------------


def runtime(name: str, **spec: Any) -> dict[str, Any]:
    formats = [{"name": "sklearn", "autoSelect": True}]
    containers = [{"name": "kserve-container", "image": "example.invalid/sklearn:1"}]
    return {
        "metadata": {"name": name, "namespace": "ns"},
        "spec": {"supportedModelFormats": formats, "containers": containers, **spec},
    }


def model(fmt: str, **fields: Any) -> dict[str, Any]:
    obj = isvc()
    obj["spec"]["predictor"] = {"model": {"modelFormat": {"name": fmt}, **fields}}
    return obj


@pytest.mark.parametrize(
    ("obj", "runtimes", "reason", "message"),
    [
        pytest.param(
            model("onnx"), [runtime("sk")], "NoSupportingRuntime",
            "No runtime found to support specified framework/version", id="none-fits",
        ),
        pytest.param(
            model("sklearn", runtime="absent"), [runtime("sk")], "RuntimeNotRecognized",
            "Waiting for runtime to become available", id="named-runtime-missing",
        ),
        pytest.param(
            model("sklearn", runtime="sk"), [runtime("sk", disabled=True)], "RuntimeDisabled",
            "Specified runtime is disabled", id="named-runtime-disabled",
        ),
        pytest.param(
            model("onnx", runtime="sk"), [runtime("sk")], "NoSupportingRuntime",
            "Specified runtime does not support specified framework/version",
            id="named-runtime-other-format",
        ),
        pytest.param(
            model("sklearn", runtime="sk", protocolVersion="v2"),
            [runtime("sk", protocolVersions=["v1"])], "NoSupportingRuntime",
            "Specified runtime does not support specified protocol version",
            id="named-runtime-other-protocol",
        ),
    ],
)  # fmt: skip
def test_no_supporting_runtime_writes_kserves_model_status_and_event(
    obj: dict[str, Any], runtimes: list[dict[str, Any]], reason: str, message: str
) -> None:
    """KServe's predictor reconcile: UpdateModelTransitionStatus(InvalidSpec, FailureInfo) with
    its reason and text word for word, the mode its updateStatus records, and an InternalError
    Event carrying the error."""
    desired = decide.plan_service(obj, decide.runtimes_from([], runtimes), None, OPTIONS, NOW)
    assert desired.manifests == []
    assert desired.status["modelStatus"] == {
        "transitionStatus": "InvalidSpec",
        "states": {"activeModelState": "", "targetModelState": "FailedToLoad"},
        "lastFailureInfo": {"reason": reason, "message": message},
    }
    assert desired.status["deploymentMode"] == "RawDeployment"
    ready = next(c for c in desired.status["conditions"] if c["type"] == "Ready")
    assert (ready["status"], ready["reason"]) == ("False", "NoSupportingRuntime")
    assert desired.event == events.Event("Warning", "InternalError", ready["message"])


def test_no_supporting_runtime_updates_the_previous_model_status_in_place() -> None:
    """As KServe's: the active state and copies of an earlier Loaded stay, the target becomes
    FailedToLoad and the last failure is replaced whole (no exit code left from a crash)."""
    obj = model("onnx")
    obj["status"] = {"modelStatus": {
        "transitionStatus": "BlockedByFailedLoad",
        "states": {"activeModelState": "Loaded", "targetModelState": "FailedToLoad"},
        "copies": {"failedCopies": 0, "totalCopies": 2},
        "lastFailureInfo": {"reason": "ModelLoadFailed", "message": "oom", "exitCode": 137},
    }}  # fmt: skip
    desired = decide.plan_service(obj, [], None, OPTIONS, NOW)
    assert desired.status["modelStatus"] == {
        "transitionStatus": "InvalidSpec",
        "states": {"activeModelState": "Loaded", "targetModelState": "FailedToLoad"},
        "copies": {"failedCopies": 0, "totalCopies": 2},
        "lastFailureInfo": {
            "reason": "NoSupportingRuntime",
            "message": "No runtime found to support specified framework/version",
        },
    }


SERVERLESS_REJECTED = events.Event(
    "Warning",
    "ServerlessModeRejected",
    "It is not possible to use Serverless deployment mode when Knative Services are not available",
)


def test_a_serverless_service_gets_kserves_serverless_mode_rejected_event() -> None:
    # KServe checks the mode first and stops there: its Event even when more is refused.
    obj = isvc(logger={"mode": "all"})
    obj["metadata"]["annotations"] = {"serving.kserve.io/deploymentMode": "Serverless"}
    desired = decide.plan_service(obj, [], None, OPTIONS, NOW)
    assert desired.event == SERVERLESS_REJECTED
    ready = next(c for c in desired.status["conditions"] if c["type"] == "Ready")
    assert "spec.predictor.logger" in ready["message"]


@pytest.mark.parametrize(
    "change",
    [
        pytest.param({"logger": {"mode": "all"}}, id="refused-field"),
        pytest.param({"minReplicas": "many"}, id="invalid-shape"),
    ],
)
def test_a_refused_or_invalid_service_gets_an_internal_error_event(change: dict[str, Any]) -> None:
    desired = decide.plan_service(isvc(**change), [], None, OPTIONS, NOW)
    ready = next(c for c in desired.status["conditions"] if c["type"] == "Ready")
    assert ready["reason"] in ("Unsupported", "InvalidSpec")
    assert desired.event == events.Event("Warning", "InternalError", ready["message"])


def test_a_ready_service_calls_for_no_warning_event() -> None:
    assert decide.plan_service(isvc(), [], deployment("True"), OPTIONS, NOW).event is None


@pytest.mark.parametrize("mode", ["Serverless", "ModelMesh"])
def test_a_graph_in_a_knative_mode_is_refused_with_serverless_mode_rejected(mode: str) -> None:
    """KServe's InferenceGraph controller renders any mode but RawDeployment as a Knative
    Service, and without Knative rejects the graph with this Event."""
    obj = graph("m")
    obj["metadata"]["annotations"] = {"serving.kserve.io/deploymentMode": mode}
    desired = decide.plan_graph(obj, {"m": isvc(ready=True)}, None, OPTIONS, NOW)
    assert desired.manifests == []
    assert desired.event == SERVERLESS_REJECTED
    ready = next(c for c in desired.status["conditions"] if c["type"] == "Ready")
    assert (ready["status"], ready["reason"]) == ("False", "Unsupported")
    assert f"serving.kserve.io/deploymentMode: '{mode}'" in ready["message"]
    raw = graph("m")
    raw["metadata"]["annotations"] = {"serving.kserve.io/deploymentMode": "RawDeployment"}
    assert decide.plan_graph(raw, {"m": isvc(ready=True)}, None, OPTIONS, NOW).manifests


def test_an_invalid_graph_gets_an_internal_error_event() -> None:
    desired = decide.plan_graph(splitter_graph(60, 50), {"m": isvc(ready=True)}, None, OPTIONS, NOW)
    ready = next(c for c in desired.status["conditions"] if c["type"] == "Ready")
    assert desired.event == events.Event("Warning", "InternalError", ready["message"])
