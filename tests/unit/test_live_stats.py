"""router.live.stats: the window's tallies, their sum over workers, and percentiles."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from router.live.stats import (
    FIRST_BUCKET_SECONDS,
    LAST_BUCKET,
    NODE,
    REQUEST,
    LiveStats,
    Window,
    bucket_bound,
    bucket_of,
    failed,
    summarise,
)


class FakeClock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.mark.parametrize(
    ("status", "error", "is_failure"),
    [
        (200, None, False),
        (204, None, False),
        (404, None, True),
        (500, "boom", True),
        (None, "cancelled", False),
        (None, "connection refused", True),
    ],
    ids=["200", "204", "404", "500", "cancelled", "no-answer"],
)
def test_what_counts_as_an_error(status: int | None, error: str | None, is_failure: bool) -> None:
    assert failed(status, error) is is_failure


@settings(derandomize=True, max_examples=300)
@given(st.floats(FIRST_BUCKET_SECONDS * 1.0001, 60.0))
def test_a_duration_falls_in_the_first_bucket_that_bounds_it(seconds: float) -> None:
    bucket = bucket_of(seconds)
    assert 0 < bucket < LAST_BUCKET
    assert bucket_bound(bucket) >= seconds * (1 - 1e-9)
    assert bucket_bound(bucket - 1) < seconds * (1 + 1e-9)


def test_seconds_leave_the_window_as_it_moves() -> None:
    clock = FakeClock(1000.5)
    window = Window(clock, span=10)
    window.tally((REQUEST, "", "")).add(0.001, False)
    clock.now = 1005.2
    window.tally((REQUEST, "", "")).add(0.001, True)

    def count(now: float) -> tuple[int, int]:
        summary = summarise([{"window": window.raw()}], now, 10)[(REQUEST, "", "")]
        return summary.count, summary.errors

    assert count(1005.2) == (2, 1)
    clock.now = 1010.9  # second 1000 is 10 s old: out
    assert count(1010.9) == (1, 1)
    clock.now = 1016.0
    window.tally((NODE, "root", "")).add(0.001, False)  # a new second prunes the old ones
    assert (REQUEST, "", "") not in summarise([{"window": window.raw()}], 1016.0, 10)


def test_workers_snapshots_add_up_and_percentiles_come_from_the_sum() -> None:
    clock = FakeClock(2000.0)
    one, two = Window(clock), Window(clock)
    for _ in range(90):
        one.tally((REQUEST, "", "")).add(0.001, False)
    for _ in range(10):
        two.tally((REQUEST, "", "")).add(1.0, True)
    merged = summarise([{"window": one.raw()}, {"window": two.raw()}], 2000.0, 10)
    figures = merged[(REQUEST, "", "")].as_json(10)
    assert figures["count"] == 100
    assert figures["rate"] == 10.0
    assert figures["errorRate"] == 0.1
    # 90 calls at 1 ms and 10 at 1 s: the median is 1 ms's bucket, the 95th 1 s's.
    assert figures["p50Ms"] == pytest.approx(bucket_bound(bucket_of(0.001)) * 1000, rel=1e-3)
    assert figures["p95Ms"] == pytest.approx(bucket_bound(bucket_of(1.0)) * 1000, rel=1e-3)
    assert 1000 <= figures["p95Ms"] < 1200  # within the buckets' 20%


def test_no_calls_no_percentiles() -> None:
    assert summarise([], 0.0, 10) == {}


def test_only_the_last_traces_are_kept_newest_last() -> None:
    stats = LiveStats()
    for number in range(60):
        trace = stats.trace()
        stats.request_finished(trace, "POST", f"/{number}", 200)
    raw = stats.raw()
    assert len(raw["traces"]) == 50
    assert [t["path"] for t in raw["traces"]] == [f"/{n}" for n in range(10, 60)]
    assert len({t["id"] for t in raw["traces"]}) == 50
