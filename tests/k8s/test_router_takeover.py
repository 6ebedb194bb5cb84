"""Taking over a graph's router on a real control plane.

A router Deployment's selector is immutable. KServe's controller selects `app: isvc.<graph>`;
ours does the same, so a router KServe made is taken over in place (server-side apply, same
object). Routers ours made before it matched KServe selected `app: <graph>`: those are deleted
and made again (`Reconciler._replace_immutable`), since no apply can change their selector."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from tests.k8s.controller import Cluster, graph, graph_json, is_true, isvc, running, wait_for

ROUTER_IMAGE = "example.invalid/infergraph-router:ours"


def _owner(graph_obj: dict[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": graph_obj["apiVersion"],
        "kind": "InferenceGraph",
        "name": graph_obj["metadata"]["name"],
        "uid": graph_obj["metadata"]["uid"],
        "controller": True,
        "blockOwnerDeletion": True,
    }


def _router(graph_obj: dict[str, Any], labels: dict[str, str], app: str) -> list[dict[str, Any]]:
    """A router Deployment and Service as KServe v0.15.2's raw_ig.go and raw reconcilers make
    them (labels: the graph's, `serving.kserve.io/inferencegraph` and `app`), selecting
    `app: <app>`, controlled by `graph_obj`."""
    name, ns = graph_obj["metadata"]["name"], graph_obj["metadata"]["namespace"]
    labels = {**labels, "app": app}
    metadata = {
        "name": name,
        "namespace": ns,
        "labels": labels,
        "ownerReferences": [_owner(graph_obj)],
    }
    container = {
        "name": name,
        "image": "kserve/router:v0.15.2",
        "imagePullPolicy": "IfNotPresent",
        "args": ["--graph-json", json.dumps(graph_obj["spec"])],
        "resources": {
            "requests": {"cpu": "100m", "memory": "100Mi"},
            "limits": {"cpu": "1", "memory": "1Gi"},
        },
        "readinessProbe": {
            "httpGet": {"path": "/readyz", "port": 8080, "scheme": "HTTP"},
            "initialDelaySeconds": 5,
            "timeoutSeconds": 2,
            "periodSeconds": 5,
            "successThreshold": 1,
            "failureThreshold": 3,
        },
    }
    deployment = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": metadata,
        "spec": {
            "selector": {"matchLabels": {"app": app}},
            "template": {
                "metadata": {"labels": labels},
                "spec": {"containers": [container], "automountServiceAccountToken": False},
            },
        },
    }
    service = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": metadata,
        "spec": {
            "selector": {"app": app},
            "ports": [{"name": name, "port": 80, "targetPort": 8080, "protocol": "TCP"}],
        },
    }
    return [deployment, service]


def _managers(obj: dict[str, Any]) -> set[tuple[str, str]]:
    return {(m["manager"], m["operation"]) for m in obj["metadata"].get("managedFields", [])}


def test_a_router_kserve_made_is_taken_over_and_one_with_the_old_selector_is_replaced(
    cluster: Cluster, tmp_path: Path
) -> None:
    ns = cluster.namespace
    cluster.create(isvc("m"))
    made: dict[str, dict[str, Any]] = {}
    for name in ("kserve-made", "old-made"):
        obj = graph(name, ["m"])
        obj["metadata"]["labels"] = {"team": "a"}
        made[name] = cluster.create(obj)
    kserve_labels = {"team": "a", "serving.kserve.io/inferencegraph": "kserve-made"}
    kserve = _router(made["kserve-made"], kserve_labels, "isvc.kserve-made")
    # As KServe's controller writes them: created with an Update, field manager `manager`.
    for obj in kserve:
        cluster.plane.kubectl("create", "--field-manager=manager", "-f", "-", input=json.dumps(obj))
    # As this controller wrote them before its selector was KServe's (commit 9d0025d^): applied
    # by `infergraph`, its own labels only, the Service's port named `http`.
    old_labels = {
        "serving.kserve.io/inferencegraph": "old-made",
        "app.kubernetes.io/managed-by": "infergraph",
    }
    old = _router(made["old-made"], old_labels, "old-made")
    old[1]["spec"]["ports"][0]["name"] = "http"
    for obj in old:
        cluster.plane.kubectl(
            "apply", "--server-side", "--field-manager=infergraph", "-f", "-",
            input=json.dumps(obj),
        )  # fmt: skip
    before = {
        name: {r: cluster.owned(r, name) for r in ("deployments", "services")} for name in made
    }
    flags = (f"--namespace={ns}", f"--router-image={ROUTER_IMAGE}")
    with running(cluster.plane, tmp_path / "c.log", *flags) as c:
        c.wait_ready()

        def routed(name: str) -> dict[str, Any] | None:
            """The router Deployment once the graph is Ready and it runs our router."""
            if not is_true(cluster.get("InferenceGraph", name), "Ready"):
                return None
            found = cluster.owned("deployments", name)
            containers = (found or {}).get("spec", {}).get("template", {}).get("spec", {})
            images = [x.get("image") for x in containers.get("containers", [])]
            return found if images == [ROUTER_IMAGE] else None

        taken = {
            name: wait_for(
                f"graph {name} Ready on our router",
                lambda name=name: routed(name),
                controller=c,
                describe=lambda name=name: str(cluster.get("InferenceGraph", name)),
            )
            for name in made
        }
        deleted = {line.get("deleted") for line in c.lines() if line.get("deleted")}
        rejected = [line for line in c.lines() if "ApplyRejected" in json.dumps(line)]
    assert rejected == []
    url = f"http://m-predictor.{ns}.svc.cluster.local/v1/models/m:predict"
    for name, deployment in taken.items():
        assert deployment["spec"]["selector"] == {"matchLabels": {"app": f"isvc.{name}"}}
        assert ("infergraph", "Apply") in _managers(deployment)
        assert graph_json(deployment)["nodes"]["root"]["steps"][0]["serviceUrl"] == url
        service = cluster.owned("services", name)
        assert service is not None
        assert service["spec"]["selector"] == {"app": f"isvc.{name}"}
        # A Service's selector can change: it is updated in place either way.
        assert service["metadata"]["uid"] == before[name]["services"]["metadata"]["uid"]  # type: ignore[index]
    # KServe's: the same object, taken over by a server-side apply; its labels kept.
    kept = taken["kserve-made"]
    assert kept["metadata"]["uid"] == before["kserve-made"]["deployments"]["metadata"]["uid"]  # type: ignore[index]
    assert "Deployment/kserve-made" not in deleted
    assert kept["metadata"]["labels"]["team"] == "a"
    # The old selector: deleted and made again with KServe's.
    replaced = taken["old-made"]
    assert replaced["metadata"]["uid"] != before["old-made"]["deployments"]["metadata"]["uid"]  # type: ignore[index]
    assert "Deployment/old-made" in deleted
    assert replaced["metadata"]["ownerReferences"][0]["uid"] == made["old-made"]["metadata"]["uid"]
