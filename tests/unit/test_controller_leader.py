"""graph_controller.controller.leader: the Lease rules (pure)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from graph_controller.controller.leader import Timing, lease_body, micro_time, should_take

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
