"""router.testing's request strategies: `from_schema` honours every draft-7 keyword (those the
hand-written subset skipped: `pattern`, `$ref`, `allOf`) and refuses what it cannot honour;
`payloads(protocol=...)` gives one protocol's bodies on request."""

from __future__ import annotations

import re
from typing import Any

import jsonschema
import orjson
import pytest
from hypothesis import given, settings

from router.testing import from_schema, payloads

ROW = {"type": "array", "items": {"type": "number"}, "minItems": 2, "maxItems": 2}

SCHEMAS: dict[str, dict[str, Any]] = {
    "pattern": {"type": "string", "pattern": "^[a-z]{3}-[0-9]{2}$"},
    "ref": {
        "definitions": {"row": ROW},
        "type": "object",
        "required": ["instances"],
        "properties": {"instances": {"type": "array", "items": {"$ref": "#/definitions/row"}}},
    },
    "allOf": {
        "allOf": [
            {"type": "object", "required": ["mode"]},
            {"properties": {"mode": {"enum": ["fast", "exact"]}}},
            {"properties": {"mode": {"not": {"const": "fast"}}}},
        ]
    },
    "if-then": {
        "type": "object",
        "required": ["a"],
        "properties": {"a": {"type": "integer"}, "b": {"type": "string", "minLength": 1}},
        "if": {"properties": {"a": {"minimum": 0}}},
        "then": {"required": ["b"]},
    },
}


@pytest.mark.parametrize("schema", SCHEMAS.values(), ids=SCHEMAS.keys())
def test_from_schema_values_are_valid(schema: dict[str, Any]) -> None:
    @settings(derandomize=True, max_examples=60, database=None)
    @given(from_schema(schema))
    def check(value: Any) -> None:
        jsonschema.validate(value, schema)

    check()


def test_ref_bodies_hold_rows_of_two_numbers() -> None:
    # The row's constraints come only through the $ref: a generator that does not follow it
    # makes rows of any length and content.
    seen: list[list[Any]] = []

    @settings(derandomize=True, max_examples=40, database=None)
    @given(from_schema(SCHEMAS["ref"]))
    def check(body: dict[str, Any]) -> None:
        seen.extend(body["instances"])

    check()
    assert seen
    assert all(len(row) == 2 and all(isinstance(x, int | float) for x in row) for row in seen)


def test_pattern_strings_match() -> None:
    @settings(derandomize=True, max_examples=40, database=None)
    @given(from_schema(SCHEMAS["pattern"]))
    def check(value: str) -> None:
        assert re.fullmatch(r"[a-z]{3}-[0-9]{2}\n?", value)

    check()


@pytest.mark.parametrize(
    ("schema", "message"),
    [
        (
            {"type": "strng"},
            "from_schema: invalid schema at <root>.type: 'strng' is not valid under any",
        ),
        (
            {"properties": {"x": {"type": "array", "prefixItems": [{"const": 1}]}}},
            "not supported (drafts 4, 6 and 7 are): <root>.properties.x: prefixItems",
        ),
        (
            {"allOf": [{"type": "object", "unevaluatedProperties": False}]},
            "<root>.allOf[0]: unevaluatedProperties",
        ),
        (
            {"$schema": "https://json-schema.org/draft/2020-12/schema", "type": "integer"},
            "$schema 'https://json-schema.org/draft/2020-12/schema' is not supported",
        ),
    ],
    ids=["invalid-type", "prefixItems", "unevaluatedProperties", "draft-2020-12"],
)
def test_from_schema_refuses_what_it_would_ignore(schema: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=re.escape(message)):
        from_schema(schema)


def test_from_schema_values_can_be_sent() -> None:
    # hypothesis-jsonschema draws integers beyond 64 bits, which no body can carry here.
    schema = {"type": "object", "properties": {"n": {"type": "integer"}}, "required": ["n"]}

    @settings(derandomize=True, max_examples=300, database=None)
    @given(from_schema(schema))
    def check(value: Any) -> None:
        orjson.dumps(value)

    check()


def test_a_property_named_like_a_keyword_is_just_a_name() -> None:
    schema = {"type": "object", "properties": {"prefixItems": {"type": "integer"}}}

    @settings(derandomize=True, max_examples=20, database=None)
    @given(from_schema(schema))
    def check(value: Any) -> None:
        jsonschema.validate(value, schema)

    check()


@pytest.mark.parametrize(
    ("protocol", "key"), [("v1", "instances"), ("v2", "inputs")], ids=["v1", "v2"]
)
def test_payloads_of_one_protocol(protocol: str, key: str) -> None:
    @settings(derandomize=True, max_examples=40, database=None)
    @given(payloads(protocol=protocol))
    def check(body: dict[str, Any]) -> None:
        assert list(body) == [key]

    check()


def test_payloads_offer_both_protocols_by_default() -> None:
    keys: set[str] = set()

    @settings(derandomize=True, max_examples=40, database=None)
    @given(payloads())
    def check(body: dict[str, Any]) -> None:
        keys.update(body)

    check()
    assert keys == {"instances", "inputs"}


def test_payloads_refuse_an_unknown_protocol() -> None:
    with pytest.raises(ValueError, match=r"payloads: protocol 'v3' is not one of v1, v2"):
        payloads(protocol="v3")
