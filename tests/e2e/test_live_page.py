"""`--live-page` in a real browser: Debian's Chromium, driven by its chromedriver (`make browser`).

A real router process serves a two-node graph (a Sequence calling a Splitter with a stable and
a canary route) to model backends in this test's loop; the browser loads `/graph` and the
tests read the page's DOM and its screenshots (saved under pytest's tmp dir): the page loads
and draws every node and step, its figures move as traffic flows, a canary that starts failing
turns red (its pixels), and a clicked request shows its path. The page loads nothing but its
own files. The same token as every request guards the page; `--workers 2` sums both workers.

`INFERGRAPH_LIVE_PAGE_SCREENSHOT=docs/live-page.png` also writes the README's screenshot
(`make live-page-screenshot`).
"""

from __future__ import annotations

import asyncio
import io
import logging
import os
import shutil
import signal
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest
from aiohttp import web
from PIL import Image
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.remote.webelement import WebElement

from router.__main__ import main as router_main
from router.inference_proto.grpc_predict_v2_pb2 import ModelInferRequest
from router.logs import REQUESTS_LOGGER
from tests.e2e.test_grpc import grpc_router
from tests.support import (
    LOOPBACK,
    Backend,
    StartRouter,
    free_port,
    root_graph,
    serving,
    wait_ready,
)

WAIT_SECONDS = 30.0  # the page polls once a second; a loaded 2-core machine may lag a lot
SCREENSHOT_ENV = "INFERGRAPH_LIVE_PAGE_SCREENSHOT"


@dataclass
class Models:
    """Model backends whose canary can be made to fail: `/stable`, `/canary`, `/prepare`."""

    url: str
    canary_fails: bool = False


@pytest.fixture
async def models() -> AsyncIterator[Models]:
    models = Models("")

    async def answer(request: web.Request) -> web.Response:
        await request.read()
        if request.path == "/canary" and models.canary_fails:
            return web.json_response({"error": "canary broke"}, status=500)
        return web.json_response({"predictions": [request.path.strip("/")]})

    app = web.Application()
    app.router.add_post("/{name}", answer)
    async with serving(app) as models.url:
        yield models


def canary_graph(models: Models) -> dict[str, Any]:
    # Opens after 3 failures in a row, and stays open for the rest of the test.
    breaker = {"failureThreshold": 3, "cooldownSeconds": 600}
    return {
        "nodes": {
            "root": {
                "routerType": "Sequence",
                "steps": [
                    {"name": "prepare", "serviceUrl": f"{models.url}/prepare"},
                    {"name": "classify", "nodeName": "split", "data": "$request"},
                ],
            },
            "split": {
                "routerType": "Splitter",
                "steps": [
                    {
                        "name": "stable",
                        "serviceUrl": f"{models.url}/stable",
                        "weight": 50,
                        "circuitBreaker": breaker,
                    },
                    {
                        "name": "canary",
                        "serviceUrl": f"{models.url}/canary",
                        "weight": 50,
                        "circuitBreaker": breaker,
                    },
                ],
            },
        }
    }


@pytest.fixture
def browser() -> Iterator[WebDriver]:
    chromium, driver = shutil.which("chromium"), shutil.which("chromedriver")
    if chromium is None or driver is None:
        pytest.fail("Debian's chromium and chromium-driver are needed: run `make browser`")
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for argument in (
        "--headless=new",
        "--no-sandbox",  # as root, Chromium refuses to start sandboxed
        "--disable-dev-shm-usage",  # containers have a small /dev/shm
        "--window-size=1500,900",
        "--force-device-scale-factor=1",  # CSS pixels are screenshot pixels
    ):
        options.add_argument(argument)
    chrome = webdriver.Chrome(service=Service(driver), options=options)
    try:
        yield chrome
    finally:
        chrome.quit()


async def until(what: str, check: Callable[[], Any]) -> Any:
    """`check()`'s first truthy value, polled while the loop (and the backends) keep running."""
    deadline = time.monotonic() + WAIT_SECONDS
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        await asyncio.sleep(0.1)
    raise AssertionError(f"the page never showed {what} within {WAIT_SECONDS:g}s")


async def send(url: str, count: int, headers: dict[str, str] | None = None) -> list[int]:
    async with aiohttp.ClientSession(headers=headers) as session:
        statuses = []
        for i in range(count):
            async with session.post(url + "/", json={"instances": [i]}) as response:
                await response.read()
                statuses.append(response.status)
        return statuses


def row(driver: WebDriver, node: str, step: str) -> WebElement:
    return driver.find_element("css selector", f'g.step[data-node="{node}"][data-step="{step}"]')


def classes(element: WebElement) -> set[str]:
    return set((element.get_attribute("class") or "").split())


def updates(driver: WebDriver) -> int:
    return int(driver.find_element("tag name", "body").get_attribute("data-updates") or 0)


def screenshot(driver: WebDriver, path: Path) -> Image.Image:
    png = driver.get_screenshot_as_png()
    path.write_bytes(png)
    return Image.open(io.BytesIO(png)).convert("RGB")


def red_share(image: Image.Image, element: WebElement) -> float:
    """The share of the element's pixels that are the page's failing red (#d93025)."""
    box = element.rect
    crop = image.crop(
        (
            int(box["x"]),
            int(box["y"]),
            int(box["x"] + box["width"]),
            int(box["y"] + box["height"]),
        )
    )
    data = crop.tobytes()  # RGB, three bytes a pixel
    pixels = [data[i : i + 3] for i in range(0, len(data), 3)]
    red = sum(1 for r, g, b in pixels if r > 180 and g < 90 and b < 90)
    return red / max(1, len(pixels))


async def test_the_page_draws_the_graph_moves_with_traffic_and_a_failing_step_turns_red(
    router: StartRouter, models: Models, browser: WebDriver, tmp_path: Path
) -> None:
    async with router(canary_graph(models), args=["--live-page"]) as r:
        browser.get(r.url + "/graph")
        await until("its first figures", lambda: updates(browser) >= 1)
        # Loaded: every node is a box and every step a row, idle before any request.
        nodes = browser.find_elements("css selector", "g.node")
        assert sorted(n.get_attribute("data-node") for n in nodes) == ["root", "split"]
        for node, step in [("root", "prepare"), ("root", "classify"), ("split", "stable")]:
            assert "idle" in classes(row(browser, node, step))
        assert "idle" in classes(row(browser, "split", "canary"))
        blank = screenshot(browser, tmp_path / "1-loaded.png")
        colours = blank.getcolors(maxcolors=1 << 24) or []
        assert len(colours) > 20, "the screenshot is blank"
        before = browser.find_element("css selector", '[data-total="rate"]').text

        # The numbers move when traffic flows: each batch shows in the counts.
        assert await send(r.url, 10) == [200] * 10
        await until(
            "10 requests",
            lambda: browser.find_element("css selector", 'g.node[data-node="root"]')
            .get_attribute("data-count") == "10",
        )  # fmt: skip
        assert await send(r.url, 10) == [200] * 10
        await until(
            "20 requests",
            lambda: browser.find_element("css selector", 'g.node[data-node="root"]')
            .get_attribute("data-count") == "20",
        )  # fmt: skip
        after = browser.find_element("css selector", '[data-total="rate"]').text
        assert before != after, (before, after)
        shares = [
            float(row(browser, "split", s).get_attribute("data-share") or 0)
            for s in ("stable", "canary")
        ]
        assert sum(shares) == pytest.approx(1.0)
        canary = row(browser, "split", "canary")
        await until("a healthy canary", lambda: "ok" in classes(canary))
        assert canary.get_attribute("data-breaker") == "closed"
        healthy = screenshot(browser, tmp_path / "2-traffic.png")
        assert red_share(healthy, canary) < 0.01

        # The canary starts failing: its row turns red, the stable one stays as it was.
        models.canary_fails = True
        statuses = await send(r.url, 30)  # 500s, then 503s once its breaker opens
        assert 500 in statuses
        await until("the canary failing", lambda: "failing" in classes(canary))
        await until("its breaker open", lambda: canary.get_attribute("data-breaker") == "open")
        assert "breaker open" in canary.text
        assert row(browser, "split", "stable").get_attribute("data-breaker") == "closed"
        failing = screenshot(browser, tmp_path / "3-failing.png")
        assert red_share(failing, canary) > 0.5
        assert red_share(failing, row(browser, "split", "stable")) < 0.01
        assert "failing" not in classes(row(browser, "split", "stable"))

        # A request's path: click the newest failed one in the list.
        failed = await until(
            "a failed request in the list",
            lambda: browser.find_elements(
                "xpath", "//table[@id='traces']/tbody/tr[td[2][text()='500']]"
            ),
        )
        failed[0].click()
        events = await until(
            "the clicked request's path",
            lambda: browser.find_elements("css selector", "#trace-events tbody tr"),
        )
        cells = [[c.text for c in e.find_elements("tag name", "td")] for e in events]
        assert ["step", "split", "canary", "500"] in [c[1:5] for c in cells]
        assert ["route: drawn", "split", "canary"] in [c[1:4] for c in cells]
        assert "on-path" in classes(canary)
        assert "on-path" in classes(row(browser, "root", "classify"))  # its nodeName step
        assert "on-path" not in classes(row(browser, "split", "stable"))
        path = screenshot(browser, tmp_path / "4-path.png")
        assert red_share(path, canary) > 0.3  # still red under the path's outline
        if os.environ.get(SCREENSHOT_ENV):
            shutil.copyfile(tmp_path / "4-path.png", os.environ[SCREENSHOT_ENV])

        # Bundled: everything the page loaded came from the router.
        loaded = browser.execute_script(
            "return performance.getEntriesByType('resource').map(e => e.name)"
        )
        assert loaded, "the page loaded no script or style"
        assert all(name.startswith(r.url + "/") for name in loaded), loaded


async def test_the_page_and_its_data_need_the_token_as_every_request_does(
    router: StartRouter, models: Models, browser: WebDriver, tmp_path: Path
) -> None:
    token = tmp_path / "token"
    token.write_text("s3cret\n")
    bearer = {"Authorization": "Bearer s3cret"}
    args = ["--live-page", "--auth-token-file", str(token)]
    async with router(canary_graph(models), args=args) as r:
        async with aiohttp.ClientSession() as session:
            for path in ("/graph", "/graph/stats", "/graph/live.js"):
                async with session.get(r.url + path) as anonymous:
                    assert anonymous.status == 401, path
                async with session.get(r.url + path, headers=bearer) as allowed:
                    assert allowed.status == 200, path
            # A POST to /graph is still a graph request, as on KServe's router.
            async with session.post(r.url + "/graph", json={}, headers=bearer) as posted:
                assert posted.status == 200
                assert (await posted.json())["predictions"] in (["stable"], ["canary"])
        browser.get(r.url + "/graph")  # a browser without the token: refused
        refused = browser.find_element("tag name", "body").text
        assert "a valid 'Authorization: Bearer <token>' is required" in refused
        browser.execute_cdp_cmd("Network.enable", {})
        browser.execute_cdp_cmd("Network.setExtraHTTPHeaders", {"headers": bearer})
        browser.get(r.url + "/graph")
        await until("its figures, with the token", lambda: updates(browser) >= 1)
        assert await send(r.url, 4, bearer) == [200] * 4
        # At least these 4 (the POST to /graph above may still be in the window, or not).
        await until(
            "4 requests",
            lambda: int(
                browser.find_element("css selector", 'g.node[data-node="root"]')
                .get_attribute("data-count") or 0
            ) >= 4,
        )  # fmt: skip


async def test_with_two_workers_the_page_shows_both_summed(models: Models, tmp_path: Path) -> None:
    port = free_port()
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "router", "--graph-json", orjson.dumps(canary_graph(models)).decode(),
        "--host", LOOPBACK, "--port", str(port), "--workers", "2", "--live-page",
        "--drain-seconds", "0.1",
    )  # fmt: skip
    url = f"http://{LOOPBACK}:{port}"
    try:
        await wait_ready(url, process)
        # A new connection per request, so the kernel spreads them over both workers.
        connector = aiohttp.TCPConnector(force_close=True)
        async with aiohttp.ClientSession(connector=connector) as session:

            async def stats() -> dict[str, Any]:
                async with session.get(url + "/graph/stats") as response:
                    body: dict[str, Any] = await response.json()
                    return body

            async def settled(sent: int) -> dict[str, Any]:
                """The figures once every request sent shows (a sibling's lag up to 1 s)."""
                deadline = time.monotonic() + WAIT_SECONDS
                answer = await stats()
                while answer["request"]["count"] != sent:
                    assert time.monotonic() < deadline, (sent, answer)
                    await asyncio.sleep(0.2)
                    answer = await stats()
                return answer

            # The first worker answers /readyz while the second may still be starting: send
            # until both have served (almost always the first batch), then check the sum.
            sent = 0
            answer: dict[str, Any] = {}
            while sent < 200:
                for i in range(20):
                    async with session.post(url, json={"instances": [i]}) as response:
                        assert response.status == 200
                sent += 20
                answer = await settled(sent)
                if [w["requests"] > 0 for w in answer["workers"]] == [True, True]:
                    break
            assert [w["requests"] > 0 for w in answer["workers"]] == [True, True], answer
            assert sum(w["requests"] for w in answer["workers"]) == sent
            assert answer["nodes"]["root"]["steps"]["prepare"]["count"] == sent
            traces = {t["worker"] for t in answer["traces"]}
            assert traces == {w["pid"] for w in answer["workers"]}
            # Whichever worker answers (a new connection each), it sums the same pool.
            for _ in range(6):
                again = await stats()
                assert {w["pid"] for w in again["workers"]} == traces
    finally:
        if process.returncode is None:
            process.terminate()
            await asyncio.wait_for(process.wait(), 20)


async def test_without_the_flag_get_graph_is_a_graph_request_as_before(
    graph_server: Any, models: Models
) -> None:
    async with graph_server(canary_graph(models)) as url, aiohttp.ClientSession() as session:
        for path in ("/graph", "/graph/stats", "/graph/live.js"):
            async with session.get(url + path) as response:
                assert response.status == 405, path
    async with (
        graph_server(canary_graph(models), live_page=True) as url,
        aiohttp.ClientSession() as session,
    ):
        async with session.get(url + "/graph") as page:
            assert page.status == 200
            assert page.headers["Content-Security-Policy"].startswith("default-src 'self'")
            html = await page.text()
        # Nothing from elsewhere: every script and style the page names is its own.
        assert "http://" not in html.replace('xmlns="http://www.w3.org/2000/svg"', "")
        assert "https://" not in html
        async with session.post(url + "/graph", json={}) as posted:
            assert posted.status == 200


@pytest.fixture
def logging_restored() -> Iterator[None]:
    """main() configures logging for the whole process; later tests must find it as it was."""
    root, requests = logging.getLogger(), logging.getLogger(REQUESTS_LOGGER)
    handlers, levels = list(root.handlers), (root.level, requests.level)
    yield
    for handler in list(root.handlers):
        root.removeHandler(handler)
    for handler in handlers:
        root.addHandler(handler)
    root.setLevel(levels[0])
    requests.setLevel(levels[1])


@pytest.mark.usefixtures("logging_restored")
def test_a_pool_that_cannot_make_its_share_directory_says_so(
    models: Models, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # A read-only root filesystem (the controller's router pods) and no writable TMPDIR.
    monkeypatch.setattr(tempfile, "tempdir", "/proc")
    spec = orjson.dumps(canary_graph(models)).decode()
    hangup = signal.getsignal(signal.SIGHUP)
    try:
        status = router_main(["--graph-json", spec, "--workers", "2", "--live-page"])
    finally:
        signal.signal(signal.SIGHUP, hangup)  # main() ignores SIGHUP until it serves
    assert status == 1
    error = capsys.readouterr().err
    assert "router: --live-page with --workers 2: the workers share their figures" in error
    assert "set TMPDIR to a writable directory" in error


async def test_grpc_requests_show_too(backend: Backend) -> None:
    spec = root_graph("Sequence", {"name": "rest", "serviceUrl": backend.at("/v2/rest")})
    async with grpc_router(spec, live_page=True) as router:
        request = ModelInferRequest(model_name="graph")
        request.inputs.add(name="x", datatype="FP64", shape=[1]).contents.fp64_contents.append(1)
        for _ in range(3):
            await router.infer(request)
        async with (
            aiohttp.ClientSession() as session,
            session.get(router.http + "/graph/stats") as response,
        ):
            stats = await response.json()
    assert stats["request"]["count"] == 3
    assert stats["nodes"]["root"]["steps"]["rest"]["count"] == 3
    assert [(t["method"], t["path"], t["status"]) for t in stats["traces"]] == [
        ("gRPC", "ModelInfer", 200)
    ] * 3


async def test_a_reloaded_graph_is_drawn_anew(models: Models, tmp_path: Path) -> None:
    graph_file = tmp_path / "graph.json"
    one = {"name": "one", "serviceUrl": f"{models.url}/stable"}
    two = {"name": "two", "serviceUrl": f"{models.url}/canary"}
    graph_file.write_bytes(orjson.dumps(root_graph("Sequence", one)))
    port = free_port()
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "router", "--graph-file", str(graph_file), "--host", LOOPBACK,
        "--port", str(port), "--live-page", "--drain-seconds", "0.1",
    )  # fmt: skip
    url = f"http://{LOOPBACK}:{port}"

    async def drawn_steps() -> list[str]:
        async with aiohttp.ClientSession() as session, session.get(url + "/graph/stats") as got:
            layout = (await got.json())["layout"]
        return [step["key"] for node in layout["nodes"] for step in node["steps"]]

    try:
        await wait_ready(url, process)
        assert await drawn_steps() == ["one"]
        graph_file.write_bytes(orjson.dumps(root_graph("Sequence", one, two)))
        process.send_signal(signal.SIGHUP)
        deadline = time.monotonic() + WAIT_SECONDS
        while await drawn_steps() != ["one", "two"]:
            assert time.monotonic() < deadline, "the new graph was never drawn"
            await asyncio.sleep(0.1)
    finally:
        process.terminate()
        await asyncio.wait_for(process.wait(), 20)
