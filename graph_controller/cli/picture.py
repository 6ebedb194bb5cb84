"""A picture of a graph: Mermaid or Graphviz DOT text (pure), SVG through Graphviz's `dot`.

Nodes are drawn with their router type; edges carry what decides them: a step's condition,
its weight, `data`, Hard dependencies, shadow copies. `infergraph graph FILE --format ...`
prints it; Mermaid renders directly in GitHub Markdown.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from dataclasses import dataclass

from schemas.graph import InferenceGraphSpec, InferenceStep, RouterType
from schemas.valid_graph import ValidGraph

_SHAPES = {
    RouterType.SEQUENCE: ("[[", "]]"),
    RouterType.SWITCH: ("{", "}"),
    RouterType.ENSEMBLE: ("[/", "/]"),
    RouterType.SPLITTER: ("{{", "}}"),
}


class PictureError(RuntimeError):
    """The picture cannot be made here (e.g. SVG without Graphviz installed)."""


def _id(kind: str, name: str) -> str:
    return kind + "_" + re.sub(r"\W", "_", name)


def _target(step: InferenceStep) -> tuple[str, str]:
    if step.node_name:
        return _id("node", step.node_name), step.node_name
    name = step.service_name or step.service_url or "?"
    return _id("svc", name), name


def _edge_label(index: int, step: InferenceStep) -> str:
    parts = [step.name or str(index)]
    if step.condition:
        parts.append(f"if {step.condition}")
    if step.weight is not None:
        parts.append(f"{step.weight}%")
    if step.data and step.data != "$request":
        parts.append(f"data {step.data}" if isinstance(step.data, str) else "data template")
    if step.dependency == "Hard":
        parts.append("Hard")
    if step.shadow:
        parts.append("shadow")
    return " · ".join(parts)


@dataclass(frozen=True, slots=True)
class _Edge:
    source: str
    target: str
    label: str
    shadow: bool


def _walk(spec: InferenceGraphSpec) -> tuple[list[_Edge], dict[str, str]]:
    """Every step as an edge, and the services the graph calls (id -> label)."""
    edges: list[_Edge] = []
    services: dict[str, str] = {}
    for name, node in spec.nodes.items():
        for index, step in enumerate(node.steps):
            target, label = _target(step)
            if not step.node_name:
                services[target] = label
            edge = _Edge(_id("node", name), target, _edge_label(index, step), bool(step.shadow))
            edges.append(edge)
    return edges, services


def mermaid(graph: ValidGraph) -> str:
    spec = graph.spec
    lines = ["flowchart LR"]
    for name, node in spec.nodes.items():
        left, right = _SHAPES[node.router_type]
        lines.append(f'    {_id("node", name)}{left}"{name}<br/>{node.router_type}"{right}')
    edges, services = _walk(spec)
    for edge in edges:
        arrow = "-.->" if edge.shadow else "-->"
        text = edge.label.replace('"', "#quot;")
        lines.append(f'    {edge.source} {arrow}|"{text}"| {edge.target}')
    for target, label in services.items():
        lines.append(f'    {target}(["{label}"])')
    return "\n".join(lines) + "\n"


_DOT_SHAPES = {
    RouterType.SEQUENCE: "box",
    RouterType.SWITCH: "diamond",
    RouterType.ENSEMBLE: "parallelogram",
    RouterType.SPLITTER: "hexagon",
}


def dot(graph: ValidGraph) -> str:
    spec = graph.spec

    def quote(text: str) -> str:
        # DOT's own escapes: a backslash, a quote, and \n for a line break inside a label.
        escaped = text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
        return '"' + escaped + '"'

    lines = ["digraph inferencegraph {", "  rankdir=LR;", "  node [fontname=Helvetica];"]
    for name, node in spec.nodes.items():
        label = quote(f"{name}\n{node.router_type}")
        lines.append(
            f"  {_id('node', name)} [shape={_DOT_SHAPES[node.router_type]}, label={label}];"
        )
    edges, services = _walk(spec)
    for edge in edges:
        style = ", style=dashed" if edge.shadow else ""
        lines.append(f"  {edge.source} -> {edge.target} [label={quote(edge.label)}{style}];")
    for target, label in services.items():
        lines.append(f"  {target} [shape=ellipse, label={quote(label)}];")
    lines.append("}")
    return "\n".join(lines) + "\n"


def svg(graph: ValidGraph) -> str:
    executable = shutil.which("dot")
    if executable is None:
        raise PictureError(
            "SVG needs Graphviz's `dot` (Debian: apt-get install graphviz, or `make picture`); "
            "use --format mermaid or dot meanwhile"
        )
    result = subprocess.run(
        [executable, "-Tsvg"], input=dot(graph), capture_output=True, text=True, check=False
    )
    if result.returncode != 0:
        raise PictureError(f"dot failed: {result.stderr.strip()}")
    return result.stdout
