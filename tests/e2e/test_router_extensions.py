"""InferGraph's extensions beyond KServe, end to end against real backends on 127.0.0.1.

Each test states one opt-in behaviour; KServe graphs never set these fields (the KServe
semantics suite runs unchanged). The router is the real app on a real socket (`graph_server`).
"""

from __future__ import annotations

import asyncio
import random
import time
from collections import Counter
from typing import Any

import aiohttp
import orjson
import pytest

from tests.support import Backend, post_json, root_graph

REQUEST = {"instances": [[1.0, 2.0]], "meta": {"user": "u1"}}


def seq(*steps: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {"nodes": {"root": {"routerType": "Sequence", "steps": list(steps)}}, **extra}


node = root_graph


async def post(
    url: str, body: Any = REQUEST, headers: dict[str, str] | None = None
) -> tuple[int, Any, Any]:
    return await post_json(url, body, headers)


# --- data between steps ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        ("$request.instances", [[1.0, 2.0]]),
        ("$response.predictions[0]", {"label": "dog", "score": 0.9}),
        (
            {"instances": "$response.predictions", "meta": "$request.meta", "v": 1},
            {"instances": [{"label": "dog", "score": 0.9}], "meta": {"user": "u1"}, "v": 1},
        ),
    ],
    ids=["request-path", "response-path-index", "template"],
)
async def test_data_paths_and_templates(
    backend: Backend, graph_server: Any, data: Any, expected: Any
) -> None:
    spec = seq(
        {"serviceUrl": backend.at("/classify/dog")},
        {"serviceUrl": backend.at("/echo/b"), "data": data},
    )
    async with graph_server(spec) as url:
        status, body, _ = await post(url)
    assert (status, body["received"]) == (200, expected)


async def test_data_path_missing_in_request_is_a_400_naming_step_and_path(
    backend: Backend, graph_server: Any
) -> None:
    spec = seq({"serviceUrl": backend.at("/echo/b"), "name": "b", "data": "$request.nope[2]"})
    async with graph_server(spec) as url:
        status, body, _ = await post(url)
    assert status == 400
    assert "node 'root' step 'b'" in body["cause"]
    assert "$request.nope[2] matched nothing" in body["cause"]


async def test_v2_outputs_map_to_inputs_by_name(backend: Backend, graph_server: Any) -> None:
    spec = seq(
        {"serviceUrl": backend.at("/v2/first")},
        {
            "serviceUrl": backend.at("/v2/second"),
            "data": "$response",
            "mapOutputsToInputs": {"first-out": "features"},
        },
    )
    request = {"inputs": [{"name": "x", "shape": [2], "datatype": "FP64", "data": [1.0, 2.0]}]}
    async with graph_server(spec) as url:
        status, body, _ = await post(url, request)
    assert status == 200
    assert body["seen"] == {
        "inputs": [{"name": "features", "shape": [2], "datatype": "FP64", "data": [2.0, 4.0]}]
    }
    assert body["outputs"][0]["data"] == [4.0, 8.0]


# --- condition languages --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("step_fields", "routes_to"),
    [
        ({"condition": "jmespath:instances[?modelId=='1']"}, "one"),
        ({"condition": "instances[?modelId=='1']", "conditionLanguage": "jmespath"}, "one"),
        ({"condition": "jsonpath:$.instances[?(@.modelId=='1')]"}, "one"),
        ({"condition": 'instances.#(modelId=="1")'}, "one"),
        ({"condition": "jmespath:instances[?modelId=='9']"}, "two"),
    ],
    ids=["jmespath-prefix", "jmespath-field", "jsonpath-prefix", "gjson-default", "no-match"],
)
async def test_condition_languages(
    backend: Backend, graph_server: Any, step_fields: dict[str, Any], routes_to: str
) -> None:
    spec = node(
        "Switch",
        {"serviceUrl": backend.at("/echo/one"), **step_fields},
        {"serviceUrl": backend.at("/echo/two"), "condition": "instances"},
    )
    async with graph_server(spec) as url:
        status, body, _ = await post(url, {"instances": [{"modelId": "1"}]})
    assert (status, body["model"]) == (200, routes_to)


async def test_graph_level_condition_language(backend: Backend, graph_server: Any) -> None:
    spec = node(
        "Switch",
        {"serviceUrl": backend.at("/echo/one"), "condition": "length(instances) > `1`"},
        {"serviceUrl": backend.at("/echo/two"), "condition": "instances"},
    )
    spec["conditionLanguage"] = "jmespath"
    async with graph_server(spec) as url:
        assert (await post(url, {"instances": [1, 2]}))[1]["model"] == "one"
        assert (await post(url, {"instances": [1]}))[1]["model"] == "two"


# --- ensemble aggregation -------------------------------------------------------------------


def ensemble(backend: Backend, paths: list[str], **options: Any) -> dict[str, Any]:
    steps = [{"serviceUrl": backend.at(p), "name": f"m{i}"} for i, p in enumerate(paths)]
    return node("Ensemble", *steps, **options)


@pytest.mark.parametrize(
    ("paths", "options", "expected"),
    [
        (
            ["/vote/cat,dog", "/vote/dog,dog", "/vote/dog,cat"],
            {"aggregation": "majority"},
            {"predictions": ["dog", "dog"], "contributors": ["m0", "m1", "m2"]},
        ),
        (
            ["/vote/cat", "/vote/dog"],
            {"aggregation": "majority"},
            {"predictions": ["cat"], "contributors": ["m0", "m1"]},  # tie: earliest step's vote
        ),
        (
            ["/num/1,2", "/num/3,6"],
            {"aggregation": "mean"},
            {"predictions": [2.0, 4.0], "contributors": ["m0", "m1"]},
        ),
        (
            ["/vote/cat", "/status/500", "/vote/cat", "/vote/dog"],
            {"aggregation": "majority"},
            {"predictions": ["cat"], "contributors": ["m0", "m2", "m3"]},  # Soft failure left out
        ),
    ],
    ids=["majority", "majority-tie", "mean", "soft-failure-left-out"],
)
async def test_aggregations(
    backend: Backend,
    graph_server: Any,
    paths: list[str],
    options: dict[str, Any],
    expected: Any,
) -> None:
    async with graph_server(ensemble(backend, paths, **options)) as url:
        status, body, _ = await post(url)
    assert (status, body) == (200, expected)


async def test_weighted_mean_uses_step_weights(backend: Backend, graph_server: Any) -> None:
    spec = node(
        "Ensemble",
        {"serviceUrl": backend.at("/num/0"), "weight": 3},
        {"serviceUrl": backend.at("/num/4"), "weight": 1},
        aggregation="weighted",
    )
    async with graph_server(spec) as url:
        status, body, _ = await post(url)
    assert (status, body["predictions"]) == (200, [1.0])


@pytest.mark.parametrize(
    ("paths", "options", "message"),
    [
        (["/num/1,2", "/num/1"], {"aggregation": "mean"}, "different numbers of predictions"),
        (
            ["/num/1", "/vote/dog", "/num/2"],
            {"aggregation": "mean"},
            "a mean needs numbers; step 'm1' answered \"dog\" at predictions[0]",
        ),
        (["/status/503", "/status/500"], {"aggregation": "mean"}, "no step of Ensemble node"),
    ],
    ids=["shapes-differ", "non-numeric", "nothing-succeeded"],
)
async def test_unaggregatable_answers_are_502s_that_say_why(
    backend: Backend,
    graph_server: Any,
    paths: list[str],
    options: dict[str, Any],
    message: str,
) -> None:
    async with graph_server(ensemble(backend, paths, **options)) as url:
        status, body, _ = await post(url)
    assert status == 502
    assert message in body["cause"]


async def test_first_successful_answer_wins_and_cancels_the_rest(
    backend: Backend, graph_server: Any
) -> None:
    spec = ensemble(backend, ["/status/503", "/watch/3000", "/echo/fast"], aggregation="first")
    async with graph_server(spec) as url:
        started = time.monotonic()
        status, body, _ = await post(url)
        elapsed = time.monotonic() - started
        await asyncio.sleep(0.2)  # let the backend notice the hang-up
    assert (status, body["model"]) == (200, "fast")
    assert elapsed < 2.5
    assert backend.abandoned == ["/watch/3000"]


async def test_partial_results_separate_errors_from_results(
    backend: Backend, graph_server: Any
) -> None:
    spec = ensemble(backend, ["/echo/ok", "/status/503", "/text"], partialResults=True)
    async with graph_server(spec) as url:
        status, body, _ = await post(url)
    assert status == 200
    assert body["results"] == {"m0": {"model": "ok", "received": REQUEST}}
    assert body["errors"]["m1"] == {"status": 503, "reason": {"model_error": "failed with 503"}}
    assert body["errors"]["m2"]["status"] == 502  # answered 200, but not JSON
    assert "node 'root' step 'm2' did not answer JSON" in body["errors"]["m2"]["reason"]


async def test_quorum_answers_once_k_steps_succeeded(backend: Backend, graph_server: Any) -> None:
    spec = ensemble(backend, ["/echo/a", "/watch/3000", "/echo/b"], quorum=2)
    async with graph_server(spec) as url:
        status, body, _ = await post(url)
        await asyncio.sleep(0.2)
    assert status == 200
    assert set(body) == {"m0", "m2"}
    assert backend.abandoned == ["/watch/3000"]


async def test_majority_quorum_returns_once_the_majority_agrees(
    backend: Backend, graph_server: Any
) -> None:
    spec = ensemble(
        backend,
        ["/vote/dog", "/vote/dog", "/watch/3000"],
        aggregation="majority",
        quorum="majority",
    )
    async with graph_server(spec) as url:
        status, body, _ = await post(url)
        await asyncio.sleep(0.2)
    assert (status, body) == (200, {"predictions": ["dog"], "contributors": ["m0", "m1"]})
    assert backend.abandoned == ["/watch/3000"]


# --- splitter: sticky and shadow ------------------------------------------------------------


async def test_sticky_routing_keeps_a_user_on_one_model(
    backend: Backend, graph_server: Any
) -> None:
    spec = node(
        "Splitter",
        {"serviceUrl": backend.at("/echo/a"), "weight": 50},
        {"serviceUrl": backend.at("/echo/b"), "weight": 50},
        stickyHeader="X-User-Id",
    )
    async with graph_server(spec) as url:
        seen: dict[str, set[str]] = {}
        for user in range(40):
            for _ in range(3):
                _, body, _ = await post(url, headers={"X-User-Id": f"user-{user}"})
                seen.setdefault(f"user-{user}", set()).add(body["model"])
    assert all(len(models) == 1 for models in seen.values())
    counts = Counter(next(iter(models)) for models in seen.values())
    assert counts["a"] > 0  # both routes are used across users
    assert counts["b"] > 0


async def test_shadow_gets_a_copy_and_never_affects_the_answer(
    backend: Backend, graph_server: Any
) -> None:
    spec = node(
        "Splitter",
        {"serviceUrl": backend.at("/echo/live"), "weight": 100},
        {"serviceUrl": backend.at("/status/500"), "shadow": True},
        {"serviceUrl": backend.at("/echo/mirror"), "shadow": True},
    )
    async with graph_server(spec) as url:
        for _ in range(5):
            status, body, _ = await post(url)
            assert (status, body["model"]) == (200, "live")
        for _ in range(100):  # shadows run in the background; wait for them, boundedly
            if len(backend.calls) >= 15:
                break
            await asyncio.sleep(0.02)
    paths = Counter(c["path"] for c in backend.calls)
    assert paths == {"/echo/live": 5, "/status/500": 5, "/echo/mirror": 5}
    mirrored = [c["body"] for c in backend.calls if c["path"] == "/echo/mirror"]
    assert all(orjson.loads(b) == REQUEST for b in mirrored)


# --- resilience -----------------------------------------------------------------------------


async def test_step_timeout_is_per_step(backend: Backend, graph_server: Any) -> None:
    spec = seq({"serviceUrl": backend.at("/slow/2000"), "name": "slow", "timeout": 0.3})
    async with graph_server(spec) as url:
        started = time.monotonic()
        status, body, _ = await post(url)
    assert status == 504
    assert time.monotonic() - started < 1.5
    assert body["cause"] == (
        f'Post "{backend.at("/slow/2000")}": context deadline exceeded '
        "(Client.Timeout exceeded while awaiting headers)"
    )
    assert (body["node"], body["step"]) == ("root", "slow")
    assert body["detail"].endswith("did not answer within 0.3s")


async def test_request_deadline_bounds_every_later_step(
    backend: Backend, graph_server: Any
) -> None:
    # Each step may take 5 s, but the request as a whole has 1 s: the second step gets the rest.
    spec = seq(
        {"serviceUrl": backend.at("/slow/600"), "timeout": 5},
        {"serviceUrl": backend.at("/slow/2000"), "timeout": 5, "name": "late"},
        timeout=1,
    )
    async with graph_server(spec) as url:
        started = time.monotonic()
        status, body, _ = await post(url)
        elapsed = time.monotonic() - started
    assert status == 504
    assert body["step"] == "late"
    assert "context deadline exceeded" in body["cause"]
    assert 0.9 < elapsed < 1.6


async def test_retries_with_backoff_until_the_backend_recovers(
    backend: Backend, graph_server: Any
) -> None:
    retry = {"maxRetries": 3, "initialDelayMs": 10, "maxDelayMs": 50}
    spec = seq({"serviceUrl": backend.at("/flaky/2"), "retry": retry})
    async with graph_server(spec, rng=random.Random(0)) as url:
        status, body, headers = await post(url, headers={"X-InferGraph-Trace": "1"})
    assert (status, body) == (200, {"model": "flaky", "attempt": 3})
    trace = orjson.loads(headers["X-InferGraph-Trace"])
    (step,) = [e for e in trace if e["kind"] == "step"]
    assert step["attempts"] == 3
    assert sum(1 for e in trace if e.get("detail", "").startswith("retry")) == 2


async def test_retries_stop_at_max_and_answer_the_last_failure(
    backend: Backend, graph_server: Any
) -> None:
    spec = seq(
        {"serviceUrl": backend.at("/flaky/9"), "retry": {"maxRetries": 2, "initialDelayMs": 1}}
    )
    async with graph_server(spec, rng=random.Random(0)) as url:
        status, _, _ = await post(url)
    assert status == 503
    assert len(backend.calls) == 3


async def test_graph_level_retry_default(backend: Backend, graph_server: Any) -> None:
    spec = seq({"serviceUrl": backend.at("/flaky/1")}, retry={"maxRetries": 1, "initialDelayMs": 1})
    async with graph_server(spec, rng=random.Random(0)) as url:
        assert (await post(url))[0] == 200


async def test_client_disconnect_cancels_step_calls(backend: Backend, graph_server: Any) -> None:
    spec = node(
        "Ensemble",
        {"serviceUrl": backend.at("/watch/3000"), "name": "a"},
        {"serviceUrl": backend.at("/watch/3000"), "name": "b"},
    )
    async with graph_server(spec) as url, aiohttp.ClientSession() as session:
        with pytest.raises(TimeoutError):
            async with asyncio.timeout(0.3):
                await session.post(url, json=REQUEST)
        for _ in range(100):
            if len(backend.abandoned) == 2:
                break
            await asyncio.sleep(0.02)
    assert backend.abandoned == ["/watch/3000", "/watch/3000"]


async def test_circuit_breaker_opens_answers_fast_then_probes(
    backend: Backend, graph_server: Any
) -> None:
    now = [1000.0]

    class FakeClock:
        def __init__(self) -> None:
            self.now = lambda: now[0]
            self.sleep = asyncio.sleep

    spec = seq(
        {
            "serviceUrl": backend.at("/status/503"),
            "name": "sick",
            "circuitBreaker": {"failureThreshold": 3, "cooldownSeconds": 30},
        }
    )
    async with graph_server(spec, clock=FakeClock()) as url:
        statuses = [(await post(url))[0] for _ in range(3)]
        status, body, headers = await post(url)
        assert len(backend.calls) == 3  # the fourth never reached the backend
        now[0] += 31  # cooldown over: one probe goes through
        probe_status = (await post(url))[0]
    assert statuses == [503, 503, 503]
    assert status == 503
    assert "step 'sick': circuit open" in body["cause"]
    assert headers["Retry-After"] == "30"
    assert probe_status == 503
    assert len(backend.calls) == 4


async def test_max_in_flight_refuses_fast_with_retry_after(
    backend: Backend, graph_server: Any
) -> None:
    spec = seq({"serviceUrl": backend.at("/slow/800")})
    async with graph_server(spec, max_in_flight=1) as url:
        first = asyncio.ensure_future(post(url))
        await asyncio.wait_for(backend.arrived.wait(), 5)
        started = time.monotonic()
        status, body, headers = await post(url)
        refused_in = time.monotonic() - started
        assert (await first)[0] == 200
    assert status == 503
    assert headers["Retry-After"] == "1"
    assert "in flight" in body["cause"]
    assert refused_in < 0.5


# --- execution trace ------------------------------------------------------------------------


async def test_trace_header_lists_nodes_steps_and_decisions(
    backend: Backend, graph_server: Any
) -> None:
    spec = seq(
        {"serviceUrl": backend.at("/classify/cat"), "name": "cls"},
        {
            "serviceUrl": backend.at("/echo/b"),
            "name": "breed",
            "condition": 'predictions.#(label=="dog")',
        },
    )
    async with graph_server(spec) as url:
        status, _, headers = await post(url, headers={"X-InferGraph-Trace": "1"})
        _, _, plain = await post(url)
    assert status == 200
    assert "X-InferGraph-Trace" not in plain
    trace = orjson.loads(headers["X-InferGraph-Trace"])
    kinds = [(e["kind"], e.get("step")) for e in trace]
    assert kinds == [("node", None), ("step", "cls"), ("decision", "breed")]
    assert trace[1]["status"] == 200
    decision = {k: v for k, v in trace[2].items() if k != "startMs"}
    assert decision == {
        "kind": "decision",
        "node": "root",
        "step": "breed",
        "decision": "condition",
        "outcome": "failed",
        "detail": "condition 'predictions.#(label==\"dog\")' failed: stop",
    }
