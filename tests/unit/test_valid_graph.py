"""schemas.valid_graph: the one way to a validated graph, and what it guarantees."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings

from router.graph import compile_graph
from router.testing import graphs
from schemas.errors import SpecError
from schemas.valid_graph import ValidGraph, validate_graph


def whole(spec: dict[str, Any], name: str = "g") -> dict[str, Any]:
    return {
        "apiVersion": "serving.kserve.io/v1alpha1",
        "kind": "InferenceGraph",
        "metadata": {"name": name},
        "spec": spec,
    }


SPLITTER_110 = {
    "nodes": {
        "root": {
            "routerType": "Splitter",
            "steps": [
                {"serviceName": "a", "weight": 60, "condtion": "x"},
                {"serviceName": "b", "weight": 50},
            ],
        }
    }
}


def messages(doc: Any) -> dict[str, str]:
    with pytest.raises(SpecError) as caught:
        validate_graph(doc)
    return {e.path: e.message for e in caught.value.errors}


def test_a_valid_graph_cannot_be_made_without_validation() -> None:
    spec = {"nodes": {"root": {"routerType": "Sequence", "steps": [{"serviceName": "a"}]}}}
    graph = validate_graph(whole(spec))
    with pytest.raises(TypeError, match=r"made only by schemas\.valid_graph\.validate_graph"):
        ValidGraph(graph.resource, object())


@pytest.mark.parametrize("prefix", ["spec.", ""], ids=["whole", "bare"])
def test_every_rule_runs_in_the_same_pass_as_the_shape(prefix: str) -> None:
    errors = messages(whole(SPLITTER_110) if prefix else SPLITTER_110)
    assert "unknown field 'condtion'" in errors[f"{prefix}nodes.root.steps[0].condtion"]
    assert errors[f"{prefix}nodes.root.steps"] == "Splitter step weights sum to 110, expected 100"


def test_a_rule_about_a_refused_field_is_left_to_the_shape_error() -> None:
    doc = {
        "nodes": {
            "root": {
                "routerType": "Splitter",
                "steps": [{"serviceName": "a", "weight": "60"}, {"serviceName": "b", "weight": 40}],
            }
        }
    }
    assert list(messages(doc)) == ["nodes.root.steps[0].weight"]


@pytest.mark.parametrize(
    "name",
    ["Dog-Breed", "1graph", "graph-", "dog_breed", "a.b"],
    ids=["upper", "digit-first", "dash-last", "underscore", "dot"],
)
def test_a_whole_graph_needs_a_name_kserves_webhook_accepts(name: str) -> None:
    spec = {"nodes": {"root": {"routerType": "Sequence", "steps": [{"serviceName": "a"}]}}}
    errors = messages(whole(spec, name))
    assert f"'{name}' is not a valid InferenceGraph name" in errors["metadata.name"]


@pytest.mark.parametrize("name", ["g", "dog-breed", "a-1", "x9"])
def test_kserve_style_names_pass(name: str) -> None:
    spec = {"nodes": {"root": {"routerType": "Sequence", "steps": [{"serviceName": "a"}]}}}
    assert validate_graph(whole(spec, name)).name == name


def test_resolving_service_urls_keeps_the_graph_valid_and_leaves_given_urls() -> None:
    graph = validate_graph(
        {
            "nodes": {
                "root": {
                    "routerType": "Sequence",
                    "steps": [
                        {"serviceName": "a"},
                        {"serviceName": "b", "serviceUrl": "http://given/b"},
                        {"nodeName": "inner"},
                    ],
                },
                "inner": {"routerType": "Sequence", "steps": [{"serviceName": "a"}]},
            }
        }
    )
    assert graph.referenced_services() == ("a",)
    resolved = graph.with_service_urls({"a": "http://a/v1/models/a:predict", "b": "http://x"})
    steps = resolved.spec.nodes["root"].steps
    assert [s.service_url for s in steps] == [
        "http://a/v1/models/a:predict",
        "http://given/b",
        None,
    ]
    assert resolved.referenced_services() == ()
    compile_graph(resolved)  # every step now has a URL
    assert graph.referenced_services() == ("a",)  # the original is unchanged


def test_a_step_url_that_is_not_http_is_refused() -> None:
    graph = validate_graph(
        {"nodes": {"root": {"routerType": "Sequence", "steps": [{"serviceName": "a"}]}}}
    )
    with pytest.raises(ValueError, match="'ftp://a' is not an absolute http"):
        graph.with_step_urls(lambda node, index, step: "ftp://a")


@settings(derandomize=True, max_examples=60)
@given(graphs(max_nodes=4))
def test_bare_and_whole_forms_give_the_same_graph(spec: dict[str, Any]) -> None:
    bare = validate_graph(spec)
    assert validate_graph(whole(spec)).spec == bare.spec
    assert bare.router_json() == validate_graph(whole(spec)).router_json()
