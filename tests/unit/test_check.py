"""`infergraph check --models`: a model that raises is a finding with its input, not a
traceback; `--protocol` and `--schema` choose the generated bodies; `MODELS` wins over
functions named after services, and names only services of the graph."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import orjson
import pytest
import yaml
from hypothesis import strategies as st

from graph_controller.cli.check import check
from graph_controller.cli.check.inputs import (
    CLIENT_HEADERS,
    graph_protocols,
    infer_protocol,
    propagated_names,
    schema_inputs,
    traffic_headers,
)
from graph_controller.cli.main import main as infergraph
from schemas.graph import InferenceGraphSpec
from schemas.valid_graph import validate_graph

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
    # The smallest v2 body hypothesis could shrink to: the edge case without rows.
    assert raised["example"] == {
        "inputs": [{"name": "input-0", "shape": [0, 4], "datatype": "FP64", "data": []}]
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


ANNOTATED = """
apiVersion: serving.kserve.io/v1alpha1
kind: InferenceGraph
metadata:
  name: g
  annotations: {"infergraph.dev/check-defaults": "{listed}"}
spec:
  nodes:
    root:
      routerType: Sequence
      steps:
        - {serviceName: reader, name: read}
        - {serviceName: reader, name: again, condition: predictions}
"""


@pytest.mark.parametrize(
    ("listed", "expected"),
    [("", ["condition-always-holds"]), ("root/again", []), (" root/read , root/again ", [])],
    ids=["empty", "listed", "listed-with-spaces"],
)
def test_the_check_defaults_annotation_marks_an_intended_default(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], listed: str, expected: list[str]
) -> None:
    graph = write(tmp_path, "g.yaml", ANNOTATED.replace("{listed}", listed))
    module = write(tmp_path, "models.py", "def reader(body):\n    return {'predictions': [1]}\n")
    status = infergraph(["check", graph, "--models", module, "--examples", "20", "--json"])
    findings = orjson.loads(capsys.readouterr().out)
    assert [(f["id"], f["where"]) for f in findings] == [
        (i, "nodes.root.steps[1]") for i in expected
    ]
    assert status == (1 if expected else 0)


@pytest.mark.parametrize(
    ("listed", "message"),
    [
        (
            "root",
            "annotation infergraph.dev/check-defaults: 'root' is not 'node/step' of this graph",
        ),
        (
            "branch/again",
            "annotation infergraph.dev/check-defaults: 'branch/again' is not 'node/step' of this "
            "graph",
        ),
        (
            "root/agian",
            "annotation infergraph.dev/check-defaults: node 'root' has no step 'agian' "
            "(steps: again, read)",
        ),
    ],
    ids=["no-step", "unknown-node", "unknown-step"],
)
def test_a_check_defaults_annotation_naming_no_step_is_an_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], listed: str, message: str
) -> None:
    graph = write(tmp_path, "g.yaml", ANNOTATED.replace("{listed}", listed))
    status = infergraph(["check", graph, "--examples", "5"])
    assert status == 1
    assert capsys.readouterr().err == f"infergraph check: {message}\n"


# --- request headers -----------------------------------------------------------------------

SPLIT = """
apiVersion: infergraph.dev/v1alpha1
kind: InferenceGraph
metadata: {name: split}
spec:
  nodes:
    root:
      routerType: Splitter
      stickyHeader: X-User-Id
      steps:
        - {name: a, serviceName: reader, weight: 50}
        - {name: b, serviceName: reader, weight: 50}
"""


def run_split(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], headers: str
) -> tuple[int, list[dict[str, object]], str]:
    graph = write(tmp_path, "split.yaml", SPLIT)
    header_file = write(tmp_path, "headers.yaml", headers)
    argv = ["check", graph, "--examples", "10", "--json", "--headers", header_file]
    status = infergraph(argv)
    captured = capsys.readouterr()
    return status, orjson.loads(captured.out) if captured.out else [], captured.err


def test_headers_from_a_file_are_the_traffic_a_splitter_is_judged_on(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Every request of this traffic comes from the same user: the sticky split collapses.
    status, findings, _ = run_split(tmp_path, capsys, "- {X-User-Id: alice}\n")
    assert status == 1
    assert [(f["id"], f["step"], f["headers"]) for f in findings] == [
        ("splitter-share", "a", {"X-User-Id": "alice"}),
        ("splitter-share", "b", {"X-User-Id": "alice"}),
    ]
    assert findings[0]["message"].startswith("weight 50 but ")
    assert "stickyHeader 'X-User-Id'" in str(findings[0]["message"])


def test_headers_from_a_file_with_many_users_split_as_weighted(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    users = "".join(f"- {{X-User-Id: user-{i}, Accept: application/json}}\n" for i in range(500))
    status, findings, _ = run_split(tmp_path, capsys, users)
    assert (status, findings) == (0, [])


@pytest.mark.parametrize(
    ("headers", "message"),
    [
        ("{X-User-Id: alice}\n", "expected a list of header objects with string values"),
        ("- {X-Retries: 3}\n", "expected a list of header objects with string values"),
        ("- [unclosed\n", "not JSON or YAML"),
    ],
    ids=["not-a-list", "not-a-string", "not-yaml"],
)
def test_a_headers_file_that_cannot_be_used_is_an_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], headers: str, message: str
) -> None:
    status, _, err = run_split(tmp_path, capsys, headers)
    assert status == 1
    assert err.startswith(f"infergraph check: --headers {tmp_path / 'headers.yaml'}: {message}")


# --- generated bodies: missing fields, the protocol the graph speaks -------------------------

TWO_FIELDS = {
    "type": "object",
    "required": ["instances", "id"],
    "properties": {
        "instances": {"type": "array", "maxItems": 2, "items": {"type": "array"}},
        "id": {"type": "string"},
    },
}


def test_schema_edges_are_its_smallest_instance_and_that_minus_each_required_field() -> None:
    _, edges = schema_inputs([TWO_FIELDS])
    assert edges == [{"instances": [], "id": ""}, {"id": ""}, {"instances": []}]


def test_a_body_missing_a_required_field_reaches_the_model(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Every body the schema allows has an `id`: only the edge case without it shows the bug.
    schema_file = write(tmp_path, "schema.json", json.dumps(TWO_FIELDS))
    models = "def reader(body):\n    return {'predictions': [], 'id': body['id']}\n"
    status, findings, _ = run_check(tmp_path, capsys, models, "--schema", schema_file)
    assert status == 1
    assert [(f["id"], f["example"], f["message"]) for f in findings] == [
        (
            "model-raised",
            {"instances": []},
            "model reader raised KeyError('id') on input {\"instances\":[]}",
        )
    ]


def spec_of(steps: str, extra_nodes: str = "") -> InferenceGraphSpec:
    text = f"nodes:\n  root:\n    routerType: Sequence\n    steps:\n{steps}{extra_nodes}"
    return validate_graph(yaml.safe_load(text)).spec


STEP = "      - {{name: {name}, serviceName: {service}{more}}}\n"


def step(name: str, more: str = "", service: str = "m") -> str:
    return STEP.format(name=name, service=service, more=f", {more}" if more else "")


@pytest.mark.parametrize(
    ("steps", "named"),
    [
        (step("a"), set()),
        (step("a") + step("b", "condition: 'predictions.#(label==\"dog\")'"), {"v1"}),
        (step("a") + step("b", "condition: 'jmespath:length(outputs) > `0`'"), {"v2"}),
        (step("a") + step("b", "data: $response.outputs"), {"v2"}),
        (step("a") + step("b", "data: {instances: $response.predictions}"), {"v1"}),
        (step("a") + step("b", "data: $response, mapPredictionsToInstances: true"), {"v1"}),
        (step("a") + step("b", "data: $response, mapOutputsToInputs: true"), {"v2"}),
        (
            step("a", "condition: instances")
            + step("b", "data: $response, mapOutputsToInputs: true"),
            {"v1", "v2"},
        ),
    ],
    ids=[
        "nothing",
        "v1-condition",
        "v2-jmespath-condition",
        "v2-data-path",
        "v1-data-template",
        "v1-mapping",
        "v2-mapping",
        "both",
    ],
)
def test_graph_protocols_are_those_its_conditions_paths_and_mappings_name(
    steps: str, named: set[str]
) -> None:
    assert graph_protocols(spec_of(steps)) == named


def v1_only(body: Any) -> Any:
    return {"predictions": body["instances"]}


def v2_only(body: Any) -> Any:
    return {"outputs": body["inputs"]}


def v2_by_status(body: Any) -> Any:
    return (200, {"outputs": []}) if "inputs" in body else (400, {"error": "v2 only"})


def both(body: Any) -> Any:
    return {"predictions": []}


@pytest.mark.parametrize(
    ("steps", "models", "protocol"),
    [
        (step("a") + step("b", "condition: instances"), {"m": v2_only}, "v1"),
        (step("a") + step("b", "data: $response.outputs"), {"m": v1_only}, "v2"),
        (step("a", "condition: instances") + step("b", "condition: outputs"), {"m": both}, None),
        (step("a"), {"m": v1_only}, "v1"),
        (step("a"), {"m": v2_only}, "v2"),
        (step("a"), {"m": v2_by_status}, "v2"),
        (step("a"), {"m": both}, None),
        (step("a") + step("b", service="n"), {"m": v1_only, "n": v2_only}, None),
    ],
    ids=[
        "graph-names-v1",
        "graph-names-v2",
        "graph-names-both",
        "model-takes-v1",
        "model-takes-v2",
        "model-refuses-v1-by-status",
        "model-takes-both",
        "first-models-disagree",
    ],
)
def test_the_protocol_is_the_graphs_else_its_first_models(
    steps: str, models: dict[str, Any], protocol: str | None
) -> None:
    assert infer_protocol(spec_of(steps), models) == protocol


# Reads the tenant the router forwards to it (with PROPAGATE_HEADERS naming it).
TENANT_READER = """
def reader(body, headers):
    tenant = headers.get("X-Tenant")
    if tenant == "":
        raise ValueError("empty tenant")
    if tenant is not None and not tenant.startswith("user-"):
        raise ValueError(f"unexpected tenant {tenant!r}")
    return {"predictions": [tenant]}
"""


def test_propagated_headers_are_generated_and_reach_models_that_take_them(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    status, findings, _ = run_check(
        tmp_path, capsys, TENANT_READER, "--propagate-headers", "X-Tenant"
    )
    assert status == 1
    (raised,) = findings
    assert raised["id"] == "model-raised"
    assert str(raised["message"]).startswith("model reader raised ValueError('empty tenant') on ")
    # The second simulated user sends the header empty.
    assert raised["headers"] == {
        "Content-Type": "application/json",
        "Accept": "application/json",
        "User-Agent": "infergraph-check",
        "Host": "graph.example",
        "X-Tenant": "",
    }


def test_the_text_output_shows_the_headers_a_counter_example_needs(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    graph = write(tmp_path, "g.yaml", SEQUENCE)
    module = write(tmp_path, "models.py", TENANT_READER)
    argv = ["check", graph, "--models", module, "--examples", "30"]
    assert infergraph([*argv, "--propagate-headers", "X-Tenant"]) == 1
    example = capsys.readouterr().out.splitlines()[1]
    # The body alone passes; the empty tenant is what fails. The headers every client sends
    # alike are left out.
    assert example.endswith(' with headers {"X-Tenant":""}')
    assert example.startswith("    e.g. {")
    # A model failing on the body alone: no headers to show.
    module = write(tmp_path, "models.py", READER)
    assert infergraph(["check", graph, "--models", module, "--examples", "30"]) == 1
    assert "with headers" not in capsys.readouterr().out


# Reads whichever `...-Id` header the router forwards to it.
ID_READER = """
def reader(body, headers):
    ids = {name: value for name, value in headers.items() if name.endswith("-Id")}
    if "" in ids.values():
        raise ValueError(f"empty id in {sorted(ids)}")
    return {"predictions": [len(ids)]}
"""


@pytest.mark.parametrize("pattern", ["[[:alpha:]]+-Id$", r"\pL+-Id"])
def test_a_go_only_pattern_propagates_a_header_it_matches(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], pattern: str
) -> None:
    status, findings, err = run_check(tmp_path, capsys, ID_READER, "--propagate-headers", pattern)
    assert (status, err) == (1, "")
    (raised,) = findings
    assert str(raised["message"]).startswith(
        "model reader raised ValueError(\"empty id in ['X-Id']\") on "
    )
    assert raised["headers"] == {**CLIENT_HEADERS, "X-Id": ""}


def test_without_the_pattern_the_router_forwards_no_tenant(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    status, findings, _ = run_check(tmp_path, capsys, TENANT_READER)
    assert (status, findings) == (0, [])


@pytest.mark.parametrize(
    ("patterns", "names"),
    [
        (["X-Tenant"], ["X-Tenant"]),
        (["(?i)x-request-id"], ["X-Request-Id"]),
        (["Trace-Id$", "X-Tenant"], ["Trace-Id", "X-Tenant"]),
        (["Content-Type"], []),
        (["Agent"], []),
        # Go (RE2) syntax Python's regex engine refuses or reads otherwise: names built from
        # the literal parts, judged by the router's own rule.
        (["[[:alpha:]]+-Id$"], ["X-Id"]),
        ([r"\pL+-Id"], ["X-Id"]),
        (["^X-[[:upper:]][a-z]+-Id$"], ["X-Api-Id"]),
        # No built name matches: one drawn from the pattern does.
        (["[0-9]{3}-Code"], ["000-Code"]),
        # The trace context is forwarded whatever the patterns say: not a name for this one.
        (["traceparent|Tenant"], ["Tenant"]),
    ],
    ids=[
        "literal",
        "case-insensitive",
        "two",
        "clients-send-it",
        "user-agent-matches",
        "posix-class",
        "unicode-class",
        "filler-between-parts",
        "drawn",
        "not-the-always-forwarded",
    ],
)
def test_a_header_name_is_generated_per_pattern_clients_do_not_match(
    patterns: list[str], names: list[str]
) -> None:
    assert propagated_names(patterns) == names


def test_propagated_headers_are_missing_empty_or_each_users() -> None:
    spec = spec_of(step("a"))
    mix = traffic_headers(spec, ["X-Tenant"])
    assert [h.get("X-Tenant") for h in mix[:6]] == [None, "", "user-2", None, "", "user-5"]
    # One value per user for a third of the users (997 of them), plus missing and empty.
    assert len({h.get("X-Tenant") for h in mix}) == 332 + 2


@pytest.mark.parametrize(
    ("pattern", "message"),
    [
        (
            "x-tenant",
            "no header name found that 'x-tenant' matches as the router matches (RE2, "
            "unanchored, on the Go-canonical name, such as 'X-User-Id'): none of 59 names built "
            "from its literal parts and common header names, and none of 500 names drawn from it",
        ),
        (
            r"\p{Greek}",
            "no header name found that '\\\\p{Greek}' matches as the router matches (RE2, "
            "unanchored, on the Go-canonical name, such as 'X-User-Id'): none of 29 names built "
            "from its literal parts and common header names, and Python cannot draw names from "
            "it (bad escape \\p at position 0)",
        ),
        ("(?<=a)b", "'(?<=a)b' is not a Go (RE2) regular expression"),
    ],
    ids=["lower-case-matches-no-canonical-name", "re2-only-matches-no-ascii-name", "not-re2"],
)
def test_a_propagate_pattern_that_cannot_be_used_is_an_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], pattern: str, message: str
) -> None:
    status, _, err = run_check(tmp_path, capsys, READER, "--propagate-headers", pattern)
    assert status == 1
    assert err.startswith(f"infergraph check: --propagate-headers: {message}")


def test_an_input_that_cannot_be_sent_as_json_is_the_callers_error_not_a_router_bug() -> None:
    # A user's strategy drawing an integer beyond 64 bits: no JSON the harness can send.
    graph = validate_graph(yaml.safe_load(SEQUENCE))
    big = {"instances": [[2**70]]}
    with pytest.raises(
        ValueError, match=r"^inputs: \{'instances': \[\[1180591620717411303424\]\]\}"
    ):
        check(graph, {"reader": v1_only}, examples=5, inputs=st.just(big))


# A validator (Hard) that refuses anything but rows of numbers, before a model.
AUDITED = """
nodes:
  root:
    routerType: Sequence
    steps:
      - {name: audit, serviceName: audit, dependency: Soft}
      - {name: validate, serviceName: validate, data: $request, dependency: Hard}
      - {name: score, serviceName: score, data: $request, dependency: Hard}
"""


def numeric_rows(body: Any) -> Any:
    rows = body.get("instances") if isinstance(body, dict) else None
    if not isinstance(rows, list) or not all(isinstance(r, list) for r in rows):
        return (400, {"error": "instances must be rows of numbers"})
    return {"valid": len(rows)}


def widths(body: Any) -> Any:
    """Raises on a scalar row (len of a number), which `numeric_rows` refuses."""
    return {"predictions": [len(row) for row in body["instances"]]}


SCALAR_ROWS = st.sampled_from([{"instances": [0.0]}, {"instances": [[1.0, 2.0]]}])


def test_a_model_raising_on_a_body_the_graph_refuses_is_not_a_finding() -> None:
    # The audit (Soft) raises on a scalar row; the validator (Hard) refuses that body, and
    # the client gets its 400: nothing the client sees depends on the audit's crash.
    graph = validate_graph(yaml.safe_load(AUDITED))
    models = {"audit": widths, "validate": numeric_rows, "score": widths}
    assert check(graph, models, examples=10, inputs=SCALAR_ROWS) == []


def test_a_model_raising_on_a_body_the_graph_accepts_is_a_finding() -> None:
    # The same crash where no Hard step refuses the body: the client gets its 500.
    graph = validate_graph(
        yaml.safe_load(
            AUDITED.replace(
                "dependency: Hard}\n      - {name: score", "dependency: Soft}\n      - {name: score"
            )
        )
    )
    models = {"audit": widths, "validate": numeric_rows, "score": widths}
    found = check(graph, models, examples=10, inputs=SCALAR_ROWS)
    assert [(f.id, f.node, f.step, f.example) for f in found] == [
        ("model-raised", "root", "audit", {"instances": [0.0]}),
        ("model-raised", "root", "score", {"instances": [0.0]}),
    ]


@pytest.mark.parametrize(
    ("breaks", "example"),
    [
        ("any(abs(x) > 1e5 for r in rows if isinstance(r, list) for x in r)", None),
        ("len({len(r) for r in rows if isinstance(r, list)}) > 1", [[0.0], [0.0, 0.0]]),
        ("any(not isinstance(r, list) for r in rows)", [0.0]),
        ("[] in rows", [[]]),
    ],
    ids=["large-magnitude", "ragged-rows", "scalar-row", "empty-row"],
)
def test_default_bodies_include_boundary_values_and_rows(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], breaks: str, example: Any
) -> None:
    # A v1 model that breaks on one kind of boundary body only: found without any --schema.
    models = (
        "def reader(body):\n"
        "    rows = body['instances']\n"
        f"    if {breaks}:\n"
        "        raise ValueError('boundary')\n"
        "    return {'predictions': rows}\n"
    )
    status, findings, _ = run_check(tmp_path, capsys, models)
    assert status == 1
    assert [(f["id"], f["step"]) for f in findings] == [("model-raised", "read")]
    found = findings[0]["example"]
    namespace: dict[str, Any] = {}
    exec(models, namespace)
    with pytest.raises(ValueError, match="boundary"):  # the counter-example shows the defect
        namespace["reader"](found)
    if example is not None:
        # Shrunk to a body as small as the boundary allows (which one of a size can vary).
        def values(rows: list[Any]) -> int:
            return sum(len(r) if isinstance(r, list) else 1 for r in rows)

        assert len(found["instances"]) == len(example)
        assert values(found["instances"]) <= values(example)
    else:  # beyond what the other draws reach (+-1000), either sign
        assert max(abs(x) for r in found["instances"] for x in r) > 1e5


def one_prediction(body: Any) -> Any:
    return {"predictions": [0]}


def one_per_row(body: Any) -> Any:
    return {"predictions": [0 for _ in body.get("instances", [])]}


def test_a_not_aggregatable_ensemble_names_its_odd_member_even_the_first() -> None:
    # `a` answers one prediction whatever it gets; `b` and `c`, one per row, agree with each
    # other: `a` is the member whose answer does not fit, though it is the first.
    graph = validate_graph(
        yaml.safe_load(
            (Path(__file__).parents[1] / "check_corpus/ensemble-majority.yaml").read_text()
        )
    )
    models = {"voter-a": one_prediction, "voter-b": one_per_row, "voter-c": one_per_row}
    found = check(graph, models, examples=10, protocol="v1")
    assert [(f.id, f.node, f.step) for f in found] == [("ensemble-not-aggregatable", "root", "a")]
    assert "'a': 1, 'b': " in found[0].message
