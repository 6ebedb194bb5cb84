"""graph_controller.controller.leader: the Lease rules (pure), and the elector against an
in-memory Lease with the API server's conflict rules."""

from __future__ import annotations

import copy
import threading
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, cast

import pytest

from graph_controller.controller.kube import ApiError, Kube
from graph_controller.controller.leader import (
    LeaderElector,
    Timing,
    lease_body,
    micro_time,
    should_take,
)

NOW = datetime(2026, 1, 1, 12, 0, 0, 123456, tzinfo=UTC)


@pytest.mark.parametrize(
    ("holder", "unchanged_for", "expected"),
    [
        pytest.param("", 0.0, True, id="free"),
        pytest.param("me", 0.0, True, id="mine"),
        pytest.param("other", 14.9, False, id="other-fresh"),
        pytest.param("other", 15.0, True, id="other-expired"),
    ],
)
def test_should_take(holder: str, unchanged_for: float, expected: bool) -> None:
    spec = {"holderIdentity": holder, "leaseDurationSeconds": 15}
    assert should_take(spec, "me", unchanged_for, 15.0) is expected


def test_taking_over_counts_a_transition_renewing_does_not() -> None:
    current = {"metadata": {"resourceVersion": "7"}, "spec": {"holderIdentity": "other"}}
    taken = lease_body(current, "me", 15.0, NOW)
    assert taken["spec"]["holderIdentity"] == "me"
    assert taken["spec"]["leaseTransitions"] == 1
    assert taken["spec"]["acquireTime"] == "2026-01-01T12:00:00.123456Z"
    assert taken["metadata"]["resourceVersion"] == "7"  # the update is conditional on it
    renewed = lease_body(taken, "me", 15.0, NOW.replace(second=5))
    assert renewed["spec"]["leaseTransitions"] == 1
    assert renewed["spec"]["acquireTime"] == taken["spec"]["acquireTime"]
    assert renewed["spec"]["renewTime"] == micro_time(NOW.replace(second=5))


def test_timing_must_be_ordered() -> None:
    with pytest.raises(ValueError, match="retry period"):
        Timing(lease_duration=5, renew_deadline=6, retry_period=1)


class LeaseServer:
    """The API server's Lease semantics in memory: conditional PUT on resourceVersion (409),
    POST of an existing Lease (409). `fail` makes renewals (PUTs) fail with what it returns."""

    def __init__(self) -> None:
        self.lease: dict[str, Any] | None = None
        self.version = 0
        self.budgets: list[float] = []
        self.fail: Callable[[float], Exception] | None = None

    def get_lease(self, namespace: str, name: str, timeout: float) -> dict[str, Any] | None:
        self.budgets.append(timeout)
        return copy.deepcopy(self.lease)

    def create_lease(self, lease: dict[str, Any], timeout: float) -> dict[str, Any]:
        self.budgets.append(timeout)
        if self.lease is not None:
            raise ApiError(409, "exists")
        return self._store(lease)

    def update_lease(self, lease: dict[str, Any], timeout: float) -> dict[str, Any]:
        self.budgets.append(timeout)
        if self.fail is not None:
            raise self.fail(timeout)
        assert self.lease is not None
        if lease["metadata"].get("resourceVersion") != self.lease["metadata"]["resourceVersion"]:
            raise ApiError(409, "conflict")
        return self._store(lease)

    def _store(self, lease: dict[str, Any]) -> dict[str, Any]:
        self.version += 1
        self.lease = copy.deepcopy(lease)
        self.lease["metadata"]["resourceVersion"] = str(self.version)
        return copy.deepcopy(self.lease)


def _elector(server: LeaseServer, lost: threading.Event, stop: threading.Event) -> LeaderElector:
    timing = Timing(lease_duration=1.0, renew_deadline=0.5, retry_period=0.05)
    return LeaderElector(
        cast("Kube", server), "ns", "lease", "me", timing,
        on_started=lambda: None, on_lost=lost.set, stop=stop,
    )  # fmt: skip


@pytest.mark.parametrize(
    "failure",
    [
        pytest.param(lambda budget: ApiError(0, "unreachable"), id="api-error"),
        pytest.param(lambda budget: RuntimeError("a client bug"), id="unexpected"),
    ],
)
def test_a_leader_that_cannot_renew_steps_down(failure: Callable[[float], Exception]) -> None:
    # Whatever breaks renewals (an API error, or an exception nobody expected), the leader
    # reports the Lease lost: a silently dead elector would let a standby lead beside it.
    server, lost, stop = LeaseServer(), threading.Event(), threading.Event()
    elector = _elector(server, lost, stop)
    elector.start()
    try:
        assert elector.leading.wait(5)
        server.fail = failure
        assert lost.wait(5), "the leader never stepped down"
        assert not elector.leading.is_set()
        # No call was given more time than the renew deadline.
        assert max(server.budgets) <= 0.5
    finally:
        stop.set()
        elector.join(5)


@pytest.mark.parametrize("release", [True, False])
def test_a_stop_releases_the_lease_only_when_asked(release: bool) -> None:
    server, lost, stop = LeaseServer(), threading.Event(), threading.Event()
    elector = _elector(server, lost, stop)
    elector.start()
    assert elector.leading.wait(5)
    elector.release = release
    stop.set()
    elector.join(5)
    assert server.lease is not None
    holder = server.lease["spec"]["holderIdentity"]
    assert holder == (None if release else "me")
    assert not lost.is_set()
