"""`--live-page`: `GET /graph`, a page that draws the graph and its live figures, and its data.

`router.app` builds one `LivePage` per process and routes to it, behind the same token check
as every other request:

- `GET /graph`: the page (HTML); `GET /graph/live.js` and `/graph/live.css`: its script and
  style, served from this package (no CDN: the page loads nothing from elsewhere, and its
  Content-Security-Policy says so);
- `GET /graph/stats`: the figures as JSON, which the page polls: the graph's layout
  (`router.live.layout`), per node and per step the request rate, error rate and latency
  percentiles of the last `WINDOW_SECONDS`, each step's circuit breaker and route share, and
  the last `TRACES` requests with their traces (`X-InferGraph-Trace`'s events).

With `--workers N` every worker writes its snapshot to a directory the supervisor made (one
file per worker, replaced once a second), and whichever worker answers `/graph/stats` adds its
own figures to its siblings': the page shows the whole pool, and lists the workers it summed.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, Final

import orjson
from aiohttp import web

from router.graph import CompiledGraph
from router.live.layout import layout
from router.live.stats import NODE, REQUEST, ROUTE, STEP, TRACES, LiveStats, Summary, summarise
from router.resilience import Breakers, BreakerState
from schemas.graph import RouterType

PUBLISH_SECONDS: Final = 1.0  # the page polls once a second; siblings lag at most this
# A snapshot older than this comes from a worker that is gone (crashed, or being replaced).
STALE_SECONDS: Final = 3 * PUBLISH_SECONDS
# The page may load nothing but its own files and data: no CDN, no inline script.
CONTENT_SECURITY_POLICY: Final = "default-src 'self'; img-src 'self' data:"
_ASSETS: Final = {"live.js": "text/javascript", "live.css": "text/css"}
_OPENNESS: Final = {BreakerState.CLOSED: 0, BreakerState.HALF_OPEN: 1, BreakerState.OPEN: 2}
_ROUTED: Final = (RouterType.SPLITTER, RouterType.SWITCH)  # nodes whose steps share traffic

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@dataclass(slots=True)
class LivePage:
    """The page, its assets and its data for the graph `graph()` returns (it may be reloaded)."""

    stats: LiveStats
    graph: Callable[[], CompiledGraph]
    breakers: Breakers
    graph_name: str
    share_dir: Path | None = None  # --workers: where the pool's snapshots meet
    _files: dict[str, bytes] = field(default_factory=dict)
    _layout: tuple[CompiledGraph, dict[str, Any]] | None = None

    def add_routes(self, app: web.Application, guard: Callable[[Handler], Handler]) -> None:
        """Routes `GET /graph...` to the page; `guard` applies the router's token check."""
        static = resources.files("router.live") / "static"
        for name in ("live.html", *_ASSETS):
            self._files[name] = (static / name).read_bytes()
        app.router.add_get("/graph", guard(self.page))
        app.router.add_get("/graph/stats", guard(self.stats_json))
        for name in _ASSETS:
            app.router.add_get(f"/graph/{name}", guard(self.asset))
        if self.share_dir is not None:
            app.cleanup_ctx.append(self._publishing)

    async def page(self, request: web.Request) -> web.Response:
        return self._file("live.html", "text/html")

    async def asset(self, request: web.Request) -> web.Response:
        name = request.path.rsplit("/", 1)[1]
        return self._file(name, _ASSETS[name])

    def _file(self, name: str, content_type: str) -> web.Response:
        response = web.Response(body=self._files[name], content_type=content_type)
        response.headers["Content-Security-Policy"] = CONTENT_SECURITY_POLICY
        response.headers["Cache-Control"] = "no-cache"  # a new router version, a new page
        return response

    async def stats_json(self, request: web.Request) -> web.Response:
        raws = [self.raw(), *self._siblings()]
        body = orjson.dumps(self.view(raws, time.time()))
        return web.Response(body=body, content_type="application/json")

    def raw(self) -> dict[str, Any]:
        """This process's snapshot: its tallies and traces, and its breakers' states."""
        raw = self.stats.raw()
        # Breakers judge time on the executor's clock, `time.monotonic` in service.
        states = self.breakers.states(time.monotonic())
        raw["breakers"] = {target: state.value for target, state in states.items()}
        return raw

    def view(self, raws: list[dict[str, Any]], now: float) -> dict[str, Any]:
        """What the page shows: the layout and every figure, `raws` added up."""
        graph = self.graph()
        span = self.stats.window.span
        summaries = summarise(raws, now, span)
        empty = Summary(0, 0, {})

        def figures(kind: str, node: str, step: str) -> dict[str, Any]:
            return summaries.get((kind, node, step), empty).as_json(span)

        breakers: dict[str, BreakerState] = {}
        for raw in raws:
            for target, value in raw["breakers"].items():
                state = BreakerState(value)
                if _OPENNESS[state] >= _OPENNESS[breakers.get(target, BreakerState.CLOSED)]:
                    breakers[target] = state
        nodes: dict[str, Any] = {}
        for name, node in graph.nodes.items():
            routed = {
                step.key: summaries.get((ROUTE, name, step.key), empty).count for step in node.steps
            }
            total_routed = sum(routed.values())
            steps: dict[str, Any] = {}
            for step in node.steps:
                shown = figures(STEP, name, step.key) if step.url is not None else {}
                if node.kind in _ROUTED and not step.shadow:
                    shown["share"] = (
                        round(routed[step.key] / total_routed, 4) if total_routed else None
                    )
                if step.breaker is not None and step.url is not None:
                    shown["breaker"] = breakers.get(step.url, BreakerState.CLOSED).value
                steps[step.key] = shown
            nodes[name] = {**figures(NODE, name, ""), "steps": steps}
        traces = sorted(
            (trace for raw in raws for trace in raw["traces"]),
            key=lambda t: t["time"],
            reverse=True,
        )[:TRACES]
        return {
            "graph": self.graph_name,
            "windowSeconds": span,
            "time": round(now, 3),
            "workers": [
                {"pid": raw["pid"], "requests": _count(raw, now, span)}
                for raw in sorted(raws, key=lambda r: int(r["pid"]))
            ],
            "layout": self._layout_json(graph),
            "request": figures(REQUEST, "", ""),
            "nodes": nodes,
            "traces": traces,
        }

    def _layout_json(self, graph: CompiledGraph) -> dict[str, Any]:
        # Laid out once per graph object: a reload swaps the object, and so the layout.
        if self._layout is None or self._layout[0] is not graph:
            self._layout = (graph, layout(graph).as_json())
        return self._layout[1]

    # --- the pool's snapshots ------------------------------------------------------------

    def _siblings(self) -> list[dict[str, Any]]:
        if self.share_dir is None:
            return []
        fresh_since = time.time() - STALE_SECONDS
        raws = []
        for path in self.share_dir.glob("*.json"):
            if path.stem == str(self.stats.pid):
                continue  # our own figures are read live, not from a second-old file
            try:
                if path.stat().st_mtime < fresh_since:
                    continue
                raws.append(orjson.loads(path.read_bytes()))
            except (FileNotFoundError, orjson.JSONDecodeError):
                continue  # a worker removing its file as it stops
        return raws

    def publish(self) -> None:
        """Replaces this worker's snapshot file in one step (a reader never sees half)."""
        assert self.share_dir is not None
        path = self.share_dir / f"{self.stats.pid}.json"
        partial = path.with_suffix(".partial")
        partial.write_bytes(orjson.dumps(self.raw()))
        os.replace(partial, path)

    async def _publishing(self, app: web.Application) -> AsyncIterator[None]:
        async def loop() -> None:
            while True:  # for the process's life: cancelled below, when the app shuts down
                self.publish()
                await asyncio.sleep(PUBLISH_SECONDS)

        task = asyncio.ensure_future(loop())
        try:
            yield
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            assert self.share_dir is not None
            (self.share_dir / f"{self.stats.pid}.json").unlink(missing_ok=True)


def _count(raw: dict[str, Any], now: float, span: int) -> int:
    summary = summarise([raw], now, span).get((REQUEST, "", ""))
    return summary.count if summary is not None else 0
