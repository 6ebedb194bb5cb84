"""Soak the router: steady load for minutes, 1% backend faults, every request answered, flat RSS.

    python load/soak.py [--minutes 10] [--rate 250] [--concurrency 64] [--out load/results]
    make soak

Starts the scripted backends (a child process: aiohttp on 127.0.0.1) and `python -m router`
(a child process, as in production) with a graph of a Sequence, a Switch, a Splitter and an
Ensemble, then sends `--rate` requests per second with at most `--concurrency` in flight for
`--minutes`. The backends inject faults into 1% of step calls, spread over three kinds: a 503,
a connection reset mid-request, and an answer slower than the step timeout. Every request
must get an HTTP response (error statuses included); a request that gets none (reset, refused,
client timeout) is "lost". The router's RSS is read from /proc every few seconds.

Writes load/results/soak-<date>.json and .md; exits 1 if any request was lost or RSS after
warm-up grew by more than 10%.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import random
import signal
import socket
import sys
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web

REPO = Path(__file__).resolve().parents[1]
LOOPBACK = "127.0.0.1"
FAULT_RATE = 0.01  # the 1% of backend calls
FAULT_KINDS = ("503", "reset", "slow")
STEP_TIMEOUT = 1  # routerTimeouts.serviceClient: the "slow" fault sleeps past it
SLOW_SECONDS = 1.5
RSS_EVERY = 5.0  # seconds between RSS samples: enough points, negligible cost
RSS_GROWTH_LIMIT = 0.10  # the "RSS flat within 10%"
CLIENT_TIMEOUT = 30.0  # far beyond any answer the graph can give: hitting it means lost


# --- pure: graph, verdict, report ------------------------------------------------------------


def soak_graph(backend: str) -> dict[str, Any]:
    def svc(model: str, **more: Any) -> dict[str, Any]:
        return {"serviceUrl": f"{backend}/{model}", **more}

    return {
        "nodes": {
            "root": {
                "routerType": "Sequence",
                "steps": [
                    svc("classify", name="classify"),
                    {"nodeName": "route", "data": "$request"},
                ],
            },
            "route": {
                "routerType": "Switch",
                "steps": [
                    {"nodeName": "canary", "condition": "instances"},
                    {"nodeName": "vote", "condition": "inputs"},
                ],
            },
            "canary": {
                "routerType": "Splitter",
                "steps": [svc("v1", weight=90), svc("v2", weight=10)],
            },
            "vote": {"routerType": "Ensemble", "steps": [svc("a"), svc("b")]},
        },
        "routerTimeouts": {"serviceClient": STEP_TIMEOUT},
    }


@dataclass
class Tally:
    sent: int = 0
    statuses: Counter[str] = field(default_factory=Counter)
    lost: Counter[str] = field(default_factory=Counter)  # no HTTP response, by exception

    @property
    def answered(self) -> int:
        return sum(self.statuses.values())


@dataclass(frozen=True)
class RssSample:
    seconds: float
    kib: int


def rss_verdict(samples: list[RssSample], warm_up: float) -> dict[str, Any]:
    """RSS at the first sample after warm-up vs the last; flat when growth <= 10%."""
    settled = [s for s in samples if s.seconds >= warm_up] or samples
    start, end = settled[0].kib, settled[-1].kib
    growth = (end - start) / start if start else 0.0
    return {
        "first_kib": samples[0].kib,
        "start_kib": start,
        "end_kib": end,
        "max_kib": max(s.kib for s in samples),
        "growth": round(growth, 4),
        "flat": growth <= RSS_GROWTH_LIMIT,
    }


def render_markdown(report: dict[str, Any]) -> str:
    rss, env = report["rss"], report["environment"]
    statuses = ", ".join(f"{k}: {v}" for k, v in sorted(report["statuses"].items()))
    lost = ", ".join(f"{k}: {v}" for k, v in sorted(report["lost_by_error"].items())) or "none"
    return f"""# Router soak, {report["started"]}

Verdict: **{"PASS" if report["passed"] else "FAIL"}** (requests without a response must be 0;
RSS after {report["warm_up_seconds"]:g} s of warm-up must grow by at most 10%).

| | |
|---|---|
| duration | {report["seconds"]:.0f} s at {report["rate"]} req/s offered, at most {report["concurrency"]} in flight |
| requests sent | {report["sent"]} ({report["achieved_rate"]:.1f} req/s achieved) |
| responses | {report["answered"]} ({statuses}) |
| requests without a response | {report["lost"]} ({lost}) |
| backend calls / faults injected | {report["backend"]["calls"]} / {report["backend"]["faults"]} ({report["backend"]["by_kind"]}) |
| router RSS at start (after warm-up) | {rss["start_kib"] / 1024:.1f} MiB (at launch: {rss["first_kib"] / 1024:.1f} MiB) |
| router RSS at end | {rss["end_kib"] / 1024:.1f} MiB (max {rss["max_kib"] / 1024:.1f} MiB, growth {rss["growth"]:+.1%}) |
| router exit status / error log lines | {report["router_exit"]} / {report["router_error_lines"]} |

Environment: Python {env["python"]}, aiohttp {env["aiohttp"]}, {env["cpus"]} CPUs
({env["machine"]}), load generator, backends and router on one machine over 127.0.0.1.
Faults: {FAULT_RATE:.0%} of backend calls, one of {", ".join(FAULT_KINDS)} in turn
(slow = {SLOW_SECONDS:g} s against a {STEP_TIMEOUT:g} s step timeout).
Command: `{report["command"]}`
"""  # noqa: E501 - a Markdown table row is one line


# --- backends (a child process) --------------------------------------------------------------


async def run_backends(port: int, seed: int) -> None:
    rng = random.Random(seed)
    stats: Counter[str] = Counter()
    turn = 0

    async def handle(request: web.Request) -> web.StreamResponse:
        nonlocal turn
        await request.read()
        stats["calls"] += 1
        if rng.random() < FAULT_RATE:
            kind = FAULT_KINDS[turn % len(FAULT_KINDS)]
            turn += 1
            stats[kind] += 1
            if kind == "503":
                return web.json_response({"error": "injected"}, status=503)
            if kind == "reset":
                assert request.transport is not None
                request.transport.abort()  # RST: the router sees the connection die
                return web.Response()
            await asyncio.sleep(SLOW_SECONDS)
        model = request.match_info["model"]
        if model == "classify":
            return web.json_response({"predictions": [{"label": "dog"}]})
        return web.json_response({"model": model, "predictions": [1, 0]})

    async def report(request: web.Request) -> web.Response:
        return web.json_response(dict(stats))

    app = web.Application()
    app.router.add_get("/stats", report)
    app.router.add_post("/{model}", handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, LOOPBACK, port).start()
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    await stop.wait()
    await runner.cleanup()


# --- the soak ---------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind((LOOPBACK, 0))
        port: int = s.getsockname()[1]
        return port


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for pid {pid}")


async def wait_ready(
    url: str, process: asyncio.subprocess.Process | None = None, log: Path | None = None
) -> None:
    seconds = 30.0  # cold imports on a busy 2-core machine take a few seconds
    deadline = time.monotonic() + seconds
    async with aiohttp.ClientSession() as session:
        while time.monotonic() < deadline:
            if process is not None and process.returncode is not None:
                raise RuntimeError(f"{url}: exited {process.returncode}, see {log}")
            with contextlib.suppress(aiohttp.ClientError):
                async with session.get(url) as response:
                    if response.status == 200:
                        return
            await asyncio.sleep(0.1)
    raise RuntimeError(f"{url} not ready within {seconds:g}s")


async def generate_load(
    url: str, rate: float, concurrency: int, seconds: float, tally: Tally
) -> None:
    """Open loop at `rate`, never more than `concurrency` in flight (then it waits a slot)."""
    bodies = [b'{"instances": [[1.0, 2.0]]}', b'{"inputs": [{"name": "x", "data": [1]}]}']
    slots = asyncio.Semaphore(concurrency)
    connector = aiohttp.TCPConnector(limit=concurrency)
    timeout = aiohttp.ClientTimeout(total=CLIENT_TIMEOUT)
    tasks: set[asyncio.Task[None]] = set()

    async def one(session: aiohttp.ClientSession, body: bytes) -> None:
        try:
            async with session.post(
                url, data=body, headers={"Content-Type": "application/json"}
            ) as r:
                await r.read()
                tally.statuses[str(r.status)] += 1
        except (aiohttp.ClientError, TimeoutError) as error:
            tally.lost[type(error).__name__] += 1
        finally:
            slots.release()

    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        started = time.monotonic()
        while (now := time.monotonic()) - started < seconds:
            due = int((now - started) * rate) - tally.sent
            for _ in range(due):
                await slots.acquire()
                tally.sent += 1
                task = asyncio.create_task(one(session, bodies[tally.sent % 2]))
                tasks.add(task)
                task.add_done_callback(tasks.discard)
            await asyncio.sleep(0.005)
        await asyncio.gather(*tasks)


async def sample_rss(
    pid: int, started: float, samples: list[RssSample], stop: asyncio.Event
) -> None:
    while not stop.is_set():
        samples.append(RssSample(round(time.monotonic() - started, 1), rss_kib(pid)))
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), RSS_EVERY)


async def soak(args: argparse.Namespace) -> dict[str, Any]:
    backend_port, router_port = free_port(), free_port()
    backend_url = f"http://{LOOPBACK}:{backend_port}"
    router_url = f"http://{LOOPBACK}:{router_port}"
    args.out.mkdir(parents=True, exist_ok=True)
    router_log = args.out / ".soak-router.log"
    backends = await asyncio.create_subprocess_exec(
        sys.executable, __file__, "--serve-backends", str(backend_port), cwd=REPO
    )
    with router_log.open("wb") as log:
        router = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "router", "--graph-json", json.dumps(soak_graph(backend_url)),
            "--host", LOOPBACK, "--port", str(router_port), "--drain-seconds", "0",
            cwd=REPO, stdout=asyncio.subprocess.DEVNULL, stderr=log,
        )  # fmt: skip
    began = datetime.now(UTC)
    tally, samples, stop = Tally(), list[RssSample](), asyncio.Event()
    seconds = args.minutes * 60
    try:
        await wait_ready(f"{backend_url}/stats")
        await wait_ready(f"{router_url}/readyz", router, router_log)
        started = time.monotonic()
        sampler = asyncio.create_task(sample_rss(router.pid, started, samples, stop))
        await generate_load(router_url + "/", args.rate, args.concurrency, seconds, tally)
        elapsed = time.monotonic() - started
        stop.set()
        await sampler
        async with aiohttp.ClientSession() as session, session.get(f"{backend_url}/stats") as r:
            backend_stats = await r.json()
    finally:
        for process in (router, backends):
            if process.returncode is None:
                process.terminate()
        router_exit = await asyncio.wait_for(router.wait(), 90)
        await asyncio.wait_for(backends.wait(), 30)
    error_lines = [
        line for line in router_log.read_text().splitlines() if '"level":"INFO"' not in line
    ]
    router_log.unlink()
    warm_up = min(60.0, seconds / 5)  # imports, pools and caches fill in the first minute
    rss = rss_verdict(samples, warm_up)
    lost = tally.sent - tally.answered  # every request was awaited: answered or failed
    faults = {k: v for k, v in backend_stats.items() if k != "calls"}
    return {
        "started": began.strftime("%Y-%m-%d %H:%M UTC"),
        "command": " ".join(["python", "load/soak.py", *sys.argv[1:]]),
        "seconds": round(elapsed, 1),
        "rate": args.rate,
        "concurrency": args.concurrency,
        "sent": tally.sent,
        "achieved_rate": round(tally.sent / elapsed, 1),
        "answered": tally.answered,
        "statuses": dict(tally.statuses),
        "lost": lost,
        "lost_by_error": dict(tally.lost),
        "backend": {
            "calls": backend_stats["calls"],
            "faults": sum(faults.values()),
            "by_kind": faults,
        },
        "warm_up_seconds": warm_up,
        "rss": rss,
        "rss_samples": [asdict(s) for s in samples],
        "router_exit": router_exit,
        "router_error_lines": len(error_lines),
        "router_error_examples": error_lines[:5],
        "environment": {
            "python": platform.python_version(),
            "aiohttp": aiohttp.__version__,
            "cpus": os.cpu_count(),
            "machine": platform.machine(),
        },
        "passed": lost == 0 and rss["flat"] and router_exit == 0,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--rate", type=float, default=250.0, help="requests per second offered")
    parser.add_argument("--concurrency", type=int, default=64, help="most requests in flight")
    parser.add_argument("--out", type=Path, default=REPO / "load" / "results")
    parser.add_argument("--serve-backends", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve_backends:
        asyncio.run(run_backends(args.serve_backends, seed=7))
        return 0
    report = asyncio.run(soak(args))
    stem = args.out / f"soak-{report['started'][:10]}"
    stem.with_suffix(".json").write_text(json.dumps(report, indent=2) + "\n")
    stem.with_suffix(".md").write_text(render_markdown(report))
    print(render_markdown(report))
    return 0 if report["passed"] else 1


if __name__ == "__main__":
    sys.exit(main())
