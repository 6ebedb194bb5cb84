"""Recording (`--record`), replay (`infergraph replay`) and shadow comparison, end to end.

Real router processes (`python -m router --record ...`) record traffic to real scripted backends
on 127.0.0.1; `infergraph replay` runs as the command a user types, on those recordings.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest
import yaml
from aiohttp import web

from router.graph import spec_digest
from schemas.valid_graph import validate_graph
from tests.support import LOOPBACK, Backend, free_port, post_json, serving, wait_ready

INFERGRAPH = Path(sys.executable).parent / "infergraph"


@contextlib.asynccontextmanager
async def recording_router(
    spec: dict[str, Any], args: list[str], output: list[bytes]
) -> AsyncIterator[str]:
    """A router process; on exit it is stopped (SIGTERM: the recorder flushes) and its stderr
    appended to `output`."""
    port = free_port()
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "router", "--graph-json", orjson.dumps(spec).decode(),
        "--host", LOOPBACK, "--port", str(port), "--drain-seconds", "0", *args,
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    url = f"http://{LOOPBACK}:{port}"
    try:
        await wait_ready(url, process)
        yield url
    finally:
        if process.returncode is None:
            process.terminate()
        _, err = await asyncio.wait_for(process.communicate(), 30)
        output.append(err)


async def metrics_text(url: str) -> str:
    async with aiohttp.ClientSession() as session, session.get(url + "/metrics") as response:
        return await response.text()


def lines(path: Path) -> list[dict[str, Any]]:
    return [orjson.loads(line) for line in path.read_bytes().splitlines()]


def replay_command(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(INFERGRAPH), "replay", *map(str, args)], capture_output=True, text=True, timeout=120
    )


# --- recording ------------------------------------------------------------------------------


async def test_records_each_request_redacted_with_its_steps_and_rotates(
    backend: Backend, tmp_path: Path
) -> None:
    spec = {
        "nodes": {
            "root": {
                "routerType": "Sequence",
                "steps": [
                    {"name": "first", "serviceUrl": backend.at("/echo/a")},
                    {"name": "second", "serviceUrl": backend.at("/echo/b"), "data": "$response"},
                ],
            }
        }
    }
    path = tmp_path / "traffic.jsonl"
    args = [
        "--record", str(path), "--record-max-bytes", "4096", "--record-keep", "2",
        "--record-header", "X-User", "--record-header", "X-Tenant",
        "--record-redact", "$..ssn", "--record-redact", "X-User",
    ]  # fmt: skip
    output: list[bytes] = []
    async with recording_router(spec, args, output) as url:
        for n in range(12):
            body = {"instances": [{"n": n, "ssn": "123-45-6789", "pad": "x" * 300}]}
            headers = {"X-User": "alice", "X-Tenant": "t1", "Authorization": "Bearer s3cret"}
            status, _, _ = await post_json(url, body, headers)
            assert status == 200
    files = [path.with_name("traffic.jsonl.2"), path.with_name("traffic.jsonl.1"), path]
    assert not path.with_name("traffic.jsonl.3").exists()  # --record-keep 2
    assert all(f.stat().st_size <= 4096 for f in files)
    records = [record for f in files for record in lines(f)]
    raw = b"".join(f.read_bytes() for f in files)
    assert b"123-45-6789" not in raw
    assert b"alice" not in raw
    assert b"s3cret" not in raw
    # Rotation kept the newest records, in order, with none lost between the files kept.
    numbers = [r["request"]["body"]["instances"][0]["n"] for r in records]
    assert numbers == list(range(12 - len(numbers), 12))
    assert len(numbers) < 12  # some were rotated away
    record = records[-1]
    assert record["graphHash"] == spec_digest(validate_graph(spec).spec)
    assert record["request"]["headers"] == {"X-User": "[REDACTED]", "X-Tenant": "t1"}
    sent = {"instances": [{"n": 11, "ssn": "[REDACTED]", "pad": "x" * 300}]}
    assert record["request"]["body"] == sent
    first, second = record["steps"]
    assert (first["node"], first["step"], first["target"]) == (
        "root",
        "first",
        backend.at("/echo/a"),
    )
    assert first["input"] == sent
    assert first["answer"] == {"model": "a", "received": sent}
    assert (first["status"], first["attempts"]) == (200, 1)
    assert second["input"] == {"model": "a", "received": sent}
    assert record["response"]["status"] == 200
    assert record["response"]["body"] == {"model": "b", "received": first["answer"]}
    assert record["response"]["durationMs"] >= second["startMs"] + second["durationMs"] > 0


async def test_a_full_disk_stops_the_recorder_once_and_every_answer_still_comes(
    backend: Backend,
) -> None:
    spec = {"nodes": {"root": {"routerType": "Sequence", "steps": [
        {"serviceUrl": backend.at("/echo/a")}]}}}  # fmt: skip
    output: list[bytes] = []
    async with recording_router(spec, ["--record", "/dev/full"], output) as url:
        for n in range(5):
            status, body, _ = await post_json(url, {"instances": [n]})
            assert (status, body["model"]) == (200, "a")
        for _ in range(200):  # the writer thread reports in the background; bounded wait
            text = await metrics_text(url)
            if 'infergraph_recording_dropped_total{graph="graph",reason="stopped"} 5.0' in text:
                break
            await asyncio.sleep(0.05)
    assert 'infergraph_recording_dropped_total{graph="graph",reason="stopped"} 5.0' in text
    assert 'infergraph_recorded_requests_total{graph="graph"} 0.0' in text
    stopped = [
        orjson.loads(line) for line in output[0].splitlines() if b"recording stopped" in line
    ]
    assert len(stopped) == 1
    assert "No space left on device" in stopped[0]["msg"]
    assert stopped[0]["level"] == "ERROR"


async def test_recording_flags_that_cannot_work_are_refused_at_start() -> None:
    spec = orjson.dumps({"nodes": {"root": {"routerType": "Sequence", "steps": [
        {"serviceUrl": "http://127.0.0.1:9/"}]}}}).decode()  # fmt: skip
    cases = {
        ("--record-sample", "0.5"): "--record-sample without --record: nothing is recorded",
        ("--record", "x.jsonl", "--record-sample", "0"): "--record-sample must be in (0, 1], got 0",
        ("--record", "x.jsonl", "--record-redact", "$[["): "--record-redact '$[[': not a JSON path",
        (
            "--record",
            "x.jsonl",
            "--record-redact",
            "X-Key",
        ): "--record-redact x-key: not a recorded",
        ("--record", "x.jsonl", "--workers", "2"): "--record with --workers 2",
    }
    for args, message in cases.items():
        result = await asyncio.to_thread(
            subprocess.run,
            [sys.executable, "-m", "router", "--graph-json", spec, *args],
            capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        assert result.returncode == 1, args
        assert message in result.stderr, (args, result.stderr)


# --- replay ---------------------------------------------------------------------------------


def pets_graph(backend: Backend, dog: str, cat_url: str) -> dict[str, Any]:
    """A Switch by kind; dogs go to a 50/50 Splitter, cats to one classifier."""
    return {
        "apiVersion": "serving.kserve.io/v1alpha1",
        "kind": "InferenceGraph",
        "metadata": {"name": "pets"},
        "spec": {
            "nodes": {
                "root": {
                    "routerType": "Switch",
                    "steps": [
                        {"name": "dog", "nodeName": "dogs", "condition": dog},
                        {"name": "cat", "serviceUrl": cat_url,
                         "condition": 'instances.#(kind=="cat")'},
                    ],
                },
                "dogs": {
                    "routerType": "Splitter",
                    "steps": [
                        {"name": "v1", "serviceUrl": backend.at("/classify/dog"), "weight": 50},
                        {"name": "v2", "serviceUrl": backend.at("/echo/dog-v2"), "weight": 50},
                    ],
                },
            }
        },
    }  # fmt: skip


DOG = 'instances.#(kind=="dog")'
REQUESTS = [{"instances": [{"kind": kind, "n": n}]} for n, kind in enumerate(
    ["dog", "cat", "dog", "dog", "cat", "dog", "dog", "cat", "dog", "dog"])]  # fmt: skip


@pytest.fixture
async def recorded(backend: Backend, tmp_path: Path) -> Path:
    path = tmp_path / "pets.jsonl"
    graph = pets_graph(backend, DOG, backend.at("/classify/cat"))
    output: list[bytes] = []
    async with recording_router(graph["spec"], ["--record", str(path)], output) as url:
        for body in REQUESTS:
            assert (await post_json(url, body))[0] == 200
    assert len(lines(path)) == len(REQUESTS)
    return path


def write_graph(tmp_path: Path, name: str, graph: dict[str, Any]) -> Path:
    path = tmp_path / name
    path.write_text(yaml.safe_dump(graph))
    return path


async def test_replay_against_the_same_graph_reports_no_difference(
    backend: Backend, recorded: Path, tmp_path: Path
) -> None:
    same = write_graph(tmp_path, "same.yaml", pets_graph(backend, DOG, backend.at("/classify/cat")))
    routes = {
        r["decisions"][-1]["step"] for r in lines(recorded) if r["steps"][0]["node"] == "dogs"
    }
    assert routes == {"v1", "v2"}  # both dog routes were drawn: replaying draws is tested
    calls = len(backend.calls)
    result = await asyncio.to_thread(replay_command, recorded, "--graph", same, "--json")
    assert result.returncode == 0, result.stdout + result.stderr
    report = orjson.loads(result.stdout)
    assert report["summary"]["requests"] == len(REQUESTS)
    assert report["summary"]["differing"] == 0
    assert report["recordedGraphs"] == {report["graphHash"]: len(REQUESTS)}
    assert len(backend.calls) == calls  # offline: no model was called


async def test_replay_against_a_changed_condition_reports_exactly_the_rerouted_requests(
    backend: Backend, recorded: Path, tmp_path: Path
) -> None:
    # Dogs no longer match: each dog request now finds no route (404), cats are unchanged.
    changed = pets_graph(backend, 'instances.#(kind=="wolf")', backend.at("/classify/cat"))
    candidate = write_graph(tmp_path, "changed.yaml", changed)
    html = tmp_path / "report.html"
    result = await asyncio.to_thread(
        replay_command, recorded, "--graph", candidate, "--json", "--html", html
    )
    assert result.returncode == 1, result.stdout + result.stderr
    report = orjson.loads(result.stdout)
    records = lines(recorded)
    dogs = [r["id"] for r in records if r["request"]["body"]["instances"][0]["kind"] == "dog"]
    differing = {r["id"]: r for r in report["requests"] if r["differs"]}
    assert set(differing) == set(dogs)
    for record in records:
        if record["id"] not in differing:
            continue
        entry = differing[record["id"]]
        drawn = record["decisions"][-1]
        assert entry["status"] == {"recorded": 200, "candidate": 404}
        assert entry["decisions"] == [
            {"node": "dogs", "decision": "route",
             "recorded": [f"{drawn['step']} drawn at {drawn['point']}"], "candidate": []},
            {"node": "root", "decision": "condition",
             "recorded": ["dog held"], "candidate": ["dog failed", "cat failed"]},
        ]  # fmt: skip
        target = backend.at("/classify/dog" if drawn["step"] == "v1" else "/echo/dog-v2")
        assert entry["stepsRemoved"] == [f"dogs.{drawn['step']} ({target})"]
        assert entry["stepsAdded"] == []
        assert entry["errors"] == []
    summary = report["summary"]
    assert summary["byRoute"]["root:cat"] == {"requests": 3, "agreeing": 3}
    assert sum(v["agreeing"] for k, v in summary["byRoute"].items() if "dog" in k) == 0
    page = html.read_text()
    assert "Replay: 7 of 10 requests differ (offline)" in page
    assert "<svg" in page


async def test_live_replay_against_a_changed_model_reports_exactly_its_answers(
    backend: Backend, recorded: Path, tmp_path: Path
) -> None:
    # The cat model moves to a URL answering "lynx": only cat requests change, and only there.
    changed = pets_graph(backend, DOG, backend.at("/classify/lynx"))
    candidate = write_graph(tmp_path, "lynx.yaml", changed)
    result = await asyncio.to_thread(
        replay_command, recorded, "--graph", candidate, "--live", "--json"
    )
    assert result.returncode == 1, result.stdout + result.stderr
    report = orjson.loads(result.stdout)
    records = {r["id"]: r for r in lines(recorded)}
    differing = [r for r in report["requests"] if r["differs"]]
    assert [records[r["id"]]["request"]["body"]["instances"][0]["kind"] for r in differing] == [
        "cat"
    ] * 3
    for entry in differing:
        assert entry["answer"] == [
            {"path": "$.predictions[0].label", "change": "value",
             "expected": "cat", "actual": "lynx"}
        ]  # fmt: skip
        assert entry["decisions"] == []
        assert entry["stepsAdded"] == [f"root.cat ({backend.at('/classify/lynx')})"]
        assert entry["stepsRemoved"] == [f"root.cat ({backend.at('/classify/cat')})"]
        assert entry["status"] == {"recorded": 200, "candidate": 200}
    assert all("latencyMs" in r for r in report["requests"])
    assert set(report["summary"]["latencyMs"]) == {"recorded", "candidate", "delta"}
    served = [c["path"] for c in backend.calls[-len(REQUESTS) :]]
    assert served.count("/classify/lynx") == 3  # live: the models really answered


async def test_offline_replay_of_a_call_the_recording_never_saw_is_an_error_of_that_request(
    backend: Backend, recorded: Path, tmp_path: Path
) -> None:
    changed = pets_graph(backend, DOG, backend.at("/classify/lynx"))
    candidate = write_graph(tmp_path, "lynx.yaml", changed)
    result = await asyncio.to_thread(replay_command, recorded, "--graph", candidate)
    assert result.returncode == 1
    lynx = backend.at("/classify/lynx")
    assert (
        f"  error: node 'root' step 'cat' called {lynx}: not in the recording "
        "(its target was never called)"
    ) in result.stdout
    assert "3 of 10 requests differ: 3 in status, 0 in answer, 0 in decisions, 3 with errors" in (
        result.stdout
    )


def test_replay_names_an_unreadable_recording(tmp_path: Path) -> None:
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"id": "x"}\n')
    graph = tmp_path / "g.yaml"
    graph.write_text(yaml.safe_dump({"nodes": {"root": {"routerType": "Sequence", "steps": [
        {"serviceUrl": "http://127.0.0.1:9/"}]}}}))  # fmt: skip
    result = replay_command(bad, "--graph", graph)
    assert result.returncode == 2
    assert f"infergraph replay: {bad}:1: not a recording line: field 'request'" in result.stderr


# --- shadow comparison -----------------------------------------------------------------------


@pytest.fixture
async def drifting() -> AsyncIterator[str]:
    """Two models: /live answers the request's `x`; /shadow adds the request's `drift`."""

    async def live(request: web.Request) -> web.Response:
        body = await request.json()
        return web.json_response({"predictions": [body["x"]]})

    async def shadow(request: web.Request) -> web.Response:
        body = await request.json()
        return web.json_response({"predictions": [body["x"] + body["drift"]]})

    app = web.Application()
    app.router.add_post("/live", live)
    app.router.add_post("/shadow", shadow)
    async with serving(app) as url:
        yield url


async def test_shadow_disagreements_are_counted_exactly_and_logged_sampled(
    drifting: str, graph_server: Any, caplog: pytest.LogCaptureFixture
) -> None:
    from router.jsondiff import Tolerance

    spec = {"nodes": {"root": {"routerType": "Splitter", "steps": [
        {"name": "live", "serviceUrl": f"{drifting}/live", "weight": 100},
        {"name": "next", "serviceUrl": f"{drifting}/shadow", "shadow": True},
        {"name": "gone", "serviceUrl": f"http://{LOOPBACK}:9/", "shadow": True},
    ]}}}  # fmt: skip
    drifts = [0.0] * 6 + [0.05, 0.5, 0.5, 3.0]  # within 0.1: 7 agree; beyond: 3 disagree
    caplog.set_level(logging.WARNING, logger="router.shadow")
    async with graph_server(
        spec, shadow_tolerance=Tolerance(absolute=0.1), shadow_log_every=2
    ) as url:
        for x, drift in enumerate(drifts):
            status, body, _ = await post_json(url, {"x": x, "drift": drift})
            assert (status, body) == (200, {"predictions": [x]})
        for _ in range(200):  # comparisons run in the background; bounded wait
            text = await metrics_text(url)
            done = text.count('result="agree"} 7.0') + text.count('result="disagree"} 3.0')
            if done == 2 and 'result="shadow_error"} 10.0' in text:
                break
            await asyncio.sleep(0.05)
    series = 'infergraph_shadow_comparisons_total{graph="graph",node="root",'
    assert f'{series}result="agree",step="next"}} 7.0' in text
    assert f'{series}result="disagree",step="next"}} 3.0' in text
    assert f'{series}result="shadow_error",step="gone"}} 10.0' in text
    ratio = 'infergraph_shadow_agreement_ratio{graph="graph",node="root",step="next"} 0.7'
    assert ratio in text
    deviation = (
        'infergraph_shadow_deviation_bucket{{graph="graph",le="{}",node="root",step="next"}}'
    )
    assert f"{deviation.format('0.0')} 6.0" in text  # exact agreement
    assert f"{deviation.format('0.1')} 7.0" in text  # 0.05: within the tolerance, yet measured
    assert f"{deviation.format('1.0')} 9.0" in text
    assert f"{deviation.format('10.0')} 10.0" in text
    logged = [r.getMessage() for r in caplog.records if r.name == "router.shadow"]
    # Disagreements 1 and 3 of 3, with a log every 2 (which request's came first is up to
    # the background tasks).
    assert [m.split(": ", 1)[0] for m in logged] == [
        f"shadow node 'root' step 'next' disagrees with the live answer (disagreement {n})"
        for n in (1, 3)
    ]
    possible = {f"$.predictions[0] value: {x} live, {x + d} shadow" for x, d in
                ((7, 0.5), (8, 0.5), (9, 3.0))}  # fmt: skip
    assert all(m.split(": ", 1)[1] in possible for m in logged)


def test_the_infergraph_command_is_installed() -> None:
    assert os.access(INFERGRAPH, os.X_OK)


# --- the README's report ----------------------------------------------------------------------

README = Path(__file__).parents[2] / "README.md"


def test_the_readme_shows_the_report_the_command_prints() -> None:
    text = README.read_text()
    marker = "<!-- replay-report: "
    start = text.index(marker) + len(marker)
    command = text[start : text.index(" -->", start)]
    block = text.index("```text\n", start) + len("```text\n")
    shown = text[block : text.index("```\n", block)]
    words = command.split()
    assert words[:2] == ["infergraph", "replay"]
    result = replay_command(*words[2:])
    assert result.returncode == 1, result.stderr
    assert result.stdout == shown
