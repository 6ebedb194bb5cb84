"""The controller under trouble: API errors answered by a fault-injecting proxy are retried with
backoff; a controller killed mid-reconcile converges on restart without duplicates; of two
controllers with leader election only the Lease holder reconciles, and the other takes over."""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any

from tests.k8s.controller import (
    Cluster,
    ControllerProcess,
    graph,
    is_true,
    isvc,
    running,
    wait_for,
)
from tests.k8s.envtest import free_port
from tests.k8s.fault_proxy import FaultProxy, Rule

APPLY = "application/apply-patch+yaml"


def _all_ready(cluster: Cluster, kind: str, names: list[str]) -> bool:
    return all(is_true(cluster.get(kind, n), "Ready") for n in names)


def test_api_errors_are_retried_with_backoff_and_converge(cluster: Cluster, tmp_path: Path) -> None:
    ns = cluster.namespace
    rules = [
        # A conflict on the predictor's apply, twice.
        Rule(lambda m, p, t: m == "PATCH" and t == APPLY and "/deployments/" in p, 409, 2),
        # Server errors on status writes: 500 then 503 (first matching rule wins each time).
        Rule(lambda m, p, t: m == "PATCH" and p.endswith("/status"), 500, 1),
        Rule(lambda m, p, t: m == "PATCH" and p.endswith("/status"), 503, 1),
        # And a throttled apply of the Service.
        Rule(lambda m, p, t: m == "PATCH" and t == APPLY and "/services/" in p, 429, 1),
    ]
    with FaultProxy(cluster.plane, rules) as proxy:
        config = proxy.kubeconfig(tmp_path / "proxy.kubeconfig")
        log = tmp_path / "controller.log"
        with running(cluster.plane, log, f"--namespace={ns}", kubeconfig=config) as c:
            cluster.create(isvc("m"))
            cluster.create(graph("g", ["m"]))
            wait_for(
                "graph g and InferenceService m Ready through the proxy",
                lambda: (
                    _all_ready(cluster, "InferenceService", ["m"])
                    and _all_ready(cluster, "InferenceGraph", ["g"])
                ),
                controller=c,
            )
            lines = c.lines()
    for rule in rules:
        assert len(rule.hits) == rule.times, (rule.status, rule.hits)
    retried = [line for line in lines if line["msg"] == "reconcile failed, retrying"]
    assert sorted({line["status"] for line in retried}) == [409, 429, 500, 503]
    # Per key, each retry waits twice as long as the one before (until a success resets it).
    by_key: dict[str, list[float]] = {}
    for line in retried:
        by_key.setdefault(line["object"], []).append(line["retry_in"])
    isvc_delays = by_key[f"InferenceService/{ns}/m"]
    assert len(isvc_delays) >= 2
    assert any(b == 2 * a for a, b in itertools.pairwise(isvc_delays))
    # Every injected failure was followed by the same call succeeding through the proxy.
    for injected in (s for s in proxy.seen if s.injected):
        assert any(
            s.path == injected.path and s.method == injected.method and s.status < 300
            for s in proxy.seen
            if not s.injected
        ), injected
    assert not [line for line in lines if line["msg"] == "reconcile failed, not retried"]


def _owned_summary(cluster: Cluster) -> dict[str, Any]:
    return {r: cluster.names(r) for r in ("deployments", "services")}


def test_restart_mid_reconcile_converges_without_duplicates(
    cluster: Cluster, tmp_path: Path
) -> None:
    count = 30
    names = [f"s{i}" for i in range(count)]
    for name in names:
        cluster.create(isvc(name))
        cluster.create(graph(f"g{name}", [name]))
    expected_deployments = sorted([f"{n}-predictor" for n in names] + [f"g{n}" for n in names])
    first = ControllerProcess(
        cluster.plane, tmp_path / "first.log", f"--namespace={cluster.namespace}", "--workers=1"
    )
    wait_for(
        "first controller applies something",
        lambda: any(line["msg"] == "applied" for line in first.lines()),
        controller=first,
    )
    first.kill()  # SIGKILL: no cleanup, whatever was in flight stays half-done
    partial = cluster.names("deployments")
    assert len(partial) < len(expected_deployments), "the kill came too late to test anything"
    with running(
        cluster.plane, tmp_path / "second.log", f"--namespace={cluster.namespace}"
    ) as second:
        wait_for(
            "every graph Ready after the restart",
            lambda: _all_ready(cluster, "InferenceGraph", [f"g{n}" for n in names]),
            controller=second,
            describe=lambda: str(_owned_summary(cluster)),
        )
    assert cluster.names("deployments") == expected_deployments
    assert cluster.names("services") == expected_deployments
    for name in expected_deployments:
        deployment = cluster.owned("deployments", name)
        assert deployment is not None
        (owner_ref,) = deployment["metadata"]["ownerReferences"]
        # Owned by the live object of that name (not a stale uid from before the kill), and
        # written by our server-side apply.
        owner = cluster.get(owner_ref["kind"], owner_ref["name"])
        assert owner is not None
        assert owner_ref["uid"] == owner["metadata"]["uid"]
        managers = [(m["manager"], m["operation"]) for m in deployment["metadata"]["managedFields"]]
        assert ("infergraph", "Apply") in managers, managers


def _lease(cluster: Cluster, namespace: str, name: str) -> dict[str, Any] | None:
    return cluster.raw(f"/apis/coordination.k8s.io/v1/namespaces/{namespace}/leases/{name}")


def test_leader_election_one_reconciles_the_other_takes_over(
    cluster: Cluster, tmp_path: Path
) -> None:
    ns = cluster.namespace
    lease_name = f"lease-{ns}"
    common = (
        f"--namespace={ns}",
        f"--lease-namespace={ns}",
        f"--lease-name={lease_name}",
        "--lease-duration=3",
        "--renew-deadline=2",
        "--retry-period=0.5",
    )
    one = ControllerProcess(
        cluster.plane, tmp_path / "one.log", *common, "--identity=one", leader_elect=True
    )
    try:
        wait_for(
            "controller one holds the Lease",
            lambda: (
                ((_lease(cluster, ns, lease_name) or {}).get("spec") or {}).get("holderIdentity")
                == "one"
            ),
            controller=one,
        )
        with running(
            cluster.plane, tmp_path / "two.log", *common, "--identity=two", leader_elect=True
        ) as two:
            two.wait_ready()  # a standby keeps its caches warm: ready, but not reconciling
            cluster.create(isvc("first"))
            wait_for(
                "InferenceService first Ready",
                lambda: is_true(cluster.get("InferenceService", "first"), "Ready"),
                controller=one,
            )
            assert any(line["msg"] == "applied" for line in one.lines())
            assert not [line for line in two.lines() if line["msg"] in ("applied", "reconciling")]
            one.kill()  # no release: two must wait for the lease to expire
            wait_for(
                "controller two takes the Lease",
                lambda: (
                    ((_lease(cluster, ns, lease_name) or {}).get("spec") or {}).get(
                        "holderIdentity"
                    )
                    == "two"
                ),
                controller=two,
            )
            cluster.create(isvc("second"))
            wait_for(
                "InferenceService second Ready (reconciled by two)",
                lambda: is_true(cluster.get("InferenceService", "second"), "Ready"),
                controller=two,
            )
            assert any(line.get("msg") == "became leader" for line in two.lines())
        # two stopped with SIGTERM: it hands the Lease back.
        lease = _lease(cluster, ns, lease_name)
        assert lease is not None
        assert not lease["spec"].get("holderIdentity")
        assert lease["spec"]["leaseTransitions"] >= 1
    finally:
        if one.alive():
            one.kill()


def test_expired_watch_is_relisted_and_changes_are_not_lost(
    cluster: Cluster, tmp_path: Path
) -> None:
    """A watch answered '410 Gone' (its resourceVersion compacted away) makes the informer
    list again, and a malformed event does not end it; the object is still reconciled."""

    def watch(m: str, p: str, t: str) -> bool:
        return m == "GET" and "/inferenceservices?" in p and "watch=true" in p

    rules = [
        Rule(watch, 410, 2, as_watch_event=True),
        # A malformed ERROR event: the client raises KeyError; the informer must survive it.
        Rule(watch, 410, 1, as_watch_event=True, omit_reason=True),
    ]
    with FaultProxy(cluster.plane, rules) as proxy:
        config = proxy.kubeconfig(tmp_path / "proxy.kubeconfig")
        log = tmp_path / "controller.log"
        with running(
            cluster.plane, log, f"--namespace={cluster.namespace}", kubeconfig=config
        ) as c:
            cluster.create(isvc("late"))
            wait_for(
                "InferenceService late Ready after re-lists",
                lambda: is_true(cluster.get("InferenceService", "late"), "Ready"),
                controller=c,
            )
            wait_for(
                "three failed watches handled",
                lambda: (
                    sum(line["msg"] == "list/watch failed" for line in c.lines()) >= 2
                    and sum(line["msg"] == "watch expired, re-listing" for line in c.lines()) >= 2
                ),
                controller=c,
            )
            lines = c.lines()
    assert [len(rule.hits) for rule in rules] == [2, 1]
    relists = [line for line in lines if line["msg"] == "watch expired, re-listing"]
    assert [line["resource"] for line in relists] == ["inferenceservices", "inferenceservices"]
    failed = [line for line in lines if line["msg"] == "list/watch failed"]
    assert [line["resource"] for line in failed] == ["inferenceservices"] * 2  # traceback, retry
    assert "KeyError" in failed[1]["error"]


def test_unreachable_api_server_is_retried_and_readiness_waits_for_it(
    cluster: Cluster, tmp_path: Path
) -> None:
    """Connection refused (status 0) is retried with backoff; /readyz says 503 until the
    caches have listed, /healthz stays 200; once the server answers, it converges."""
    port = free_port()
    proxy = FaultProxy(cluster.plane, [], port=port)
    config = proxy.kubeconfig(tmp_path / "proxy.kubeconfig")  # nothing listens there yet
    cluster.create(isvc("patient"))
    log = tmp_path / "controller.log"
    with running(cluster.plane, log, f"--namespace={cluster.namespace}", kubeconfig=config) as c:
        wait_for(
            "a refused connection logged",
            lambda: any(
                line["msg"] == "list/watch failed" and "refused" in line["error"].lower()
                for line in c.lines()
            ),
            controller=c,
        )
        assert c.probe("/readyz") == 503
        assert c.probe("/healthz") == 200
        with proxy:
            c.wait_ready()
            wait_for(
                "InferenceService patient Ready once the server is reachable",
                lambda: is_true(cluster.get("InferenceService", "patient"), "Ready"),
                controller=c,
            )
