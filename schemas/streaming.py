"""Which steps' answers may stream to the client: those the graph answers with, unread.

A step's answer can be passed through as it arrives only when nothing in the graph reads it:
the last step of a Sequence, any step of a Switch (the chosen one), a Splitter's routes (not
its shadows), in a node that is itself in such a position (the root, or a node every
reference to which is such a step). Anything else reads the answer (the next step, a
condition, an Ensemble's aggregation), so the router collects it first. The validation rules
(`idleTimeout` only where a stream can pass) and the router's compiler both read this one
function, so the two cannot disagree.
"""

from __future__ import annotations

from schemas.graph import ROOT_NODE, InferenceGraphSpec, InferenceRouter, RouterType


def answering_steps(node: InferenceRouter) -> tuple[int, ...]:
    """Indexes of the steps whose answer may become `node`'s answer as it is."""
    if node.router_type is RouterType.SEQUENCE:
        return (len(node.steps) - 1,) if node.steps else ()
    if node.router_type is RouterType.SWITCH:
        return tuple(range(len(node.steps)))
    if node.router_type is RouterType.SPLITTER:
        return tuple(i for i, step in enumerate(node.steps) if not step.shadow)
    return ()  # an Ensemble reads every answer


def streaming_steps(spec: InferenceGraphSpec) -> frozenset[tuple[str, int]]:
    """(node name, step index) of every step whose answer may stream to the client.

    A node reached both from an answering step and from somewhere that reads its answer does
    not stream: one compiled node serves both places, so it takes the collecting behaviour.
    """
    references: dict[str, list[tuple[str, int]]] = {}
    for name, node in spec.nodes.items():
        for index, step in enumerate(node.steps):
            if step.node_name:
                references.setdefault(step.node_name, []).append((name, index))
    answering = {name: set(answering_steps(node)) for name, node in spec.nodes.items()}
    placed = {ROOT_NODE} if ROOT_NODE in spec.nodes else set()
    # Each round places at least one more node or stops, so there are at most len(nodes).
    for _ in range(len(spec.nodes)):
        more = {
            name
            for name, refs in references.items()
            if name not in placed
            and name in spec.nodes
            and all(parent in placed and index in answering[parent] for parent, index in refs)
        }
        if not more:
            break
        placed |= more
    return frozenset(
        (name, index)
        for name in placed
        for index in answering[name]
        if not spec.nodes[name].steps[index].node_name
    )
