"""Step conditions: GJSON paths with KServe's meaning, compiled once, evaluated per request.

KServe's router runs a step when `gjson.GetBytes(body, condition).Exists()` (Go, tidwall/gjson).
We evaluate the same paths on parsed JSON with the `gjson` package (gjson-py) as the engine for
plain path components (keys, indexes, wildcards, `#` counts, modifiers such as `@this`,
multipaths, literals) and close its gaps in our own code:

- gjson-py raises where Go answers "no match"; every such error is "does not exist" here.
- gjson-py cannot evaluate a query whose key is itself a path (`#(name.first=="x")`, KServe's
  documented `[@this].#(predictions.0=="dog")`) nor nested queries; we evaluate every query
  (`#(...)` first match, `#(...)#` all matches) ourselves, with Go's comparison rules: strings
  compare as strings, numbers as floats (a quoted literal compared to a number is parsed as one),
  `true`/`false` by Go's ordering, `%`/`!%` as `*`/`?` patterns, a bare key as existence.
- `#.rest` and `#(...)#.rest` map `rest` over the array's elements, skipping elements where it
  does not exist, as Go does.

Compilation splits the path into components and parses every query, so `holds` does no string
parsing beyond handing plain components to gjson-py. Known gaps against Go: JSON-lines paths
(`..`), query values with the `~` truthiness prefix, and modifiers gjson-py lacks.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import gjson
import orjson

_MISSING: Any = object()
Evaluator = Callable[[Any], Any]  # value -> value or _MISSING


class ConditionError(ValueError):
    """A condition that cannot be compiled; the message quotes it and says why."""


@dataclass(frozen=True, slots=True)
class Condition:
    source: str
    _evaluate: Evaluator

    def holds(self, document: object) -> bool:
        """KServe's rule: the step runs when the path yields a value (null counts)."""
        return self._evaluate(document) is not _MISSING

    def evaluate(self, document: object) -> tuple[bool, object]:
        value = self._evaluate(document)
        return (False, None) if value is _MISSING else (True, value)


def compile_condition(expression: str) -> Condition:
    """A prepared condition; raises ConditionError for an expression that is not a GJSON path."""
    if not expression.strip():
        raise ConditionError("empty condition: expected a GJSON path such as 'predictions.0'")
    try:
        evaluator = _compile_path(expression)
    except ConditionError as error:
        raise ConditionError(f"condition {expression!r}: {error}") from None
    return Condition(expression, evaluator)


# --- splitting a path into components ------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Component:
    text: str
    separator: str  # "." or "|" before this component ("" for the first)


_CLOSERS = {"(": ")", "[": "]", "{": "}"}


def _split(path: str) -> list[_Component]:
    """Top-level components of `path`, split at `.` and `|` outside brackets and strings."""
    parts: list[_Component] = []
    stack: list[str] = []
    start, separator, i, in_string = 0, "", 0, False
    while i < len(path):
        char = path[i]
        if char == "\\":
            i += 2
            continue
        if in_string:
            in_string = char != '"'
        elif char == '"' and stack:
            in_string = True
        elif char in _CLOSERS:
            stack.append(_CLOSERS[char])
        elif char in ")]}":
            if not stack or stack.pop() != char:
                raise ConditionError(f"unbalanced '{char}' at position {i}")
        elif char in ".|" and not stack:
            parts.append(_Component(path[start:i], separator))
            separator, start = char, i + 1
        i += 1
    if in_string:
        raise ConditionError("unterminated string")
    if stack:
        raise ConditionError(f"missing '{stack[-1]}'")
    parts.append(_Component(path[start:], separator))
    for part in parts:
        if not part.text:
            raise ConditionError("empty path component")
    return parts


# --- compiling components into evaluators ---------------------------------------------------


def _compile_path(path: str) -> Evaluator:
    components = _split(path)
    return _compile_components(components)


def _compile_components(components: list[_Component]) -> Evaluator:
    first, rest = components[0], components[1:]
    query = _parse_query(first.text)
    mapping = first.text == "#" and bool(rest) and rest[0].separator == "."
    if query is None and not mapping:
        step = _plain(first.text)
    elif mapping:
        step = _identity_array
    else:
        assert query is not None
        step = query
    if not rest:
        return step
    tail = _compile_components(rest)
    maps = rest[0].separator == "." and (mapping or (query is not None and query.all))
    if maps:
        # Go maps the rest of the path over the array the component produced.
        return _then_map(step, tail)
    return _then(step, tail)


def _then(step: Evaluator, tail: Evaluator) -> Evaluator:
    def run(value: Any) -> Any:
        value = step(value)
        return _MISSING if value is _MISSING else tail(value)

    return run


def _then_map(step: Evaluator, tail: Evaluator) -> Evaluator:
    def run(value: Any) -> Any:
        items = step(value)
        if not isinstance(items, list):
            return _MISSING
        mapped = [tail(item) for item in items]
        return [item for item in mapped if item is not _MISSING]

    return run


def _identity_array(value: Any) -> Any:
    return value if isinstance(value, list) else _MISSING


def _plain(text: str) -> Evaluator:
    """A component gjson-py evaluates; its exceptions mean "no match", as in Go."""

    def run(value: Any) -> Any:
        try:
            return gjson.get(value, text)
        except (gjson.GJSONError, ValueError, TypeError, KeyError, IndexError):
            return _MISSING

    return run


# --- queries: #(key op value) and #(...)# ---------------------------------------------------

_OPERATORS = ("==", "!=", "<=", ">=", "!%", "=", "<", ">", "%")


@dataclass(frozen=True, slots=True)
class _Query:
    key: Evaluator | None  # None: compare the element itself
    op: str  # "" for existence
    literal: str  # the comparison value, unquoted
    all: bool  # #(...)# returns every match

    def __call__(self, value: Any) -> Any:
        if not isinstance(value, list):
            return _MISSING
        matches = []
        for element in value:
            subject = element if self.key is None else self.key(element)
            if subject is not _MISSING and _matches(subject, self.op, self.literal):
                if not self.all:
                    return element
                matches.append(element)
        return matches if self.all else _MISSING


def _parse_query(text: str) -> _Query | None:
    if not text.startswith("#("):
        return None
    everything = text.endswith(")#")
    if not (everything or text.endswith(")")):
        raise ConditionError(f"query {text!r} must end with ')' or ')#'")
    body = text[2 : -2 if everything else -1].strip()
    key_text, op, literal = _split_query(body)
    key = _compile_path(key_text) if key_text else None
    return _Query(key, op, literal, everything)


def _split_query(body: str) -> tuple[str, str, str]:
    """`name.first == "x"` -> ("name.first", "==", "x"); `name` -> ("name", "", "")."""
    depth, i, in_string = 0, 0, False
    while i < len(body):
        char = body[i]
        if char == "\\":
            i += 2
            continue
        if in_string:
            in_string = char != '"'
        elif char == '"':
            in_string = True
        elif char in "([{":
            depth += 1
        elif char in ")]}":
            depth -= 1
        elif depth == 0:
            for op in _OPERATORS:
                if body.startswith(op, i):
                    key, raw = body[:i].strip(), body[i + len(op) :].strip()
                    return key, "==" if op == "=" else op, _literal(raw)
        i += 1
    return body.strip(), "", ""


def _literal(raw: str) -> str:
    if raw.startswith('"'):
        try:
            value = orjson.loads(raw)
        except orjson.JSONDecodeError:
            raise ConditionError(f"bad string literal {raw}") from None
        if not isinstance(value, str):
            raise ConditionError(f"bad string literal {raw}")
        return value
    if not raw:
        raise ConditionError("comparison without a value")
    return raw


def _matches(subject: Any, op: str, literal: str) -> bool:
    if not op:
        return True
    if isinstance(subject, bool):
        return _bool_matches(subject, op, literal)
    if isinstance(subject, str):
        return _compare(subject, literal, op)
    if isinstance(subject, int | float):
        try:
            number = float(literal)
        except ValueError:
            number = 0.0  # Go's ParseFloat yields 0 on error and compares anyway
        return _compare(float(subject), number, op)
    return False  # null, objects and arrays match no comparison in Go


def _compare(left: Any, right: Any, op: str) -> bool:
    if op == "==":
        return bool(left == right)
    if op == "!=":
        return bool(left != right)
    if op == "<":
        return bool(left < right)
    if op == "<=":
        return bool(left <= right)
    if op == ">":
        return bool(left > right)
    if op == ">=":
        return bool(left >= right)
    if isinstance(left, str) and op in ("%", "!%"):
        return _like(left, right) == (op == "%")
    return False


def _bool_matches(subject: bool, op: str, literal: str) -> bool:
    if subject:
        return {"==": literal == "true", "!=": literal != "true", ">": literal == "false"}.get(
            op, op == ">="
        )
    return {"==": literal == "false", "!=": literal != "false", "<": literal == "true"}.get(
        op, op == "<="
    )


_LIKE_CACHE: dict[str, re.Pattern[str]] = {}


def _like(value: str, pattern: str) -> bool:
    """tidwall/match: `*` any run, `?` one character, everything else literal."""
    compiled = _LIKE_CACHE.get(pattern)
    if compiled is None:
        regex = "".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in pattern)
        compiled = re.compile(regex, re.DOTALL)
        if len(_LIKE_CACHE) < 1024:  # patterns come from graph files: few and fixed
            _LIKE_CACHE[pattern] = compiled
    return compiled.fullmatch(value) is not None
