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
    assert "missing.yaml: cannot read" in captured.err
    assert f"{good}: ok (1 resource)" in captured.out
