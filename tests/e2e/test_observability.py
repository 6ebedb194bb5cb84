"""Observability wired into a real router process: /metrics, OpenTelemetry spans, JSON logs."""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path
from typing import Any

import aiohttp
import orjson

from tests.support import LOOPBACK, Backend, StartRouter, free_port, wait_ready


def seq(*urls: str) -> dict[str, Any]:
    steps = [{"serviceUrl": u, "name": f"s{i}"} for i, u in enumerate(urls)]
    return {"nodes": {"root": {"routerType": "Sequence", "steps": steps}}}


async def test_metrics_endpoint_counts_requests_steps_and_errors(
    backend: Backend, router: StartRouter
) -> None:
    spec = seq(backend.at("/echo/a"), backend.at("/status/503"))
    async with router(spec, args=["--inferencegraph-name", "demo"]) as r:
        for _ in range(3):
            await r.post({"instances": [1]})
        async with aiohttp.ClientSession() as s, s.get(r.url + "/metrics") as response:
            assert response.status == 200
            assert response.headers["Content-Type"].startswith("text/plain")
            text = await response.text()
    assert 'infergraph_requests_total{graph="demo",status="503"} 3.0' in text
    assert (
        'infergraph_step_duration_seconds_count{graph="demo",node="root",status="200",'
        'step="s0"} 3.0' in text
    )
    assert (
        'infergraph_step_errors_total{graph="demo",node="root",status="503",step="s1"} 3.0' in text
    )
    assert "infergraph_in_flight_requests" in text


async def test_metrics_follow_the_token_on_the_main_port_and_are_open_on_metrics_port(
    backend: Backend, router: StartRouter, tmp_path: Path
) -> None:
    token = tmp_path / "token"
    token.write_text("s3cret\n")
    metrics_port = free_port()
    args = ["--auth-token-file", str(token), "--metrics-port", str(metrics_port)]
    bearer = {"Authorization": "Bearer s3cret"}
    async with router(seq(backend.at("/echo/a")), args=args) as r:
        assert (await r.post({"instances": [1]}, headers=bearer))[0] == 200
        async with aiohttp.ClientSession() as s:
            async with s.get(r.url + "/metrics") as anonymous:
                refused = anonymous.status, await anonymous.json()
            async with s.get(r.url + "/metrics", headers=bearer) as with_token:
                assert with_token.status == 200
            side = f"http://{LOOPBACK}:{metrics_port}"
            async with s.get(side + "/metrics") as scrape:
                assert scrape.status == 200
                text = await scrape.text()
            async with s.post(side + "/", json={"instances": [1]}, headers=bearer) as graph:
                assert graph.status in (404, 405)  # the metrics port never runs the graph
    assert refused[0] == 401
    assert "Bearer" in refused[1]["cause"]
    assert 'infergraph_requests_total{graph="graph",status="200"} 1.0' in text
    assert len(backend.calls) == 1


async def run_router(
    spec: dict[str, Any], env: dict[str, str], args: list[str], body: Any, headers: dict[str, str]
) -> tuple[int, Any, bytes, bytes]:
    """Start a router, send one request, stop it (SIGTERM), return status, body and output."""
    port = free_port()
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "router", "--graph-json", orjson.dumps(spec).decode(),
        "--host", LOOPBACK, "--port", str(port), "--drain-seconds", "0", *args,
        env={**os.environ, **env},
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    url = f"http://{LOOPBACK}:{port}"
    try:
        await wait_ready(url, process)
        async with (
            aiohttp.ClientSession() as session,
            session.post(url, json=body, headers=headers) as response,
        ):
            status, answer = response.status, await response.json()
    finally:
        process.terminate()
    out, err = await asyncio.wait_for(process.communicate(), 30)
    return status, answer, out, err


async def test_otel_console_exporter_emits_a_span_tree_and_propagates_traceparent(
    backend: Backend,
) -> None:
    incoming = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
    status, body, out, _ = await run_router(
        seq(backend.at("/headers")),
        {"OTEL_TRACES_EXPORTER": "console"},
        [],
        {"instances": [1]},
        {"traceparent": incoming},
    )
    assert status == 200
    sent = {k.lower(): v for k, v in body["headers"].items()}
    _, trace_id, parent, _ = sent["traceparent"].split("-")
    assert trace_id == "0af7651916cd43dd8448eb211c80319c"  # the client's trace continues
    exported = out.decode()  # spans are flushed to stdout at shutdown
    assert exported.count('"trace_id": "0x0af7651916cd43dd8448eb211c80319c"') >= 3
    assert f'"span_id": "0x{parent}"' in exported  # the step got its own span's context
    for name in ("infergraph.node", "infergraph.step"):
        assert name in exported


async def test_request_log_lines_are_json_and_opt_in(backend: Backend) -> None:
    spec = seq(backend.at("/echo/a"))
    _, _, _, quiet = await run_router(spec, {}, [], {"instances": [1]}, {})
    _, _, _, logged = await run_router(spec, {}, ["--request-log"], {"instances": [1]}, {})

    def request_lines(err: bytes) -> list[dict[str, Any]]:
        lines = [orjson.loads(line) for line in err.splitlines() if line.startswith(b"{")]
        return [line for line in lines if line.get("logger") == "router.requests"]

    assert request_lines(quiet) == []
    (line,) = request_lines(logged)
    assert line["level"] == "INFO"
    assert (line["status"], line["method"], line["path"]) == (200, "POST", "/")


async def test_no_deprecation_warning_per_request(backend: Backend, router: StartRouter) -> None:
    # Every warning shown, every time (PYTHONWARNINGS reaches the router process): the request
    # paths below (graph, trace and explain headers, tracing, request log, metrics, 413, 100)
    # must not use anything deprecated in aiohttp, OpenTelemetry or prometheus_client.
    env = {"PYTHONWARNINGS": "always", "OTEL_TRACES_EXPORTER": "console"}
    args = ["--request-log", "--log-level", "DEBUG", "--max-body-bytes", "100"]
    traceparent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
    async with router(seq(backend.at("/echo/a")), env=env, args=args) as r:
        for headers in (
            {"traceparent": traceparent},
            {"X-InferGraph-Trace": "1"},
            {"X-InferGraph-Explain": "1"},
            {"Expect": "100-continue"},
        ):
            assert (await r.post({"instances": [1]}, headers=headers))[0] == 200
        assert (await r.post(b"x" * 200))[0] == 413
        async with aiohttp.ClientSession() as s, s.get(r.url + "/metrics") as response:
            assert response.status == 200
        r.process.terminate()
        await asyncio.wait_for(r.process.wait(), 15)
        assert r.process.stderr is not None
        log = (await r.process.stderr.read()).decode()
    assert '"status":200' in log  # the request log ran
    assert "Warning" not in log, log
