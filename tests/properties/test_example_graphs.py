"""Every example graph, property-tested with router.testing as a user would.

Each simulated model wraps the example's real trained scikit-learn model in-process (no model
server), so the properties speak about the real pipeline: which steps run for which inputs,
and what shapes the answers have.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import joblib
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.datasets import load_digits, load_iris, load_wine

from graph_controller.planning.bundle import load_bundle
from router.testing import GraphHarness

EXAMPLES = Path(__file__).parents[2] / "examples"
SETTINGS = settings(derandomize=True, max_examples=40, deadline=None)


@pytest.fixture(scope="module", autouse=True)
def trained() -> None:
    sys.path.insert(0, str(EXAMPLES))
    try:
        import train

        train.train_all()
    finally:
        sys.path.remove(str(EXAMPLES))


def sklearn_model(example: str, name: str) -> Callable[[Any], Any]:
    model = joblib.load(EXAMPLES / example / "models" / name / "model.joblib")

    def predict(body: Any) -> Any:
        return {"predictions": model.predict(np.asarray(body["instances"])).tolist()}

    return predict


def harness(example: str, extra: dict[str, Callable[[Any], Any]] | None = None) -> GraphHarness:
    bundle = load_bundle(EXAMPLES / example)
    (graph,) = bundle.graphs.values()
    models = {
        name: sklearn_model(example, name) for name in bundle.services if name != "iris-scaler"
    }
    return GraphHarness(graph, {**models, **(extra or {})})


DIGITS = load_digits()


@SETTINGS
@given(st.integers(0, len(DIGITS.data) - 1))
def test_digits_specialist_runs_exactly_for_high_digits(index: int) -> None:
    h = harness("digits-pipeline")
    coarse = sklearn_model("digits-pipeline", "digit-high")
    body = {"instances": [DIGITS.data[index].tolist()]}
    run = h.run(body)
    assert run.status == 200
    high = coarse(body)["predictions"] == [1]
    assert (("root", "specialist") in run.steps) == high
    (answer,) = run.body["predictions"]
    assert answer >= 5 if high else answer == 0


iris_rows = st.lists(
    st.tuples(*(st.floats(lo, hi) for lo, hi in [(4, 8), (2, 4.5), (1, 7), (0.1, 2.5)])),
    min_size=1,
    max_size=4,
)


@SETTINGS
@given(iris_rows)
def test_iris_ensemble_always_merges_three_valid_classes(rows: list[tuple[float, ...]]) -> None:
    run = harness("iris-ensemble").run({"instances": [list(r) for r in rows]})
    assert run.status == 200
    assert set(run.body) == {"logreg", "tree", "knn"}
    for answer in run.body.values():
        assert len(answer["predictions"]) == len(rows)
        assert set(answer["predictions"]) <= {0, 1, 2}


WINE = load_wine()


@SETTINGS
@given(st.integers(0, len(WINE.data) - 1))
def test_wine_canary_runs_exactly_one_version(index: int) -> None:
    run = harness("wine-canary").run({"instances": [WINE.data[index].tolist()]})
    assert run.status == 200
    assert len(run.steps) == 1
    assert run.steps[0] in (("root", "stable"), ("root", "canary"))


IRIS = load_iris()


def scaler(body: Any) -> Any:
    data = np.asarray(body["instances"])
    return {"instances": ((data - IRIS.data.mean(axis=0)) / IRIS.data.std(axis=0)).tolist()}


@SETTINGS
@given(iris_rows)
def test_transformer_scales_before_the_classifier(rows: list[tuple[float, ...]]) -> None:
    seen: list[Any] = []
    classify = sklearn_model("iris-transformer", "iris-scaled")

    def spy(body: Any) -> Any:
        seen.append(body)
        return classify(body)

    run = harness("iris-transformer", {"iris-scaler": scaler, "iris-scaled": spy}).run(
        {"instances": [list(r) for r in rows]}
    )
    assert run.status == 200
    assert run.steps == [("root", "scale"), ("root", "classify")]
    np.testing.assert_allclose(seen[0]["instances"], scaler({"instances": rows})["instances"])
    assert set(run.body["predictions"]) <= {0, 1, 2}
