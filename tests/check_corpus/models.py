"""The models of the check corpus (tests/check_corpus/*.yaml): each reads v1 rows or one v2
tensor. The validator rejects a body without rows (400), which the other models would answer
with no predictions; the scorers reject values out of their range (422); the audit sink fails
(503) for large batches."""

from __future__ import annotations

from typing import Any

from router.testing import ModelFailure


def rows(body: Any) -> list[list[float]]:
    if isinstance(body, dict) and isinstance(body.get("instances"), list):
        found = [r for r in body["instances"] if isinstance(r, list) and r]
        if len(found) == len(body["instances"]):
            return found
    if isinstance(body, dict) and isinstance(body.get("inputs"), list) and body["inputs"]:
        tensor = body["inputs"][0]
        shape, data = tensor.get("shape", []), tensor.get("data", [])
        if len(shape) == 2 and shape[1] > 0:
            return [data[i * shape[1] : (i + 1) * shape[1]] for i in range(shape[0])]
    raise ModelFailure(400, {"error": "expected rows of numbers"})


def in_range(body: Any) -> list[list[float]]:
    found = rows(body)
    if any(abs(x) >= 1000 for r in found for x in r):
        raise ModelFailure(422, {"error": "values must be within (-1000, 1000)"})
    return found


def validator(body: Any) -> Any:
    found = rows(body)
    if not found:
        raise ModelFailure(400, {"error": "no rows"})
    return {"valid": len(found)}


def classifier(body: Any) -> Any:
    return {"predictions": [{"label": "dog" if r[0] > 0 else "cat"} for r in rows(body)]}


def breed(body: Any) -> Any:
    return {"predictions": ["beagle" for _ in rows(body)]}


def scorer(body: Any) -> Any:
    return {"predictions": [round(sum(r), 6) for r in in_range(body)]}


def scorer_b(body: Any) -> Any:
    return {"predictions": [round(sum(r) / 2, 6) for r in in_range(body)]}


def voter_a(body: Any) -> Any:
    return {"predictions": ["up" if r[0] > 0 else "down" for r in rows(body)]}


def voter_b(body: Any) -> Any:
    return {"predictions": ["up" if r[-1] > 0 else "down" for r in rows(body)]}


def voter_c(body: Any) -> Any:
    return {"predictions": ["up" for _ in rows(body)]}


def labeler(body: Any) -> Any:
    """Answers labels where a scorer answers numbers: not averageable with them."""
    return {"predictions": ["high" for _ in rows(body)]}


def echo(body: Any) -> Any:
    if isinstance(body, dict) and "instances" in body:
        return {"predictions": body["instances"]}
    raise ModelFailure(400, {"error": "expected instances"})


def audit(body: Any) -> Any:
    """A best-effort audit sink: batches of more than two rows find its queue full (503)."""
    if len(rows(body)) > 2:
        raise ModelFailure(503, {"error": "audit queue full"})
    return {"logged": True}
