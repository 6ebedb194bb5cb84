"""Guarantees the router keeps when calls are cancelled, fail oddly or share a target.

Breakers always settle (a cancelled or oversized probe never leaves one open for good, and steps
with different policies on one URL keep separate breakers); a shadow never touches the answer;
an Ensemble whose quorum can no longer be met answers at once; a step's own Content-Type
survives when its answer is the graph's. The router is the real app on a real socket
(`graph_server`), the backends real aiohttp servers on 127.0.0.1.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from aiohttp import web

from tests.support import Backend, post_json, root_graph, serving

REQUEST = {"instances": [[1.0, 2.0]]}


node = root_graph


async def post(
    url: str, body: Any = REQUEST, headers: dict[str, str] | None = None
) -> tuple[int, Any, Any]:
    return await post_json(url, body, headers)


class FakeClock:
    """The executor's clock, moved by hand; sleeps are real (retries are not used here)."""

    def __init__(self) -> None:
        self.at = 1000.0
        self.sleep = asyncio.sleep

    def now(self) -> float:
        return self.at


@dataclass
class Switchable:
    """One URL whose behaviour the test changes between requests: 'fail', 'hang', 'huge', 'ok'."""

    url: str
    mode: str = "fail"
    calls: list[str] = field(default_factory=list)
    cancelled: int = 0  # 'hang' calls the router hung up on


@contextlib.asynccontextmanager
async def switchable() -> AsyncIterator[Switchable]:
    target = Switchable("")

    async def handle(request: web.Request) -> web.StreamResponse:
        await request.read()
        target.calls.append(target.mode)
        if target.mode == "fail":
            return web.json_response({"error": "sick"}, status=503)
        if target.mode == "hang":
            try:
                await asyncio.sleep(30)  # cancelled when the router hangs up (handler_cancellation)
            except asyncio.CancelledError:
                target.cancelled += 1
                raise
        if target.mode == "huge":
            return web.Response(body=b"x" * 4096, content_type="application/octet-stream")
        return web.json_response({"model": "target"})

    app = web.Application()
    app.router.add_post("/{tail:.*}", handle)
    async with serving(app, handler_cancellation=True) as url:
        target.url = f"{url}/predict"
        yield target


BREAKER = {"failureThreshold": 1, "cooldownSeconds": 30}


# --- circuit breakers -----------------------------------------------------------------------


async def test_a_probe_cancelled_by_first_wins_frees_the_half_open_slot(
    backend: Backend, graph_server: Any
) -> None:
    clock = FakeClock()
    async with switchable() as target:
        spec = node(
            "Ensemble",
            {"name": "target", "serviceUrl": target.url, "circuitBreaker": BREAKER},
            {"name": "steady", "serviceUrl": backend.at("/slow/300")},
            aggregation="first",
        )
        async with graph_server(spec, clock=clock) as url:
            assert (await post(url))[0] == 200  # the target's 503 opens its breaker
            clock.at += 31  # half-open: the next call is the probe
            target.mode = "hang"
            assert (await post(url))[0] == 200  # 'steady' wins; the probe is cancelled
            target.mode = "ok"
            for _ in range(3):
                await post(url)
    # The cancelled probe gave its slot back, so later requests probe (and close) the breaker.
    assert target.calls[:3] == ["fail", "hang", "ok"]


async def test_a_probe_cancelled_by_the_client_hanging_up_frees_the_half_open_slot(
    graph_server: Any,
) -> None:
    clock = FakeClock()
    async with switchable() as target:
        spec = node(
            "Sequence", {"name": "target", "serviceUrl": target.url, "circuitBreaker": BREAKER}
        )
        async with graph_server(spec, clock=clock) as url:
            assert (await post(url))[0] == 503  # the target's 503 opens its breaker
            clock.at += 31  # half-open: the next call is the probe
            target.mode = "hang"
            with pytest.raises(TimeoutError):
                async with asyncio.timeout(0.5):  # the client hangs up mid-probe
                    await post(url)
            for _ in range(100):  # the router notices the hang-up, then drops the probe's call
                if target.cancelled:
                    break
                await asyncio.sleep(0.05)
            assert target.cancelled == 1
            target.mode = "ok"
            status, body, _ = await post(url)
    # The cancelled probe gave its slot back: the next request is a probe, and it closes.
    assert (status, body) == (200, {"model": "target"})
    assert target.calls == ["fail", "hang", "ok"]


async def test_a_probe_whose_answer_is_too_large_reopens_the_breaker_for_a_cooldown(
    graph_server: Any,
) -> None:
    clock = FakeClock()
    async with switchable() as target:
        spec = node(
            "Sequence", {"name": "target", "serviceUrl": target.url, "circuitBreaker": BREAKER}
        )
        async with graph_server(spec, clock=clock, max_body_bytes=1024) as url:
            assert (await post(url))[0] == 503  # the backend's own 503 opens the breaker
            clock.at += 31
            target.mode = "huge"
            status, body, _ = await post(url)
            assert status == 502  # the probe's answer exceeds the cap
            assert "more than 1024" in body["cause"]
            clock.at += 31  # a failed probe re-opens for one cooldown, then probes again
            target.mode = "ok"
            status, body, _ = await post(url)
    assert (status, body) == (200, {"model": "target"})
    assert target.calls == ["fail", "huge", "ok"]


async def test_steps_with_different_policies_on_one_url_keep_separate_breakers(
    graph_server: Any,
) -> None:
    async with switchable() as target:
        spec = node(
            "Sequence",
            {
                "name": "strict",
                "serviceUrl": target.url,
                "circuitBreaker": {"failureThreshold": 2, "cooldownSeconds": 30},
            },
            {
                "name": "lenient",
                "serviceUrl": target.url,
                "circuitBreaker": {"failureThreshold": 50, "cooldownSeconds": 60},
            },
        )
        async with graph_server(spec, clock=FakeClock()) as url:
            for _ in range(2):
                assert (await post(url))[0] == 503  # both Soft steps call and fail
            status, body, headers = await post(url)
    assert status == 503
    assert body["cause"] == (
        f"node 'root' step 'strict': circuit open for {target.url} after 2 consecutive "
        "failures; next probe in 30.0s"
    )
    assert headers["Retry-After"] == "30"
    assert len(target.calls) == 4  # the third request was refused before calling anything


# --- shadows --------------------------------------------------------------------------------


async def test_a_shadow_whose_data_path_matches_nothing_never_touches_the_answer(
    backend: Backend, graph_server: Any, caplog: pytest.LogCaptureFixture
) -> None:
    spec = node(
        "Splitter",
        {"serviceUrl": backend.at("/echo/live"), "weight": 100},
        {"serviceUrl": backend.at("/echo/broken"), "shadow": True, "name": "broken",
         "data": "$request.nope"},
        {"serviceUrl": backend.at("/echo/mirror"), "shadow": True},
    )  # fmt: skip
    async with graph_server(spec) as url:
        with caplog.at_level("WARNING", logger="router"):
            status, body, _ = await post(url)
            for _ in range(100):  # shadows run in the background; wait for them, boundedly
                if len(backend.calls) >= 2 and caplog.records:
                    break
                await asyncio.sleep(0.02)
    assert (status, body["model"]) == (200, "live")
    assert sorted(c["path"] for c in backend.calls) == ["/echo/live", "/echo/mirror"]
    [record] = [r for r in caplog.records if r.name == "router"]
    assert record.getMessage() == (
        "shadow node 'root' step 'broken' failed: "
        "node 'root' step 'broken': data $request.nope matched nothing in the request"
    )


# --- quorum ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("options", "needed"),
    [({"quorum": 2}, 2), ({"quorum": "majority", "aggregation": "majority"}, 2)],
    ids=["k", "majority"],
)
async def test_a_quorum_that_failures_make_impossible_fails_at_once_naming_them(
    backend: Backend, graph_server: Any, options: dict[str, Any], needed: int
) -> None:
    spec = node(
        "Ensemble",
        {"name": "m0", "serviceUrl": backend.at("/status/503")},
        {"name": "m1", "serviceUrl": backend.at("/status/500")},
        {"name": "m2", "serviceUrl": backend.at("/watch/3000")},
        **options,
    )
    async with graph_server(spec) as url:
        status, body, _ = await post(url)
        for _ in range(100):  # the backend notices the hang-up a moment later
            if backend.abandoned:
                break
            await asyncio.sleep(0.02)
    assert status == 502
    assert body["cause"] == (
        f"Ensemble node 'root' cannot reach its quorum of {needed} successful steps: "
        "'m0' (503), 'm1' (500) failed"
    )
    assert backend.abandoned == ["/watch/3000"]  # the slow step was cancelled, not awaited


# --- Content-Type ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("router_type", "step"),
    [
        ("Sequence", {}),
        ("Switch", {"condition": "instances"}),
        ("Splitter", {"weight": 100}),
    ],
    ids=["sequence", "switch", "splitter"],
)
async def test_a_non_json_answer_keeps_its_content_type(
    backend: Backend, graph_server: Any, router_type: str, step: dict[str, Any]
) -> None:
    spec = node(router_type, {"serviceUrl": backend.at("/text"), **step})
    async with graph_server(spec) as url:
        status, body, headers = await post(url)
    assert (status, body) == (200, b"plain text, not JSON")
    assert headers["Content-Type"] == "text/plain; charset=utf-8"
