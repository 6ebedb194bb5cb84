"""Two tiny deterministic models served over KServe's v1 protocol, for the demo and tests.

`cat-dog-classifier` says "dog" when an instance's numbers sum to more than zero, else "cat";
`dog-breed-classifier` picks a breed from the same sum. Run one per process:
    python examples/toy_models.py --model cat-dog-classifier --port 9001
Endpoints: GET /v1/models/<name> (readiness), POST /v1/models/<name>:predict.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any

from aiohttp import web

BREEDS = ("beagle", "collie", "husky", "poodle")


def _total(instance: Any) -> float:
    if isinstance(instance, int | float):
        return float(instance)
    if isinstance(instance, list):
        return sum(_total(x) for x in instance)
    if isinstance(instance, dict):
        return sum(_total(v) for v in instance.values() if isinstance(v, int | float | list))
    return 0.0


def cat_dog(instance: Any) -> dict[str, Any]:
    return {"label": "dog" if _total(instance) > 0 else "cat"}


def dog_breed(instance: Any) -> dict[str, Any]:
    return {"label": "dog", "breed": BREEDS[int(abs(_total(instance))) % len(BREEDS)]}


MODELS: dict[str, Callable[[Any], dict[str, Any]]] = {
    "cat-dog-classifier": cat_dog,
    "dog-breed-classifier": dog_breed,
}


def build_app(name: str) -> web.Application:
    predict = MODELS[name]

    async def ready(request: web.Request) -> web.Response:
        return web.json_response({"name": name, "ready": True})

    async def infer(request: web.Request) -> web.Response:
        try:
            body = await request.json()
            instances = body["instances"]
        except (ValueError, KeyError, TypeError):
            return web.json_response({"error": 'expected {"instances": [...]}'}, status=400)
        return web.json_response({"predictions": [predict(i) for i in instances]})

    app = web.Application()
    app.router.add_get(f"/v1/models/{name}", ready)
    app.router.add_post(f"/v1/models/{name}:predict", infer)
    return app


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--model", choices=sorted(MODELS), required=True)
    p.add_argument("--port", type=int, required=True)
    args = p.parse_args()
    web.run_app(build_app(args.model), host="127.0.0.1", port=args.port, print=None)


if __name__ == "__main__":
    main()
