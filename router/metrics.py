"""Prometheus metrics of one router process: requests, nodes, step calls, breakers, load.

`router.app` owns one `Metrics` per process: it attaches `Metrics.recorder()` to each request's
`Execution` (the executor reports node and step timings through the `router.recording`
protocol), calls `request_finished` once per answered request, and serves `render()` on
`GET /metrics`. Everything lives in a private `CollectorRegistry`, so several routers (or tests)
in one process never share or collide on series. Circuit-breaker states and the in-flight
count are read when scraped, never pushed from the request path.

Exposed series (all labelled with `graph`):
- `infergraph_requests_total{status}`, `infergraph_request_duration_seconds`
- `infergraph_node_duration_seconds{node}`
- `infergraph_step_duration_seconds{node,step,status}`: its `_count` is the step call count
- `infergraph_step_errors_total{node,step,status}`: calls with no answer or a non-2xx answer
  (a step reported with no status was cancelled: `status="cancelled"`, not an error)
- `infergraph_step_retries_total{node,step}`: attempts beyond the first
- `infergraph_circuit_breaker_state{target}`: 0 closed, 1 half-open, 2 open
- `infergraph_in_flight_requests`
- streamed answers (router.streams), by the step that streamed:
  `infergraph_stream_first_byte_seconds{node,step}` (from the call's start),
  `infergraph_stream_duration_seconds{node,step,outcome}` (first byte to end; outcome
  complete, failed, idle_timeout, deadline or client_gone), `infergraph_stream_events_total`
  (SSE events) and `infergraph_stream_bytes_total{node,step}`
"""

from __future__ import annotations

import time
from bisect import bisect_left
from collections.abc import Callable, Iterable, MutableMapping
from typing import Final, cast

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client import metrics as prometheus_metrics
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest
from prometheus_client.registry import Collector
from prometheus_client.samples import Sample
from prometheus_client.utils import floatToGoString

from router.graph import Node, Step
from router.recording import Decision, Recorder
from router.resilience import Breakers, BreakerState
from router.streams import StreamStats

# From a fast local model (1 ms) to KServe's default serverWrite (60 s).
LATENCY_BUCKETS: Final = (
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
)  # fmt: skip
# Each bucket's `le` label as prometheus_client writes it ("0.001", "1.0", "+Inf").
_go_float = cast("Callable[[float], str]", floatToGoString)  # untyped in prometheus_client
_LE: Final = (*(_go_float(bound) for bound in LATENCY_BUCKETS), "+Inf")

BREAKER_VALUES: Final = {BreakerState.CLOSED: 0, BreakerState.HALF_OPEN: 1, BreakerState.OPEN: 2}

# The label of a step that ended with no status: cancelled (an Ensemble's quorum was reached,
# or the request ended), which is by design, so it is not counted as an error.
NO_STATUS: Final = "cancelled"


class _Histogram:
    """One series' counts per bucket (not cumulative) and sum, as prometheus_client keeps them.

    Plain numbers rather than prometheus_client's children: its `observe` takes a lock per
    bucket and sum and walks the buckets in Python, and its Counter `inc` a lock (together
    ~4% of the router's CPU per 1-step request). Every series is written and read on the event
    loop's thread (requests, gRPC ingress and scrapes alike), so no lock is needed.
    """

    __slots__ = ("counts", "created", "sum")

    def __init__(self) -> None:
        self.counts = [0] * len(_LE)
        self.sum = 0.0
        self.created = time.time()

    def observe(self, seconds: float) -> None:
        # The first bucket whose bound is >= the value, as prometheus_client's `le` rule.
        self.counts[bisect_left(LATENCY_BUCKETS, seconds)] += 1
        self.sum += seconds


class _Counter:
    __slots__ = ("created", "value")

    def __init__(self) -> None:
        self.value = 0
        self.created = time.time()


# The children of one step's series for one status: (duration, errors or None).
_StepChildren = tuple[_Histogram, _Counter | None]

_GRAPH: Final = ("graph",)
_STEP: Final = ("graph", "node", "step", "status")


class Metrics:
    """The metrics of one graph in one process, used on the event loop's thread."""

    def __init__(
        self,
        graph_name: str,
        breakers: Breakers | None = None,
        in_flight: Callable[[], int] | None = None,
    ) -> None:
        self.graph_name = graph_name
        self.registry = CollectorRegistry()
        # Each series is bound once and reused, keyed by its label values in creation order
        # (the order prometheus_client exposes its children in).
        self._requests: dict[int, _Counter] = {}
        self._request_histogram = _Histogram()
        self._nodes: dict[str, _Histogram] = {}
        # Streams end once each, off the hot path: prometheus_client's own series suffice.
        graph = ("graph",)
        stream_step = (*graph, "node", "step")
        self._stream_first_byte = Histogram(
            "infergraph_stream_first_byte_seconds",
            "Time from a streaming step's call to the first byte of its answer.",
            stream_step,
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self._stream_seconds = Histogram(
            "infergraph_stream_duration_seconds",
            "Time from a streamed answer's first byte to its end, by how it ended.",
            (*stream_step, "outcome"),
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self._stream_events = Counter(
            "infergraph_stream_events",
            "Server-Sent Events forwarded to clients.",
            stream_step,
            registry=self.registry,
        )
        self._stream_bytes = Counter(
            "infergraph_stream_bytes",
            "Bytes of streamed answers forwarded to clients.",
            stream_step,
            registry=self.registry,
        )
        self._steps: dict[tuple[str, str, int | None], _StepChildren] = {}
        self._retries: dict[tuple[str, str], _Counter] = {}
        self.registry.register(_Series(self))
        self.registry.register(_ScrapeTimeGauges(graph_name, breakers, in_flight))
        self._recorder = _MetricsRecorder(self)

    def recorder(self) -> Recorder:
        """The recorder to attach to a request; it keeps nothing per request, so it is shared."""
        return self._recorder

    def request_finished(self, status: int, seconds: float) -> None:
        counter = self._requests.get(status)
        if counter is None:
            counter = self._requests[status] = _Counter()
        counter.value += 1
        self._request_histogram.observe(seconds)

    def stream_finished(self, stats: StreamStats) -> None:
        """One streamed answer ended (once per stream, so labels are looked up here)."""
        labels = (self.graph_name, stats.step.owner, stats.step.key)
        self._stream_first_byte.labels(*labels).observe(stats.first_byte_seconds)
        self._stream_seconds.labels(*labels, stats.outcome).observe(stats.seconds)
        self._stream_events.labels(*labels).inc(stats.events)
        self._stream_bytes.labels(*labels).inc(stats.bytes)

    def render(self) -> tuple[bytes, str]:
        """The body and Content-Type of a `GET /metrics` answer (Prometheus text format)."""
        return generate_latest(self.registry), CONTENT_TYPE_LATEST

    # --- series, for the recorder ----------------------------------------------------------

    def _node(self, name: str) -> _Histogram:
        child = self._nodes.get(name)
        if child is None:
            child = self._nodes[name] = _Histogram()
        return child

    def _step(self, step: Step, status: int | None) -> _StepChildren:
        key = (step.owner, step.key, status)
        children = self._steps.get(key)
        if children is None:
            errors = None
            if status is not None and not 200 <= status <= 299:
                errors = _Counter()
            children = self._steps[key] = (_Histogram(), errors)
        return children

    def _retry_counter(self, step: Step) -> _Counter:
        key = (step.owner, step.key)
        child = self._retries.get(key)
        if child is None:
            child = self._retries[key] = _Counter()
        return child


class _Series(Collector):
    """The request, node and step series of one `Metrics`, as prometheus_client would expose
    its own Counters and Histograms (names, labels, `_created`)."""

    def __init__(self, metrics: Metrics) -> None:
        self._metrics = metrics

    def describe(self) -> Iterable[Metric]:
        return _families()

    def collect(self) -> Iterable[Metric]:
        m = self._metrics
        graph = m.graph_name
        # prometheus_client's switch (PROMETHEUS_DISABLE_CREATED_SERIES) for its own series.
        created = getattr(prometheus_metrics, "_use_created", True)
        requests, request_seconds, node_seconds, step_seconds, step_errors, retries = _families()
        for code, counter in m._requests.items():
            _count(requests, (graph, str(code)), counter, created)
        yield requests
        _histogram(request_seconds, (graph,), m._request_histogram, created)
        yield request_seconds
        for name, histogram in m._nodes.items():
            _histogram(node_seconds, (graph, name), histogram, created)
        yield node_seconds
        for (node, step, status), (histogram, _) in m._steps.items():
            labels = (graph, node, step, NO_STATUS if status is None else str(status))
            _histogram(step_seconds, labels, histogram, created)
        yield step_seconds
        for (node, step, status), (_, errors) in m._steps.items():
            if errors is not None:
                _count(step_errors, (graph, node, step, str(status)), errors, created)
        yield step_errors
        for (node, step), counter in m._retries.items():
            _count(retries, (graph, node, step), counter, created)
        yield retries


def _families() -> tuple[
    CounterMetricFamily,
    HistogramMetricFamily,
    HistogramMetricFamily,
    HistogramMetricFamily,
    CounterMetricFamily,
    CounterMetricFamily,
]:
    return (
        CounterMetricFamily(
            "infergraph_requests", "Requests answered, by HTTP status.", labels=(*_GRAPH, "status")
        ),
        HistogramMetricFamily(
            "infergraph_request_duration_seconds",
            "Time from receiving a request to answering it.",
            labels=_GRAPH,
        ),
        HistogramMetricFamily(
            "infergraph_node_duration_seconds",
            "Time one node of the graph took, its steps included.",
            labels=(*_GRAPH, "node"),
        ),
        HistogramMetricFamily(
            "infergraph_step_duration_seconds",
            "Time one step call took, retries and backoff included, by the status it ended "
            "with (the service's, or the router's error status when there was no answer).",
            labels=_STEP,
        ),
        CounterMetricFamily(
            "infergraph_step_errors",
            "Step calls that got no answer or a non-2xx answer, by status.",
            labels=_STEP,
        ),
        CounterMetricFamily(
            "infergraph_step_retries",
            "Step call attempts beyond the first.",
            labels=(*_GRAPH, "node", "step"),
        ),
    )


def _count(
    family: CounterMetricFamily, labels: tuple[str, ...], counter: _Counter, created: bool
) -> None:
    family.add_metric(labels, float(counter.value), created=counter.created if created else None)


def _histogram(
    family: HistogramMetricFamily,
    labels: tuple[str, ...],
    histogram: _Histogram,
    created: bool,
) -> None:
    cumulative = 0
    buckets = []
    for le, count in zip(_LE, histogram.counts, strict=True):
        cumulative += count
        buckets.append((le, float(cumulative)))
    family.add_metric(labels, buckets, histogram.sum)
    if created:
        family.samples.append(
            Sample(
                family.name + "_created",
                dict(zip(family._labelnames, labels, strict=True)),
                histogram.created,
            )
        )


class _MetricsRecorder:
    """Times nodes and steps; the token is what `*_finished` needs, so no state is kept."""

    __slots__ = ("_metrics",)

    def __init__(self, metrics: Metrics) -> None:
        self._metrics = metrics

    def node_started(self, node: Node) -> object:
        return (self._metrics._node(node.name), time.perf_counter())

    def node_finished(self, token: object, status: int | None, error: str | None) -> None:
        histogram, started = cast("tuple[_Histogram, float]", token)
        histogram.observe(time.perf_counter() - started)

    def step_started(self, step: Step, headers: MutableMapping[str, str]) -> object:
        return (step, time.perf_counter())

    def step_finished(
        self, token: object, status: int | None, error: str | None, attempts: int
    ) -> None:
        step, started = cast("tuple[Step, float]", token)
        seconds = time.perf_counter() - started
        histogram, errors = self._metrics._step(step, status)
        histogram.observe(seconds)
        if errors is not None:
            errors.value += 1
        if attempts > 1:
            self._metrics._retry_counter(step).value += attempts - 1

    def decision(self, decision: Decision) -> None:
        pass  # retries are counted from `attempts`; other decisions are not metrics


class _ScrapeTimeGauges(Collector):
    """Gauges whose values live elsewhere (breakers, the in-flight count), read per scrape."""

    def __init__(
        self, graph_name: str, breakers: Breakers | None, in_flight: Callable[[], int] | None
    ) -> None:
        self._graph = graph_name
        self._breakers = breakers
        self._in_flight = in_flight

    def _families(self) -> tuple[GaugeMetricFamily, GaugeMetricFamily]:
        return (
            GaugeMetricFamily(
                "infergraph_circuit_breaker_state",
                "Circuit breaker state per step target: 0 closed, 1 half-open, 2 open.",
                labels=("graph", "target"),
            ),
            GaugeMetricFamily(
                "infergraph_in_flight_requests",
                "Requests being answered right now.",
                labels=("graph",),
            ),
        )

    def describe(self) -> Iterable[Metric]:
        return self._families()

    def collect(self) -> Iterable[Metric]:
        breakers, in_flight = self._families()
        if self._breakers is not None:
            # Breakers judge time on the executor's clock, which is `time.monotonic` in service.
            now = time.monotonic()
            for target, state in self._breakers.states(now).items():
                breakers.add_metric((self._graph, target), BREAKER_VALUES[state])
        yield breakers
        if self._in_flight is not None:
            in_flight.add_metric((self._graph,), self._in_flight())
            yield in_flight
