"""The pytest plugin (graph_controller/pytest_plugin.py), as a user's suite gets it:
pytest in a fresh process, in a folder with no conftest, loading the plugin from the installed
`pytest11` entry point."""

from __future__ import annotations

import pytest

pytest_plugins = ["pytester"]

CLEAN = """
apiVersion: serving.kserve.io/v1alpha1
kind: InferenceGraph
metadata: {name: clean}
spec:
  nodes:
    root:
      routerType: Sequence
      steps:
        - {name: read, serviceName: reader, dependency: Hard}
"""

# No route holds for a body with no rows: `switch-no-route`.
BROKEN = """
apiVersion: serving.kserve.io/v1alpha1
kind: InferenceGraph
metadata: {name: broken}
spec:
  nodes:
    root:
      routerType: Switch
      steps:
        - {name: some, serviceName: reader, condition: instances.0, dependency: Hard}
"""

MODELS = """
def reader(body):
    return {"predictions": [1 for _ in body["instances"]]}
"""

SUITE = """
import pytest


@pytest.mark.infergraph_graphs("graphs")
def test_graph_has_no_findings(infergraph_graph, infergraph_check):
    infergraph_check(infergraph_graph, models="graphs/models.py", examples=20)
"""


@pytest.fixture
def graphs(pytester: pytest.Pytester) -> pytest.Pytester:
    folder = pytester.mkdir("graphs")
    (folder / "clean.yaml").write_text(CLEAN)
    (folder / "broken.yml").write_text(BROKEN)
    (folder / "models.py").write_text(MODELS)
    return pytester


def test_a_suite_checks_every_graph_of_a_folder(graphs: pytest.Pytester) -> None:
    graphs.makepyfile(test_graphs=SUITE)
    result = graphs.runpytest_subprocess("-p", "no:cacheprovider", "-v")
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(
        [
            "*test_graph_has_no_findings?broken? FAILED*",
            "*test_graph_has_no_findings?clean? PASSED*",
        ]
    )
    # The failure lists the finding as the CLI prints it, with its counter-example.
    result.stdout.fnmatch_lines(
        [
            "*AssertionError: 1 finding(s):",
            "*switch-no-route at nodes.root: no condition of Switch node 'root' holds on its input",
            '*e.g. {"instances":[]}',
        ]
    )


def test_the_fixture_alone_checks_one_graph(graphs: pytest.Pytester) -> None:
    graphs.makepyfile(
        test_one="""
        def test_clean(infergraph_check):
            infergraph_check("graphs/clean.yaml", models="graphs/models.py", examples=20)
        """
    )
    result = graphs.runpytest_subprocess("-p", "no:cacheprovider")
    result.assert_outcomes(passed=1)


@pytest.mark.parametrize(
    ("marker", "message"),
    [
        ("", "`infergraph_graph` needs @pytest.mark.infergraph_graphs(folder)"),
        (
            '@pytest.mark.infergraph_graphs("nowhere")',
            "@pytest.mark.infergraph_graphs('nowhere'): no *.yaml or *.yml file in ",
        ),
    ],
    ids=["no-marker", "empty-folder"],
)
def test_a_graph_argument_without_graphs_is_an_error(
    graphs: pytest.Pytester, marker: str, message: str
) -> None:
    graphs.makepyfile(
        test_bad=f"""
        import pytest

        {marker}
        def test_graph(infergraph_graph):
            pass
        """
    )
    result = graphs.runpytest_subprocess("-p", "no:cacheprovider", "--strict-markers")
    assert result.ret != 0
    assert message in result.stderr.str() + result.stdout.str()
