"""router.testing: strategies produce what they promise; the harness runs the real executor."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import jsonschema
import orjson
import pytest
from hypothesis import given, settings

from graph_controller.cli import main as infergraph
from graph_controller.cli.check import check, default_model
from router.testing import (
    Decision,
    DecisionKind,
    GraphHarness,
    ModelFailure,
    ModelUnreachable,
    NoRouteMatched,
    Outcome,
    from_schema,
    graphs,
    payloads,
)
from schemas.valid_graph import validate_graph


@settings(derandomize=True, max_examples=100)
@given(graphs(max_nodes=5))
def test_generated_graphs_are_valid(spec: dict[str, Any]) -> None:
    validate_graph(spec)


@settings(derandomize=True, max_examples=100)
@given(payloads())
def test_payloads_are_v1_or_v2(body: dict[str, Any]) -> None:
    if "instances" in body:
        assert all(isinstance(row, list) for row in body["instances"])
    else:
        (tensor,) = body["inputs"]
        rows, width = tensor["shape"]
        assert len(tensor["data"]) == rows * width


SCHEMA = {
    "type": "object",
    "required": ["instances"],
    "properties": {
        "instances": {
            "type": "array",
            "minItems": 1,
            "maxItems": 3,
            "items": {"type": "array", "items": {"type": "number", "minimum": 0, "maximum": 10}},
        },
        "mode": {"enum": ["fast", "exact"]},
        "debug": {"type": "boolean"},
    },
}


@settings(derandomize=True, max_examples=200)
@given(from_schema(SCHEMA))
def test_from_schema_values_match_the_schema(body: Any) -> None:
    jsonschema.validate(body, SCHEMA)


DOG_BREED = {
    "nodes": {
        "root": {
            "routerType": "Sequence",
            "steps": [
                {"serviceName": "classifier", "name": "cls"},
                {
                    "serviceName": "breed",
                    "name": "breed",
                    "condition": 'predictions.#(label=="dog")',
                },
            ],
        }
    }
}


def classifier(body: Any) -> Any:
    return {
        "predictions": [{"label": "dog" if sum(r[0] for r in body["instances"]) > 0 else "cat"}]
    }


async def breed(body: Any) -> Any:  # async models work too
    await asyncio.sleep(0)
    return {"predictions": ["beagle"]}


@pytest.mark.parametrize(
    ("first", "expected_steps", "expected_body", "outcome", "detail"),
    [
        (
            1.0,
            [("root", "cls"), ("root", "breed")],
            {"predictions": ["beagle"]},
            Outcome.HELD,
            "condition 'predictions.#(label==\"dog\")' held",
        ),
        (
            -1.0,
            [("root", "cls")],
            {"predictions": [{"label": "cat"}]},
            Outcome.FAILED,
            "condition 'predictions.#(label==\"dog\")' failed: stop",
        ),
    ],
    ids=["dog-reaches-breed", "cat-stops"],
)
def test_harness_records_what_ran(
    first: float,
    expected_steps: list[tuple[str, str]],
    expected_body: Any,
    outcome: Outcome,
    detail: str,
) -> None:
    harness = GraphHarness(DOG_BREED, {"classifier": classifier, "breed": breed})
    run = harness.run({"instances": [[first]]})
    assert (run.status, run.body) == (200, expected_body)
    assert run.steps == expected_steps
    assert run.nodes == ["root"]
    assert run.decisions == [Decision(DecisionKind.CONDITION, "root", "breed", outcome, detail)]
    assert run.error is None


def test_a_run_carries_the_routers_error_as_a_value() -> None:
    spec = {"nodes": {"root": {"routerType": "Switch", "steps": [
        {"serviceName": "classifier", "condition": "never_there"},
    ]}}}  # fmt: skip
    run = GraphHarness(spec, {"classifier": classifier}).run({"instances": [[1.0]]})
    assert isinstance(run.error, NoRouteMatched)
    assert run.body == {
        "error": "Failed to process request",
        "cause": "None of the routes matched with the switch condition",
        "node": "root",
        "detail": "no condition of Switch node 'root' holds on its input",
    }
    [decision] = run.decisions
    assert (decision.kind, decision.step, decision.outcome) == (
        DecisionKind.CONDITION,
        "0",
        Outcome.FAILED,
    )


STICKY = {"nodes": {"root": {"routerType": "Splitter", "stickyHeader": "X-User-Id", "steps": [
    {"serviceName": "classifier", "name": "a", "weight": 50},
    {"serviceName": "breed", "name": "b", "weight": 50},
]}}}  # fmt: skip


def test_splitter_share_fires_when_the_traffic_is_one_sticky_user() -> None:
    spec = validate_graph(STICKY)
    models = {"classifier": default_model, "breed": default_model}
    one_user = check(spec, models, examples=10, headers=[{"X-User-Id": "user-7"}])
    # blake2b of "user-7" puts every request on one route: the other gets none of its 50%.
    shares = [f for f in one_user if f.id == "splitter-share"]
    sticky = "(stickyHeader 'X-User-Id': its values in the traffic hash to too few points)"
    assert [(f.where, f.message) for f in shares] == [
        ("nodes.root.steps[0]", f"weight 50 but 2000 of 2000 requests (100.0%) {sticky}"),
        ("nodes.root.steps[1]", f"weight 50 but 0 of 2000 requests (0.0%) {sticky}"),
    ]
    many_users = [{"X-User-Id": f"user-{i}"} for i in range(500)]
    assert not [
        f for f in check(spec, models, examples=10, headers=many_users) if f.id == "splitter-share"
    ]


@pytest.mark.parametrize(
    ("breed_model", "status"),
    [
        (lambda body: (503, {"error": "busy"}), 503),
        (lambda body: (_ for _ in ()).throw(ModelFailure(429)), 429),
        (lambda body: (_ for _ in ()).throw(ModelUnreachable("down")), 502),
    ],
    ids=["status-pair", "model-failure", "unreachable"],
)
def test_harness_models_can_fail(breed_model: Any, status: int) -> None:
    harness = GraphHarness(DOG_BREED, {"classifier": classifier, "breed": breed_model})
    assert harness.run({"instances": [[1.0]]}).status == status


DEAD_BRANCH = """
apiVersion: infergraph.dev/v1alpha1
kind: InferenceGraph
metadata: {name: g}
spec:
  timeout: 5
  nodes:
    root:
      routerType: Switch
      steps:
        - {serviceName: a, condition: instances, timeout: 9}
        - {serviceName: b, condition: nothing_has_this}
"""


def test_check_reports_findings_with_examples(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    graph = tmp_path / "g.yaml"
    graph.write_text(DEAD_BRANCH)
    assert infergraph(["check", str(graph), "--examples", "40", "--json"]) == 1
    findings = orjson.loads(capsys.readouterr().out)
    kinds = {f["id"]: f for f in findings}
    # The graph's conditions name `instances` only: v1 bodies, on which route 0 always holds.
    assert kinds["condition-never-holds"]["where"] == "nodes.root.steps[1]"
    assert kinds["condition-always-holds"]["where"] == "nodes.root.steps[0]"
    assert kinds["step-timeout-exceeds-graph"]["where"] == "nodes.root.steps[0]"
    assert set(kinds) == {
        "condition-never-holds",
        "condition-always-holds",
        "step-timeout-exceeds-graph",
    }


def test_check_passes_a_sound_graph(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    graph = tmp_path / "g.yaml"
    graph.write_text(
        "nodes: {root: {routerType: Splitter, steps: ["
        "{serviceName: a, weight: 70}, {serviceName: b, weight: 30}]}}\n"
    )
    assert infergraph(["check", str(graph), "--examples", "20"]) == 0
    assert "0 finding(s)" in capsys.readouterr().out


def test_check_uses_the_users_models(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    graph = tmp_path / "g.yaml"
    graph.write_text("nodes: {root: {routerType: Sequence, steps: [{serviceName: flaky}]}}\n")
    models = tmp_path / "models.py"
    models.write_text("def flaky(body):\n    raise RuntimeError('bug')\n")
    assert infergraph(["check", str(graph), "--models", str(models), "--examples", "10"]) == 1
    assert "model-raised at nodes.root.steps[0]: model flaky raised RuntimeError('bug')" in (
        capsys.readouterr().out
    )


@settings(derandomize=True, max_examples=30)
@given(graphs(max_nodes=3, max_steps=2, router_types=["Ensemble", "Splitter"]))
def test_graph_strategy_knobs(spec: dict[str, Any]) -> None:
    assert 1 <= len(spec["nodes"]) <= 3
    for node in spec["nodes"].values():
        assert node["routerType"] in ("Ensemble", "Splitter")
        assert 1 <= len(node["steps"]) <= 2
