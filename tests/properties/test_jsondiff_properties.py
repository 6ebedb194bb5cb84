"""Invariants of the diff rule replay and shadow comparison share (router.jsondiff), and of
replay's per-request comparison (router.replay.compare), against a reference JSON equality."""

from __future__ import annotations

import math
from collections import Counter
from typing import Any

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from router.jsondiff import Change, Difference, Tolerance, diff, is_number, max_deviation, within
from router.replay import Record, RecordedCall, RecordedDecision, Run, compare

scalars = st.none() | st.booleans() | st.integers(-(2**53), 2**53) | st.text(max_size=5)
finite = st.floats(-1e6, 1e6, allow_nan=False, allow_infinity=False)
json_values = st.recursive(
    scalars | finite,
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=3), children, max_size=4)
    ),
    max_leaves=20,
)
tolerances = st.builds(Tolerance, st.floats(0, 10), st.floats(0, 1))


def json_equal(a: Any, b: Any) -> bool:
    """The reference: JSON equality, numbers by value, booleans apart from numbers."""
    if is_number(a) and is_number(b):
        return float(a) == float(b)
    if isinstance(a, bool) or isinstance(b, bool):
        return type(a) is type(b) and a == b
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(json_equal(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(json_equal(x, y) for x, y in zip(a, b, strict=True))
    return type(a) is type(b) and a == b


@given(json_values)
def test_a_value_never_differs_from_itself(value: Any) -> None:
    assert diff(value, value) == []


@given(json_values, json_values)
@example(1, True)
@example(1, 1.0)
@example({"a": 0}, {"a": False})
@example([], {})
def test_no_difference_exactly_when_json_equal(a: Any, b: Any) -> None:
    assert (diff(a, b) == []) == json_equal(a, b)


@given(json_values, json_values)
def test_diff_is_symmetric_up_to_missing_and_added(a: Any, b: Any) -> None:
    swap = {Change.MISSING: Change.ADDED, Change.ADDED: Change.MISSING}
    forward = sorted((d.path, swap.get(d.change, d.change)) for d in diff(a, b))
    backward = sorted((d.path, d.change) for d in diff(b, a))
    assert forward == backward


@given(json_values, json_values, tolerances)
def test_a_tolerance_only_forgives_close_numbers(a: Any, b: Any, tolerance: Tolerance) -> None:
    exact = diff(a, b)
    assert diff(a, b, tolerance) == [d for d in exact if not within(d, tolerance)]


@given(json_values, json_values, tolerances, tolerances)
def test_a_larger_tolerance_never_finds_more(
    a: Any, b: Any, small: Tolerance, extra: Tolerance
) -> None:
    large = Tolerance(small.absolute + extra.absolute, small.relative + extra.relative)
    assert {d.path for d in diff(a, b, large)} <= {d.path for d in diff(a, b, small)}


@given(json_values, finite, finite, st.data())
def test_one_changed_number_is_one_difference_with_its_deviation(
    document: Any, old: float, new: float, data: st.DataObject
) -> None:
    container = {"doc": document, "x": [old]}
    changed = {"doc": document, "x": [new]}
    found = diff(container, changed)
    if old == new:
        assert found == []
        return
    assert found == [Difference("$.x[0]", Change.VALUE, old, new, abs(old - new))]
    assert max_deviation(found) == abs(old - new)
    assert diff(container, changed, Tolerance(absolute=abs(old - new))) == []


def test_nan_agrees_only_with_nan_and_tolerances_must_be_finite() -> None:
    nan = math.nan
    assert diff([nan], [nan]) == []
    assert [d.path for d in diff([nan], [1.0])] == ["$[0]"]
    for bad in (-1.0, math.inf, math.nan):
        with pytest.raises(ValueError, match=f"^abs-tol must be a finite number >= 0, got {bad}$"):
            Tolerance(absolute=bad)


def test_a_document_as_deep_as_json_parses_is_compared_without_recursion() -> None:
    deep: Any = 1
    other: Any = 2
    for _ in range(1024):  # orjson's limit; Python's recursion limit is lower
        deep, other = [deep], [other]
    (found,) = diff(deep, other)
    assert found.change is Change.VALUE


# --- replay's comparison of one request ------------------------------------------------------

decisions = st.lists(
    st.builds(
        RecordedDecision,
        st.sampled_from(["route", "condition", "retry"]),
        st.sampled_from(["root", "split"]),
        st.sampled_from(["a", "b", None]),
        st.sampled_from(["held", "failed", "drawn"]),
        st.none() | st.integers(0, 99),
    ),
    max_size=4,
)
calls = st.lists(
    st.builds(
        RecordedCall,
        st.sampled_from(["root", "split"]),
        st.sampled_from(["a", "b"]),
        st.sampled_from(["http://127.0.0.1:1/a", "http://127.0.0.1:1/b"]),
        json_values,
        st.just(200),
        json_values,
        st.booleans(),
    ),
    max_size=4,
)


def record_of(
    answer: Any, status: int, made: list[RecordedCall], taken: list[RecordedDecision]
) -> Record:
    return Record("r1", "rec:1", "sha256:x", {}, {}, tuple(made), tuple(taken), status, answer, 1.0)


@given(json_values, st.sampled_from([200, 404, 502]), calls, decisions)
def test_a_run_that_does_what_was_recorded_does_not_differ(
    answer: Any, status: int, made: list[RecordedCall], taken: list[RecordedDecision]
) -> None:
    record = record_of(answer, status, made, taken)
    steps = tuple((c.node, c.step, c.target) for c in reversed(made) if not c.shadow)
    run = Run(status, answer, steps, tuple(reversed(taken)), (), None)
    assert not compare(record, run).differs


@given(json_values, json_values, calls, calls, decisions, decisions)
def test_what_differs_is_what_changed(
    answer: Any,
    other: Any,
    made: list[RecordedCall],
    now: list[RecordedCall],
    taken: list[RecordedDecision],
    decided: list[RecordedDecision],
) -> None:
    record = record_of(answer, 200, made, taken)
    steps = tuple((c.node, c.step, c.target) for c in now)
    result = compare(record, Run(200, other, steps, tuple(decided), (), None))
    assert bool(result.answer) == (not json_equal(answer, other))
    recorded = sorted(f"{c.node}.{c.step} ({c.target})" for c in made if not c.shadow)
    called = sorted(f"{n}.{s} ({t})" for n, s, t in steps)
    # What was called = what was recorded + newly called - no longer called, as multisets.
    assert sorted([*recorded, *result.steps_added]) == sorted([*called, *result.steps_removed])
    assert not set(result.steps_added) & set(result.steps_removed)
    routing = {"route", "condition"}
    same = Counter((d.node, d.kind, d.step, d.outcome, d.point) for d in taken if d.kind in routing)
    now_taken = Counter(
        (d.node, d.kind, d.step, d.outcome, d.point) for d in decided if d.kind in routing
    )
    assert (result.decisions == ()) == (same == now_taken)
