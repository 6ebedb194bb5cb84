"""schemas.expressions: a condition whose evaluation fails does not hold (the router's rule),
and `evaluate` says why, naming the condition (what `infergraph check` reports)."""

from __future__ import annotations

from typing import Any

import pytest

from schemas.expressions import ConditionEvaluationError, compile_expression


@pytest.mark.parametrize(
    ("condition", "document", "message"),
    [
        (
            'jmespath:a > `"x"`',
            {"a": 1},
            "JMESPath condition 'a > `\"x\"`': '>' not supported between instances of 'int' "
            "and 'str'",
        ),
        (
            "jmespath:abs(a) > `1`",
            {"a": "s"},
            "JMESPath condition 'abs(a) > `1`': In function abs(), invalid type for value: s, "
            "expected one of: ['number'], received: \"string\"",
        ),
        (
            "jsonpath:$.a[/b]",
            {"a": [{"b": 1}, {"b": "x"}]},
            "JSONPath condition '$.a[/b]': '<' not supported between instances of 'str' and 'int'",
        ),
    ],
    ids=["number-vs-string", "function-type", "jsonpath-sort-mixed"],
)
def test_a_failing_evaluation_does_not_hold_and_says_why(
    condition: str, document: Any, message: str
) -> None:
    expression = compile_expression(condition)
    assert expression.holds(document) is False
    with pytest.raises(ConditionEvaluationError) as raised:
        expression.evaluate(document)
    assert str(raised.value) == message


@pytest.mark.parametrize(
    ("condition", "document", "holds"),
    [
        ("jmespath:a > `1`", {"a": 2}, True),
        ("jsonpath:$.a[?(@.b > 1)]", {"a": [{"b": 2}]}, True),
        ("a", {"b": 1}, False),
    ],
    ids=["jmespath", "jsonpath", "gjson"],
)
def test_evaluate_agrees_with_holds(condition: str, document: Any, holds: bool) -> None:
    expression = compile_expression(condition)
    assert expression.evaluate(document) is expression.holds(document) is holds
