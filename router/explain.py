"""Explain / dry run: the path a request would take through a graph, without calling models.

The real executor runs with a `StubCaller` in place of HTTP: every service step answers from
`responses` (by `<node>.<step>` or step name; `200 {}` otherwise), and a `Trace` records each
node, step, condition, draw and skip. Used by the `X-InferGraph-Explain` request header and by
`infergraph explain GRAPH --request body.json [--responses stubs.yaml]`.
"""

from __future__ import annotations

import random
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import orjson

from router.errors import RouterError
from router.executor import Execution
from router.graph import CompiledGraph, Step, compile_graph
from router.payload import InvalidJSON, Payload, Reply
from router.recording import Trace
from schemas.valid_graph import ValidGraph

EXPLAIN_HEADER = "X-InferGraph-Explain"
_EXPLAIN_DEADLINE = 3600.0  # stubs answer at once; a deadline must exist but never matters


@dataclass(frozen=True, slots=True)
class Stub:
    status: int
    body: Any


DEFAULT_STUB = Stub(200, {})


class StubCaller:
    """Answers service steps from stubs; records nothing itself (the Trace does)."""

    def __init__(self, responses: Mapping[str, Stub]) -> None:
        self._responses = responses

    async def __call__(
        self, step: Step, body: bytes, headers: Mapping[str, str], seconds: float
    ) -> Reply:
        stub = self._responses.get(f"{step.owner}.{step.key}") or self._responses.get(step.key)
        if stub is None:
            stub = DEFAULT_STUB
        return Reply(stub.status, Payload.from_json(stub.body), json_content=True)


def stubs_from(document: Any) -> dict[str, Stub]:
    """`{"root.classify": {"status": 200, "body": {...}}, "breed": {"body": {...}}}`."""
    if not isinstance(document, Mapping):
        raise ValueError("responses must map '<node>.<step>' or '<step>' to {status, body}")
    out = {}
    for key, value in document.items():
        if not isinstance(value, Mapping) or not set(value) <= {"status", "body"}:
            raise ValueError(f"responses[{key!r}] must be an object with 'status' and/or 'body'")
        out[str(key)] = Stub(int(value.get("status", 200)), value.get("body", {}))
    return out


async def explain(
    graph: CompiledGraph,
    request: bytes,
    responses: Mapping[str, Stub] | None = None,
    rng: random.Random | None = None,
    headers: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    trace = Trace()
    payload = Payload(request)
    execution = Execution(
        StubCaller(responses or {}),
        payload,
        {},
        rng or random.Random(),
        deadline=time.monotonic() + _EXPLAIN_DEADLINE,
        service_client_timeout=_EXPLAIN_DEADLINE,
        recorder=trace,
        incoming_headers=headers or {},
    )
    try:
        reply = await execution.run_node(graph.root, payload)
        status, body = reply.status, _body(reply.payload)
    except RouterError as error:
        status, body = error.status, orjson.loads(error.body())
    path = [
        {k: v for k, v in event.items() if k not in ("startMs", "durationMs")}
        for event in trace.as_json()
    ]
    return {"path": path, "status": status, "response": body}


def explain_graph(graph: ValidGraph) -> CompiledGraph:
    """The graph compiled for explain: unresolved services get a URL that is never called."""
    placeholders = {name: f"http://{name}.explain.invalid/" for name in graph.referenced_services()}
    return compile_graph(graph.with_service_urls(placeholders))


def _body(payload: Payload) -> Any:
    try:
        return payload.json()
    except InvalidJSON:
        return payload.raw.decode(errors="replace")
