"""router.replay in-process, offline: recorded draws reused under changed weights, calls
answered from other requests of the recording, a call never seen reported per request."""

from __future__ import annotations

from typing import Any

import orjson

from router.graph import compile_graph
from router.replay import Report, parse_record, replay
from schemas.valid_graph import validate_graph

A, B = "http://127.0.0.1:9/a", "http://127.0.0.1:9/b"


def splitter(weights: tuple[int, int]) -> Any:
    steps = [
        {"name": "a", "serviceUrl": A, "weight": weights[0]},
        {"name": "b", "serviceUrl": B, "weight": weights[1]},
    ]
    return compile_graph(
        validate_graph({"nodes": {"root": {"routerType": "Splitter", "steps": steps}}})
    )


def record(n: int, point: int, route: str) -> dict[str, Any]:
    """What the router records for request `n` drawn at `point` to `route`; both models answer
    every input seen anywhere, so that any route can be replayed offline."""
    body = {"instances": [n]}
    target = A if route == "a" else B
    answer = {"model": route, "n": n}
    return {
        "id": f"r{n}",
        "graphHash": "sha256:x",
        "request": {"method": "POST", "path": "/", "headers": {}, "body": body},
        "steps": [{"node": "root", "step": route, "target": target, "input": body,
                   "status": 200, "answer": answer, "attempts": 1}],
        "decisions": [{"decision": "route", "node": "root", "step": route, "outcome": "drawn",
                       "detail": f"draw {point} of 100: route", "point": point}],
        "response": {"status": 200, "body": answer, "durationMs": 1.0},
    }  # fmt: skip


def other_model_seen(n: int, route: str) -> dict[str, Any]:
    """A request whose recorded call is the other model with request `n`'s input."""
    document = record(n, 0 if route == "a" else 99, route)
    document["id"] = f"other{n}"
    return document


async def run(documents: list[dict[str, Any]], weights: tuple[int, int]) -> Report:
    records = [parse_record(orjson.loads(orjson.dumps(d)), f"rec:{i}") for i, d in
               enumerate(documents, 1)]  # fmt: skip
    return await replay(records, splitter(weights))


POINTS = [3, 49, 50, 62, 79, 80, 99]


async def test_the_same_weights_take_the_recorded_routes() -> None:
    documents = [record(n, p, "a" if p < 50 else "b") for n, p in enumerate(POINTS)]
    report = await run(documents, (50, 50))
    assert not report.differs


async def test_changed_weights_move_exactly_the_points_in_the_shifted_share() -> None:
    documents = [record(n, p, "a" if p < 50 else "b") for n, p in enumerate(POINTS)]
    documents += [other_model_seen(n, "a") for n in range(len(POINTS))]
    report = await run(documents, (80, 20))
    moved = {c.id: c for c in report.differing}
    assert set(moved) == {"r2", "r3", "r4"}  # points 50, 62, 79: now below 80
    change = moved["r3"]
    assert [(d.node, d.kind, d.recorded, d.candidate) for d in change.decisions] == [
        ("root", "route", ("b drawn at 62",), ("a drawn at 62",))
    ]
    assert change.steps_added == (f"root.a ({A})",)
    assert change.steps_removed == (f"root.b ({B})",)
    assert [(d.path, d.expected, d.actual) for d in change.answer] == [("$.model", "b", "a")]
    assert change.errors == ()


async def test_a_call_the_recording_never_saw_is_that_requests_error() -> None:
    documents = [record(0, 62, "b")]
    report = await run(documents, (80, 20))
    (only,) = report.comparisons
    assert only.errors == (
        f"node 'root' step 'a' called {A}: not in the recording (its target was never called)",
    )
    assert only.status == (200, 502)
