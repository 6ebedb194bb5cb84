"""Properties of the pure rules behind InferGraph's extensions (no network, no wall clock)."""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections import Counter
from collections.abc import Mapping
from itertools import accumulate
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from router import aggregation
from router.errors import GraphTimeout, StepUnreachable
from router.executor import Clock, Execution
from router.graph import Step, compile_graph
from router.nodes.splitter import pick_route, sticky_point
from router.payload import Payload, Reply
from router.resilience import Breaker, BreakerState, backoff_seconds
from schemas.graph import CircuitBreakerPolicy, RetryPolicy
from schemas.valid_graph import validate_graph

weights_lists = st.lists(st.integers(1, 60), min_size=2, max_size=5).filter(lambda w: sum(w) > 0)


@settings(derandomize=True, max_examples=40, deadline=None)
@given(weights_lists)
def test_sticky_routing_is_stable_and_follows_the_weights(weights: list[int]) -> None:
    total = sum(weights)
    cumulative = tuple(accumulate(weights))
    keys = [f"user-{i}" for i in range(4000)]
    routes = [pick_route(cumulative, sticky_point(k, total)) for k in keys]
    # Stable: the same key always lands on the same route.
    assert routes[:50] == [pick_route(cumulative, sticky_point(k, total)) for k in keys[:50]]
    counts = Counter(routes)
    for index, weight in enumerate(weights):
        share = weight / total
        expected = share * len(keys)
        sd = (len(keys) * share * (1 - share)) ** 0.5
        assert abs(counts[index] - expected) <= 5 * sd + 1, (index, counts, weights)


votes = st.lists(st.sampled_from(["cat", "dog", "cow"]), min_size=1, max_size=7)


@settings(derandomize=True, max_examples=200)
@given(votes, st.randoms(use_true_random=False))
def test_majority_picks_a_most_voted_answer_and_ignores_order_without_ties(
    labels: list[str], rng: random.Random
) -> None:
    answers = [aggregation.Answer(f"s{i}", {"predictions": [x]}) for i, x in enumerate(labels)]
    (winner,) = aggregation.majority(answers)["predictions"]
    counts = Counter(labels)
    assert counts[winner] == max(counts.values())
    shuffled = list(answers)
    rng.shuffle(shuffled)
    top = [label for label, n in counts.items() if n == max(counts.values())]
    if len(top) == 1:
        assert aggregation.majority(shuffled)["predictions"] == [winner]
    else:  # ties go to the earliest first vote in step order, documented and deterministic
        assert winner == next(label for label in labels if label in top)


matrices = st.integers(1, 4).flatmap(
    lambda n: st.lists(
        st.lists(st.floats(-1e6, 1e6, allow_nan=False), min_size=n, max_size=n),
        min_size=1,
        max_size=5,
    )
)


@settings(derandomize=True, max_examples=200)
@given(matrices, st.data())
def test_means_equal_numpy(rows: list[list[float]], data: st.DataObject) -> None:
    weights = data.draw(st.lists(st.integers(1, 10), min_size=len(rows), max_size=len(rows)))
    answers = [
        aggregation.Answer(f"s{i}", {"predictions": row}, float(w))
        for i, (row, w) in enumerate(zip(rows, weights, strict=True))
    ]
    plain = aggregation.mean(answers)["predictions"]
    weighted = aggregation.mean(answers, weighted=True)["predictions"]
    np.testing.assert_allclose(plain, np.mean(rows, axis=0), rtol=1e-9, atol=1e-6)
    np.testing.assert_allclose(
        weighted, np.average(rows, axis=0, weights=weights), rtol=1e-9, atol=1e-6
    )


def test_v2_tensors_are_averaged_as_tensors() -> None:
    def tensor(data: list[float]) -> dict[str, Any]:
        return {"outputs": [{"name": "p", "shape": [2], "datatype": "FP32", "data": data}]}

    answers = [aggregation.Answer("a", tensor([1, 2])), aggregation.Answer("b", tensor([3, 4]))]
    assert aggregation.mean(answers) == {
        "outputs": [{"name": "p", "shape": [2], "datatype": "FP64", "data": [2.0, 3.0]}]
    }


class FakeClock:
    """Time that moves only when the code under test sleeps or a call takes time."""

    def __init__(self) -> None:
        self.time = 0.0
        self.sleeps: list[float] = []

    def now(self) -> float:
        return self.time

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.time += seconds


class AlwaysFailing:
    """A step caller seam that answers 503 (or fails to connect), taking `cost` seconds."""

    def __init__(self, clock: FakeClock, cost: float, connect_error: bool) -> None:
        self.clock, self.cost, self.connect_error, self.calls = clock, cost, connect_error, 0

    async def __call__(
        self, step: Step, body: bytes, headers: Mapping[str, str], seconds: float
    ) -> Reply:
        self.calls += 1
        assert seconds > 0  # never called with a spent budget
        self.clock.time += min(self.cost, seconds)
        if self.connect_error:
            raise StepUnreachable("refused")
        return Reply(503, Payload(b"{}"))


@settings(derandomize=True, max_examples=150, deadline=None)
@given(
    max_retries=st.integers(0, 8),
    initial=st.integers(0, 500),
    cap=st.integers(0, 3000),
    deadline=st.floats(0.05, 5.0),
    cost=st.floats(0.0, 1.0),
    connect_error=st.booleans(),
    seed=st.integers(0, 2**16),
)
def test_no_retry_ever_exceeds_the_deadline(
    max_retries: int,
    initial: int,
    cap: int,
    deadline: float,
    cost: float,
    connect_error: bool,
    seed: int,
) -> None:
    retry = {"maxRetries": max_retries, "initialDelayMs": initial, "maxDelayMs": cap}
    spec = {"nodes": {"root": {"routerType": "Sequence", "steps": [
        {"serviceUrl": "http://127.0.0.1:9/x", "retry": retry}]}}}  # fmt: skip
    graph = compile_graph(validate_graph(spec))
    clock = FakeClock()
    caller = AlwaysFailing(clock, cost, connect_error)
    execution = Execution(
        caller,
        Payload(b"{}"),
        {},
        random.Random(seed),
        deadline=deadline,
        service_client_timeout=60.0,
        clock=Clock(clock.now, clock.sleep),
    )
    # The last failure is the answer; the deadline may also pass before a retry starts.
    with contextlib.suppress(StepUnreachable, GraphTimeout):
        asyncio.run(execution.run_node(graph.root, execution.request))
    assert caller.calls <= max_retries + 1
    assert clock.time <= deadline + 1e-9
    assert all(s <= cap / 1000 + 1e-9 for s in clock.sleeps)


@settings(derandomize=True, max_examples=200)
@given(st.integers(1, 8), st.integers(1, 8), st.floats(0.0, 2.0), st.integers(0, 2**16))
def test_backoff_is_capped_and_non_negative(
    attempt: int, initial: int, factor: float, seed: int
) -> None:
    policy = RetryPolicy(maxRetries=8, initialDelayMs=initial, maxDelayMs=int(initial * factor))
    delay = backoff_seconds(policy, attempt, random.Random(seed))
    assert 0 <= delay <= min(policy.max_delay_ms, initial * 2 ** (attempt - 1)) / 1000


@settings(derandomize=True, max_examples=200)
@given(st.lists(st.booleans(), max_size=30), st.integers(1, 5))
def test_breaker_opens_after_threshold_consecutive_failures(
    results: list[bool], threshold: int
) -> None:
    breaker = Breaker(CircuitBreakerPolicy(failureThreshold=threshold, cooldownSeconds=10))
    consecutive = 0
    for ok in results:
        now = 0.0  # no time passes: once open, it stays open
        if breaker.state(now) is BreakerState.OPEN:
            assert not breaker.allow(now)
            assert consecutive >= threshold
            continue
        assert breaker.allow(now)
        breaker.record(ok, now)
        consecutive = 0 if ok else consecutive + 1
        assert (breaker.state(now) is BreakerState.OPEN) == (consecutive >= threshold)


def test_half_open_lets_exactly_one_probe_through() -> None:
    breaker = Breaker(CircuitBreakerPolicy(failureThreshold=1, cooldownSeconds=5))
    breaker.record(False, 0.0)
    assert not breaker.allow(4.9)
    assert breaker.allow(5.0)  # the probe
    assert not breaker.allow(5.0)  # a second caller waits for the probe's outcome
    breaker.record(True, 5.1)
    assert breaker.state(5.1) is BreakerState.CLOSED


@pytest.mark.parametrize("probe_ok", [True, False], ids=["probe-succeeds", "probe-fails"])
def test_probe_outcome_closes_or_reopens(probe_ok: bool) -> None:
    breaker = Breaker(CircuitBreakerPolicy(failureThreshold=2, cooldownSeconds=5))
    breaker.record(False, 0.0)
    breaker.record(False, 0.0)
    assert breaker.allow(6.0)
    breaker.record(probe_ok, 6.0)
    expected = BreakerState.CLOSED if probe_ok else BreakerState.OPEN
    assert breaker.state(6.0) is expected
