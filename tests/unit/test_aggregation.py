"""router.aggregation: errors name the step whose answer is wrong, its value and where."""

from __future__ import annotations

from typing import Any

import pytest

from router.aggregation import Answer, NotAggregatable, majority, mean


def v1(*predictions: Any) -> dict[str, Any]:
    return {"predictions": list(predictions)}


def v2(*data: Any) -> dict[str, Any]:
    return {
        "outputs": [{"name": "out", "shape": [len(data)], "datatype": "FP64", "data": list(data)}]
    }


@pytest.mark.parametrize(
    ("bodies", "weighted", "message", "step"),
    [
        (
            [v1(1.0), v1("cat"), v1(3.0)],
            False,
            "a mean needs numbers; step 'm1' answered \"cat\" at predictions[0]",
            "m1",
        ),
        (
            [v1(1.0, 2.0), v1(1.0, 2.0), v1(1.0, None)],
            True,
            "a mean needs numbers; step 'm2' answered null at predictions[1]",
            "m2",
        ),
        (
            [v2([1.0, 2.0]), v2([1.0, 2.0]), v2([1.0, "x"])],
            False,
            "a mean needs numbers; step 'm2' answered \"x\" at outputs[0].data[0][1]",
            "m2",
        ),
        (
            [v1([1, 2]), v1([1, 2]), v1([1, 2, 3])],
            False,
            "steps answered arrays of different lengths at predictions[0] "
            "('m0': 2, 'm1': 2, 'm2': 3)",
            "m2",
        ),
        (
            [v1(1.0), v1([1.0]), v1(2.0)],
            False,
            "a mean needs values of one shape; step 'm1' answered [1.0] at predictions[0] "
            "where step 'm0' answered 1.0",
            "m1",
        ),
        (
            [v1(1.0), v1(2.0), v2(3.0)],
            False,
            "step 'm2' answered v2 but step 'm0' answered v1; steps must answer in one protocol",
            "m2",
        ),
        (
            [v1(1.0), {"labels": [1]}, v1(2.0)],
            False,
            "step 'm1' answered neither v1 'predictions' nor v2 'outputs' to aggregate",
            "m1",
        ),
        (
            [v1(1.0, 2.0), v1(1.0, 2.0), v1(1.0)],
            False,
            "steps answered different numbers of predictions ('m0': 2, 'm1': 2, 'm2': 1)",
            "m2",
        ),
    ],
    ids=[
        "second-not-a-number",
        "third-null-weighted",
        "third-v2-nested",
        "third-longer",
        "second-array-for-number",
        "third-other-protocol",
        "second-no-predictions",
        "third-fewer-predictions",
    ],
)
def test_mean_errors_name_the_offending_step_and_value(
    bodies: list[Any], weighted: bool, message: str, step: str
) -> None:
    answers = [Answer(f"m{i}", body, 1.0) for i, body in enumerate(bodies)]
    with pytest.raises(NotAggregatable) as caught:
        mean(answers, weighted=weighted)
    assert str(caught.value) == message
    # The step as a value too, for `infergraph check` to name it without reading the message.
    assert caught.value.step == step


@pytest.mark.parametrize(
    ("bodies", "message", "step"),
    [
        (
            [v1(1.0), v1(1.0, 2.0), v1(1.0, 2.0)],
            "steps answered different numbers of predictions ('m0': 1, 'm1': 2, 'm2': 2)",
            "m0",
        ),
        (
            [v2(1.0), v1(2.0), v1(3.0)],
            "step 'm0' answered v2 but step 'm1' answered v1; steps must answer in one protocol",
            "m0",
        ),
        (
            [v1([1, 2, 3]), v1([1, 2]), v1([1, 2])],
            "steps answered arrays of different lengths at predictions[0] "
            "('m0': 3, 'm1': 2, 'm2': 2)",
            "m0",
        ),
        (
            [v1([1.0]), v1(1.0), v1(2.0)],
            "a mean needs values of one shape; step 'm0' answered [1.0] at predictions[0] "
            "where step 'm1' answered 1.0",
            "m0",
        ),
        # No majority (1 against 1 against 1, or 2 against 2): the first answer sets the
        # expectation and the first step differing from it is named, as before.
        (
            [v1(1.0), v1(1.0, 2.0), v1(1.0, 2.0, 3.0)],
            "steps answered different numbers of predictions ('m0': 1, 'm1': 2, 'm2': 3)",
            "m1",
        ),
        (
            [v2(1.0), v1(2.0), v1(3.0), v2(4.0)],
            "step 'm1' answered v1 but step 'm0' answered v2; steps must answer in one protocol",
            "m1",
        ),
    ],
    ids=[
        "first-fewer-predictions",
        "first-other-protocol",
        "first-longer",
        "first-array-for-number",
        "no-majority-count",
        "tie-protocol",
    ],
)
def test_the_step_differing_from_the_majority_is_named_even_when_it_is_the_first(
    bodies: list[Any], message: str, step: str
) -> None:
    answers = [Answer(f"m{i}", body, 1.0) for i, body in enumerate(bodies)]
    with pytest.raises(NotAggregatable) as caught:
        mean(answers)
    assert str(caught.value) == message
    assert caught.value.step == step


def test_a_majority_vote_names_the_first_answer_when_it_is_the_odd_one() -> None:
    answers = [
        Answer("m0", v1(1)),
        Answer("m1", v1(1, 2)),
        Answer("m2", v1(1, 2)),
    ]
    with pytest.raises(NotAggregatable) as caught:
        majority(answers)
    assert caught.value.step == "m0"
