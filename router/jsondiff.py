"""Where two JSON answers differ, with numeric tolerance: the one diff rule of replay and shadows.

Pure functions over parsed JSON (what `orjson.loads` gives: dict, list, str, int, float, bool,
None). `router.replay` compares a recorded answer with a candidate graph's, `router.shadow` a
shadow step's answer with the live one; both report `Difference` values and read the largest
numeric deviation from them.

Numbers compare as numbers (1 and 1.0 agree; a bool is not a number, as JSON keeps them apart):
they agree when `|a - b| <= abs_tol + rel_tol * |expected|` (numpy's `isclose` rule, with
the expected value as the reference, so the tolerance does not depend on which side drifted).
Objects compare key by key, arrays position by position; a missing or extra key or element is
one difference, not one per value below it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from enum import StrEnum
from typing import Any


class Change(StrEnum):
    VALUE = "value"  # same type, different value (numbers beyond the tolerance)
    TYPE = "type"  # different JSON types
    MISSING = "missing"  # in the expected answer, not in the actual one
    ADDED = "added"  # in the actual answer, not in the expected one


@dataclass(frozen=True, slots=True)
class Difference:
    path: str  # JSONPath-like: `$.predictions[0].score`
    change: Change
    expected: Any  # absent (MISSING/ADDED side) is None
    actual: Any
    deviation: float | None = None  # |expected - actual| when both are numbers

    def as_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"path": self.path, "change": self.change.value}
        if self.change is not Change.ADDED:
            out["expected"] = self.expected
        if self.change is not Change.MISSING:
            out["actual"] = self.actual
        if self.deviation is not None:
            out["deviation"] = self.deviation
        return out


@dataclass(frozen=True, slots=True)
class Tolerance:
    absolute: float = 0.0
    relative: float = 0.0

    def __post_init__(self) -> None:
        for name, value in (("abs-tol", self.absolute), ("rel-tol", self.relative)):
            if not (value >= 0 and math.isfinite(value)):
                raise ValueError(f"{name} must be a finite number >= 0, got {value}")

    def agrees(self, expected: float, actual: float) -> bool:
        if expected == actual:  # also equal infinities
            return True
        if math.isnan(expected) or math.isnan(actual):
            return math.isnan(expected) and math.isnan(actual)
        return abs(expected - actual) <= self.absolute + self.relative * abs(expected)


EXACT = Tolerance()


def is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _kind(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if is_number(value):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    if isinstance(value, dict):
        return "object"
    return type(value).__name__


def _key_path(path: str, key: str) -> str:
    if key.isidentifier():
        return f"{path}.{key}"
    return f"{path}[{key!r}]"


def diff(expected: Any, actual: Any, tolerance: Tolerance = EXACT) -> list[Difference]:
    """Every place `actual` differs from `expected` beyond `tolerance`, in document order
    (objects' keys in `expected`'s order, then keys only `actual` has). Empty: they agree."""
    out: list[Difference] = []
    # An explicit stack, not recursion: answers nest as deep as JSON allows.
    stack: list[tuple[str, Any, Any]] = [("$", expected, actual)]
    while stack:
        path, a, b = stack.pop()
        if a is _ABSENT:
            out.append(Difference(path, Change.ADDED, None, b))
            continue
        if b is _ABSENT:
            out.append(Difference(path, Change.MISSING, a, None))
            continue
        if is_number(a) and is_number(b):
            if not tolerance.agrees(float(a), float(b)):
                deviation = abs(float(a) - float(b))
                out.append(
                    Difference(
                        path, Change.VALUE, a, b, deviation if not math.isnan(deviation) else None
                    )
                )
            continue
        if _kind(a) != _kind(b):
            out.append(Difference(path, Change.TYPE, a, b))
            continue
        if isinstance(a, dict):
            children: list[tuple[str, Any, Any]] = []
            for key, value in a.items():
                if key in b:
                    children.append((_key_path(path, key), value, b[key]))
                else:
                    children.append((_key_path(path, key), value, _ABSENT))
            children += [
                (_key_path(path, key), _ABSENT, value) for key, value in b.items() if key not in a
            ]
            stack.extend(reversed(children))
        elif isinstance(a, list):
            items = [
                (
                    f"{path}[{i}]",
                    a[i] if i < len(a) else _ABSENT,
                    b[i] if i < len(b) else _ABSENT,
                )
                for i in range(max(len(a), len(b)))
            ]
            stack.extend(reversed(items))
        elif a != b:
            out.append(Difference(path, Change.VALUE, a, b))
    return out


class _Absent:
    """A key or element one side lacks; its own JSON kind, so it never equals a value."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "<absent>"


_ABSENT: Any = _Absent()


def max_deviation(differences: list[Difference]) -> float:
    """The largest numeric deviation among `differences` (0.0 when none is numeric)."""
    return max((d.deviation for d in differences if d.deviation is not None), default=0.0)


def within(difference: Difference, tolerance: Tolerance) -> bool:
    """Whether an exact `diff`'s difference is one `tolerance` accepts (numbers close enough):
    `[d for d in diff(a, b) if not within(d, t)] == diff(a, b, t)`."""
    return (
        difference.change is Change.VALUE
        and is_number(difference.expected)
        and is_number(difference.actual)
        and tolerance.agrees(float(difference.expected), float(difference.actual))
    )
