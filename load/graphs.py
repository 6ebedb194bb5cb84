"""The graphs the bench runs, as InferenceGraph specs (plain dicts, KServe's JSON shape).

Pure functions of the backend URL, so the same spec is given to our router and to KServe's.
"""

from typing import Any

# What wrk POSTs: a small v1 body with a field the Switch condition reads.
REQUEST_BODY = b'{"kind":"a","instances":[[6.8,2.8,4.8,1.4]]}'

Spec = dict[str, Any]


def _sequence(*steps: dict[str, Any]) -> dict[str, Any]:
    return {"routerType": "Sequence", "steps": list(steps)}


def one_step(url: str) -> Spec:
    return {"nodes": {"root": _sequence({"serviceUrl": url, "name": "a"})}}


def two_steps(url: str) -> Spec:
    return {
        "nodes": {
            "root": _sequence(
                {"serviceUrl": url, "name": "a"},
                {"serviceUrl": url, "name": "b", "data": "$response"},
            )
        }
    }


def switch(url: str) -> Spec:
    """A GJSON condition on the request: forces one parse per request; the second route holds."""
    return {
        "nodes": {
            "root": {
                "routerType": "Switch",
                "steps": [
                    {"serviceUrl": url, "name": "b", "condition": '[@this].#(kind=="b")'},
                    {"serviceUrl": url, "name": "a", "condition": '[@this].#(kind=="a")'},
                ],
            }
        }
    }


def ensemble(url: str, width: int = 4) -> Spec:
    steps = [{"serviceUrl": url, "name": f"m{i}"} for i in range(width)]
    return {"nodes": {"root": {"routerType": "Ensemble", "steps": steps}}}


def nested(url: str, levels: int = 10) -> Spec:
    """`levels` Sequence nodes, each calling the next by nodeName; the last calls the service."""
    names = ["root", *(f"n{i}" for i in range(1, levels))]
    nodes = {
        name: _sequence({"nodeName": names[i + 1], "name": "next"})
        for i, name in enumerate(names[:-1])
    }
    nodes[names[-1]] = _sequence({"serviceUrl": url, "name": "leaf"})
    return {"nodes": nodes}


def tree(url: str, size: int) -> Spec:
    """`size` Sequence nodes as a binary tree (depth log2 size); leaves call the service.

    A tree rather than a chain: a 1,000-deep chain of awaits would hit Python's recursion limit,
    and graphs that large are wide rather than deep.
    """
    nodes: dict[str, Any] = {}
    for i in range(size):
        name = "root" if i == 0 else f"n{i}"
        children = [c for c in (2 * i + 1, 2 * i + 2) if c < size]
        steps = [{"nodeName": f"n{c}", "name": f"s{c}"} for c in children]
        nodes[name] = _sequence(*(steps or [{"serviceUrl": url, "name": "leaf"}]))
    return {"nodes": nodes}
