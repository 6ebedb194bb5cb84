"""`infergraph check --models`: a model that raises is a finding with its input, not a
traceback; `--protocol` and `--schema` choose the generated bodies; `MODELS` wins over
functions named after services, and names only services of the graph."""

from __future__ import annotations

import json
from pathlib import Path

import orjson
import pytest

from graph_controller.cli.main import main as infergraph

SEQUENCE = """
apiVersion: serving.kserve.io/v1alpha1
kind: InferenceGraph
metadata: {name: g}
spec:
  nodes:
    root:
      routerType: Sequence
      steps:
        - {serviceName: reader, name: read, dependency: Hard}
"""

# Reads v1 bodies only: a v2 body has no `instances`.
READER = """
def reader(body):
    if not body["instances"]:
        raise ValueError("no rows")
    return {"predictions": [len(row) for row in body["instances"]]}
"""


def write(tmp_path: Path, name: str, text: str) -> str:
    path = tmp_path / name
    path.write_text(text)
    return str(path)


def run_check(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], models: str, *extra: str
) -> tuple[int, list[dict[str, object]], str]:
    graph = write(tmp_path, "g.yaml", SEQUENCE)
    module = write(tmp_path, "models.py", models)
    argv = ["check", graph, "--models", module, "--examples", "30", "--json", *extra]
    status = infergraph(argv)
    captured = capsys.readouterr()
    findings = orjson.loads(captured.out) if status in (0, 1) and captured.out else []
    return status, findings, captured.err


def test_a_model_that_raises_is_a_finding_with_its_input(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # The model reads v1 bodies only (v2 ones raise KeyError), so v1 bodies are generated,
    # the edge case without rows among them: the model's own ValueError is found.
    status, findings, _ = run_check(tmp_path, capsys, READER)
    assert status == 1
    assert findings == [
        {
            "id": "model-raised",
            "node": "root",
            "step": "read",
            "where": "nodes.root.steps[0]",
            "message": "model reader raised ValueError('no rows') on input {\"instances\":[]}",
            "example": {"instances": []},
            "headers": {
                "Content-Type": "application/json",
                "Accept": "application/json",
                "User-Agent": "infergraph-check",
                "Host": "graph.example",
            },
        }
    ]


def test_protocol_v2_is_what_the_user_asks_for(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    status, findings, _ = run_check(tmp_path, capsys, READER, "--protocol", "v2")
    assert status == 1
    (raised,) = findings
    assert raised["message"].startswith("model reader raised KeyError('instances') on input ")
    # The smallest v2 body hypothesis could shrink to.
    assert raised["example"] == {
        "inputs": [
            {"name": "input-0", "shape": [1, 4], "datatype": "FP64", "data": [0.0, 0.0, 0.0, 0.0]}
        ]
    }


def test_a_schema_shapes_the_bodies(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    schema = {
        "type": "object",
        "required": ["instances"],
        "properties": {
            "instances": {
                "type": "array",
                "maxItems": 2,
                "items": {"type": "array", "items": {"type": "number"}},
            }
        },
    }
    schema_file = write(tmp_path, "schema.json", json.dumps(schema))
    status, findings, _ = run_check(tmp_path, capsys, READER, "--schema", schema_file)
    # Only v1 bodies now, but `instances` may be empty: the model's own ValueError is found.
    assert status == 1
    (raised,) = findings
    assert raised["id"] == "model-raised"
    assert (
        raised["message"] == "model reader raised ValueError('no rows') on input {\"instances\":[]}"
    )
    assert raised["example"] == {"instances": []}


@pytest.mark.parametrize(
    ("schema", "message"),
    [
        ('{"type": "strng"}', "invalid schema at <root>.type"),
        ("[1, 2]", "a JSON Schema is an object, got [1, 2]"),
        ("{not: [valid", "not JSON or YAML"),
    ],
    ids=["invalid-schema", "not-an-object", "not-json"],
)
def test_a_bad_schema_is_refused_by_name(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], schema: str, message: str
) -> None:
    schema_file = write(tmp_path, "schema.json", schema)
    status, _, err = run_check(tmp_path, capsys, READER, "--schema", schema_file)
    assert status == 1
    assert f"infergraph check: --schema {schema_file}: " in err
    assert message in err


def test_protocol_and_schema_together_are_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    schema_file = write(tmp_path, "schema.json", "{}")
    with pytest.raises(SystemExit) as exit_:
        run_check(tmp_path, capsys, READER, "--protocol", "v1", "--schema", schema_file)
    assert exit_.value.code == 2
    assert "not allowed with argument" in capsys.readouterr().err


def test_models_dict_wins_over_a_function_named_after_the_service(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    models = READER + "\nMODELS = {'reader': lambda body: {'predictions': []}}\n"
    status, findings, _ = run_check(tmp_path, capsys, models)
    assert (status, findings) == (0, [])


def test_an_unknown_name_in_models_is_an_error_naming_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    models = "MODELS = {'reader': lambda body: {}, 'raeder': lambda body: {}}\n"
    status, _, err = run_check(tmp_path, capsys, models)
    assert status == 1
    assert "MODELS names 'raeder', which no step of the graph calls (services: reader)" in err


@pytest.mark.parametrize(
    ("models", "message"),
    [
        ("MODELS = [1]\n", "MODELS must be a dict of service name to function"),
        ("MODELS = {'reader': 3}\n", "MODELS['reader'] is 3, not a function"),
    ],
    ids=["not-a-dict", "not-callable"],
)
def test_a_models_value_that_cannot_be_used_is_an_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], models: str, message: str
) -> None:
    status, _, err = run_check(tmp_path, capsys, models)
    assert status == 1
    assert message in err


ALWAYS = """
nodes:
  root:
    routerType: Sequence
    steps:
      - {serviceName: reader, name: read}
      - serviceName: reader
        name: again
        condition: predictions{mark}
"""


@pytest.mark.parametrize(
    ("mark", "expected"),
    [("", ["condition-always-holds"]), ("  # default", [])],
    ids=["unmarked", "marked-default"],
)
def test_a_condition_marked_default_may_always_hold(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], mark: str, expected: list[str]
) -> None:
    graph = write(tmp_path, "g.yaml", ALWAYS.replace("{mark}", mark))
    module = write(tmp_path, "models.py", "def reader(body):\n    return {'predictions': [1]}\n")
    infergraph(["check", graph, "--models", module, "--examples", "20", "--json"])
    findings = orjson.loads(capsys.readouterr().out)
    assert [(f["id"], f["where"]) for f in findings] == [
        (i, "nodes.root.steps[1]") for i in expected
    ]


def test_a_schema_per_model_shapes_the_bodies(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    schema = {
        "type": "object",
        "required": ["instances"],
        "properties": {"instances": {"type": "array", "minItems": 1, "maxItems": 2}},
    }
    schema_file = write(tmp_path, "reader.json", json.dumps(schema))
    status, findings, _ = run_check(tmp_path, capsys, READER, "--schema", f"reader={schema_file}")
    # Bodies come from the reader's schema: its smallest instance has one null row, which the
    # model cannot take the length of.
    assert status == 1
    assert [(f["id"], f["example"]) for f in findings] == [("model-raised", {"instances": [None]})]
    assert findings[0]["message"].startswith("model reader raised TypeError(")
