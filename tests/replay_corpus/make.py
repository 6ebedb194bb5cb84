"""Regenerates this folder's recording: `python -m tests.replay_corpus.make` (from the root).

A real router (`python -m router --record`) serves graph.yaml in front of a real classifier
backend on 127.0.0.1; eight requests are recorded. The README's replay report is
`infergraph replay` of that recording against candidate.yaml (tests/e2e/test_record_replay.py
checks the README shows what the command prints). The backend's port is written into both
graphs, so the recording's targets are theirs; offline replay never calls it.
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import yaml
from aiohttp import web

from tests.e2e.test_record_replay import recording_router
from tests.support import LOOPBACK, post_json

HERE = Path(__file__).parent
PORT = 18931  # fixed, so regenerating keeps the graphs' URLs (the backend only runs meanwhile)
KINDS = ["dog", "cat", "dog", "fox", "dog", "cat", "dog", "dog"]


def graph(dog_weights: tuple[int, int], cat_condition: str) -> dict[str, object]:
    base = f"http://{LOOPBACK}:{PORT}"
    return {
        "apiVersion": "serving.kserve.io/v1alpha1",
        "kind": "InferenceGraph",
        "metadata": {"name": "pets"},
        "spec": {
            "nodes": {
                "root": {
                    "routerType": "Switch",
                    "steps": [
                        {"name": "dog", "nodeName": "dogs",
                         "condition": 'instances.#(kind=="dog")'},
                        {"name": "cat", "serviceUrl": f"{base}/cat", "condition": cat_condition},
                    ],
                },
                "dogs": {
                    "routerType": "Splitter",
                    "steps": [
                        {"name": "v1", "serviceUrl": f"{base}/dog-v1", "weight": dog_weights[0]},
                        {"name": "v2", "serviceUrl": f"{base}/dog-v2", "weight": dog_weights[1]},
                    ],
                },
            }
        },
    }  # fmt: skip


async def classify(request: web.Request) -> web.Response:
    body = await request.json()
    model = request.path.strip("/")
    score = round(0.5 + (body["instances"][0]["n"] % 5) / 10, 2)
    return web.json_response({"predictions": [{"label": model.split("-")[0], "score": score}]})


async def main() -> None:
    recorded = graph((50, 50), 'instances.#(kind=="cat")')
    (HERE / "graph.yaml").write_text(yaml.safe_dump(recorded, sort_keys=False))
    candidate = graph((80, 20), 'instances.#(kind!="dog")')
    (HERE / "candidate.yaml").write_text(yaml.safe_dump(candidate, sort_keys=False))
    app = web.Application()
    app.router.add_post("/{model}", classify)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, LOOPBACK, PORT).start()
    path = HERE / "recording.jsonl"
    path.unlink(missing_ok=True)
    output: list[bytes] = []
    try:
        spec: dict[str, object] = recorded["spec"]  # type: ignore[assignment]
        async with recording_router(spec, ["--record", str(path)], output) as url:
            for n, kind in enumerate(KINDS):
                await post_json(url, {"instances": [{"kind": kind, "n": n}]})
    finally:
        await runner.cleanup()
    print(f"{path}: {len(path.read_text().splitlines())} records", file=sys.stderr)


if __name__ == "__main__":
    asyncio.run(main())
