"""The pure rules of streaming: which steps may stream (schemas.streaming), which answers pass
through, and how an SSE answer the graph reads is collected (router.streams)."""

from __future__ import annotations

from typing import Any

import pytest

from router.graph import compile_graph
from router.streams import collect_events, passes_through
from schemas.errors import SpecError
from schemas.streaming import streaming_steps
from schemas.valid_graph import validate_graph

URL = "http://127.0.0.1:9/m"


def step(**fields: Any) -> dict[str, Any]:
    return {"serviceUrl": URL, **fields}


def nodes(**spec: dict[str, Any]) -> dict[str, Any]:
    return {"nodes": spec}


def node(kind: str, *steps: dict[str, Any]) -> dict[str, Any]:
    return {"routerType": kind, "steps": list(steps)}


@pytest.mark.parametrize(
    ("spec", "streaming"),
    [
        (nodes(root=node("Sequence", step(), step())), {("root", 1)}),
        (
            nodes(root=node("Switch", step(condition="a"), step(condition="b"))),
            {("root", 0), ("root", 1)},
        ),
        (
            nodes(root=node("Splitter", step(weight=100), step(shadow=True))),
            {("root", 0)},
        ),
        (nodes(root=node("Ensemble", step(), step())), set()),
        (
            nodes(
                root=node("Sequence", step(), {"nodeName": "x"}),
                x=node("Switch", step(condition="a")),
            ),
            {("x", 0)},
        ),
        (
            nodes(root=node("Sequence", {"nodeName": "x"}, step()), x=node("Sequence", step())),
            {("root", 1)},
        ),
        (
            # x answers the graph from one place and is read from another: it collects.
            nodes(
                root=node(
                    "Switch",
                    {"nodeName": "x", "condition": "a"},
                    {"nodeName": "e", "condition": "b"},
                ),
                e=node("Ensemble", {"nodeName": "x"}),
                x=node("Sequence", step()),
            ),
            set(),
        ),
    ],
    ids=[
        "sequence-last-step",
        "switch-every-route",
        "splitter-routes-not-shadows",
        "ensemble-none",
        "nested-node-in-answer-place",
        "nested-node-read-by-next-step",
        "node-reused-where-read",
    ],
)
def test_which_steps_stream(spec: dict[str, Any], streaming: set[tuple[str, int]]) -> None:
    graph = validate_graph(spec)
    assert streaming_steps(graph.spec) == streaming
    compiled = compile_graph(graph)
    assert {
        (name, i) for name, n in compiled.nodes.items() for i, s in enumerate(n.steps) if s.streams
    } == streaming


@pytest.mark.parametrize(
    ("spec", "path"),
    [
        (
            nodes(root=node("Sequence", step(idleTimeout=1), step())),
            "nodes.root.steps[0].idleTimeout",
        ),
        (nodes(root=node("Ensemble", step(idleTimeout=1))), "nodes.root.steps[0].idleTimeout"),
        (
            nodes(root=node("Splitter", step(weight=100), step(shadow=True, idleTimeout=1))),
            "nodes.root.steps[1].idleTimeout",
        ),
        (
            nodes(
                root=node("Sequence", {"nodeName": "x", "idleTimeout": 1}),
                x=node("Sequence", step()),
            ),
            "nodes.root.steps[0].idleTimeout",
        ),
        (nodes(root=node("Sequence", step(openai="chat"))), "nodes.root.steps[0].openai"),
    ],
    ids=["sequence-early-step", "ensemble-step", "shadow", "node-step", "openai-without-service"],
)
def test_options_that_would_be_ignored_are_refused(spec: dict[str, Any], path: str) -> None:
    with pytest.raises(SpecError) as refused:
        validate_graph(spec)
    assert [e.path for e in refused.value.errors] == [path]


def test_idle_timeout_on_an_answering_step_is_accepted() -> None:
    graph = compile_graph(validate_graph(nodes(root=node("Sequence", step(), step(idleTimeout=2)))))
    assert graph.root.steps[1].idle_timeout == 2


@pytest.mark.parametrize(
    ("status", "content_type", "chunked", "streams"),
    [
        (200, "text/event-stream", False, True),
        (200, "text/event-stream; charset=utf-8", True, True),
        (200, "text/plain", True, True),
        (200, "application/x-ndjson", True, True),
        (200, "application/json", True, False),
        (200, "text/plain", False, False),
        (500, "text/event-stream", True, False),
    ],
    ids=[
        "sse",
        "sse-params",
        "chunked-text",
        "chunked-ndjson",
        "chunked-json",
        "sized-text",
        "error",
    ],
)
def test_what_passes_through(status: int, content_type: str, chunked: bool, streams: bool) -> None:
    assert passes_through(status, content_type, chunked) is streams


def test_collected_events_join_data_lines_and_drop_comments_and_done() -> None:
    graph = compile_graph(validate_graph(nodes(root=node("Sequence", step(name="llm")))))
    raw = (
        b": keep-alive\n\n"
        b'data: {"a": 1}\r\n\r\n'
        b"event: note\nid: 7\ndata: two\ndata: lines\n\n"
        b"data\n\n"
        b"data: [DONE]\n\n"
    )
    assert collect_events(graph.root.steps[0], raw).json() == {
        "events": [{"a": 1}, "two\nlines", ""]
    }
