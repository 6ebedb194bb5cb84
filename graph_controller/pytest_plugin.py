"""The pytest plugin InferGraph installs (entry point `pytest11`, name `infergraph`), so a user's
suite asserts "no findings" for its graphs without importing anything:

- fixture `infergraph_check(graph, models=None, examples=100, **options)`: `assert_no_findings`
  of `graph_controller.cli.check`, failing the test with every finding listed;
- argument `infergraph_graph`, with the marker `@pytest.mark.infergraph_graphs(FOLDER)`: the
  test runs once per YAML file of FOLDER (relative to where pytest was started), with the file's
  path as the argument and its name as the test id.

Every pytest run where InferGraph is installed loads this module, so it imports the checker only
when a test asks for it, and lives outside `graph_controller.cli`: importing a module imports its
packages, and the CLI's and the checker's would load hypothesis ahead of hypothesis' own plugin
(which refuses that) and slow every pytest start.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

MARKER = "infergraph_graphs"


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        f"{MARKER}(folder): run the test once per graph file (*.yaml, *.yml) of folder, "
        "as its `infergraph_graph` argument",
    )


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "infergraph_graph" not in metafunc.fixturenames:
        return
    marker = metafunc.definition.get_closest_marker(MARKER)
    if marker is None or len(marker.args) != 1:
        raise pytest.UsageError(
            f"{metafunc.definition.nodeid}: `infergraph_graph` needs "
            f"@pytest.mark.{MARKER}(folder) naming one folder of graph files"
        )
    folder = metafunc.config.invocation_params.dir / Path(marker.args[0])
    graphs = sorted(p for p in folder.glob("*.y*ml") if p.suffix in (".yaml", ".yml"))
    if not graphs:
        raise pytest.UsageError(
            f"{metafunc.definition.nodeid}: @pytest.mark.{MARKER}({marker.args[0]!r}): "
            f"no *.yaml or *.yml file in {folder}"
        )
    metafunc.parametrize("infergraph_graph", graphs, ids=[p.stem for p in graphs])


@pytest.fixture
def infergraph_check() -> Callable[..., None]:
    """`graph_controller.cli.check.assert_no_findings`: check a graph (file or ValidGraph) with
    `models` (a models file as for `--models`, or a dict) and fail listing every finding."""
    from graph_controller.cli.check import assert_no_findings

    return assert_no_findings
