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


def _columns(answers: Sequence[Answer]) -> tuple[str, list[list[Any]], dict[str, Any] | None]:
    forms = [_values(a) for a in answers]
    for answer, (kind, _, _) in zip(answers, forms, strict=True):
        if kind != forms[0][0]:
            raise NotAggregatable(
                f"step '{answer.step}' answered {kind} but step '{answers[0].step}' "
                f"answered {forms[0][0]}; steps must answer in one protocol",
                answer.step,
            )
    lengths = {answers[i].step: len(values) for i, (_, values, _) in enumerate(forms)}
    if len(set(lengths.values())) > 1:
        detail = ", ".join(f"'{step}': {n}" for step, n in lengths.items())
        # The first answer sets the count: the first step differing from it is singled out.
        odd = next(s for s, n in lengths.items() if n != len(forms[0][1]))
        raise NotAggregatable(f"steps answered different numbers of predictions ({detail})", odd)
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
            odd = next(s for s, x in zip(steps, items, strict=True) if len(x) != len(items[0]))
            raise NotAggregatable(
                f"steps answered arrays of different lengths at {where} ({detail})", odd
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
    # Only numbers and arrays, mixed: name the first step whose form differs from the first's.
    first_is_list = isinstance(items[0], list)
    step, value = next(
        (step, value)
        for step, value in zip(steps, items, strict=True)
        if isinstance(value, list) != first_is_list
    )
    raise NotAggregatable(
        f"a mean needs values of one shape; step '{step}' answered {_show(value)} at {where} "
        f"where step '{steps[0]}' answered {_show(items[0])}",
        step,
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
