"""KServe's own controller as a differential oracle (issue 14).

One fresh control plane with KServe's published v0.15.2 CRDs. First KServe's manager (built by
tools/kserve/build.sh, its webhooks registered for its namespaces) reconciles the corpus in
`<group>-kserve` namespaces; once everything has settled its outputs are recorded and it stops.
Then our controller (`python -m graph_controller controller --namespace ...`) reconciles the
same objects in `<group>-ours`. Per InferenceService and InferenceGraph of the corpus, the
Deployments, Services, HPAs, Pods and the object's own metadata and status are compared field
by field (tests/k8s/oracle.py); every difference must be on the reviewed list
tests/k8s/kserve_oracle_accepted.yaml, or the case fails with a readable report.

Cases where our controller is known to differ because of a bug are marked xfail(strict) with
the issue that fixes it: when the fix lands they XPASS, which fails, and the mark goes.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests.k8s import oracle
from tests.k8s.controller import ControllerProcess
from tests.k8s.envtest import CRD_TIMEOUT, REPO, ControlPlane, MissingBinaries, wait_until
from tests.k8s.kserve_manager import (
    BUILD,
    KSERVE_NAMESPACE,
    SIDE_LABEL,
    KServeManager,
    default_storage_container,
    inferenceservice_config,
    kserve_home,
    missing,
)

# Per case: why our controller still differs from KServe's because of a bug of ours, with the
# issue that fixes it. strict: once the case matches KServe it XPASSes, which fails, and its
# entry goes.
KNOWN_BUGS: dict[str, str] = {}


# The module's fixture builds a control plane, runs both controllers and waits for each to
# settle: about two minutes on 2 shared cores, more than the suite's per-test default.
pytestmark = pytest.mark.timeout(600)


@dataclass
class Run:
    home: Path
    dump: Path
    sides: dict[str, dict[str, oracle.Side]] = field(default_factory=dict)  # side -> group -> ...
    accepted: list[oracle.Accepted] = field(default_factory=list)

    def differences(self, case: str) -> list[oracle.Difference]:
        group, kind, name = case.split("/")
        key = f"{kind}/{name}"
        kserve = self.sides["kserve"][group].outputs.get(key, {})
        ours = self.sides["ours"][group].outputs.get(key, {})
        return oracle.case_differences(kserve, ours)

    def unaccepted(self, case: str) -> list[oracle.Difference]:
        return [
            d for d in self.differences(case) if not any(a.matches(case, d) for a in self.accepted)
        ]


def _objects(group: oracle.Group, home: Path) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(runtimes, the rest): runtimes go first, so each side finds them on first reconcile."""
    runtimes = oracle.published_runtimes(home) if group.published_runtimes else []
    return runtimes, group.objects()


def _apply_side(plane: ControlPlane, side: str, home: Path) -> dict[str, dict[str, str]]:
    def one(group: oracle.Group) -> tuple[str, dict[str, str]]:
        runtimes, objects = _objects(group, home)
        ns = oracle.namespace(group.name, side)
        with plane.api_client() as api:
            refused = oracle.create_all(api, ns, runtimes)
            refused.update(oracle.create_all(api, ns, objects))
        return group.name, refused

    with ThreadPoolExecutor(len(oracle.GROUPS)) as pool:
        return dict(pool.map(one, oracle.GROUPS))


def _record(
    plane: ControlPlane, side: str, refused: dict[str, dict[str, str]]
) -> dict[str, oracle.Side]:
    out = {}
    for group in oracle.GROUPS:
        ns = oracle.namespace(group.name, side)
        items = oracle.list_namespace(plane, ns)
        out[group.name] = oracle.snapshot(items, ns, refused[group.name])
    return out


def _namespaces(side: str) -> list[str]:
    return [oracle.namespace(g.name, side) for g in oracle.GROUPS]


def _prepare(plane: ControlPlane, home: Path) -> None:
    applied = plane.kubectl(
        "apply", "--server-side", "--force-conflicts", "-o", "name", "-f", str(home / "crd")
    )
    names = applied.stdout.split()

    # Not `kubectl wait`: it gives up at once on these CRDs, whose published YAML carries a
    # `status` with null conditions.
    def established() -> bool:
        listed = json.loads(plane.kubectl("get", *names, "-o", "json").stdout)["items"]
        return all(
            any(c["type"] == "Established" and c["status"] == "True" for c in conditions)
            for conditions in ((crd.get("status") or {}).get("conditions") or [] for crd in listed)
        )

    wait_until("KServe's CRDs Established", established, CRD_TIMEOUT)
    # Our own group's InferenceGraph, which our controller also watches; KServe's
    # serving.kserve.io CRDs stay the published ones, for both sides.
    plane.install_crds(REPO / "config" / "crd" / "infergraph")
    plane.kubectl("create", "namespace", KSERVE_NAMESPACE)
    # runtimes.yaml's nodeSelector: the Pods that ask for it can run.
    plane.kubectl("label", "node", plane.node_name, "pool=inference")
    # KServe's side keeps its Pods (1 CPU each, by the runtimes) while ours runs: room for both.
    room = {"cpu": "1000", "memory": "4Ti", "pods": "2000"}
    plane.kubectl(
        "patch", "node", plane.node_name, "--subresource=status", "--type=merge",
        "-p", json.dumps({"status": {"capacity": room, "allocatable": room}}),
    )  # fmt: skip
    plane.kubectl("apply", "-f", "-", input=json.dumps(inferenceservice_config()))
    plane.kubectl("apply", "-f", "-", input=json.dumps(default_storage_container(home)))
    for side in oracle.SIDES:
        for ns in _namespaces(side):
            plane.kubectl("create", "namespace", ns)
            plane.kubectl("label", "namespace", ns, f"{SIDE_LABEL}={side}")
            # runtimes.yaml's s3-pod-fields names it; without it no Pod could be created.
            plane.kubectl("create", "serviceaccount", "model-reader", "-n", ns)


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Run]:
    home = kserve_home()
    why = missing(home)
    if why:
        pytest.fail(f"{why}: run `make kserve-oracle` ({BUILD.relative_to(REPO)})", pytrace=False)
    try:
        plane = ControlPlane()
    except MissingBinaries as e:
        pytest.fail(str(e), pytrace=False)
    logs = tmp_path_factory.mktemp("oracle")
    result = Run(home, logs / "outputs.json", accepted=oracle.load_accepted())
    with plane:
        _prepare(plane, home)
        kserve = KServeManager(plane, home, logs)
        try:
            kserve.wait_ready()
            kserve.register_webhooks()
            # The cluster runtimes this repo installs, checked by KServe's validating webhook.
            plane.kubectl("apply", "-k", str(REPO / "config" / "runtimes"))
            refused = _apply_side(plane, "kserve", home)

            def kserve_dead() -> str | None:
                return None if kserve.alive() else f"KServe's manager died:\n{kserve.tail()}"

            oracle.settle(plane, _namespaces("kserve"), kserve_dead)
            result.sides["kserve"] = _record(plane, "kserve", refused)
        finally:
            kserve.stop()
            kserve.unregister_webhooks()
        ours_ns = [a for ns in _namespaces("ours") for a in ("--namespace", ns)]
        ours = ControllerProcess(plane, logs / "controller.log", *ours_ns)
        try:
            ours.wait_ready()
            refused = _apply_side(plane, "ours", home)

            def ours_dead() -> str | None:
                return None if ours.alive() else f"our controller died:\n{ours.tail()}"

            oracle.settle(plane, _namespaces("ours"), ours_dead)
            result.sides["ours"] = _record(plane, "ours", refused)
        finally:
            ours.terminate()
        result.dump.write_text(
            json.dumps(
                {
                    side: {g: s.outputs for g, s in groups.items()}
                    for side, groups in result.sides.items()
                },
                indent=1,
                sort_keys=True,
            )
        )
        yield result


def _case_params() -> list[Any]:
    params = []
    for case in oracle.case_ids():
        marks = []
        if case in KNOWN_BUGS:
            marks.append(pytest.mark.xfail(strict=True, reason=KNOWN_BUGS[case]))
        params.append(pytest.param(case, id=case, marks=marks))
    return params


@pytest.mark.parametrize("case", _case_params())
def test_same_as_kserve(run: Run, case: str) -> None:
    unaccepted = run.unaccepted(case)
    assert not unaccepted, oracle.report(case, unaccepted, run.dump)


def test_kserve_side_really_ran(run: Run) -> None:
    """The oracle is KServe's controller, not an empty namespace: it deployed every
    InferenceService it accepted, its webhook defaulted them and injected the
    storage-initializer into a Pod."""
    outputs = run.sides["kserve"]["runtimes"].outputs
    assert "Deployment/sklearn-iris-predictor" in outputs["InferenceService/sklearn-iris"]
    isvc = outputs["InferenceService/sklearn-iris"]["InferenceService"]
    assert isvc["metadata"]["annotations"]["serving.kserve.io/deploymentMode"] == "RawDeployment"
    pod = outputs["InferenceService/sklearn-iris"]["Pod/sklearn-iris-predictor/0"]
    init = [c["name"] for c in pod["spec"].get("initContainers") or []]
    assert init == ["storage-initializer"], pod["spec"]


def test_every_accepted_difference_is_seen(run: Run) -> None:
    """An entry no difference matches any more is stale: it would hide a regression later."""
    seen = {
        entry
        for case in oracle.case_ids()
        for d in run.differences(case)
        for entry in run.accepted
        if entry.matches(case, d)
    }
    stale = [f"{a.kind} {a.path} ({a.reason})" for a in run.accepted if a not in seen]
    assert not stale, f"accepted differences no longer seen: {stale}"


def test_a_difference_is_reported() -> None:
    """The comparison itself: one changed field is one difference, named by its path."""
    deployment = {
        "kind": "Deployment",
        "metadata": {"name": "a-predictor", "namespace": "x-kserve", "uid": "1"},
        "spec": {"template": {"spec": {"containers": [{"name": "c", "image": "i:1"}]}}},
    }
    changed = json.loads(json.dumps(deployment).replace("i:1", "i:2"))
    changed["metadata"].update(namespace="x-ours", uid="2")
    found = oracle.case_differences(
        {"Deployment/a-predictor": oracle.normalise(deployment, "x-kserve")},
        {
            "Deployment/a-predictor": oracle.normalise(changed, "x-ours"),
            "Service/a-predictor": {},
        },
    )
    assert [(d.output, d.path, d.kserve, d.ours) for d in found[:1]] == [
        ("Deployment/a-predictor", "spec.template.spec.containers[0].image", "i:1", "i:2")
    ]
    assert found[1].output == "Service/a-predictor"
    assert found[1].path == oracle.ABSENT
    assert len(found) == 2


def test_readme_lists_the_accepted_differences() -> None:
    """The README's table of accepted differences is the YAML's, row for row."""
    readme = (REPO / "README.md").read_text()
    begin, end = readme.find(oracle.README_BEGIN), readme.find(oracle.README_END)
    assert 0 <= begin < end, f"README.md lacks {oracle.README_BEGIN!r} ... {oracle.README_END!r}"
    table = readme[begin + len(oracle.README_BEGIN) : end].strip()
    expected = oracle.accepted_table(oracle.load_accepted())
    assert table == expected, f"README.md's table should read:\n{expected}"
