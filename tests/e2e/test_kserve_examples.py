"""KServe's own graph examples run unchanged through `python -m router --graph-json`.

The YAML under examples/kserve is what a KServe user writes (serviceName references); the test
resolves names the way KServe's controller does (it fills serviceUrl, keeps serviceName) and
hands the spec to a real router process, in front of the toy models in examples/toy_models.py
served on 127.0.0.1.
"""

from __future__ import annotations

import importlib.util
from collections.abc import AsyncIterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from aiohttp import web

from graph_controller.planning.addressing import predict_url, resolve_service_names
from schemas.loading import load_graph_file
from tests.support import LOOPBACK, StartRouter

EXAMPLES = Path(__file__).parents[2] / "examples"


def toy_models() -> ModuleType:
    spec = importlib.util.spec_from_file_location("toy_models", EXAMPLES / "toy_models.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
async def model_urls() -> AsyncIterator[dict[str, str]]:
    models = toy_models()
    runners, urls = [], {}
    for name in models.MODELS:
        runner = web.AppRunner(models.build_app(name), access_log=None)
        await runner.setup()
        await web.TCPSite(runner, LOOPBACK, 0).start()
        runners.append(runner)
        urls[name] = predict_url(f"http://{LOOPBACK}:{runner.addresses[0][1]}", name)
    try:
        yield urls
    finally:
        for runner in runners:
            await runner.cleanup()


def graph_json(name: str, urls: dict[str, str]) -> str:
    return resolve_service_names(load_graph_file(EXAMPLES / "kserve" / name), urls).router_json()


DOG = {"instances": [[3.0, 4.5]]}
CAT = {"instances": [[-2.0, 1.0]]}


@pytest.mark.parametrize(
    ("example", "request_body", "expected"),
    [
        (
            "dog-breed.yaml",
            DOG,
            (200, {"predictions": [{"label": "dog", "breed": "poodle"}]}),
        ),
        ("dog-breed.yaml", CAT, (200, {"predictions": [{"label": "cat"}]})),
        (
            "switch.yaml",
            {"instances": [{"modelId": "1", "x": 2}]},
            (200, {"predictions": [{"label": "dog"}]}),
        ),
        (
            "switch.yaml",
            {"instances": [{"modelId": "2", "x": 1}]},
            (200, {"predictions": [{"label": "dog", "breed": "collie"}]}),
        ),
        (
            "ensemble.yaml",
            CAT,
            (
                200,
                {
                    "catdog": {"predictions": [{"label": "cat"}]},
                    "breed": {"predictions": [{"label": "dog", "breed": "collie"}]},
                },
            ),
        ),
    ],
    ids=["dog-breed-dog", "dog-breed-cat", "switch-model-1", "switch-model-2", "ensemble"],
)
async def test_kserve_example_runs_unchanged(
    router: StartRouter,
    model_urls: dict[str, str],
    example: str,
    request_body: dict[str, Any],
    expected: tuple[int, Any],
) -> None:
    async with router(graph_json(example, model_urls)) as r:
        status, body, _ = await r.post(request_body)
    assert (status, body) == expected
