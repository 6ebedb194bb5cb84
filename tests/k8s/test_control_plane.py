"""The envtest control plane behaves like a cluster: Deployments become ReplicaSets and Pods,
KWOK's fake node runs them to Ready, CRDs install, ServiceAccount tokens authenticate."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client

from tests.k8s.envtest import ControlPlane, MissingBinaries, wait_until

ROLLOUT_TIMEOUT = 60.0  # scheduler + KWOK's pod-ready stage take about a second each


@pytest.fixture
def namespace(control_plane: ControlPlane) -> Iterator[str]:
    name = f"smoke-{time.monotonic_ns() % 10**9}"
    control_plane.kubectl("create", "namespace", name)
    yield name
    control_plane.kubectl("delete", "namespace", name, "--wait=false")


def _deployment(name: str, replicas: int) -> dict[str, Any]:
    labels = {"app": name}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": labels},
            "template": {
                "metadata": {"labels": labels},
                "spec": {"containers": [{"name": "app", "image": "example.invalid/app:1"}]},
            },
        },
    }


def test_deployment_becomes_ready_pods(control_plane: ControlPlane, namespace: str) -> None:
    with control_plane.api_client() as api:
        apps, core = client.AppsV1Api(api), client.CoreV1Api(api)
        apps.create_namespaced_deployment(namespace, _deployment("web", 2))
        deadline = time.monotonic() + ROLLOUT_TIMEOUT
        while time.monotonic() < deadline:
            status = apps.read_namespaced_deployment_status("web", namespace).status
            if status.ready_replicas == 2:
                break
            time.sleep(0.2)
        else:
            pytest.fail(f"deployment web not ready after {ROLLOUT_TIMEOUT}s: {status}")
        replica_sets = apps.list_namespaced_replica_set(namespace).items
        assert [rs.metadata.owner_references[0].name for rs in replica_sets] == ["web"]
        pods = core.list_namespaced_pod(namespace).items
        assert len(pods) == 2
        for pod in pods:
            assert pod.spec.node_name == control_plane.node_name
            assert pod.status.phase == "Running"
            assert pod.metadata.owner_references[0].name == replica_sets[0].metadata.name


def test_crds_install_and_serve_their_kinds(crds: ControlPlane, namespace: str) -> None:
    names = crds.kubectl("get", "crd", "-o", "name").stdout.split()
    assert sorted(names) == [
        "customresourcedefinition.apiextensions.k8s.io/clusterservingruntimes.serving.kserve.io",
        "customresourcedefinition.apiextensions.k8s.io/inferencegraphs.infergraph.dev",
        "customresourcedefinition.apiextensions.k8s.io/inferencegraphs.serving.kserve.io",
        "customresourcedefinition.apiextensions.k8s.io/inferenceservices.serving.kserve.io",
        "customresourcedefinition.apiextensions.k8s.io/servingruntimes.serving.kserve.io",
    ]
    empty = crds.kubectl("get", "inferencegraphs", "-n", namespace, "-o", "name")
    assert empty.stdout == ""


def test_service_account_token_is_authenticated_and_rbac_limited(
    control_plane: ControlPlane, namespace: str
) -> None:
    control_plane.kubectl("create", "serviceaccount", "reader", "-n", namespace)
    config = control_plane.service_account_kubeconfig(namespace, "reader")
    who = control_plane.kubectl(
        "auth", "whoami", "-o", "jsonpath={.status.userInfo.username}", kubeconfig=config
    )
    assert who.stdout == f"system:serviceaccount:{namespace}:reader"
    denied = control_plane.kubectl("get", "pods", "-n", namespace, kubeconfig=config, check=False)
    assert denied.returncode != 0
    assert "forbidden" in denied.stderr.lower()

    def refused_list_audited() -> bool:
        events = control_plane.audit_events(f"system:serviceaccount:{namespace}:reader")
        return any(
            e["verb"] == "list"
            and e["objectRef"]["resource"] == "pods"
            and e["responseStatus"]["code"] == 403
            for e in events
        )

    wait_until("audit event for the refused list", refused_list_audited, 10.0)


def test_missing_binaries_fail_with_the_command_that_builds_them(tmp_path: Path) -> None:
    (tmp_path / "etcd").write_text("")  # present but not executable counts as missing
    with pytest.raises(MissingBinaries) as caught:
        ControlPlane(bin_dir=tmp_path)
    message = str(caught.value)
    assert "run `make envtest`" in message
    assert "etcd, kube-apiserver, kube-controller-manager, kube-scheduler, kwok, kubectl" in message


def test_stop_leaves_no_process_or_directory(control_plane: ControlPlane) -> None:
    # A second plane beside the session's: ports and directories are its own.
    plane = ControlPlane(bin_dir=control_plane.bin_dir)
    plane.start()
    try:
        directory = plane.dir
        pids = [p.popen.pid for p in plane.processes()]
        assert len(pids) == 5
        assert plane.server != control_plane.server
    finally:
        plane.stop()
    assert not directory.exists()
    for pid in pids:
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)
