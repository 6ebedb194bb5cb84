"""Scaling checks: validate/compile/execute time against graph size, memory per in-flight request.

Execute time runs the compiled graph in process with a step caller that answers at once, so it
is the graph machinery alone (no sockets): it must grow linearly with the node count.
"""

import asyncio
import random
import time
from collections.abc import Mapping
from typing import Any

import aiohttp

from load import graphs, procstat, servers
from router.executor import Execution
from router.graph import Step, compile_graph
from router.payload import Payload, Reply
from schemas.valid_graph import validate_graph

SIZES = (10, 100, 1000)
ANSWER = b'{"predictions":[1]}'


async def _answer(step: Step, body: bytes, headers: Mapping[str, str], seconds: float) -> Reply:
    return Reply(200, Payload(ANSWER), True)


def _best_ms(fn: Any, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        fn()
        times.append(time.perf_counter() - started)
    return min(times) * 1000


async def _execute_ms(graph: Any, repeat: int) -> float:
    """Best time of one whole-graph execution, inside one running loop."""
    times = []
    for _ in range(repeat):
        request = Payload(graphs.REQUEST_BODY)
        execution = Execution(
            _answer,
            request,
            {},
            random.Random(0),
            deadline=time.monotonic() + 60,
            service_client_timeout=60,
        )
        started = time.perf_counter()
        await execution.run_node(graph.root, request)
        times.append(time.perf_counter() - started)
    return min(times) * 1000


def graph_sizes(repeat: int) -> list[dict[str, Any]]:
    rows = []
    for size in SIZES:
        spec_doc = graphs.tree("http://127.0.0.1:9/v1/models/m:predict", size)
        spec = validate_graph(spec_doc)
        graph = compile_graph(spec)

        rows.append(
            {
                "nodes": size,
                "validate_ms": _best_ms(lambda d=spec_doc: validate_graph(d), repeat),
                "compile_ms": _best_ms(lambda s=spec: compile_graph(s), repeat),
                "execute_ms": asyncio.run(_execute_ms(graph, repeat)),
            }
        )
    small, large = rows[0], rows[-1]
    factor = large["nodes"] / small["nodes"]
    for key in ("validate_ms", "compile_ms", "execute_ms"):
        # 1.0 is exactly linear; below 1, fixed costs dominate the small graph.
        small[f"{key}_growth_vs_linear_{SIZES[-1]}"] = large[key] / small[key] / factor
    return rows


async def _hold(url: str, count: int, sample: Any) -> float:
    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(connector=connector) as session:

        async def one() -> int:
            async with session.post(url, data=graphs.REQUEST_BODY) as answer:
                await answer.read()
                return answer.status

        tasks = [asyncio.ensure_future(one()) for _ in range(count)]
        peak = 0.0
        while not all(t.done() for t in tasks):
            peak = max(peak, sample())
            await asyncio.sleep(0.05)
        statuses = await asyncio.gather(*tasks)
        if any(s != 200 for s in statuses):
            raise RuntimeError(f"in-flight check: statuses {sorted(set(statuses))}")
        return peak


def in_flight_memory(count: int, delay_ms: float) -> dict[str, Any]:
    backend = servers.delay_backend(delay_ms, "0")
    router = servers.router(graphs.one_step(backend.url()), "1")
    try:
        pids = [router.proc.pid]
        # Warm-up: imports, the first requests' allocations and a pooled connection.
        asyncio.run(_hold(router.url(), 8, lambda: 0.0))
        idle = procstat.rss_mb(pids)
        loaded = asyncio.run(_hold(router.url(), count, lambda: procstat.rss_mb(pids)))
        return {
            "requests": count,
            "delay_ms": delay_ms,
            "idle_rss_mb": idle,
            "loaded_rss_mb": loaded,
            "kb_per_request": (loaded - idle) * 1024 / count,
        }
    finally:
        router.stop()
        backend.stop()


def run(quick: bool = False) -> dict[str, Any]:
    rows = graph_sizes(repeat=3 if quick else 7)
    memory = in_flight_memory(count=500, delay_ms=1000)
    result = {"graphs": rows, "in_flight": memory}
    print(f"  scaling: {rows}\n  in flight: {memory}", flush=True)
    return result


if __name__ == "__main__":
    run(quick=True)
