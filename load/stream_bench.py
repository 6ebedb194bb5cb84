"""The streaming rows of `make bench`: many concurrent SSE streams through the router vs direct.

    python -m load.stream_bench [--quick]

A streaming model stand-in (load/sse_backend.py) sends N events of ~100 bytes, a fixed gap
apart, as a model emits tokens. The client (this module run as `client`, an aiohttp process)
opens C streams at once, again and again, and times each: time to the first event, and the
mean gap between later events. The same load runs straight to the backend and through the
router (a one-step Sequence whose step streams). The backend and the client run on the
load-generator core, the router on the server core, as in the other rows.

Reported per concurrency: p50/p90/p99 time to first byte, the mean time between events, each
direct and through the router, and their differences (the router's added time to first byte and
per event); the router's CPU seconds per 1,000 streams (from /proc); and the router's RSS with
1,000 streams open at once (each holding until its last event), beside its RSS idle.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from load import procstat, servers

CONCURRENCY = (1, 64)
# Streams per point are set by `rounds_for`.
EVENTS = 20  # per stream: a short answer's tokens
GAP_MS = 10.0  # between events: ~100 tokens/s, a fast model's pace
OPEN_STREAMS = 1000  # held open at once for the RSS figure
HOLD_EVENTS, HOLD_GAP_MS = 3, 2000.0  # so every one of them is open when RSS is read
CLIENT_SECONDS = 600  # bound on one client run: a stuck stream must not hang the bench


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def _stream(session: Any, url: str) -> tuple[float, float, int]:
    """One stream: (seconds to the first event, mean seconds between later events, events)."""
    started = time.perf_counter()
    first = last = 0.0
    events = 0
    async with session.post(url, data=b"{}") as response:
        async for _ in response.content:  # SSE lines; an event ends with a blank line
            if _ == b"\n":
                now = time.perf_counter()
                if events == 0:
                    first = now
                last = now
                events += 1
    gap = (last - first) / (events - 1) if events > 1 else 0.0
    return first - started, gap, events


async def client(url: str, concurrency: int, rounds: int, hold: bool) -> dict[str, Any]:
    import aiohttp

    connector = aiohttp.TCPConnector(limit=0)
    timeout = aiohttp.ClientTimeout(total=CLIENT_SECONDS)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        if hold:
            # Open them all, say so once each has its first event (the bench reads RSS then),
            # and let them run to their end.
            firsts = 0
            all_open = asyncio.Event()

            async def held() -> None:
                nonlocal firsts
                async with session.post(url, data=b"{}") as response:
                    await response.content.readuntil(b"\n\n")
                    firsts += 1
                    if firsts == concurrency:
                        all_open.set()
                    await response.read()

            tasks = [asyncio.ensure_future(held()) for _ in range(concurrency)]
            await all_open.wait()
            print("open", flush=True)
            await asyncio.gather(*tasks)
            return {"open": concurrency}
        ttfb: list[float] = []
        gaps: list[float] = []
        events: list[int] = []
        # Warm-up: the connections (client to server, router to backend) open here, unmeasured.
        await asyncio.gather(*(_stream(session, url) for _ in range(concurrency)))
        for _ in range(rounds):
            for first, gap, count in await asyncio.gather(
                *(_stream(session, url) for _ in range(concurrency))
            ):
                ttfb.append(first)
                gaps.append(gap)
                events.append(count)
    return {
        "streams": len(ttfb),
        "events_per_stream": statistics.median(events),
        "ttfb_us": {
            q: _percentile(ttfb, p) * 1e6 for q, p in (("p50", 0.5), ("p90", 0.9), ("p99", 0.99))
        },
        "gap_us_mean": statistics.fmean(gaps) * 1e6,
    }


def _run_client(url: str, concurrency: int, rounds: int, core: str) -> dict[str, Any]:
    cmd = ["taskset", "-c", core, sys.executable, "-m", "load.stream_bench", "client", url]
    cmd += [str(concurrency), str(rounds)]
    done = subprocess.run(
        cmd, capture_output=True, text=True, cwd=servers.REPO, timeout=CLIENT_SECONDS, check=True
    )
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def _held_rss(router: servers.Server, url: str, core: str) -> dict[str, float]:
    pids = procstat.tree(router.proc.pid)
    idle = procstat.rss_mb(pids)
    cmd = ["taskset", "-c", core, sys.executable, "-m", "load.stream_bench", "client", url]
    cmd += [str(OPEN_STREAMS), "1", "--hold"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True, cwd=servers.REPO)
    assert proc.stdout is not None
    line = proc.stdout.readline().strip()
    if line != "open":
        proc.kill()
        raise RuntimeError(f"the {OPEN_STREAMS}-stream client did not get them all open: {line!r}")
    held = procstat.rss_mb(procstat.tree(router.proc.pid))
    proc.wait(CLIENT_SECONDS)
    return {"idle_rss_mb": idle, "rss_mb_open": held, "open_streams": OPEN_STREAMS}


def rounds_for(concurrency: int, quick: bool) -> int:
    """Rounds of `concurrency` streams: at least STREAMS_PER_POINT streams (so the router's CPU,
    read in 10 ms ticks, is many ticks) and at least MIN_ROUNDS rounds."""
    streams, least = (20, 2) if quick else (100, 10)
    return max(least, -(-streams // concurrency))


def run(quick: bool, loadgen_core: str, server_core: str) -> dict[str, Any]:
    """The streaming rows; `quick`: about a fifth of the streams."""
    backend_port = servers.free_port()
    backend = servers._spawn(
        "sse-backend",
        backend_port,
        [sys.executable, "-m", "load.sse_backend", str(backend_port)],
        loadgen_core,
        cwd=servers.REPO,
    )
    direct = f"http://127.0.0.1:{backend_port}/sse/{EVENTS}/{GAP_MS:g}"
    spec = {"nodes": {"root": {"routerType": "Sequence", "steps": [{"serviceUrl": direct}]}}}
    router = servers.router(spec, server_core)
    held_direct = f"http://127.0.0.1:{backend_port}/sse/{HOLD_EVENTS}/{HOLD_GAP_MS:g}"
    held_spec = {
        "nodes": {"root": {"routerType": "Sequence", "steps": [{"serviceUrl": held_direct}]}}
    }
    report: dict[str, Any] = {
        "events": EVENTS,
        "gap_ms": GAP_MS,
        "quick": quick,
        "loadavg_at_start": Path("/proc/loadavg").read_text().split()[:3],
        "points": {},
    }
    try:
        for concurrency in CONCURRENCY:
            rounds = rounds_for(concurrency, quick)
            straight = _run_client(direct, concurrency, rounds, loadgen_core)
            pids = procstat.tree(router.proc.pid)
            cpu = procstat.cpu_seconds(pids)
            routed = _run_client(router.url("/"), concurrency, rounds, loadgen_core)
            cpu = procstat.cpu_seconds(pids) - cpu
            report["points"][str(concurrency)] = {
                "direct": straight,
                "router": routed,
                "added_ttfb_us_p50": routed["ttfb_us"]["p50"] - straight["ttfb_us"]["p50"],
                "added_us_per_event": routed["gap_us_mean"] - straight["gap_us_mean"],
                "router_cpu_s_per_1k_streams": cpu / routed["streams"] * 1000,
            }
    finally:
        router.stop()
    held_router = servers.router(held_spec, server_core)
    try:
        report["held"] = _held_rss(held_router, held_router.url("/"), loadgen_core)
    finally:
        held_router.stop()
        backend.stop()
    report["loadavg_at_end"] = Path("/proc/loadavg").read_text().split()[:3]
    return report


def table(report: dict[str, Any]) -> str:
    lines = [
        "",
        f"Streaming (SSE): {report['events']} events of ~100 bytes, {report['gap_ms']:g} ms apart, "
        f"per stream; c streams at once, after one unmeasured round"
        f"{' (--quick)' if report['quick'] else ''}. Load average "
        f"{' '.join(report['loadavg_at_start'])} at the start, "
        f"{' '.join(report['loadavg_at_end'])} at the end.",
        "",
        "| c | TTFB p50 µs direct | router | added | TTFB p99 µs direct | router "
        "| µs between events direct | router | added per event | streams "
        "| router CPU s/1k streams |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for c, point in report["points"].items():
        d, r = point["direct"], point["router"]
        lines.append(
            f"| {c} | {d['ttfb_us']['p50']:.0f} | {r['ttfb_us']['p50']:.0f} "
            f"| {point['added_ttfb_us_p50']:.0f} | {d['ttfb_us']['p99']:.0f} "
            f"| {r['ttfb_us']['p99']:.0f} | {d['gap_us_mean']:.0f} | {r['gap_us_mean']:.0f} "
            f"| {point['added_us_per_event']:.0f} | {r['streams']} "
            f"| {point['router_cpu_s_per_1k_streams']:.2f} |"
        )
    held = report["held"]
    lines += [
        "",
        f"Router RSS with {held['open_streams']} streams open at once: "
        f"{held['rss_mb_open']:.1f} MB (idle before: {held['idle_rss_mb']:.1f} MB).",
        "",
    ]
    return "\n".join(lines)


def main() -> int:
    if len(sys.argv) > 1 and sys.argv[1] == "client":
        p = argparse.ArgumentParser()
        p.add_argument("mode")
        p.add_argument("url")
        p.add_argument("concurrency", type=int)
        p.add_argument("rounds", type=int)
        p.add_argument("--hold", action="store_true")
        a = p.parse_args()
        result = asyncio.run(client(a.url, a.concurrency, a.rounds, a.hold))
        print(json.dumps(result), flush=True)
        return 0
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="2 rounds per point instead of 10")
    p.add_argument("--name", default="stream-latest", help="results file stem")
    args = p.parse_args()
    from load.bench import LOADGEN_CORE, RESULTS, SERVER_CORE

    report = run(args.quick, LOADGEN_CORE, SERVER_CORE)
    (RESULTS / f"{args.name}.json").write_text(json.dumps(report, indent=1) + "\n")
    text = table(report)
    (RESULTS / f"{args.name}.md").write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
