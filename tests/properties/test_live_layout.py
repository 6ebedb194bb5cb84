"""The live page's layout (router.live.layout) on random DAGs: every node and step placed once,
no two boxes overlap, every `nodeName` edge points right, and layers are longest paths."""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from router.graph import compile_graph
from router.live.layout import Layout, NodePlace, layers, layout
from schemas.valid_graph import validate_graph

SETTINGS = settings(derandomize=True, max_examples=150, deadline=None)


@st.composite
def dags(draw: st.DrawFn) -> dict[str, Any]:
    """A valid bare spec: `root` and up to 7 nodes; a step names only a later node, so no cycle."""
    names = ["root", *(f"n{i}" for i in range(draw(st.integers(0, 7))))]
    nodes: dict[str, Any] = {}
    for index, name in enumerate(names):
        later = names[index + 1 :]
        steps = []
        for number in range(draw(st.integers(1, 4))):
            step: dict[str, Any] = {"name": f"s{number}"}
            if later and draw(st.booleans()):
                step["nodeName"] = draw(st.sampled_from(later))
            else:
                step["serviceUrl"] = f"http://127.0.0.1:9/{name}/{number}"
            steps.append(step)
        kind = draw(st.sampled_from(["Sequence", "Ensemble"]))
        nodes[name] = {"routerType": kind, "steps": steps}
    return {"nodes": nodes}


def overlap(a: NodePlace, b: NodePlace) -> bool:
    across = a.x < b.x + b.width and b.x < a.x + a.width
    return across and a.y < b.y + b.height and b.y < a.y + a.height


@SETTINGS
@given(dags())
def test_the_layout_places_everything_once_apart_and_left_to_right(spec: dict[str, Any]) -> None:
    graph = compile_graph(validate_graph(spec))
    placed: Layout = layout(graph)
    boxes = {place.name: place for place in placed.nodes}
    assert sorted(boxes) == sorted(spec["nodes"])
    assert len(placed.nodes) == len(boxes)
    for name, place in boxes.items():
        assert [s.key for s in place.steps] == [s["name"] for s in spec["nodes"][name]["steps"]]
        assert place.x >= 0
        assert place.x + place.width <= placed.width
        assert place.y >= 0
        assert place.y + place.height <= placed.height
        rows = [s.y for s in place.steps]
        assert rows == sorted(rows)
        assert len(set(rows)) == len(rows)
        assert all(place.y < y < place.y + place.height for y in rows)
        for step in place.steps:
            if step.node is not None:
                child = boxes[step.node]
                assert child.x >= place.x + place.width, (name, step.key, step.node)
    for a in placed.nodes:
        for b in placed.nodes:
            assert a is b or not overlap(a, b), (a.name, b.name)


@SETTINGS
@given(dags())
def test_a_nodes_layer_is_its_longest_path_from_a_node_nothing_calls(spec: dict[str, Any]) -> None:
    graph = compile_graph(validate_graph(spec))
    layer = layers(graph)
    callers: dict[str, list[str]] = {name: [] for name in graph.nodes}
    for name, node in graph.nodes.items():
        for step in node.steps:
            if step.node is not None:
                callers[step.node.name].append(name)
    for name in graph.nodes:
        # Below every caller, and right below one of them (longest path, not just any order).
        assert all(layer[name] > layer[c] for c in callers[name])
        if callers[name]:
            assert max(layer[c] for c in callers[name]) == layer[name] - 1
        else:
            assert layer[name] == 0
