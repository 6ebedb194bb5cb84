"""`infergraph up` end to end: every example bundle with real KServe model servers and real
scikit-learn models on 127.0.0.1, a predictor that fails to start, and `up`/`down` as commands.

Every test checks that nothing is left running afterwards (no process whose command line names
the bundle's folder).
"""

from __future__ import annotations

import asyncio
import shutil
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from sklearn.datasets import load_digits, load_iris, load_wine

from graph_controller.local.deploy import StartupError, deployment
from graph_controller.planning.bundle import load_bundle
from tests.support import processes

EXAMPLES = Path(__file__).parents[2] / "examples"
pytestmark = pytest.mark.slow


@pytest.fixture(scope="session", autouse=True)
def trained_models() -> None:
    sys.path.insert(0, str(EXAMPLES))
    try:
        import train

        train.train_all()
    finally:
        sys.path.remove(str(EXAMPLES))


def processes_mentioning(text: str) -> list[int]:
    return [pid for pid, _, cmdline in processes() if text.encode() in cmdline]


@pytest.fixture
def no_leftovers(request: pytest.FixtureRequest) -> Iterator[list[str]]:
    """Paths whose processes must all be gone after the test."""
    watched: list[str] = []
    yield watched
    for text in watched:
        assert processes_mentioning(text) == [], f"processes left running for {text}"


async def post(session: aiohttp.ClientSession, url: str, body: Any) -> tuple[int, Any]:
    async with session.post(url, json=body) as response:
        return response.status, await response.json()


async def test_digits_pipeline_runs_the_specialist_only_for_high_digits(
    no_leftovers: list[str],
) -> None:
    folder = EXAMPLES / "digits-pipeline"
    no_leftovers.append(str(folder / "models"))
    digits = load_digits()
    seven, three = digits.data[7].tolist(), digits.data[13].tolist()
    assert (digits.target[7], digits.target[13]) == (7, 3)
    lines: list[str] = []
    async with (
        deployment(load_bundle(folder), lines.append) as running,
        aiohttp.ClientSession() as session,
    ):
        url = running.graphs[0].url
        assert await post(session, url, {"instances": [seven]}) == (200, {"predictions": [7]})
        assert await post(session, url, {"instances": [three]}) == (200, {"predictions": [0]})
    # uvicorn's access log quotes the path: `:predict` appears as `%3Apredict`.
    specialist_calls = [ln for ln in lines if "POST /v1/models/digit-high-specialist%3A" in ln]
    assert len(specialist_calls) == 1  # only the high digit reached the specialist


async def test_iris_ensemble_merges_three_real_classifiers(no_leftovers: list[str]) -> None:
    folder = EXAMPLES / "iris-ensemble"
    no_leftovers.append(str(folder / "models"))
    setosa = load_iris().data[0].tolist()
    async with (
        deployment(load_bundle(folder), lambda line: None) as running,
        aiohttp.ClientSession() as session,
    ):
        status, body = await post(session, running.graphs[0].url, {"instances": [setosa]})
    assert status == 200
    assert body == {name: {"predictions": [0]} for name in ("logreg", "tree", "knn")}


async def test_wine_canary_sends_traffic_to_both_versions(no_leftovers: list[str]) -> None:
    folder = EXAMPLES / "wine-canary"
    no_leftovers.append(str(folder / "models"))
    wine = load_wine()
    lines: list[str] = []
    async with (
        deployment(load_bundle(folder), lines.append) as running,
        aiohttp.ClientSession() as session,
    ):
        url = running.graphs[0].url
        # 100 requests at 90/10: no canary call at all has probability 0.9**100, about 3e-5.
        for row in wine.data[:100]:
            status, body = await post(session, url, {"instances": [row.tolist()]})
            assert status == 200
            assert body["predictions"][0] in (0, 1, 2)
    v1 = sum("POST /v1/models/wine-v1%3Apredict" in ln for ln in lines)
    v2 = sum("POST /v1/models/wine-v2%3Apredict" in ln for ln in lines)
    assert v1 + v2 == 100
    assert v2 >= 1
    assert v1 > v2


async def test_transformer_scales_before_the_predictor(no_leftovers: list[str]) -> None:
    folder = EXAMPLES / "iris-transformer"
    no_leftovers.append(str(folder))
    iris = load_iris()
    rows = [iris.data[i].tolist() for i in (0, 60, 120)]
    async with (
        deployment(load_bundle(folder), lambda line: None) as running,
        aiohttp.ClientSession() as session,
    ):
        status, body = await post(session, running.graphs[0].url, {"instances": rows})
    assert status == 200
    assert body == {"predictions": [0, 1, 2]}


async def test_kserve_transformer_component_answers_for_its_inference_service(
    no_leftovers: list[str],
) -> None:
    # spec.transformer: a kserve.Model with preprocess in front of the predictor, reached
    # through the InferenceService's address as on KServe.
    folder = EXAMPLES / "iris-kserve-transformer"
    no_leftovers.append(str(folder))
    iris = load_iris()
    rows = [iris.data[i].tolist() for i in (0, 60, 120)]
    lines: list[str] = []
    async with (
        deployment(load_bundle(folder), lambda line: None, child_output=lines.append) as running,
        aiohttp.ClientSession() as session,
    ):
        status, body = await post(session, running.graphs[0].url, {"instances": rows})
    assert status == 200
    assert body == {"predictions": [0, 1, 2]}
    assert any("transformer" in ln and "POST /v1/models/iris%3Apredict" in ln for ln in lines)


async def test_a_model_renamed_by_model_name_args_is_awaited_and_called_by_that_name(
    tmp_path: Path, no_leftovers: list[str]
) -> None:
    # `--model_name iris` makes KServe's ModelServer serve /v1/models/iris; KServe's
    # GetModelName makes graphs call that name, so readiness is checked there too, not at
    # /v1/models/m (which answers 404).
    no_leftovers.append(str(tmp_path))
    (tmp_path / "models" / "m").mkdir(parents=True)
    shutil.copy(EXAMPLES / "iris-ensemble/models/iris-logreg/model.joblib", tmp_path / "models/m")
    (tmp_path / "bundle.yaml").write_text(
        """
apiVersion: serving.kserve.io/v1beta1
kind: InferenceService
metadata: {name: m}
spec:
  predictor:
    model:
      modelFormat: {name: sklearn}
      storageUri: models/m
      args: [--model_name, iris]
---
apiVersion: serving.kserve.io/v1alpha1
kind: InferenceGraph
metadata: {name: g}
spec:
  nodes:
    root:
      routerType: Sequence
      steps: [{serviceName: m}]
"""
    )
    setosa = load_iris().data[0].tolist()
    lines: list[str] = []
    # A bound below the test's own timeout, so a model never seen ready fails as StartupError.
    bundle = load_bundle(tmp_path)
    async with (
        deployment(bundle, lambda line: None, ready_timeout=60, child_output=lines.append) as up,
        aiohttp.ClientSession() as session,
    ):
        status, body = await post(session, up.graphs[0].url, {"instances": [setosa]})
    assert (status, body) == (200, {"predictions": [0]})
    assert any("POST /v1/models/iris%3Apredict" in line for line in lines)


async def test_a_predictor_that_fails_to_start_stops_everything_and_shows_its_log(
    tmp_path: Path, no_leftovers: list[str]
) -> None:
    no_leftovers.append(str(tmp_path))
    good, bad = tmp_path / "models" / "good", tmp_path / "models" / "bad"
    good.mkdir(parents=True)
    bad.mkdir(parents=True)
    shutil.copy(EXAMPLES / "iris-ensemble/models/iris-logreg/model.joblib", good)
    (bad / "model.joblib").write_bytes(b"this is not a pickle")
    (tmp_path / "bundle.yaml").write_text(
        """
apiVersion: serving.kserve.io/v1beta1
kind: InferenceService
metadata: {name: good}
spec: {predictor: {model: {modelFormat: {name: sklearn}, storageUri: models/good}}}
---
apiVersion: serving.kserve.io/v1beta1
kind: InferenceService
metadata: {name: broken}
spec: {predictor: {model: {modelFormat: {name: sklearn}, storageUri: models/bad}}}
---
apiVersion: serving.kserve.io/v1alpha1
kind: InferenceGraph
metadata: {name: g}
spec:
  nodes:
    root:
      routerType: Ensemble
      steps: [{serviceName: good}, {serviceName: broken}]
"""
    )
    with pytest.raises(StartupError) as failure:
        async with deployment(load_bundle(tmp_path), lambda line: None):
            pytest.fail("the deployment must not come up")
    message = str(failure.value)
    assert message.startswith("broken exited with status")
    assert "Traceback" in message or "Error" in message  # the log tail explains why


async def test_up_and_down_commands(
    no_leftovers: list[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A state folder of its own: `down` must stop this test's `up`, never another one's.
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path))
    folder = EXAMPLES / "iris-ensemble"
    no_leftovers.append(str(folder / "models"))
    infergraph = [sys.executable, "-m", "graph_controller"]
    up = await asyncio.create_subprocess_exec(
        *infergraph, "up", str(folder), "--port", "0",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )  # fmt: skip
    assert up.stdout is not None
    url = None
    async with asyncio.timeout(120):
        while url is None:
            line = (await up.stdout.readline()).decode()
            assert line, "infergraph up exited before the graph was ready"
            if line.startswith("graph iris-ensemble ready at "):
                url = line.split(" at ")[1].strip()
    drain = asyncio.ensure_future(up.stdout.read())  # keep the pipe flowing
    async with aiohttp.ClientSession() as session:
        status, body = await post(session, url, {"instances": [[5.1, 3.5, 1.4, 0.2]]})
    assert status == 200
    assert set(body) == {"logreg", "tree", "knn"}
    down = await asyncio.create_subprocess_exec(*infergraph, "down", stdout=asyncio.subprocess.PIPE)
    out, _ = await asyncio.wait_for(down.communicate(), 60)
    assert down.returncode == 0
    assert "stopped infergraph up" in out.decode()
    assert await asyncio.wait_for(up.wait(), 30) == 0
    await drain
