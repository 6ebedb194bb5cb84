"""The controller against a real control plane: InferenceServices and InferenceGraphs become
Deployments/Services/HPAs through server-side apply, statuses follow readiness, updates roll
out, deletes cascade through ownerReferences. The controller runs as a subprocess."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from tests.k8s.controller import (
    Cluster,
    condition,
    graph,
    graph_json,
    is_true,
    isvc,
    running,
    wait_for,
)


def _apply_manager(obj: dict[str, Any]) -> list[tuple[str, str]]:
    return [(m["manager"], m["operation"]) for m in obj["metadata"].get("managedFields", [])]


def test_inference_service_gets_deployment_service_and_ready_status(
    cluster: Cluster, tmp_path: Path
) -> None:
    with running(
        cluster.plane, tmp_path / "controller.log", f"--namespace={cluster.namespace}"
    ) as c:
        c.wait_ready()
        assert c.probe("/healthz") == 200
        created = cluster.create(isvc("sklearn-iris"))
        ready = wait_for(
            "InferenceService sklearn-iris Ready",
            lambda: (
                (o := cluster.get("InferenceService", "sklearn-iris")) and is_true(o, "Ready") and o
            ),
            controller=c,
            describe=lambda: str(cluster.get("InferenceService", "sklearn-iris")),
        )
        url = f"http://sklearn-iris-predictor.{cluster.namespace}.svc.cluster.local"
        assert ready["status"]["url"] == url
        assert ready["status"]["address"] == {"url": url}
        assert is_true(ready, "PredictorReady")
        assert ready["status"]["observedGeneration"] == created["metadata"]["generation"]
        for resource in ("deployments", "services"):
            owned = cluster.owned(resource, "sklearn-iris-predictor")
            assert owned is not None, resource
            (owner,) = owned["metadata"]["ownerReferences"]
            assert owner == {
                "apiVersion": "serving.kserve.io/v1beta1",
                "kind": "InferenceService",
                "name": "sklearn-iris",
                "uid": created["metadata"]["uid"],
                "controller": True,
                "blockOwnerDeletion": True,
            }
            assert ("infergraph", "Apply") in _apply_manager(owned)
        deployment = cluster.owned("deployments", "sklearn-iris-predictor")
        assert deployment is not None
        assert deployment["spec"]["template"]["spec"]["containers"][0]["image"] == (
            "example.invalid/sklearn-iris:1"
        )
        # KServe's RawDeployment: an HPA (min 1, max 1 by default) owns the replicas.
        hpa = cluster.owned("horizontalpodautoscalers", "sklearn-iris-predictor")
        assert hpa is not None
        assert (hpa["spec"]["minReplicas"], hpa["spec"]["maxReplicas"]) == (1, 1)
        assert deployment["spec"]["selector"]["matchLabels"] == {
            "app": "isvc.sklearn-iris-predictor"
        }


def _graph_state(cluster: Cluster, name: str) -> str:
    return f"graph status: {(cluster.get('InferenceGraph', name) or {}).get('status')}"


def test_graph_waits_for_its_inference_service_then_routes_to_it(
    cluster: Cluster, tmp_path: Path
) -> None:
    ns = cluster.namespace
    flags = (
        f"--namespace={ns}",
        "--router-image=example.invalid/router:2",
        "--propagate-headers=Authorization,^X-",
    )
    with running(cluster.plane, tmp_path / "controller.log", *flags) as c:
        cluster.create(graph("pipeline", ["classifier"]))
        missing = wait_for(
            "graph PredictorReady=False (not found)",
            lambda: condition(cluster.get("InferenceGraph", "pipeline"), "PredictorReady"),
            controller=c,
        )
        assert missing["status"] == "False"
        assert missing["reason"] == "InferenceServiceNotFound"
        assert "InferenceService 'classifier'" in missing["message"]
        # It exists but cannot be scheduled (no node has this label): not ready.
        stuck = isvc("classifier")
        stuck["spec"]["predictor"]["nodeSelector"] = {"example.invalid/none": "x"}
        cluster.create(stuck)

        def waiting_reason() -> str | None:
            found = condition(cluster.get("InferenceGraph", "pipeline"), "PredictorReady")
            return (
                found.get("reason")
                if found and found.get("reason") == "InferenceServiceNotReady"
                else None
            )

        wait_for("graph PredictorReady reason NotReady", waiting_reason, controller=c)
        graph_now = cluster.get("InferenceGraph", "pipeline")
        assert condition(graph_now, "Ready")["status"] == "False"  # type: ignore[index]
        assert cluster.owned("deployments", "pipeline") is None  # no router before resolution
        # Now it can run: the graph resolves it and gets a router.
        cluster.patch(
            "InferenceService", "classifier", {"spec": {"predictor": {"nodeSelector": None}}}
        )
        ready = wait_for(
            "graph Ready",
            lambda: (g := cluster.get("InferenceGraph", "pipeline")) and is_true(g, "Ready") and g,
            controller=c,
            describe=lambda: _graph_state(cluster, "pipeline"),
        )
    assert is_true(ready, "PredictorReady")
    assert is_true(ready, "RouterReady")
    assert ready["status"]["url"] == f"http://pipeline.{ns}.svc.cluster.local"
    router = cluster.owned("deployments", "pipeline")
    assert router is not None
    step = graph_json(router)["nodes"]["root"]["steps"][0]
    assert step["serviceName"] == "classifier"
    assert step["serviceUrl"] == (
        f"http://classifier-predictor.{ns}.svc.cluster.local/v1/models/classifier:predict"
    )
    assert cluster.owned("services", "pipeline") is not None
    container = router["spec"]["template"]["spec"]["containers"][0]
    assert container["image"] == "example.invalid/router:2"
    assert container["env"] == [{"name": "PROPAGATE_HEADERS", "value": "Authorization,^X-"}]


def test_update_rolls_out_and_delete_cascades(cluster: Cluster, tmp_path: Path) -> None:
    with running(
        cluster.plane, tmp_path / "controller.log", f"--namespace={cluster.namespace}"
    ) as c:
        cluster.create(isvc("a", max_replicas=3))
        cluster.create(isvc("b"))
        cluster.create(graph("g", ["a"]))
        wait_for(
            "graph g Ready",
            lambda: is_true(cluster.get("InferenceGraph", "g"), "Ready"),
            controller=c,
            describe=lambda: _graph_state(cluster, "g"),
        )
        hpa = cluster.owned("horizontalpodautoscalers", "a-predictor")
        assert hpa is not None
        assert hpa["spec"]["maxReplicas"] == 3
        # Graph spec change: the router's --graph-json follows.
        cluster.patch(
            "InferenceGraph",
            "g",
            {"spec": {"nodes": {"root": {"steps": [{"name": "b", "serviceName": "b"}]}}}},
        )

        def routes_to_b() -> bool:
            router = cluster.owned("deployments", "g")
            steps = graph_json(router)["nodes"]["root"]["steps"] if router else []
            return [s.get("serviceName") for s in steps] == ["b"]

        wait_for("router Deployment routes to b", routes_to_b, controller=c)
        # autoscalerClass external (an annotation-only edit): the controller deletes its HPA.
        external = {"serving.kserve.io/autoscalerClass": "external"}
        cluster.patch("InferenceService", "a", {"metadata": {"annotations": external}})
        wait_for(
            "HPA a-predictor deleted",
            lambda: cluster.owned("horizontalpodautoscalers", "a-predictor") is None,
            controller=c,
        )
        # Deletes: the cluster's garbage collector follows our ownerReferences.
        cluster.delete("InferenceGraph", "g")
        cluster.delete("InferenceService", "a")
        wait_for(
            "objects of g and a garbage-collected",
            lambda: (
                cluster.names("deployments") == ["b-predictor"]
                and cluster.names("services") == ["b-predictor"]
            ),
            controller=c,
            describe=lambda: f"{cluster.names('deployments')} {cluster.names('services')}",
        )


def test_several_namespaces_each_keep_their_objects(cluster: Cluster, tmp_path: Path) -> None:
    # Two --namespace flags: one cache per kind fed by one informer per namespace. Objects that
    # exist before the controller starts are listed by both informers; neither list may make
    # the other namespace's objects look deleted (its graphs would never become Ready).
    other_name = f"{cluster.namespace}b"
    cluster.plane.kubectl("create", "namespace", other_name)
    other = Cluster(cluster.plane, other_name)
    try:
        for place in (cluster, other):
            place.create(isvc("classifier"))
            place.create(graph("pipeline", ["classifier"]))
        flags = (f"--namespace={cluster.namespace}", f"--namespace={other_name}")
        with running(cluster.plane, tmp_path / "controller.log", *flags) as c:
            for place in (cluster, other):
                wait_for(
                    f"graph Ready in {place.namespace}",
                    lambda place=place: is_true(place.get("InferenceGraph", "pipeline"), "Ready"),
                    controller=c,
                )
    finally:
        other.close()
        cluster.plane.kubectl("delete", "namespace", other_name, "--wait=false")


def _events_about(cluster: Cluster, name: str) -> list[dict[str, Any]]:
    listed = cluster.raw(f"/api/v1/namespaces/{cluster.namespace}/events") or {}
    return [e for e in listed.get("items", []) if e["involvedObject"]["name"] == name]


def test_an_apply_the_api_server_refuses_is_a_condition_and_an_event(
    cluster: Cluster, tmp_path: Path
) -> None:
    refused = isvc("bad-name")
    # Valid to our schema, refused by the API server's validation (422).
    env = [{"name": "NOT VALID!", "value": "x"}]
    refused["spec"]["predictor"]["containers"][0]["env"] = env
    with running(cluster.plane, tmp_path / "c.log", f"--namespace={cluster.namespace}") as c:
        c.wait_ready()
        cluster.create(refused)
        ready = wait_for(
            "Ready=False ApplyRejected",
            lambda: (
                (found := condition(cluster.get("InferenceService", "bad-name"), "Ready"))
                and found["reason"] == "ApplyRejected"
                and found
            ),
            controller=c,
            describe=lambda: str(cluster.get("InferenceService", "bad-name")),
        )
        assert ready["status"] == "False"
        assert "422" in ready["message"]
        assert "a valid environment variable name must consist of" in ready["message"]
        warning = wait_for(
            "an InternalError Warning Event",
            lambda: next(
                (e for e in _events_about(cluster, "bad-name") if e["reason"] == "InternalError"),
                None,
            ),
            controller=c,
        )
        assert warning["type"] == "Warning"
        assert warning["involvedObject"]["kind"] == "InferenceService"
        assert "a valid environment variable name" in warning["message"]
        assert not any(line.get("message") == "reconcile failed, not retried" for line in c.lines())


def test_ready_is_announced_with_an_event_as_kserve_does(cluster: Cluster, tmp_path: Path) -> None:
    with running(cluster.plane, tmp_path / "c.log", f"--namespace={cluster.namespace}") as c:
        c.wait_ready()
        cluster.create(isvc("announced"))
        cluster.create(graph("announcer", ["announced"]))
        for kind, name in (("InferenceService", "announced"), ("InferenceGraph", "announcer")):
            event = wait_for(
                f"{kind}Ready Event",
                lambda kind=kind, name=name: next(
                    (e for e in _events_about(cluster, name) if e["reason"] == f"{kind}Ready"),
                    None,
                ),
                controller=c,
            )
            assert event["type"] == "Normal"
            assert event["message"] == f"{kind} [{name}] is Ready"
            assert event["source"] == {"component": "infergraph-controller"}


def _replicas_owners(deployment: dict[str, Any]) -> list[str]:
    return [
        m["manager"]
        for m in deployment["metadata"].get("managedFields", [])
        if "f:replicas" in (m.get("fieldsV1") or {}).get("f:spec", {})
    ]


def test_hpa_scaling_is_never_reverted(cluster: Cluster, tmp_path: Path) -> None:
    ns = cluster.namespace
    with running(cluster.plane, tmp_path / "controller.log", f"--namespace={ns}") as c:
        cluster.create(isvc("scaled", max_replicas=5))
        wait_for(
            "scaled Ready",
            lambda: is_true(cluster.get("InferenceService", "scaled"), "Ready"),
            controller=c,
        )
        deployment = cluster.owned("deployments", "scaled-predictor")
        assert deployment is not None
        assert "infergraph" not in _replicas_owners(deployment)
        # Scale as the HPA controller does: through the scale subresource.
        cluster.plane.kubectl("scale", "-n", ns, "deployment/scaled-predictor", "--replicas=3")
        # A spec change makes the controller apply the Deployment again.
        cluster.patch(
            "InferenceService", "scaled", {"spec": {"predictor": {"labels": {"rev": "2"}}}}
        )

        def relabelled() -> dict[str, Any] | None:
            found = cluster.owned("deployments", "scaled-predictor")
            labels = (found or {}).get("spec", {}).get("template", {}).get("metadata", {})
            return found if labels.get("labels", {}).get("rev") == "2" else None

        after = wait_for("Deployment re-applied", relabelled, controller=c)
    assert after["spec"]["replicas"] == 3
    assert "infergraph" not in _replicas_owners(after)


def test_stop_removes_objects_and_resume_restores_them(cluster: Cluster, tmp_path: Path) -> None:
    with running(
        cluster.plane, tmp_path / "controller.log", f"--namespace={cluster.namespace}"
    ) as c:
        cluster.create(isvc("m"))
        wait_for(
            "m Ready", lambda: is_true(cluster.get("InferenceService", "m"), "Ready"), controller=c
        )
        stop = {"serving.kserve.io/stop": "true"}
        cluster.patch("InferenceService", "m", {"metadata": {"annotations": stop}})
        stopped = wait_for(
            "m Stopped",
            lambda: (o := cluster.get("InferenceService", "m")) and is_true(o, "Stopped") and o,
            controller=c,
        )
        assert condition(stopped, "Ready")["reason"] == "Stopped"  # type: ignore[index]
        wait_for(
            "m's objects deleted",
            lambda: cluster.names("deployments") == [] and cluster.names("services") == [],
            controller=c,
            describe=lambda: f"{cluster.names('deployments')} {cluster.names('services')}",
        )
        assert cluster.names("horizontalpodautoscalers") == []
        cluster.patch(
            "InferenceService", "m", {"metadata": {"annotations": {"serving.kserve.io/stop": None}}}
        )
        wait_for(
            "m Ready again",
            lambda: (
                is_true(cluster.get("InferenceService", "m"), "Ready")
                and cluster.names("deployments") == ["m-predictor"]
            ),
            controller=c,
        )


def test_serverless_is_refused_and_transformer_gets_the_address(
    cluster: Cluster, tmp_path: Path
) -> None:
    ns = cluster.namespace
    with running(cluster.plane, tmp_path / "controller.log", f"--namespace={ns}") as c:
        serverless = isvc("knative")
        serverless["metadata"]["annotations"] = {"serving.kserve.io/deploymentMode": "Serverless"}
        cluster.create(serverless)
        piped = isvc("piped")
        piped["spec"]["transformer"] = {
            "containers": [{"name": "t", "image": "example.invalid/transformer:1"}]
        }
        cluster.create(piped)
        refused = wait_for(
            "knative refused",
            lambda: condition(cluster.get("InferenceService", "knative"), "Ready"),
            controller=c,
        )
        assert (refused["status"], refused["reason"]) == ("False", "Unsupported")
        assert "Knative, which InferGraph does not support" in refused["message"]
        ready = wait_for(
            "piped Ready",
            lambda: (o := cluster.get("InferenceService", "piped")) and is_true(o, "Ready") and o,
            controller=c,
        )
    assert is_true(ready, "TransformerReady")
    url = f"http://piped-transformer.{ns}.svc.cluster.local"
    assert ready["status"]["address"] == {"url": url}
    transformer = cluster.owned("deployments", "piped-transformer")
    assert transformer is not None
    args = transformer["spec"]["template"]["spec"]["containers"][0]["args"]
    assert args[args.index("--predictor_host") + 1] == f"piped-predictor.{ns}"
    assert "knative-predictor" not in cluster.names("deployments")


def test_every_pod_fits_a_namespace_with_a_compute_quota(cluster: Cluster, tmp_path: Path) -> None:
    """With a compute ResourceQuota, a pod whose containers (init containers included) lack
    requests or limits is refused at creation: the storage-initializer and the router must
    carry KServe's default resources for anything to run there."""
    ns = cluster.namespace
    quota = {
        "apiVersion": "v1",
        "kind": "ResourceQuota",
        "metadata": {"name": "compute", "namespace": ns},
        "spec": {
            "hard": {
                "requests.cpu": "20",
                "requests.memory": "40Gi",
                "limits.cpu": "20",
                "limits.memory": "40Gi",
            }
        },
    }
    cluster.plane.kubectl("apply", "-f", "-", input=json.dumps(quota))
    runtime = {
        "apiVersion": "serving.kserve.io/v1alpha1",
        "kind": "ServingRuntime",
        "metadata": {"name": "quota-sklearn"},
        "spec": {
            "supportedModelFormats": [{"name": "sklearn", "autoSelect": True}],
            "containers": [
                {
                    "name": "kserve-container",
                    "image": "example.invalid/sklearnserver:1",
                    "args": ["--model_name={{.Name}}", "--model_dir=/mnt/models"],
                    "resources": {
                        "requests": {"cpu": "1", "memory": "2Gi"},
                        "limits": {"cpu": "1", "memory": "2Gi"},
                    },
                }
            ],
        },
    }
    model = {
        "apiVersion": "serving.kserve.io/v1beta1",
        "kind": "InferenceService",
        "metadata": {"name": "quoted"},
        "spec": {
            "predictor": {
                "model": {"modelFormat": {"name": "sklearn"}, "storageUri": "gs://b/model"}
            }
        },
    }
    with running(cluster.plane, tmp_path / "c.log", f"--namespace={ns}") as c:
        c.wait_ready()
        cluster.create(runtime)
        cluster.create(model)
        cluster.create(graph("quota-graph", ["quoted"]))
        wait_for(
            "graph Ready in a quota namespace",
            lambda: is_true(cluster.get("InferenceGraph", "quota-graph"), "Ready"),
            controller=c,
            describe=lambda: cluster.plane.kubectl("get", "events", "-n", ns, check=False).stdout,
        )
        predictor = cluster.owned("deployments", "quoted-predictor")
        assert predictor is not None
        pod = predictor["spec"]["template"]["spec"]
        (initializer,) = pod["initContainers"]
        assert initializer["resources"]["limits"]
        assert initializer["resources"]["requests"]
        router = cluster.owned("deployments", "quota-graph")
        assert router is not None
        (container,) = router["spec"]["template"]["spec"]["containers"]
        assert container["resources"]["limits"]
        assert container["resources"]["requests"]


def test_a_name_another_owner_controls_is_a_condition_until_it_is_free(
    cluster: Cluster, tmp_path: Path
) -> None:
    """InferenceService `iris`'s transformer and the router of a graph named `iris-transformer`
    are both the Deployment `iris-transformer` (examples/iris-kserve-transformer and
    examples/iris-transformer in one namespace). Whoever has it keeps it, the other says
    NameConflict instead of taking it (KServe's controllers take it back and forth), and gets
    it once it is free."""
    with running(
        cluster.plane, tmp_path / "controller.log", f"--namespace={cluster.namespace}"
    ) as c:
        iris = isvc("iris")
        iris["spec"]["transformer"] = {"containers": [{"image": "example.invalid/t:1"}]}
        cluster.create(iris)
        cluster.create(isvc("other"))
        wait_for(
            "iris and other Ready",
            lambda: all(
                is_true(cluster.get("InferenceService", n), "Ready") for n in ("iris", "other")
            ),
            controller=c,
        )
        cluster.create(graph("iris-transformer", ["other"]))
        refused = wait_for(
            "graph NameConflict",
            lambda: (
                (found := condition(cluster.get("InferenceGraph", "iris-transformer"), "Ready"))
                and found.get("reason") == "NameConflict"
                and found
            ),
            controller=c,
        )
        assert (
            "Deployment 'iris-transformer' is controlled by InferenceService 'iris'"
            in (refused["message"])
        )
        transformer = cluster.owned("deployments", "iris-transformer")
        assert transformer is not None
        assert transformer["metadata"]["ownerReferences"][0]["name"] == "iris"
        cluster.patch("InferenceService", "iris", {"spec": {"transformer": None}})
        wait_for(
            "graph Ready once the transformer is gone",
            lambda: is_true(cluster.get("InferenceGraph", "iris-transformer"), "Ready"),
            controller=c,
        )
    router = cluster.owned("deployments", "iris-transformer")
    assert router is not None
    assert router["metadata"]["ownerReferences"][0]["kind"] == "InferenceGraph"


def test_grpc_ports_reach_the_predictor_and_router_services(
    cluster: Cluster, tmp_path: Path
) -> None:
    """A grpc-v2 predictor's Service maps port 80 to its `h2c` port with appProtocol h2c, and
    the graph calls it there over gRPC; a graph with the grpc-port annotation gets a router
    that serves gRPC on that port, exposed by its Service the same way (issue 18)."""
    ns = cluster.namespace
    runtime = {
        "apiVersion": "serving.kserve.io/v1alpha1",
        "kind": "ServingRuntime",
        "metadata": {"name": "grpc-sklearn"},
        "spec": {
            "supportedModelFormats": [{"name": "sklearn", "autoSelect": True}],
            "protocolVersions": ["grpc-v2"],
            "containers": [
                {
                    "name": "kserve-container",
                    "image": "example.invalid/sklearnserver:1",
                    "args": ["--model_name={{.Name}}", "--model_dir=/mnt/models"],
                    "ports": [{"name": "h2c", "containerPort": 8081, "protocol": "TCP"}],
                }
            ],
        },
    }
    model = {
        "apiVersion": "serving.kserve.io/v1beta1",
        "kind": "InferenceService",
        "metadata": {"name": "scorer"},
        "spec": {
            "predictor": {
                "model": {
                    "modelFormat": {"name": "sklearn"},
                    "protocolVersion": "grpc-v2",
                    "storageUri": "gs://b/model",
                }
            }
        },
    }
    scoring = graph("scoring", ["scorer"])
    scoring["metadata"]["annotations"] = {"infergraph.dev/grpc-port": "8081"}
    with running(cluster.plane, tmp_path / "c.log", f"--namespace={ns}") as c:
        c.wait_ready()
        cluster.create(runtime)
        cluster.create(model)
        cluster.create(scoring)
        wait_for(
            "graph Ready with a gRPC predictor",
            lambda: is_true(cluster.get("InferenceGraph", "scoring"), "Ready"),
            controller=c,
            describe=lambda: _graph_state(cluster, "scoring"),
        )
    predictor = cluster.owned("services", "scorer-predictor")
    assert predictor is not None
    assert predictor["spec"]["ports"] == [
        {
            "name": "h2c",
            "port": 80,
            "targetPort": 8081,
            "protocol": "TCP",
            "appProtocol": "kubernetes.io/h2c",
        }
    ]
    router = cluster.owned("deployments", "scoring")
    assert router is not None
    step = graph_json(router)["nodes"]["root"]["steps"][0]
    assert step["serviceUrl"] == f"grpc://scorer-predictor.{ns}.svc.cluster.local:80/scorer"
    args = router["spec"]["template"]["spec"]["containers"][0]["args"]
    assert args[args.index("--grpc-port") + 1] == "8081"
    service = cluster.owned("services", "scoring")
    assert service is not None
    assert service["spec"]["ports"] == [
        {"name": "http", "port": 80, "targetPort": 8080, "protocol": "TCP"},
        {
            "name": "grpc",
            "port": 8081,
            "targetPort": 8081,
            "protocol": "TCP",
            "appProtocol": "kubernetes.io/h2c",
        },
    ]
