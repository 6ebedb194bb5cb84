"""The live page's figures: sliding-window tallies and the last requests' traces, in memory.

`LiveStats` exists only with `--live-page`. `router.app` asks it for a `LiveTrace` per request
(the request's recorder: a `router.recording.Trace` that also tallies each node, step and
route as it finishes) and calls `request_finished` with the answer. What it keeps is bounded:
one tally per series per second for the last `WINDOW_SECONDS`, and the last `TRACES` traces.

A process's figures are a `raw()` snapshot, plain JSON keyed by wall-clock second, so the
snapshots of several `--workers` processes add up (`summarise`): counts and latency buckets
are sums, percentiles are read off the summed buckets.
"""

from __future__ import annotations

import math
import os
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Final

from router.recording import Decision, DecisionKind, Event, Outcome, Trace

# Ten seconds: a step that starts failing turns red within a poll or two, and a second's worth
# of requests still gives percentiles that mean something.
WINDOW_SECONDS: Final = 10
TRACES: Final = 50  # the page's list of recent requests; a screenful, and bounded memory
# Latency buckets grow by 20% from 0.1 ms, so a percentile is read to within 20%; 80 buckets
# reach past KServe's 60 s serverWrite.
FIRST_BUCKET_SECONDS: Final = 0.0001
BUCKET_GROWTH: Final = 1.2
LAST_BUCKET: Final = 80
_LOG_GROWTH: Final = math.log(BUCKET_GROWTH)

REQUEST: Final = "request"
NODE: Final = "node"
STEP: Final = "step"
ROUTE: Final = "route"  # a Splitter's draw or a Switch's held condition chose this step

Key = tuple[str, str, str]  # (kind, node, step); "" where there is none


def bucket_of(seconds: float) -> int:
    """The latency bucket of a duration: the first whose upper bound is at least it."""
    if seconds <= FIRST_BUCKET_SECONDS:
        return 0
    return min(LAST_BUCKET, math.ceil(math.log(seconds / FIRST_BUCKET_SECONDS) / _LOG_GROWTH))


def bucket_bound(bucket: int) -> float:
    """The upper bound, in seconds, of a latency bucket."""
    return float(FIRST_BUCKET_SECONDS * BUCKET_GROWTH**bucket)


class Tally:
    """One series in one second: calls, failed calls, and the calls per latency bucket."""

    __slots__ = ("count", "errors", "latency")

    def __init__(self) -> None:
        self.count = 0
        self.errors = 0
        self.latency: dict[int, int] = {}

    def add(self, seconds: float | None, failed: bool) -> None:
        self.count += 1
        if failed:
            self.errors += 1
        if seconds is not None:
            bucket = bucket_of(seconds)
            self.latency[bucket] = self.latency.get(bucket, 0) + 1


def failed(status: int | None, error: str | None) -> bool:
    """Non-2xx, or no answer; a call cancelled by design (a quorum was met) is no failure."""
    if status is None:
        return error != "cancelled"
    return not 200 <= status <= 299


class Window:
    """Per-second tallies of the last `span` seconds; `now` is wall-clock, shared by workers."""

    __slots__ = ("_current", "_now", "_seconds", "_tallies", "span")

    def __init__(self, now: Callable[[], float] = time.time, span: int = WINDOW_SECONDS) -> None:
        self._now = now
        self.span = span
        self._seconds: dict[int, dict[Key, Tally]] = {}
        self._current = -1
        self._tallies: dict[Key, Tally] = {}

    def tally(self, key: Key) -> Tally:
        second = int(self._now())
        if second != self._current:
            self._current = second
            self._tallies = self._seconds.setdefault(second, {})
            for old in [s for s in self._seconds if s <= second - self.span]:
                del self._seconds[old]
        tally = self._tallies.get(key)
        if tally is None:
            tally = self._tallies[key] = Tally()
        return tally

    def raw(self) -> list[list[Any]]:
        """The window as JSON: [[second, [[kind, node, step, count, errors, [[bucket, n]...]]
        ...]] ...], seconds older than the window left out."""
        oldest = int(self._now()) - self.span
        return [
            [
                second,
                [
                    [*key, t.count, t.errors, sorted(t.latency.items())]
                    for key, t in list(tallies.items())
                ],
            ]
            for second, tallies in list(self._seconds.items())
            if second > oldest
        ]


class LiveTrace(Trace):
    """A request's trace that also tallies, in `window`, each node, step and route it sees."""

    __slots__ = ("window",)

    def __init__(self, window: Window) -> None:
        super().__init__()
        self.window = window

    def node_finished(self, token: object, status: int | None, error: str | None) -> None:
        super().node_finished(token, status, error)
        assert isinstance(token, Event)
        assert token.ended is not None
        self.window.tally((NODE, token.node, "")).add(
            token.ended - token.started, failed(status, error)
        )

    def step_finished(
        self, token: object, status: int | None, error: str | None, attempts: int
    ) -> None:
        super().step_finished(token, status, error, attempts)
        assert isinstance(token, Event)
        assert token.ended is not None
        self.window.tally((STEP, token.node, token.step or "")).add(
            token.ended - token.started, failed(status, error)
        )

    def decision(self, decision: Decision) -> None:
        super().decision(decision)
        if decision.step is not None and (
            decision.kind is DecisionKind.ROUTE
            or (decision.kind is DecisionKind.CONDITION and decision.outcome is Outcome.HELD)
        ):
            self.window.tally((ROUTE, decision.node, decision.step)).add(None, False)


@dataclass(slots=True)
class _Finished:
    number: int  # this process's count of requests so far: with the pid, the trace's id
    time: float  # wall clock, for people
    method: str
    path: str
    status: int
    seconds: float
    trace: Trace


@dataclass(slots=True)
class LiveStats:
    """One process's live figures (see the module's docstring)."""

    window: Window = field(default_factory=Window)
    traces: deque[_Finished] = field(default_factory=lambda: deque(maxlen=TRACES))
    wall: Callable[[], float] = time.time
    pid: int = field(default_factory=os.getpid)
    _sequence: int = 0

    def trace(self) -> LiveTrace:
        """The recorder of one request; hand it back to `request_finished`."""
        return LiveTrace(self.window)

    def request_finished(self, trace: Trace, method: str, path: str, status: int) -> None:
        seconds = time.perf_counter() - trace.origin
        self.window.tally((REQUEST, "", "")).add(seconds, failed(status, None))
        self._sequence += 1
        self.traces.append(
            _Finished(self._sequence, self.wall(), method, path, status, seconds, trace)
        )

    def raw(self) -> dict[str, Any]:
        """This process's snapshot, JSON-ready; `summarise` adds several up."""
        return {
            "pid": self.pid,
            "window": self.window.raw(),
            "traces": [
                {
                    "id": f"{self.pid}-{done.number}",
                    "time": round(done.time, 3),
                    "worker": self.pid,
                    "method": done.method,
                    "path": done.path,
                    "status": done.status,
                    "durationMs": round(done.seconds * 1000, 3),
                    "events": done.trace.as_json(),
                }
                for done in list(self.traces)
            ],
        }


@dataclass(frozen=True, slots=True)
class Summary:
    count: int
    errors: int
    latency: dict[int, int]

    def as_json(self, span: int) -> dict[str, Any]:
        return {
            "count": self.count,
            "rate": round(self.count / span, 3),
            "errorRate": round(self.errors / self.count, 4) if self.count else 0.0,
            "p50Ms": _percentile_ms(self.latency, 0.50),
            "p95Ms": _percentile_ms(self.latency, 0.95),
            "p99Ms": _percentile_ms(self.latency, 0.99),
        }


def summarise(raws: Iterable[dict[str, Any]], now: float, span: int) -> dict[Key, Summary]:
    """The window's tallies of every snapshot in `raws`, added up per series."""
    oldest = int(now) - span
    counts: dict[Key, list[int]] = {}
    latency: dict[Key, dict[int, int]] = {}
    for raw in raws:
        for second, tallies in raw["window"]:
            if second <= oldest:
                continue
            for kind, node, step, count, errors, buckets in tallies:
                key = (kind, node, step)
                total = counts.setdefault(key, [0, 0])
                total[0] += count
                total[1] += errors
                merged = latency.setdefault(key, {})
                for bucket, n in buckets:
                    merged[bucket] = merged.get(bucket, 0) + n
    return {key: Summary(c, e, latency[key]) for key, (c, e) in counts.items()}


def _percentile_ms(latency: dict[int, int], q: float) -> float | None:
    """The upper bound of the bucket holding the q-th call, in ms; None with no calls."""
    total = sum(latency.values())
    if not total:
        return None
    rank = math.ceil(q * total)
    seen = 0
    for bucket in sorted(latency):
        seen += latency[bucket]
        if seen >= rank:
            return round(bucket_bound(bucket) * 1000, 3)
    raise AssertionError("unreachable: the ranks add up to the total")
