"""`infergraph install` on a control plane where KServe's own CRDs (v0.15.2, as published in
its Go module) are already installed, and the controller beside KServe.

Standalone refuses to replace KServe's serving.kserve.io CRDs; alongside-kserve installs only
our infergraph.dev CRD and its controller reconciles our graphs from KServe-run
InferenceServices' status, writing nothing to serving.kserve.io; `--force-crds` replaces them.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from graph_controller.cli.install import InstallError, Kubectl, install, kserve_group_crds
from tests.k8s.controller import Cluster, graph, graph_json, is_true, running, wait_for
from tests.k8s.envtest import REPO, ControlPlane

ORACLE = REPO / "tests" / "kserve_oracle"  # its go.mod pins the KServe version
OURS = "infergraph.dev/v1alpha1"
KSERVE_FILES = [f"{name.split('.')[0]}" for name in kserve_group_crds()]


def kserve_crd_dir() -> Path:
    go = shutil.which("go") or "/usr/local/go/bin/go"
    if not Path(go).exists():
        pytest.skip("Go toolchain not found: KServe's CRDs come from its Go module")
    listed = subprocess.run(
        [go, "list", "-m", "-json", "github.com/kserve/kserve"],
        cwd=ORACLE,
        capture_output=True,
        check=True,
        timeout=300,
    )
    module = f"github.com/kserve/kserve@{json.loads(listed.stdout)['Version']}"
    downloaded = subprocess.run(
        [go, "mod", "download", "-json", module],
        cwd=ORACLE,
        capture_output=True,
        check=True,
        timeout=600,
    )
    return Path(json.loads(downloaded.stdout)["Dir"]) / "config" / "crd" / "full"


@pytest.fixture(scope="module")
def with_kserve(control_plane: ControlPlane) -> Iterator[ControlPlane]:
    """A fresh control plane holding KServe's published CRDs (not ours)."""
    directory = kserve_crd_dir()
    with ControlPlane(bin_dir=control_plane.bin_dir) as plane:
        files = [f"-f={directory / f'serving.kserve.io_{name}.yaml'}" for name in KSERVE_FILES]
        plane.kubectl("apply", "--server-side", *files)
        wait_for(
            "KServe's CRDs Established",
            lambda: (
                plane.kubectl(
                    "wait",
                    "--for=condition=Established",
                    "--timeout=10s",
                    *(f"crd/{name}" for name in kserve_group_crds()),
                    check=False,
                ).returncode
                == 0
            ),
        )
        yield plane


def kubectl_for(plane: ControlPlane) -> Kubectl:
    return Kubectl(str(plane.bin_dir / "kubectl"), str(plane.kubeconfig))


def crd_versions(plane: ControlPlane) -> dict[str, tuple[str, dict[str, str]]]:
    out = {}
    for name in kserve_group_crds():
        crd = json.loads(plane.kubectl("get", "crd", name, "-o", "json").stdout)
        out[name] = (crd["metadata"]["resourceVersion"], crd["metadata"].get("labels") or {})
    return out


def kserve_isvc(name: str) -> dict[str, Any]:
    """An InferenceService using fields of KServe v0.15.2 that are not ours to run here."""
    return {
        "apiVersion": "serving.kserve.io/v1beta1",
        "kind": "InferenceService",
        "metadata": {"name": name},
        "spec": {
            "predictor": {
                "model": {
                    "modelFormat": {"name": "tensorflow"},
                    "protocolVersion": "v1",
                    "storageUri": "gs://bucket/model",
                    "startupProbe": {"tcpSocket": {"port": 8080}},
                }
            }
        },
    }


def test_install_beside_kserve(with_kserve: ControlPlane, tmp_path: Path) -> None:
    kubectl = kubectl_for(with_kserve)
    before = crd_versions(with_kserve)
    assert all("app.kubernetes.io/part-of" not in labels for _, labels in before.values())

    # Standalone refuses, naming every KServe CRD, and changes nothing.
    with pytest.raises(InstallError) as refused:
        install(kubectl, "standalone", force_crds=False)
    for name in kserve_group_crds():
        assert name in str(refused.value)
    assert "--mode alongside-kserve" in str(refused.value)
    assert "--force-crds" in str(refused.value)
    assert crd_versions(with_kserve) == before

    # Beside KServe: only our group's CRD; KServe's untouched.
    applied = install(kubectl, "alongside-kserve", force_crds=False)
    assert "customresourcedefinition.apiextensions.k8s.io/inferencegraphs.infergraph.dev" in applied
    assert not any("serving.kserve.io" in line for line in applied)
    assert crd_versions(with_kserve) == before
    args = json.loads(
        with_kserve.kubectl(
            "get", "deployment", "infergraph-controller", "-n", "infergraph-system", "-o", "json"
        ).stdout
    )["spec"]["template"]["spec"]["containers"][0]["args"]
    assert "--mode=alongside-kserve" in args

    # The controller in that mode: our graph, routed to the address KServe's controller wrote.
    namespace = "beside"
    with_kserve.kubectl("create", "namespace", namespace)
    cluster = Cluster(with_kserve, namespace)
    try:
        cluster.create(kserve_isvc("flowers"))
        kserve_status = {
            "conditions": [{"type": "Ready", "status": "True"}],
            "url": "http://flowers-beside.example.com",
            "address": {"url": "http://flowers-predictor.beside.svc.cluster.local"},
            "modelStatus": {"transitionStatus": "UpToDate"},
        }
        with_kserve.kubectl(
            "patch",
            "inferenceservice",
            "flowers",
            "-n",
            namespace,
            "--subresource=status",
            "--type=merge",
            "-p",
            json.dumps({"status": kserve_status}),
        )
        ours = graph("g", ["flowers"], OURS)
        ours["spec"]["nodes"]["root"]["steps"][0]["retry"] = {"maxRetries": 2}
        cluster.create(ours)
        with running(with_kserve, tmp_path / "controller.log", "--mode=alongside-kserve") as c:
            wait_for(
                "infergraph.dev graph Ready beside KServe",
                lambda: is_true(cluster.get("InferenceGraph", "g", OURS), "Ready"),
                controller=c,
            )
            router = cluster.owned("deployments", "g")
            assert router is not None
            step = graph_json(router)["nodes"]["root"]["steps"][0]
            assert step["serviceUrl"] == (
                "http://flowers-predictor.beside.svc.cluster.local/v1/models/flowers:predict"
            )
            assert step["retry"]["maxRetries"] == 2  # kept: our group's CRD has it
            # KServe's InferenceService is KServe's: no predictor from us, status as written.
            assert cluster.owned("deployments", "flowers-predictor") is None
            stored = cluster.get("InferenceService", "flowers")
            assert stored is not None
            assert stored["status"] == kserve_status
            assert stored["spec"]["predictor"]["model"]["startupProbe"] == {
                "tcpSocket": {"port": 8080}
            }
    finally:
        cluster.close()

    # Forced: our KServe-compatible CRDs replace KServe's.
    install(kubectl, "standalone", force_crds=True)
    after = crd_versions(with_kserve)
    assert all(
        labels.get("app.kubernetes.io/part-of") == "infergraph" for _, labels in after.values()
    )
    # And a second standalone install needs no force: the CRDs are ours now.
    install(kubectl, "standalone", force_crds=False)


def test_alongside_needs_kserve(control_plane: ControlPlane) -> None:
    with ControlPlane(bin_dir=control_plane.bin_dir) as fresh:
        with pytest.raises(InstallError) as refused:
            install(kubectl_for(fresh), "alongside-kserve", force_crds=False)
        assert "inferenceservices.serving.kserve.io does not exist" in str(refused.value)
