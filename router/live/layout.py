"""Where the live page draws each node of a graph: a layered layout, pure, no Graphviz.

Called by `router.live.page` when a graph is served (and again after a reload). Each node is a
box listing its steps as rows; a step that names another node (`nodeName`) is an edge from its
row to that node's box. Graphs are small DAGs, so a layered layout is enough: a node's layer is
the longest path to it from a node nothing references (`root` among them), layers are columns
from left to right, and within a column nodes are ordered by the mean row of the steps that
reference them (the barycenter heuristic), which keeps most edges short and uncrossed.

Coordinates are SVG user units; the browser only draws what this module places.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from router.graph import CompiledGraph, Node

BOX_WIDTH = 360  # room for a step's name, target and its figures on one row each
HEADER_HEIGHT = 52  # the node's name, its router type and its own figures
ROW_HEIGHT = 58  # one step: name and target, its figures, its route share and breaker
COLUMN_GAP = 90  # room for the edges between columns
BOX_GAP = 28  # between boxes of one column
MARGIN = 16


@dataclass(frozen=True, slots=True)
class StepPlace:
    key: str
    target: str  # the service URL, or the node it runs
    node: str | None  # the node a `nodeName` step runs
    shadow: bool
    weight: int
    y: int  # the row's top


@dataclass(frozen=True, slots=True)
class NodePlace:
    name: str
    kind: str
    layer: int
    x: int
    y: int
    width: int
    height: int
    steps: tuple[StepPlace, ...]


@dataclass(frozen=True, slots=True)
class Layout:
    width: int
    height: int
    nodes: tuple[NodePlace, ...]

    def as_json(self) -> dict[str, Any]:
        return {
            "width": self.width,
            "height": self.height,
            "nodes": [
                {
                    "name": n.name,
                    "kind": n.kind,
                    "layer": n.layer,
                    "x": n.x,
                    "y": n.y,
                    "width": n.width,
                    "height": n.height,
                    "steps": [
                        {
                            "key": s.key,
                            "target": s.target,
                            "node": s.node,
                            "shadow": s.shadow,
                            "weight": s.weight,
                            "y": s.y,
                        }
                        for s in n.steps
                    ],
                }
                for n in self.nodes
            ],
        }


def layers(graph: CompiledGraph) -> dict[str, int]:
    """Each node's layer: 0 for a node no step names, else one more than its deepest caller."""
    callers: dict[str, list[str]] = {name: [] for name in graph.nodes}
    for name, node in graph.nodes.items():
        for step in node.steps:
            if step.node is not None:
                callers[step.node.name].append(name)
    placed: dict[str, int] = {}

    def layer(name: str) -> int:
        # The graph is acyclic (validation refuses cycles), so the recursion ends; its depth
        # is bounded by the number of nodes.
        if name not in placed:
            placed[name] = 1 + max((layer(c) for c in callers[name]), default=-1)
        return placed[name]

    for name in graph.nodes:
        layer(name)
    return placed


def layout(graph: CompiledGraph) -> Layout:
    """Boxes for every node of `graph`, none overlapping, every edge pointing right."""
    layer_of = layers(graph)
    columns: dict[int, list[Node]] = {}
    # Spec order within a layer, `root` first, before the barycenter pass reorders it.
    ordered = sorted(graph.nodes.values(), key=lambda n: n is not graph.root)
    for node in ordered:
        columns.setdefault(layer_of[node.name], []).append(node)
    row_centre: dict[str, list[float]] = {}  # node -> centres of the rows that call it
    placed: list[NodePlace] = []
    height = 0
    for index in sorted(columns):
        column = columns[index]
        if index > 0:
            column.sort(key=lambda n: _mean(row_centre.get(n.name, [])))
        x = MARGIN + index * (BOX_WIDTH + COLUMN_GAP)
        y = MARGIN
        for node in column:
            rows = []
            for i, step in enumerate(node.steps):
                row_y = y + HEADER_HEIGHT + i * ROW_HEIGHT
                child = step.node.name if step.node is not None else None
                if child is not None:
                    row_centre.setdefault(child, []).append(row_y + ROW_HEIGHT / 2)
                rows.append(
                    StepPlace(
                        key=step.key,
                        target=child if child is not None else (step.url or ""),
                        node=child,
                        shadow=step.shadow,
                        weight=step.weight,
                        y=row_y,
                    )
                )
            box_height = HEADER_HEIGHT + len(node.steps) * ROW_HEIGHT
            placed.append(
                NodePlace(
                    node.name, node.kind.value, index, x, y, BOX_WIDTH, box_height, tuple(rows)
                )
            )
            y += box_height + BOX_GAP
        height = max(height, y - BOX_GAP + MARGIN)
    width = MARGIN + (max(columns) + 1) * (BOX_WIDTH + COLUMN_GAP) - COLUMN_GAP + MARGIN
    return Layout(width, height, tuple(placed))


def _mean(values: list[float]) -> float:
    return sum(values) / len(values) if values else float("inf")
