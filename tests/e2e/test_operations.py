"""Operations: hot reload of --graph-file (watch and SIGHUP), explain, and graph pictures."""

from __future__ import annotations

import asyncio
import html
import shutil
import signal
import sys
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest
import yaml

from graph_controller.cli import main as infergraph
from tests.support import LOOPBACK, Backend, free_port, wait_ready

EXAMPLES = Path(__file__).parents[2] / "examples"


def graph_yaml(url: str) -> str:
    return yaml.safe_dump(
        {"nodes": {"root": {"routerType": "Sequence", "steps": [{"serviceUrl": url}]}}}
    )


async def start_router_on_file(path: Path, *extra: str) -> tuple[asyncio.subprocess.Process, str]:
    port = free_port()
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "router", "--graph-file", str(path), "--host", LOOPBACK,
        "--port", str(port), "--drain-seconds", "0", *extra,
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    url = f"http://{LOOPBACK}:{port}"
    await wait_ready(url, process)
    return process, url


async def model_of(session: aiohttp.ClientSession, url: str) -> str:
    async with session.post(url, json={"instances": [1]}) as response:
        return str((await response.json())["model"])


async def eventually(check: Any, seconds: float = 10.0) -> None:
    async with asyncio.timeout(seconds):
        # Polling another process's state: there is no event to wait on.
        while not await check():  # noqa: ASYNC110
            await asyncio.sleep(0.1)


@pytest.mark.parametrize("trigger", ["watch", "sighup"])
async def test_hot_reload_swaps_valid_graphs_and_keeps_serving_on_invalid_ones(
    backend: Backend, tmp_path: Path, trigger: str
) -> None:
    path = tmp_path / "graph.yaml"
    path.write_text(graph_yaml(backend.at("/echo/one")))
    process, url = await start_router_on_file(path)
    try:
        async with aiohttp.ClientSession() as session:
            assert await model_of(session, url) == "one"
            # An in-flight request keeps the graph it started with.
            in_flight = asyncio.ensure_future(
                session.post(url, json={"instances": [1]}, headers={})
            )
            path.write_text(graph_yaml(backend.at("/echo/two")))
            if trigger == "sighup":
                process.send_signal(signal.SIGHUP)

            async def switched() -> bool:
                return await model_of(session, url) == "two"

            await eventually(switched)
            (await in_flight).release()
            # An invalid graph is rejected; the last good one keeps serving.
            path.write_text("nodes: {root: {routerType: Sequence, steps: [{weight: 200}]}}")
            if trigger == "sighup":
                process.send_signal(signal.SIGHUP)
            await asyncio.sleep(1.5)
            assert await model_of(session, url) == "two"
    finally:
        process.terminate()
        assert await asyncio.wait_for(process.wait(), 15) == 0
    assert process.stderr is not None
    log = (await process.stderr.read()).decode()
    assert "graph reloaded" in log
    assert "graph reload rejected, still serving the previous graph" in log
    assert "nodes.root.steps[0]" in log


async def test_hot_reload_drops_no_request_under_load(backend: Backend, tmp_path: Path) -> None:
    path = tmp_path / "graph.yaml"
    path.write_text(graph_yaml(backend.at("/slow/20")))
    process, url = await start_router_on_file(path)
    statuses: list[int] = []
    try:
        async with aiohttp.ClientSession() as session:

            async def client() -> None:
                for _ in range(40):
                    async with session.post(url, json={"instances": [1]}) as response:
                        statuses.append(response.status)

            load = asyncio.gather(*(client() for _ in range(4)))
            for index in range(5):
                await asyncio.sleep(0.15)
                path.write_text(graph_yaml(backend.at(f"/slow/{20 + index}")))
                process.send_signal(signal.SIGHUP)
            await load
    finally:
        process.terminate()
        await asyncio.wait_for(process.wait(), 15)
    assert statuses == [200] * 160


async def test_explain_header_shows_the_path_without_calling_models(
    backend: Backend, graph_server: Any
) -> None:
    spec = {
        "nodes": {
            "root": {
                "routerType": "Switch",
                "steps": [
                    {"serviceUrl": backend.at("/echo/a"), "name": "a", "condition": "x"},
                    {"serviceUrl": backend.at("/echo/b"), "name": "b", "condition": "y"},
                ],
            }
        }
    }
    explain = {"X-InferGraph-Explain": "1"}
    async with (
        graph_server(spec) as url,
        aiohttp.ClientSession() as session,
        session.post(url, json={"y": 1}, headers=explain) as response,
    ):
        result = await response.json()
    assert backend.calls == []
    assert result["status"] == 200
    assert [(e["kind"], e.get("step")) for e in result["path"]] == [
        ("node", None),
        ("decision", "a"),  # condition 'x' failed
        ("decision", "b"),  # condition 'y' held: route
        ("step", "b"),
    ]


def test_explain_cli_uses_stubbed_responses(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    request = tmp_path / "request.json"
    request.write_text('{"instances": [[1, 2]]}')
    stubs = tmp_path / "stubs.yaml"
    stubs.write_text("cat_dog_classifier: {body: {predictions: [{label: cat}]}}\n")
    graph = EXAMPLES / "kserve" / "dog-breed.yaml"
    assert (
        infergraph(["explain", str(graph), "--request", str(request), "--responses", str(stubs)])
        == 0
    )
    result = orjson.loads(capsys.readouterr().out)
    assert result["response"] == {"predictions": [{"label": "cat"}]}
    assert "failed: stop" in result["path"][-1]["detail"]


@pytest.mark.parametrize("fmt", ["mermaid", "dot", "svg"])
def test_graph_pictures(fmt: str, capsys: pytest.CaptureFixture[str]) -> None:
    if fmt == "svg" and shutil.which("dot") is None:
        pytest.skip("Graphviz `dot` is not installed (make picture installs it)")
    assert infergraph(["graph", str(EXAMPLES / "wine-canary" / "wine.yaml"), "--format", fmt]) == 0
    out = html.unescape(capsys.readouterr().out)  # SVG escapes '-' as &#45;
    expected = {"mermaid": "flowchart LR", "dot": "digraph inferencegraph", "svg": "<svg"}[fmt]
    assert expected in out
    assert "90%" in out
    assert "wine-v2" in out
