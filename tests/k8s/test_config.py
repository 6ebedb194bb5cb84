"""config/: every manifest is valid, `kubectl apply -k config/default` works against a real API
server, and the controller's RBAC grants exactly the calls it makes and nothing more."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import kubernetes_validate  # type: ignore[import-untyped]
import pytest
import yaml

from schemas.serving_runtime import ClusterServingRuntime
from tests.k8s.envtest import REPO, ControlPlane

CONFIG = REPO / "config"
DEFAULT = str(CONFIG / "default")
K8S = "1.31.0"  # the API server version tools/envtest builds
NAMESPACE = "infergraph-system"
SERVICE_ACCOUNT = f"system:serviceaccount:{NAMESPACE}:infergraph-controller"
OUR_GROUP = "infergraph.dev/v1alpha1"
ROLLOUT_TIMEOUT = 60.0  # scheduler + KWOK take about a second; generous for a loaded machine

# Every API call the controller makes, as (API group, resource[/subresource], verb, scope):
# the ClusterRole and leader-election Role must grant exactly these, and the audit log of a
# controller running under the ServiceAccount must show exactly these.
CONTROLLER_CALLS: set[tuple[str, str, str, str]] = {
    *(
        ("serving.kserve.io", resource, verb, "cluster")
        for resource in (
            "inferencegraphs",
            "inferenceservices",
            "servingruntimes",
            "clusterservingruntimes",
        )
        for verb in ("list", "watch")
    ),
    ("serving.kserve.io", "inferencegraphs/status", "patch", "cluster"),
    ("serving.kserve.io", "inferenceservices/status", "patch", "cluster"),
    ("infergraph.dev", "inferencegraphs", "list", "cluster"),
    ("infergraph.dev", "inferencegraphs", "watch", "cluster"),
    ("infergraph.dev", "inferencegraphs/status", "patch", "cluster"),
    *(
        (group, resource, verb, "cluster")
        for group, resource in (
            ("apps", "deployments"),
            ("", "services"),
            ("autoscaling", "horizontalpodautoscalers"),
        )
        # create: a server-side apply PATCH that creates is authorized for create too.
        for verb in ("list", "watch", "create", "patch")
    ),
    ("", "events", "create", "cluster"),
    ("", "pods", "list", "cluster"),
    ("", "pods", "watch", "cluster"),
    *(
        (group, resource, "delete", "cluster")
        for group, resource in (
            ("apps", "deployments"),
            ("", "services"),
            ("autoscaling", "horizontalpodautoscalers"),
        )
    ),
    *(("coordination.k8s.io", "leases", verb, NAMESPACE) for verb in ("get", "create", "update")),
}

# What the controller must never be able to do (verb, resource, namespace or "" for all).
FORBIDDEN = [
    ("get", "secrets", "default"),
    ("list", "secrets", ""),
    ("delete", "namespaces", ""),
    ("create", "pods", "default"),
    ("create", "pods/exec", "default"),
    ("create", "serviceaccounts/token", "default"),
    ("patch", "nodes", ""),
    ("create", "clusterrolebindings", ""),
    ("escalate", "clusterroles", ""),
    ("impersonate", "users", ""),
    ("update", "customresourcedefinitions.apiextensions.k8s.io", ""),
    ("create", "inferencegraphs.serving.kserve.io", "default"),
    ("delete", "inferenceservices.serving.kserve.io", "default"),
    ("patch", "clusterservingruntimes.serving.kserve.io", ""),
    ("update", "deployments.apps", "default"),  # writes are server-side apply patches
    ("delete", "pods", "default"),  # the Deployments' controller manages them
    ("patch", "inferencegraphs.serving.kserve.io", "default"),  # only their status
    ("get", "inferenceservices.serving.kserve.io", "default"),  # read from the watch cache
    ("patch", "leases.coordination.k8s.io", NAMESPACE),
    ("get", "leases.coordination.k8s.io", "kube-system"),
    ("create", "configmaps", NAMESPACE),
]


def documents(directory: Path) -> list[tuple[str, dict[str, Any]]]:
    """(file name, object) for every manifest under `directory` (and its subdirectories),
    kustomizations excluded."""
    found = []
    for path in sorted(directory.rglob("*.yaml")):
        if path.name == "kustomization.yaml":
            continue
        found += [(path.name, doc) for doc in yaml.safe_load_all(path.read_text()) if doc]
    return found


BUILTIN = [
    pytest.param(doc, id=f"{part}/{name}")
    for part in ("rbac", "manager")
    for name, doc in documents(CONFIG / part)
]
RUNTIMES = [pytest.param(doc, id=name) for name, doc in documents(CONFIG / "runtimes")]


@pytest.mark.parametrize("manifest", BUILTIN)
def test_builtin_manifest_is_valid(manifest: dict[str, Any]) -> None:
    kubernetes_validate.validate(manifest, K8S, strict=True)


def test_builtin_validation_is_not_vacuous() -> None:
    deployment = next(doc for doc in BUILTIN if doc.values[0]["kind"] == "Deployment").values[0]
    broken = {**deployment, "spec": {**deployment["spec"], "replica": 1}}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, K8S, strict=True)


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_runtime_is_valid_and_matches_the_local_one(runtime: dict[str, Any]) -> None:
    ClusterServingRuntime.model_validate(runtime)
    local = yaml.safe_load(
        (REPO / "graph_controller" / "runtimes" / f"{runtime['metadata']['name']}.yaml").read_text()
    )
    # The local copy differs only by how `infergraph up` starts it without a cluster.
    assert set(local["metadata"]["annotations"]) == {"infergraph.dev/local-command"}
    assert runtime["spec"] == local["spec"]
    assert runtime["kind"] == local["kind"] == "ClusterServingRuntime"


def test_default_runtimes_cover_sklearn_and_custom_code() -> None:
    formats = {
        fmt["name"]
        for _, doc in documents(CONFIG / "runtimes")
        for fmt in doc["spec"]["supportedModelFormats"]
    }
    assert {"sklearn", "custom"} <= formats


def test_kustomization_builds_the_expected_objects(control_plane: ControlPlane) -> None:
    built = list(yaml.safe_load_all(control_plane.kubectl("kustomize", DEFAULT).stdout))
    objects = sorted(
        (doc["kind"], doc["metadata"]["name"], doc["metadata"].get("namespace", ""))
        for doc in built
    )
    crds = sorted(
        ("CustomResourceDefinition", doc["metadata"]["name"], "")
        for _, doc in documents(CONFIG / "crd")
    )
    assert objects == sorted(
        [
            *crds,
            ("ClusterRole", "infergraph-controller", ""),
            ("ClusterRoleBinding", "infergraph-controller", ""),
            # kustomize cannot know these are cluster-scoped; kubectl drops the namespace.
            ("ClusterServingRuntime", "infergraph-custom", NAMESPACE),
            ("ClusterServingRuntime", "kserve-sklearnserver", NAMESPACE),
            ("Deployment", "infergraph-controller", NAMESPACE),
            ("Namespace", NAMESPACE, ""),
            ("Role", "infergraph-controller-leader-election", NAMESPACE),
            ("RoleBinding", "infergraph-controller-leader-election", NAMESPACE),
            ("ServiceAccount", "infergraph-controller", NAMESPACE),
        ]
    )


@pytest.fixture(scope="module")
def deployed(crds: ControlPlane) -> ControlPlane:
    """config/default applied the documented way: CRDs first (the `crds` fixture), then all."""
    crds.kubectl("apply", "--validate=strict", "-k", DEFAULT)
    return crds


def test_apply_default_creates_everything(deployed: ControlPlane) -> None:
    again = deployed.kubectl("apply", "--validate=strict", "-k", DEFAULT)
    lines = again.stdout.splitlines()
    # 5 CRDs (4 serving.kserve.io, 1 infergraph.dev), Namespace, 4 RBAC, ServiceAccount,
    # Deployment, 2 runtimes
    assert len(lines) == 14
    for line in lines:
        assert line.endswith((" unchanged", " configured")), line
    runtimes = deployed.kubectl("get", "clusterservingruntimes", "-o", "name").stdout.split()
    assert sorted(runtimes) == [
        "clusterservingruntime.serving.kserve.io/infergraph-custom",
        "clusterservingruntime.serving.kserve.io/kserve-sklearnserver",
    ]


def test_controller_deployment_rolls_out_under_pod_security_restricted(
    deployed: ControlPlane,
) -> None:
    # The namespace enforces the restricted profile: a Pod that broke it would never be created.
    deadline = time.monotonic() + ROLLOUT_TIMEOUT
    while time.monotonic() < deadline:
        status = deployed.kubectl(
            "get",
            "deployment",
            "infergraph-controller",
            "-n",
            NAMESPACE,
            "-o",
            "jsonpath={.status.readyReplicas}",
        ).stdout
        if status == "1":
            break
        time.sleep(0.2)
    else:
        events = deployed.kubectl("get", "events", "-n", NAMESPACE).stdout
        pytest.fail(f"controller Deployment not ready after {ROLLOUT_TIMEOUT}s; events:\n{events}")
    pod = yaml.safe_load(
        deployed.kubectl(
            "get",
            "pods",
            "-n",
            NAMESPACE,
            "-l",
            "app.kubernetes.io/name=infergraph-controller",
            "-o",
            "yaml",
        ).stdout
    )["items"][0]
    assert pod["spec"]["serviceAccountName"] == "infergraph-controller"
    assert pod["spec"]["containers"][0]["command"] == ["infergraph", "controller"]


def granted(control_plane: ControlPlane) -> set[tuple[str, str, str, str]]:
    """The (group, resource, verb, scope) the config's ClusterRole and Role grant."""
    found = set()
    for _, doc in documents(CONFIG / "rbac"):
        if doc["kind"] not in ("ClusterRole", "Role"):
            continue
        scope = "cluster" if doc["kind"] == "ClusterRole" else doc["metadata"]["namespace"]
        for rule in doc["rules"]:
            assert "resourceNames" not in rule
            assert "nonResourceURLs" not in rule
            found |= {
                (group, resource, verb, scope)
                for group in rule["apiGroups"]
                for resource in rule["resources"]
                for verb in rule["verbs"]
            }
    return found


def test_rbac_grants_exactly_the_controllers_calls(control_plane: ControlPlane) -> None:
    assert granted(control_plane) == CONTROLLER_CALLS


def can_i(
    control_plane: ControlPlane, verb: str, resource: str, namespace: str, subresource: str = ""
) -> bool:
    scope = ["-n", namespace] if namespace else ["--all-namespaces"]
    if subresource:  # `kubectl auth can-i VERB TYPE/NAME` would read it as an object's name
        scope.append(f"--subresource={subresource}")
    answer = control_plane.kubectl(
        "auth", "can-i", verb, resource, f"--as={SERVICE_ACCOUNT}", *scope, check=False
    )
    assert answer.stdout.strip() in ("yes", "no"), answer.stderr
    return answer.stdout.strip() == "yes"


def test_service_account_can_make_every_call(deployed: ControlPlane) -> None:
    refused = []
    for group, resource, verb, scope in sorted(CONTROLLER_CALLS):
        name, _, sub = resource.partition("/")
        qualified = f"{name}.{group}" if group else name
        namespace = "default" if scope == "cluster" else scope
        if not can_i(deployed, verb, qualified, namespace, sub):
            refused.append((verb, resource, namespace))
    assert refused == []


@pytest.mark.parametrize(("verb", "resource", "namespace"), FORBIDDEN, ids=str)
def test_service_account_cannot(
    deployed: ControlPlane, verb: str, resource: str, namespace: str
) -> None:
    assert not can_i(deployed, verb, resource, namespace)


def test_documented_install_on_a_fresh_cluster(control_plane: ControlPlane) -> None:
    """The README's two commands, on a cluster that has never seen our CRDs: kubectl maps the
    ClusterServingRuntimes only once their CRD is Established, so CRDs go first."""
    with ControlPlane(bin_dir=control_plane.bin_dir) as fresh:
        fresh.kubectl("apply", "-k", str(CONFIG / "crd"))
        fresh.kubectl("wait", "--for=condition=Established", "--timeout=60s", "crd", "--all")
        applied = fresh.kubectl("apply", "-k", DEFAULT)
        assert applied.stdout.count(" created") == 9  # all but the 5 CRDs


def _audited_calls(event: dict[str, Any]) -> set[tuple[str, str, str, str]]:
    """What the event shows being authorized: an apply PATCH answered 201 created the object,
    which the API server authorizes as `create` as well as `patch`."""
    ref = event["objectRef"]
    resource = ref["resource"] + (f"/{ref['subresource']}" if ref.get("subresource") else "")
    scope = NAMESPACE if ref["resource"] == "leases" else "cluster"
    verbs = {event["verb"]}
    if event["verb"] == "patch" and event["responseStatus"]["code"] == 201:
        verbs.add("create")
    return {(ref.get("apiGroup", ""), resource, verb, scope) for verb in verbs}


def test_controller_under_its_service_account_uses_exactly_its_rbac(
    deployed: ControlPlane, tmp_path: Path
) -> None:
    """The controller, run as infergraph-controller with config/rbac only, reconciles a graph
    of each API group (prunes an HPA, stops an InferenceService) with no 403, and the audit log
    shows every granted call used."""
    from tests.k8s.controller import Cluster, graph, is_true, isvc, running, wait_for

    config = deployed.service_account_kubeconfig(NAMESPACE, "infergraph-controller")
    namespace = f"rbac-{time.monotonic_ns() % 10**9}"
    deployed.kubectl("create", "namespace", namespace)
    cluster = Cluster(deployed, namespace)
    try:
        # Leader election on (the manager's default): the Lease in infergraph-system.
        with running(
            deployed, tmp_path / "controller.log", kubeconfig=config, leader_elect=True
        ) as c:
            cluster.create(isvc("scaled", max_replicas=2))
            cluster.create(graph("g", ["scaled"]))
            cluster.create(graph("ours", ["scaled"], OUR_GROUP))
            wait_for(
                "graph g Ready under the ServiceAccount",
                lambda: is_true(cluster.get("InferenceGraph", "g"), "Ready"),
                controller=c,
            )
            wait_for(
                "infergraph.dev graph Ready under the ServiceAccount",
                lambda: is_true(cluster.get("InferenceGraph", "ours", OUR_GROUP), "Ready"),
                controller=c,
            )
            assert cluster.owned("horizontalpodautoscalers", "scaled-predictor") is not None
            external = {"serving.kserve.io/autoscalerClass": "external"}
            cluster.patch("InferenceService", "scaled", {"metadata": {"annotations": external}})
            wait_for(
                "HPA pruned under the ServiceAccount",
                lambda: cluster.owned("horizontalpodautoscalers", "scaled-predictor") is None,
                controller=c,
            )
            stop = {"serving.kserve.io/stop": "true"}
            cluster.patch("InferenceService", "scaled", {"metadata": {"annotations": stop}})
            wait_for(
                "stopped: Deployment and Service deleted under the ServiceAccount",
                # The two graphs' routers stay (not Ready, waiting for the service).
                lambda: (
                    cluster.names("deployments") == ["g", "ours"]
                    and cluster.names("services") == ["g", "ours"]
                ),
                controller=c,
            )

        # Watches are audited when they end: the controller has stopped, so all have.
        def calls() -> set[tuple[str, str, str, str]]:
            return set().union(*(_audited_calls(e) for e in deployed.audit_events(SERVICE_ACCOUNT)))

        wait_for("every call audited", lambda: calls() >= CONTROLLER_CALLS, timeout=15.0)
        events = deployed.audit_events(SERVICE_ACCOUNT)
        refused = [e for e in events if e["responseStatus"]["code"] == 403]
        assert refused == []
        assert calls() == CONTROLLER_CALLS
    finally:
        cluster.close()
        deployed.kubectl("delete", "namespace", namespace, "--wait=false")
