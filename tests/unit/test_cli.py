"""`infergraph validate`: every error of every file, non-zero exit on any."""

from __future__ import annotations

from pathlib import Path

import pytest

from graph_controller.cli import main

EXAMPLES = Path(__file__).parents[2] / "examples"

BAD = """
apiVersion: serving.kserve.io/v1alpha1
kind: InferenceGraph
metadata: {name: bad}
spec:
  nodes:
    root:
      routerType: Splitter
      steps:
        - {serviceName: a, weight: 60, condtion: 'x'}
        - {serviceName: b, weight: 50}
"""


def test_validate_accepts_every_example(capsys: pytest.CaptureFixture[str]) -> None:
    files = sorted(str(p) for p in EXAMPLES.rglob("*.yaml"))
    assert len(files) >= 7
    assert main(["validate", *files]) == 0
    out = capsys.readouterr().out
    assert out.count(": ok (") == len(files)


def test_validate_prints_all_errors_of_all_files(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(BAD)
    missing = tmp_path / "missing.yaml"
    good = EXAMPLES / "kserve" / "dog-breed.yaml"
    assert main(["validate", str(bad), str(missing), str(good)]) == 1
    captured = capsys.readouterr()
    assert (
        "spec.nodes.root.steps[0].condtion: unknown field 'condtion'; did you mean" in captured.err
    )
    assert "missing.yaml: 1 error(s)\n  <path>: no such file or folder" in captured.err
    assert f"{good}: ok (1 resource; checked for target cluster)" in captured.out


def test_validate_reads_every_file_of_a_folder(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["validate", str(EXAMPLES / "kserve")]) == 0
    out = capsys.readouterr().out
    assert out.count(": ok (") == len(list((EXAMPLES / "kserve").glob("*.yaml")))


def test_validate_reports_shape_and_rule_errors_in_one_pass(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(BAD.replace("name: bad", "name: Bad_Graph"))
    assert main(["validate", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert "3 error(s)" in err
    assert "metadata.name: 'Bad_Graph' is not a valid InferenceGraph name" in err
    assert "spec.nodes.root.steps[0].condtion: unknown field 'condtion'" in err
    assert "spec.nodes.root.steps: Splitter step weights sum to 110, expected 100" in err


@pytest.mark.parametrize(
    "command",
    [
        ["graph"],
        ["explain", "--request", "{request}"],
        ["render"],
        ["check", "--examples", "5"],
    ],
    ids=["graph", "explain", "render", "check"],
)
def test_commands_take_a_folder_like_up(
    command: list[str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    request = tmp_path / "request.json"
    request.write_text('{"instances": [[5.1, 3.5, 1.4, 0.2]]}')
    args = [a.replace("{request}", str(request)) for a in command]
    status = main([args[0], str(EXAMPLES / "iris-ensemble"), *args[1:]])
    captured = capsys.readouterr()
    assert "Errno" not in captured.err
    assert status == 0, captured.err
    assert captured.out


def test_a_folder_without_a_graph_is_named(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "isvc.yaml").write_text(
        "\n---\n".join(
            doc
            for doc in (EXAMPLES / "iris-ensemble" / "iris.yaml").read_text().split("\n---\n")
            if "kind: InferenceGraph" not in doc
        )
    )
    assert main(["graph", str(tmp_path)]) == 1
    assert "expected one InferenceGraph, found 0" in capsys.readouterr().err


@pytest.mark.parametrize("command", ["validate", "render", "graph", "up"])
def test_an_empty_folder_is_an_error_naming_it(
    command: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "notes.txt").write_text("not a resource")
    assert main([command, str(tmp_path)]) == 1
    captured = capsys.readouterr()
    assert f"{tmp_path}" in captured.err
    assert "a folder with no .json, .yaml, .yml file" in captured.err
    assert "Traceback" not in captured.err


@pytest.mark.parametrize("option", ["--request", "--responses"])
@pytest.mark.parametrize("given", ["folder", "missing"])
def test_explain_names_an_option_whose_file_cannot_be_read(
    option: str, given: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    request = tmp_path / "request.json"
    request.write_text('{"instances": [[5.1, 3.5, 1.4, 0.2]]}')
    bad = tmp_path if given == "folder" else tmp_path / "missing.json"
    options = {"--request": str(request), option: str(bad)}
    args = [a for pair in options.items() for a in pair]
    assert main(["explain", str(EXAMPLES / "iris-ensemble"), *args]) == 1
    err = capsys.readouterr().err
    assert "Errno" not in err
    reason = "Is a directory" if given == "folder" else "No such file or directory"
    assert f"{option}: cannot read: {reason}" in err
