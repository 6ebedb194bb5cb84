"""Graceful operations under load: SIGTERM and hot reload drop no request.

The router runs as `python -m router` (a real process receiving real signals) in front of the
scripted backend, whose answers take 50-200 ms so that requests are always in flight; 32
clients (aiohttp, keep-alive) send requests back to back.

- SIGTERM: every request sent before the signal, and every one sent while the router drains
  (`/readyz` 503, still serving: Kubernetes is removing the endpoint), gets its full answer;
  a request still running when the drain ends completes; new connections are then refused;
  the process exits 0.
- Hot reload: the graph file is replaced (and SIGHUP sent) several times under load, with
  one worker and with `--workers 2`: no request fails, and answers switch to the new graph.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest
import yaml

from tests.support import LOOPBACK, Backend, free_port, wait_ready

CLIENTS = 32
DRAIN_SECONDS = 1.5  # long enough to send through, short enough for the suite
# Requests that may be reset because their connection was accepted as the listener closed.
RACING_AT_CLOSE = 4


def canary(backend: Backend) -> dict[str, Any]:
    """Requests with `slow` take 2 s; the rest 50-200 ms, through a Switch and a Splitter."""
    slow_steps = [
        {"serviceUrl": backend.at(f"/slow/{ms}"), "weight": 25} for ms in (50, 100, 150, 200)
    ]
    return {
        "nodes": {
            "root": {
                "routerType": "Switch",
                "steps": [
                    {"serviceUrl": backend.at("/slow/2000"), "condition": "slow"},
                    {"nodeName": "split", "condition": "instances"},
                ],
            },
            "split": {"routerType": "Splitter", "steps": slow_steps},
        }
    }


@dataclass
class Outcome:
    sent: float  # time.monotonic() when the request was started
    status: int | None  # None: no HTTP answer (reset, refused, client timeout)
    error: str = ""
    model: str = ""


@dataclass
class Load:
    url: str
    outcomes: list[Outcome] = field(default_factory=list)
    stop: asyncio.Event = field(default_factory=asyncio.Event)

    async def client(self, session: aiohttp.ClientSession) -> None:
        while not self.stop.is_set():
            sent = time.monotonic()
            try:
                async with session.post(self.url, json={"instances": [1]}) as response:
                    body = await response.read()
                    model = str(orjson.loads(body).get("model", "")) if response.ok else ""
                    self.outcomes.append(Outcome(sent, response.status, model=model))
            except (aiohttp.ClientError, TimeoutError) as error:
                self.outcomes.append(Outcome(sent, None, type(error).__name__))

    async def run(self, connector: aiohttp.BaseConnector | None = None) -> None:
        timeout = aiohttp.ClientTimeout(total=30)
        async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
            await asyncio.gather(*(self.client(session) for _ in range(CLIENTS)))


async def _start(*args: str, log: Path) -> tuple[asyncio.subprocess.Process, str]:
    port = free_port()
    with log.open("wb") as out:
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "router", *args, "--host", LOOPBACK, "--port", str(port),
            stdout=asyncio.subprocess.DEVNULL, stderr=out,
        )  # fmt: skip
    url = f"http://{LOOPBACK}:{port}"
    await wait_ready(url, process)
    return process, url


def _errors(log: Path) -> list[str]:
    return [line for line in log.read_text().splitlines() if '"level":"INFO"' not in line]


async def _stop(process: asyncio.subprocess.Process) -> None:
    if process.returncode is None:
        process.kill()
        await process.wait()


async def test_sigterm_under_load_drops_nothing_and_exits_zero(
    backend: Backend, tmp_path: Path
) -> None:
    log = tmp_path / "router.log"
    graph = orjson.dumps(canary(backend)).decode()
    process, url = await _start(
        "--graph-json", graph, "--drain-seconds", str(DRAIN_SECONDS), log=log
    )
    load = Load(url + "/")
    try:
        running = asyncio.ensure_future(load.run())
        await asyncio.sleep(1.0)  # every client has requests going
        # One request that is still running when the drain ends and the listener closes.
        async with aiohttp.ClientSession() as session:
            signalled = time.monotonic()
            process.send_signal(signal.SIGTERM)
            await asyncio.sleep(0.3)
            async with session.get(url + "/readyz") as ready:
                readyz_draining = ready.status
            long_call = asyncio.ensure_future(session.post(url + "/", json={"slow": 1}))
            await asyncio.sleep(DRAIN_SECONDS - 0.8)
            load.stop.set()  # Kubernetes has taken the endpoint out by now
            await running
            await asyncio.sleep(0.6)  # the drain is over: the listener is closed
            with pytest.raises(aiohttp.ClientConnectorError):
                async with aiohttp.ClientSession() as fresh, fresh.get(url + "/readyz"):
                    pass
            long_answer = await long_call
            long_status = long_answer.status
            long_answer.release()
        exit_code = await asyncio.wait_for(process.wait(), 10)
        stopped = time.monotonic() - signalled
    finally:
        await _stop(process)
    before = [o for o in load.outcomes if o.sent < signalled]
    during = [o for o in load.outcomes if o.sent >= signalled]
    lost = [o for o in load.outcomes if o.status != 200]
    in_flight = sum(1 for o in before if o.sent > signalled - 0.25)
    print(
        f"\nSIGTERM: {len(before)} requests before the signal ({in_flight} sent in its last "
        f"250 ms), {len(during)} during the drain, {len(lost)} lost; exit {exit_code} "
        f"after {stopped:.2f}s"
    )
    assert lost == [], lost[:5]
    assert len(before) > CLIENTS
    assert len(during) > CLIENTS
    assert readyz_draining == 503
    assert long_status == 200  # in flight when the listener closed: still answered
    assert exit_code == 0
    assert _errors(log) == []


def _graph_yaml(backend: Backend, model: str) -> str:
    return yaml.safe_dump(
        {"nodes": {"root": {"routerType": "Sequence", "steps": [
            {"serviceUrl": backend.at(f"/slow/{50 + len(model)}"), "name": "delay"},
            {"serviceUrl": backend.at(f"/echo/{model}")},
        ]}}}
    )  # fmt: skip


def _replace(path: Path, text: str) -> None:
    # As a ConfigMap update does: the new file appears whole, never half-written.
    partial = path.with_suffix(".partial")
    partial.write_text(text)
    os.replace(partial, path)


@pytest.mark.parametrize("workers", [1, 2])
async def test_hot_reload_under_load_drops_nothing(
    backend: Backend, tmp_path: Path, workers: int
) -> None:
    path = tmp_path / "graph.yaml"
    path.write_text(_graph_yaml(backend, "g0"))
    log = tmp_path / "router.log"
    process, url = await _start(
        "--graph-file", str(path), "--drain-seconds", "0", "--workers", str(workers), log=log
    )
    load = Load(url + "/")
    reloads = 6
    try:
        # A new connection per request, so that with 2 workers both of them serve.
        running = asyncio.ensure_future(load.run(aiohttp.TCPConnector(force_close=True)))
        for index in range(1, reloads + 1):
            await asyncio.sleep(0.4)
            _replace(path, _graph_yaml(backend, f"g{index}"))
            process.send_signal(signal.SIGHUP)
        last = f"g{reloads}"
        async with asyncio.timeout(15):  # the file watcher polls once a second
            while not any(o.model == last for o in load.outcomes[-CLIENTS:]):  # noqa: ASYNC110
                await asyncio.sleep(0.1)
        settled = len(load.outcomes)
        await asyncio.sleep(1.5)
        load.stop.set()
        await running
    finally:
        with contextlib.suppress(ProcessLookupError):
            process.send_signal(signal.SIGTERM)
        exit_code = await asyncio.wait_for(process.wait(), 20)
        await _stop(process)
    failed = [o for o in load.outcomes if o.status != 200]
    models = {o.model for o in load.outcomes}
    late = {o.model for o in load.outcomes[settled + CLIENTS * workers :]}
    print(f"\nreload x{reloads}, {workers} worker(s): {len(load.outcomes)} requests, "
          f"{len(failed)} failed, graphs seen {sorted(models)}")  # fmt: skip
    assert failed == [], failed[:5]
    assert len(models) >= 3  # answers followed the graph through several reloads
    assert late == {last}  # in the end, every worker serves the newest graph
    assert exit_code == 0
    assert _errors(log) == []


async def test_clients_that_keep_sending_through_shutdown_see_answers_or_refusals(
    backend: Backend, tmp_path: Path
) -> None:
    """Clients that never stop: each request is answered, or refused before it was sent.

    A keep-alive connection the router closed while a client was writing a request on it
    would leave that client not knowing whether the request ran (a POST cannot be retried
    blindly). The router answers with `Connection: close` while draining, so when the
    listener closes no client holds a keep-alive connection: later requests find the port
    refused (nothing was sent, safe to retry elsewhere).

    One race remains and no server closes it: a connection the kernel accepts in the instant
    the listener closes is reset with the client's request already written. It hits at most
    a couple of the 32 clients per shutdown (without `Connection: close` about 30 of them).
    """
    log = tmp_path / "router.log"
    graph = orjson.dumps(canary(backend)).decode()
    process, url = await _start(
        "--graph-json", graph, "--drain-seconds", str(DRAIN_SECONDS), log=log
    )
    load = Load(url + "/")
    try:
        running = asyncio.ensure_future(load.run())
        await asyncio.sleep(1.0)
        process.send_signal(signal.SIGTERM)
        exit_code = await asyncio.wait_for(process.wait(), 10)
        await asyncio.sleep(0.3)
        load.stop.set()
        await running
    finally:
        await _stop(process)
    kinds: dict[str, int] = {}
    for outcome in load.outcomes:
        kind = str(outcome.status) if outcome.status is not None else outcome.error
        kinds[kind] = kinds.get(kind, 0) + 1
    print(f"\nclients through shutdown: {kinds}")
    reset = sum(n for kind, n in kinds.items() if kind not in ("200", "ClientConnectorError"))
    assert reset <= RACING_AT_CLOSE, kinds
    assert kinds["200"] > CLIENTS
    assert exit_code == 0


async def test_sighup_without_a_graph_file_is_logged_and_ignored(
    backend: Backend, tmp_path: Path
) -> None:
    # --graph-json has no file to reload: SIGHUP must not end the process (its default action)
    # nor the request in flight.
    spec = {"nodes": {"root": {"routerType": "Sequence", "steps": [
        {"serviceUrl": backend.at("/slow/1500")}]}}}  # fmt: skip
    log = tmp_path / "router.log"
    process, url = await _start(
        "--graph-json", orjson.dumps(spec).decode(), "--drain-seconds", "0.2", log=log
    )
    try:
        async with aiohttp.ClientSession() as session:

            async def post() -> int:
                async with session.post(url, json={"instances": [1]}) as response:
                    await response.read()
                    return response.status

            in_flight = asyncio.ensure_future(post())
            await asyncio.wait_for(backend.arrived.wait(), 10)
            process.send_signal(signal.SIGHUP)
            assert await asyncio.wait_for(in_flight, 10) == 200
            async with session.get(url + "/readyz") as ready:
                assert ready.status == 200
            assert process.returncode is None
        process.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(process.wait(), 15) == 0
    finally:
        await _stop(process)
    assert any("SIGHUP ignored" in line for line in _errors(log))
