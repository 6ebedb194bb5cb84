"""schemas.conditions on the forms KServe documents and users write, table by table.

Every expected answer here is Go's (tidwall/gjson v1.18.0); tests/properties holds the
differential test that asks Go itself.
"""

from __future__ import annotations

from typing import Any

import pytest

from schemas.conditions import Condition, ConditionError, compile_condition

DOGS = {"predictions": [{"label": "dog", "score": 0.9}, {"label": "cat", "score": 0.4}]}
RAW_DOG = {"predictions": ["dog", "cat"]}
RAW_CAT = {"predictions": ["cat", "dog"]}
INSTANCES = {"instances": [{"modelId": "1", "x": [1]}, {"modelId": 2}]}
PEOPLE = [{"name": {"first": "x", "last": "y"}}, {"name": {"first": "z"}}]

HOLDS = [
    # (document, condition, exists, value)
    (DOGS, 'predictions.#(label=="dog")', True, {"label": "dog", "score": 0.9}),
    (DOGS, 'predictions.#(label=="cow")', False, None),
    (DOGS, 'predictions.#(label=="cat").score', True, 0.4),
    (DOGS, 'predictions.#(label!="dog")#.label', True, ["cat"]),
    (DOGS, "predictions.#(score>0.5)#", True, [{"label": "dog", "score": 0.9}]),
    (DOGS, "predictions.#(score>0.95)#", True, []),  # all-matches is an array, even empty
    (DOGS, "predictions.#(score>0.95)", False, None),
    (DOGS, 'predictions.#(label%"d*")', True, {"label": "dog", "score": 0.9}),
    (DOGS, 'predictions.#(label!%"d*").label', True, "cat"),
    (DOGS, "predictions.#(label)#.score", True, [0.9, 0.4]),
    (RAW_DOG, '[@this].#(predictions.0=="dog")', True, RAW_DOG),
    (RAW_CAT, '[@this].#(predictions.0=="dog")', False, None),
    (RAW_CAT, 'predictions.#(=="dog")', True, "dog"),
    (INSTANCES, 'instances.#(modelId=="1")', True, {"modelId": "1", "x": [1]}),
    (INSTANCES, 'instances.#(modelId=="2")', True, {"modelId": 2}),  # "2" compares as 2
    (INSTANCES, "instances.#(modelId==3)", False, None),
    (INSTANCES, "instances.#(x.0==1).modelId", True, "1"),
    (PEOPLE, '#(name.first=="x")', True, PEOPLE[0]),
    (PEOPLE, '#(name.first=="x").name.last', True, "y"),
    (PEOPLE, '#(name.first=="z").name.last', False, None),  # first match only, no retry
    (PEOPLE, "#(name.last)#.name.first", True, ["x"]),
    (PEOPLE, "#.name.first", True, ["x", "z"]),
    (PEOPLE, "#", True, 2),
    (RAW_DOG, "predictions.0", True, "dog"),
    (RAW_DOG, "predictions.2", False, None),
    (RAW_DOG, "predictions", True, ["dog", "cat"]),
    (RAW_DOG, "predictions.#", True, 2),
    (RAW_DOG, "pred*.1", True, "cat"),
    (RAW_DOG, "p?edictions.0", True, "dog"),
    (RAW_DOG, "outputs", False, None),
    ({"fav.movie": "x"}, "fav\\.movie", True, "x"),
    ({"fav.movie": "x"}, "fav.movie", False, None),
    ({"a": None}, "a", True, None),  # JSON null exists
    ({"a": {"0": "zero"}}, "a.0", True, "zero"),  # a numeric key on an object is a key
    ({"a": []}, "a.#(x==1)#", True, []),
    ({}, "missing.@keys", True, []),  # Go applies the modifier to "nothing" and gets []
    ({}, "missing.@this", False, None),
    ({"a": 1}, "[a,b]", True, [1]),
    ({"a": 1}, '{a,"k":b}', True, {"a": 1}),
    ({}, "!true", True, True),
    ({"vals": [{"b": 0}, {"b": "yes"}, {}]}, "vals.#(b==~false)#", True, [{"b": 0}, {}]),
]


@pytest.mark.parametrize(
    ("document", "expression", "exists", "value"),
    HOLDS,
    ids=[f"{case[1]}@{i}" for i, case in enumerate(HOLDS)],
)
def test_condition_on_document(document: Any, expression: str, exists: bool, value: Any) -> None:
    condition = compile_condition(expression)
    assert condition.holds(document) is exists
    assert condition.evaluate(document) == (exists, value)


NOT_OBJECTS = [
    # (document, condition, holds)
    ([{"label": "dog"}], '#(label=="dog")', True),
    (["dog", "cat"], '#(=="cat")', True),
    (["dog", "cat"], "1", True),
    (["dog", "cat"], "label", False),
    ("dog", "label", False),
    ("dog", "0", False),
    ("dog", "@this", True),
    ("dog", '[@this].#(=="dog")', True),
    (None, "predictions", False),
    (None, "@this", True),  # null exists
    (42, 'predictions.#(label=="dog")', False),
    (True, "a.b.c", False),
    ([], "#", True),
    ([], "#(a==1)", False),
    ({}, "#", False),  # `#` counts arrays only
]


@pytest.mark.parametrize(
    ("document", "expression", "holds"),
    NOT_OBJECTS,
    ids=[f"{type(case[0]).__name__}:{case[1]}" for case in NOT_OBJECTS],
)
def test_documents_that_are_not_objects(document: Any, expression: str, holds: bool) -> None:
    assert compile_condition(expression).holds(document) is holds


INVALID = [
    ("", "empty"),
    ("   ", "empty"),
    ('predictions.#(label=="dog"', "never closed"),
    ('predictions.#(label=="dog)', "unterminated string"),
    ("[a,b", "never closed"),
    ("{a,b", "never closed"),
    ("#(a==1]", "unexpected ']'"),
    ("predictions.", "ends with '.'"),
    ("predictions|", "ends with '|'"),
    ("a..b", "empty path component"),
    (".a", "empty path component"),
    ("a\\", "escape"),
    ('!"dog', "unterminated string"),
    ('@pretty:{"indent":1', "never closed"),
]


@pytest.mark.parametrize(("expression", "reason"), INVALID, ids=[c[0] or "''" for c in INVALID])
def test_invalid_syntax_names_the_expression(expression: str, reason: str) -> None:
    with pytest.raises(ConditionError) as raised:
        compile_condition(expression)
    message = str(raised.value)
    assert reason in message
    if expression.strip():
        assert repr(expression) in message


VALID_ODDITIES = [
    "..0",  # JSON lines: the body as a one-element stream
    "a)b",  # a stray closing bracket is just part of a key
    "#(a==1))",
    "@nope",  # not a modifier: a key named "@nope"
    "a.#(b.#(==1))#.c",
    "#()",
    'a|@pretty:{"sortKeys":true}',
    "@dig:label",
]


@pytest.mark.parametrize("expression", VALID_ODDITIES)
def test_paths_go_accepts_compile(expression: str) -> None:
    condition = compile_condition(expression)
    assert isinstance(condition, Condition)
    assert condition.source == expression


WEIRD_DOCUMENTS: list[Any] = [
    {"a": float("inf")},
    {"a": 10**400},  # Go reads it as +Inf
    {"": {"": []}},
    [[[[[]]]]],
    {"a": [None, True, False, "", 0, -0.0, {"b": "\u0000"}]},
    "\ud800",
    {"a": "x" * 10_000},
]
EXPRESSIONS = [
    "a",
    "a.#(b==1)",
    "#(==1)#",
    "a.#(>1e308)#",
    'a.#(%"x*y?")',
    "@dig:b",
    '@flatten:{"deep":true}.#',
    "a|@tostr|@fromstr",
    "@valid",
    "..#",
    "{a,b}.a",
    "[a,!1].1",
    "a.#(b==~true)#",
]


@pytest.mark.parametrize("expression", EXPRESSIONS)
def test_evaluation_never_raises(expression: str) -> None:
    condition = compile_condition(expression)
    for document in WEIRD_DOCUMENTS:
        exists, _ = condition.evaluate(document)
        assert condition.holds(document) is exists


def test_deep_documents_answer_without_raising() -> None:
    deep: Any = "leaf"
    for _ in range(5000):
        deep = [deep]
    assert compile_condition("0.0.0").holds(deep) is True
    assert compile_condition("@dig:x").holds(deep) in (True, False)


def test_compiled_condition_is_reusable_and_compares_by_source() -> None:
    condition = compile_condition('predictions.#(label=="dog")')
    assert condition == compile_condition('predictions.#(label=="dog")')
    assert [condition.holds(DOGS) for _ in range(3)] == [True, True, True]
    assert condition.holds({"predictions": []}) is False
