"""KServe's router semantics, end to end: a real `python -m router` process in front of real
scripted backends on 127.0.0.1. Each test states one rule of KServe's router."""

from __future__ import annotations

import asyncio
import signal
import time
from typing import Any

import aiohttp
import pytest

from tests.support import Backend, StartRouter


def seq(*steps: dict[str, Any], **nodes: dict[str, Any]) -> dict[str, Any]:
    return {"nodes": {"root": {"routerType": "Sequence", "steps": list(steps)}, **nodes}}


def node(router_type: str, *steps: dict[str, Any]) -> dict[str, Any]:
    return {"routerType": router_type, "steps": list(steps)}


REQUEST = {"instances": [[1.0, 2.0]]}


async def test_sequence_sends_the_request_to_every_step_by_default(
    backend: Backend, router: StartRouter
) -> None:
    spec = seq({"serviceUrl": backend.at("/echo/a")}, {"serviceUrl": backend.at("/echo/b")})
    async with router(spec) as r:
        status, body, headers = await r.post(REQUEST)
    assert status == 200
    assert body == {"model": "b", "received": REQUEST}
    assert headers["Content-Type"] == "application/json"
    assert [c["path"] for c in backend.calls] == ["/echo/a", "/echo/b"]


async def test_sequence_data_response_chains_the_previous_answer(
    backend: Backend, router: StartRouter
) -> None:
    spec = seq(
        {"serviceUrl": backend.at("/echo/a")},
        {"serviceUrl": backend.at("/echo/b"), "data": "$response"},
    )
    async with router(spec) as r:
        status, body, _ = await r.post(REQUEST)
    assert status == 200
    assert body == {"model": "b", "received": {"model": "a", "received": REQUEST}}


async def test_steps_are_posted_json_with_the_bytes_untouched(
    backend: Backend, router: StartRouter
) -> None:
    raw = b'{"instances":  [1, 2.50, 3e2]}'  # odd spacing and number forms survive verbatim
    async with router(seq({"serviceUrl": backend.at("/echo/a")})) as r:
        await r.post(raw)
    assert backend.calls[0]["body"] == raw
    assert backend.calls[0]["headers"]["Content-Type"] == "application/json"


@pytest.mark.parametrize(
    ("label", "expected_model"),
    [("dog", "breed"), ("cat", None)],
    ids=["condition-holds-step-runs", "condition-fails-sequence-stops-200"],
)
async def test_dog_breed_condition_guards_the_second_step(
    backend: Backend, router: StartRouter, label: str, expected_model: str | None
) -> None:
    spec = seq(
        {"serviceUrl": backend.at(f"/classify/{label}"), "name": "cat-dog"},
        {
            "serviceUrl": backend.at("/echo/breed"),
            "name": "breed",
            "data": "$request",
            "condition": 'predictions.#(label=="dog")',
        },
    )
    async with router(spec) as r:
        status, body, _ = await r.post(REQUEST)
    assert status == 200
    if expected_model is None:
        assert body == {"predictions": [{"label": "cat", "score": 0.9}]}
        assert backend.paths() == [f"/classify/{label}"]
    else:
        assert body == {"model": "breed", "received": REQUEST}


async def test_condition_on_invalid_json_response_is_a_502(
    backend: Backend, router: StartRouter
) -> None:
    spec = seq(
        {"serviceUrl": backend.at("/text")},
        {"serviceUrl": backend.at("/echo/b"), "condition": "predictions"},
    )
    async with router(spec) as r:
        status, body, _ = await r.post(REQUEST)
    assert status == 502
    assert body["error"] == "Failed to process request"
    assert "condition of node 'root' step 1" in body["cause"]


@pytest.mark.parametrize(
    ("dependency", "expected_status", "expected_paths"),
    [
        ("Hard", 503, ["/status/503"]),
        ("Soft", 200, ["/status/503", "/echo/b"]),
    ],
    ids=["hard-failure-stops", "soft-failure-continues"],
)
async def test_sequence_hard_and_soft_dependencies(
    backend: Backend,
    router: StartRouter,
    dependency: str,
    expected_status: int,
    expected_paths: list[str],
) -> None:
    spec = seq(
        {"serviceUrl": backend.at("/status/503"), "dependency": dependency},
        {"serviceUrl": backend.at("/echo/b"), "data": "$response"},
    )
    async with router(spec) as r:
        status, body, _ = await r.post(REQUEST)
    assert status == expected_status
    assert backend.paths() == expected_paths
    if dependency == "Hard":
        assert body == {"model_error": "failed with 503"}  # the step's own body, passed through
    else:
        assert body == {"model": "b", "received": {"model_error": "failed with 503"}}


async def test_sequence_returns_last_steps_status_even_when_soft_failing(
    backend: Backend, router: StartRouter
) -> None:
    spec = seq({"serviceUrl": backend.at("/echo/a")}, {"serviceUrl": backend.at("/status/422")})
    async with router(spec) as r:
        status, body, _ = await r.post(REQUEST)
    assert (status, body) == (422, {"model_error": "failed with 422"})


async def test_map_predictions_to_instances(backend: Backend, router: StartRouter) -> None:
    spec = seq(
        {"serviceUrl": backend.at("/classify/dog")},
        {
            "serviceUrl": backend.at("/echo/b"),
            "data": "$response",
            "mapPredictionsToInstances": True,
        },
    )
    async with router(spec) as r:
        _, body, _ = await r.post(REQUEST)
    assert body["received"] == {"instances": [{"label": "dog", "score": 0.9}]}


SWITCH = {
    "nodes": {
        "root": node(
            "Switch",
            {"serviceUrl": "{u}/echo/one", "condition": 'instances.#(modelId=="1")'},
            {"serviceUrl": "{u}/echo/two", "condition": 'instances.#(modelId=="2")'},
        )
    }
}


def with_url(spec: dict[str, Any], url: str) -> dict[str, Any]:
    import orjson

    return orjson.loads(orjson.dumps(spec).replace(b"{u}", url.encode()))  # type: ignore[no-any-return]


@pytest.mark.parametrize(
    ("request_body", "expected"),
    [
        ({"instances": [{"modelId": "1"}]}, (200, "one")),
        ({"instances": [{"modelId": "2"}]}, (200, "two")),
        ({"instances": [{"modelId": "3"}]}, (404, None)),
    ],
    ids=["first-route", "second-route", "no-route-404"],
)
async def test_switch_runs_the_first_matching_route(
    backend: Backend, router: StartRouter, request_body: dict[str, Any], expected: tuple[int, Any]
) -> None:
    async with router(with_url(SWITCH, backend.url)) as r:
        status, body, _ = await r.post(request_body)
    assert status == expected[0]
    if expected[1] is None:
        assert body["error"] == "Failed to process request"
        assert body["cause"] == "None of the routes matched with the switch condition"  # KServe's
        assert body["node"] == "root"
        assert body["detail"] == "no condition of Switch node 'root' holds on its input"
        assert backend.calls == []
    else:
        assert body["model"] == expected[1]


async def test_switch_on_invalid_json_request_is_a_400(
    backend: Backend, router: StartRouter
) -> None:
    async with router(with_url(SWITCH, backend.url)) as r:
        status, body, _ = await r.post(b"{not json")
    assert status == 400
    assert "not valid JSON" in body["cause"]


async def test_ensemble_merges_by_step_name_or_index_and_runs_concurrently(
    backend: Backend, router: StartRouter
) -> None:
    spec = {
        "nodes": {
            "root": node(
                "Ensemble",
                {"serviceUrl": backend.at("/slow/300"), "name": "first"},
                {"serviceUrl": backend.at("/slow/300")},
                {"serviceUrl": backend.at("/classify/dog"), "name": "third"},
            )
        }
    }
    async with router(spec) as r:
        status, body, _ = await r.post(REQUEST)
    assert status == 200
    assert body == {
        "first": {"model": "slow-300", "received": REQUEST},
        "1": {"model": "slow-300", "received": REQUEST},
        "third": {"predictions": [{"label": "dog", "score": 0.9}]},
    }
    slow = [c for c in backend.calls if c["path"] == "/slow/300"]
    # Concurrent, not sequential: the second slow call started before the first one ended.
    assert max(c["start"] for c in slow) < min(c["end"] for c in slow)


@pytest.mark.parametrize(
    ("dependency", "expected"),
    [
        ("Hard", (500, {"model_error": "failed with 500"})),
        (
            "Soft",
            (
                200,
                {
                    "ok": {"model": "ok", "received": REQUEST},
                    "bad": {"model_error": "failed with 500"},
                },
            ),
        ),
    ],
    ids=["hard-failure-decides", "soft-failure-merged"],
)
async def test_ensemble_hard_and_soft(
    backend: Backend, router: StartRouter, dependency: str, expected: tuple[int, Any]
) -> None:
    spec = {
        "nodes": {
            "root": node(
                "Ensemble",
                {"serviceUrl": backend.at("/echo/ok"), "name": "ok"},
                {"serviceUrl": backend.at("/status/500"), "name": "bad", "dependency": dependency},
            )
        }
    }
    async with router(spec) as r:
        status, body, _ = await r.post(REQUEST)
    assert (status, body) == expected


async def test_ensemble_step_with_non_object_answer_is_a_502(
    backend: Backend, router: StartRouter
) -> None:
    spec = {
        "nodes": {
            "root": node(
                "Ensemble",
                {"serviceUrl": backend.at("/list"), "name": "l"},
                {"serviceUrl": backend.at("/echo/a")},
            )
        }
    }
    async with router(spec) as r:
        status, body, _ = await r.post(REQUEST)
    assert status == 502
    assert "node 'root' step 'l'" in body["cause"]


async def test_splitter_distribution_follows_weights(backend: Backend, router: StartRouter) -> None:
    spec = {
        "nodes": {
            "root": node(
                "Splitter",
                {"serviceUrl": backend.at("/echo/main"), "weight": 80},
                {"serviceUrl": backend.at("/echo/canary"), "weight": 20},
            )
        }
    }
    n = 400
    async with router(spec) as r, aiohttp.ClientSession() as session:

        async def one() -> str:
            async with session.post(r.url + "/", json=REQUEST) as response:
                return str((await response.json())["model"])

        models = await asyncio.gather(*(one() for _ in range(n)))
    canary = models.count("canary")
    # Binomial(400, 0.2): mean 80, sd 8. +-5 sd keeps this from flaking while catching 50/50.
    assert 40 <= canary <= 120, canary
    assert set(models) == {"main", "canary"}


async def test_nested_nodes_recurse(backend: Backend, router: StartRouter) -> None:
    spec = seq(
        {"nodeName": "ens", "name": "fan"},
        {"nodeName": "last", "data": "$response"},
        ens=node(
            "Ensemble",
            {"serviceUrl": backend.at("/echo/x"), "name": "x"},
            {"nodeName": "split", "name": "y"},
        ),
        split=node("Splitter", {"serviceUrl": backend.at("/echo/only"), "weight": 100}),
        last=node("Sequence", {"serviceUrl": backend.at("/echo/final")}),
    )
    async with router(spec) as r:
        status, body, _ = await r.post(REQUEST)
    assert status == 200
    assert body == {
        "model": "final",
        "received": {
            "x": {"model": "x", "received": REQUEST},
            "y": {"model": "only", "received": REQUEST},
        },
    }


async def test_propagate_headers_forwards_only_matching_headers(
    backend: Backend, router: StartRouter
) -> None:
    spec = seq({"serviceUrl": backend.at("/headers")})
    env = {"PROPAGATE_HEADERS": "X-User,^Authorization$"}
    async with router(spec, env=env) as r:
        _, body, _ = await r.post(
            REQUEST,
            headers={
                "x-user-id": "u-42",  # matches "X-User" after Go-style canonicalisation
                "Authorization": "Bearer t",
                "X-Other": "no",
                "Connection": "keep-alive",  # hop-by-hop, never forwarded
            },
        )
    sent = {k.lower(): v for k, v in body["headers"].items()}
    assert sent["x-user-id"] == "u-42"
    assert sent["authorization"] == "Bearer t"
    assert "x-other" not in sent
    assert sent["content-type"] == "application/json"


async def test_no_headers_propagated_by_default(backend: Backend, router: StartRouter) -> None:
    async with router(seq({"serviceUrl": backend.at("/headers")})) as r:
        _, body, _ = await r.post(REQUEST, headers={"X-User-Id": "u", "Authorization": "B"})
    sent = {k.lower() for k in body["headers"]}
    assert "x-user-id" not in sent
    assert "authorization" not in sent


async def test_service_client_timeout_gives_504_naming_the_step(
    backend: Backend, router: StartRouter
) -> None:
    spec = seq({"serviceUrl": backend.at("/slow/3000"), "name": "sleepy"})
    spec["routerTimeouts"] = {"serviceClient": 1}
    async with router(spec) as r:
        started = time.monotonic()
        status, body, _ = await r.post(REQUEST)
        elapsed = time.monotonic() - started
    url = backend.at("/slow/3000")
    assert status == 504
    assert body["cause"] == (  # Go's text, which KServe's router answers for its client timeout
        f'Post "{url}": context deadline exceeded (Client.Timeout exceeded while awaiting headers)'
    )
    assert (body["node"], body["step"], body["url"]) == ("root", "sleepy", url)
    assert body["detail"] == f"node 'root' step 'sleepy': {url} did not answer within 1s"
    assert elapsed < 2.9  # answered at the timeout, not after the backend finished


async def test_unreachable_step_gives_502_naming_the_step_and_url(router: StartRouter) -> None:
    from tests.support import free_port

    url = f"http://127.0.0.1:{free_port()}/v1/models/gone:predict"
    async with router(seq({"serviceUrl": url, "name": "gone"})) as r:
        status, body, headers = await r.post(REQUEST)
        ready = await r.post(REQUEST)  # and the router keeps serving
    port = url.split(":")[2].split("/")[0]
    assert status == 502
    assert body["error"] == "Failed to process request"
    # Go's text for a refused connection, as KServe's router answers it.
    assert body["cause"] == (
        f'Post "{url}": dial tcp 127.0.0.1:{port}: connect: connection refused'
    )
    assert (body["node"], body["step"], body["url"]) == ("root", "gone", url)
    assert body["detail"].startswith(f"node 'root' step 'gone': calling {url} failed: ")
    assert headers["Content-Type"] == "application/json"
    assert ready[0] == 502


async def test_get_on_graph_path_is_405_and_readyz_is_200(
    backend: Backend, router: StartRouter
) -> None:
    async with (
        router(seq({"serviceUrl": backend.at("/echo/a")})) as r,
        aiohttp.ClientSession() as s,
    ):
        async with s.get(r.url + "/v1/models/x") as response:
            assert response.status == 405
            assert (await response.json())["error"] == "Failed to process request"
        async with s.get(r.url + "/readyz") as response:
            assert response.status == 200
        async with s.post(r.url + "/any/path/at/all", json=REQUEST) as response:
            assert (await response.json())["model"] == "a"


async def test_sigterm_drains_turns_readyz_503_and_finishes_in_flight(
    backend: Backend, router: StartRouter
) -> None:
    spec = seq({"serviceUrl": backend.at("/slow/1500")})
    async with router(spec, args=["--drain-seconds", "1"]) as r, aiohttp.ClientSession() as s:
        in_flight = asyncio.ensure_future(r.post(REQUEST))
        await asyncio.wait_for(backend.arrived.wait(), 10)  # the request reached the backend
        r.process.send_signal(signal.SIGTERM)
        await asyncio.sleep(0.3)
        async with s.get(r.url + "/readyz") as response:
            assert response.status == 503
        async with s.post(r.url + "/", json=REQUEST) as response:
            assert response.status == 200  # still serving during the drain
        status, body, _ = await in_flight
        assert (status, body["model"]) == (200, "slow-1500")
        assert await asyncio.wait_for(r.process.wait(), 10) == 0


async def test_invalid_graph_exits_non_zero_with_errors_on_stderr() -> None:
    import sys

    spec = (
        '{"nodes": {"root": {"routerType": "Splitter", "typo": 1,'
        ' "steps": [{"serviceUrl": "http://127.0.0.1:1/x", "weight": 90}]}}}'
    )
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "router",
        "--graph-json",
        spec,
        "--port",
        "0",
        stderr=asyncio.subprocess.PIPE,
    )
    _, err = await asyncio.wait_for(process.communicate(), 30)
    assert process.returncode == 1
    text = err.decode()
    assert "nodes.root.typo: unknown field 'typo'" in text
