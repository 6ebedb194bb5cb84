"""Pure Ensemble aggregation: votes and means over the answers of the steps that succeeded.

Answers are read as v1 (`predictions`: one entry per instance) or v2 (`outputs[0]`: a tensor
with `data`, `shape`, `datatype`). All answers must have the same form and length, or the
Ensemble cannot aggregate them: `NotAggregatable` says which steps differ and how.

Ties in a majority vote go to the value whose first vote came earliest in step order, so the
result never depends on which call finished first.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import orjson


class NotAggregatable(ValueError):
    """The answers cannot be combined (different shapes, non-numeric values for a mean).
    `step` is the key of the step whose answer does not fit (None when none is singled out)."""

    def __init__(self, message: str, step: str | None = None) -> None:
        super().__init__(message)
        self.step = step


@dataclass(frozen=True, slots=True)
class Answer:
    step: str  # the step's key
    body: Any  # its parsed JSON answer
    weight: float = 1.0


def _values(answer: Answer) -> tuple[str, list[Any], dict[str, Any] | None]:
    body = answer.body
    if isinstance(body, dict) and isinstance(body.get("predictions"), list):
        return "v1", body["predictions"], None
    if isinstance(body, dict) and isinstance(body.get("outputs"), list) and body["outputs"]:
        tensor = body["outputs"][0]
        if isinstance(tensor, dict) and isinstance(tensor.get("data"), list):
            return "v2", tensor["data"], tensor
    raise NotAggregatable(
        f"step '{answer.step}' answered neither v1 'predictions' nor v2 'outputs' to aggregate",
        answer.step,
    )


def _odd_one(values: Sequence[Any]) -> tuple[int, int]:
    """(the index of the answer singled out as wrong, that of one with the expected value),
    given differing `values` (one per answer, hashable).

    The expected value is the majority's: when the first answer is the odd one, blaming the
    first step that differs from it would name a step that agrees with the others. On a tie no
    majority exists, and the first answer sets the expectation.
    """
    counts: dict[Any, int] = {}
    for value in values:
        counts[value] = counts.get(value, 0) + 1
    best = max(counts.values())
    leaders = [value for value, count in counts.items() if count == best]
    expected = leaders[0] if len(leaders) == 1 else values[0]
    odd = next(i for i, v in enumerate(values) if v != expected)
    return odd, values.index(expected)


def _columns(answers: Sequence[Answer]) -> tuple[str, list[list[Any]], dict[str, Any] | None]:
    forms = [_values(a) for a in answers]
    steps = [a.step for a in answers]
    kinds = [kind for kind, _, _ in forms]
    if len(set(kinds)) > 1:
        odd, reference = _odd_one(kinds)
        raise NotAggregatable(
            f"step '{steps[odd]}' answered {kinds[odd]} but step '{steps[reference]}' "
            f"answered {kinds[reference]}; steps must answer in one protocol",
            steps[odd],
        )
    lengths = [len(values) for _, values, _ in forms]
    if len(set(lengths)) > 1:
        detail = ", ".join(f"'{step}': {n}" for step, n in zip(steps, lengths, strict=True))
        odd, _ = _odd_one(lengths)
        raise NotAggregatable(
            f"steps answered different numbers of predictions ({detail})", steps[odd]
        )
    return forms[0][0], [values for _, values, _ in forms], forms[0][2]


def _key(value: Any) -> bytes:
    return orjson.dumps(value, option=orjson.OPT_SORT_KEYS)


def majority(answers: Sequence[Answer]) -> Any:
    """Per instance, the most frequent answer (ties: earliest first vote in step order)."""
    kind, columns, tensor = _columns(answers)
    winners = []
    for position in range(len(columns[0])):
        counts: dict[bytes, int] = {}
        first: dict[bytes, Any] = {}
        for column in columns:
            key = _key(column[position])
            counts[key] = counts.get(key, 0) + 1
            first.setdefault(key, column[position])
        best = max(counts.values())
        # dicts keep insertion order: the first key reaching `best` had the earliest first vote
        winner = next(key for key, count in counts.items() if count == best)
        winners.append(first[winner])
    return _wrap(kind, winners, tensor)


def leading_votes(answers: Sequence[Answer]) -> int:
    """The smallest, over instances, of the leading answer's vote count (for early exits)."""
    _, columns, _ = _columns(answers)
    smallest = len(columns)
    for position in range(len(columns[0])):
        counts: dict[bytes, int] = {}
        for column in columns:
            key = _key(column[position])
            counts[key] = counts.get(key, 0) + 1
        smallest = min(smallest, max(counts.values()))
    return smallest


def mean(answers: Sequence[Answer], weighted: bool = False) -> Any:
    """Element-wise (weighted) mean of numeric answers of identical shape."""
    kind, columns, tensor = _columns(answers)
    weights = [a.weight if weighted else 1.0 for a in answers]
    total = sum(weights)
    if total <= 0:
        raise NotAggregatable("the contributing steps' weights sum to 0")
    where = "predictions" if kind == "v1" else "outputs[0].data"
    result = _mean_of(columns, weights, total, [a.step for a in answers], where)
    return _wrap(kind, result, tensor, datatype="FP64")


def _mean_of(
    items: list[Any], weights: list[float], total: float, steps: list[str], where: str
) -> Any:
    """The element-wise mean of `items` (one per step, at path `where` in each answer).

    An error names the step whose value is wrong, the value and where it is, never the first
    step's value: the offending answer is often not the first.
    """
    if all(_is_number(x) for x in items):
        return math.fsum(w * float(x) for w, x in zip(weights, items, strict=True)) / total
    if all(isinstance(x, list) for x in items):
        if len({len(x) for x in items}) > 1:
            detail = ", ".join(f"'{step}': {len(x)}" for step, x in zip(steps, items, strict=True))
            odd, _ = _odd_one([len(x) for x in items])
            raise NotAggregatable(
                f"steps answered arrays of different lengths at {where} ({detail})", steps[odd]
            )
        return [
            _mean_of([x[i] for x in items], weights, total, steps, f"{where}[{i}]")
            for i in range(len(items[0]))
        ]
    for step, value in zip(steps, items, strict=True):
        if not _is_number(value) and not isinstance(value, list):
            raise NotAggregatable(
                f"a mean needs numbers; step '{step}' answered {_show(value)} at {where}", step
            )
    # Only numbers and arrays, mixed: name the step whose form differs from the majority's.
    odd, reference = _odd_one([isinstance(x, list) for x in items])
    raise NotAggregatable(
        f"a mean needs values of one shape; step '{steps[odd]}' answered {_show(items[odd])} "
        f"at {where} where step '{steps[reference]}' answered {_show(items[reference])}",
        steps[odd],
    )


def _show(value: Any) -> str:
    """A value for an error message: its JSON, cut short (an answer may be large)."""
    text = orjson.dumps(value).decode()
    return text if len(text) <= 80 else text[:77] + "..."


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _wrap(
    kind: str, values: list[Any], tensor: dict[str, Any] | None, datatype: str | None = None
) -> dict[str, Any]:
    if kind == "v1":
        return {"predictions": values}
    assert tensor is not None  # v2 answers always carry their first output tensor
    out = {**tensor, "data": values}
    if datatype is not None:
        out["datatype"] = datatype
    return {"outputs": [out]}
