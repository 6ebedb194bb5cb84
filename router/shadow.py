"""Shadow comparison: each Splitter shadow's answer against the live route's, in the background.

`router.app` gives the executor one `ShadowComparison` per process (`Execution.shadow_judge`);
the executor calls it from the shadow's own background task once both answers are in, so the
client never waits for it. Answers compare by `router.jsondiff` (the rule `infergraph replay`
uses): statuses must be equal, JSON bodies agree within the tolerance, other bodies byte for
byte. Series, on the router's registry (labelled `graph`, `node`, `step`: the shadow step):

- `infergraph_shadow_comparisons_total{result}`: `agree`, `disagree`, or `shadow_error` (the
  shadow got no answer: unreachable, timed out, circuit open, its `data` matched nothing);
- `infergraph_shadow_deviation`: the largest numeric deviation of each compared pair (0 when
  none: agreement, or differences that are not numbers);
- `infergraph_shadow_agreement_ratio`: agree / (agree + disagree), read at scrape time.

Disagreements are logged (logger `router.shadow`, WARNING): the first of each shadow step and
then one in `log_every`, so a shadow that always disagrees does not flood the logs.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Final

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from router.errors import RouterError
from router.graph import Step
from router.jsondiff import EXACT, Difference, Tolerance, diff, max_deviation, within
from router.payload import InvalidJSON, Payload, Reply

log = logging.getLogger("router.shadow")

# From float noise (1e-6) to answers that are simply different numbers (1000).
DEVIATION_BUCKETS: Final = (0.0, 1e-6, 1e-4, 1e-3, 0.01, 0.1, 1.0, 10.0, 100.0, 1000.0)
LOGGED_DIFFERENCES: Final = 5  # enough to see the kind of disagreement, bounded per line

AGREE, DISAGREE, SHADOW_ERROR = "agree", "disagree", "shadow_error"


@dataclass(frozen=True, slots=True)
class Verdict:
    """How one shadow answer compares with the live one (pure: see `judge`)."""

    agrees: bool
    status: tuple[int, int]  # (live, shadow)
    differences: tuple[Difference, ...]
    deviation: float


def _body(payload: Payload) -> Any:
    try:
        return payload.json()
    except InvalidJSON:
        return payload.raw


def judge(live: Reply, shadow: Reply, tolerance: Tolerance) -> Verdict:
    """The shadow agrees when its status is the live one's and its body agrees with the live
    body (JSON within `tolerance`; a body that is not JSON must be the same bytes). The
    deviation is the largest numeric one, within the tolerance or not."""
    expected, actual = _body(live.payload), _body(shadow.payload)
    if isinstance(expected, bytes) or isinstance(actual, bytes):
        exact = [] if live.payload.raw == shadow.payload.raw else diff(expected, actual)
    else:
        exact = diff(expected, actual)
    beyond = [d for d in exact if not within(d, tolerance)]
    agrees = live.status == shadow.status and not beyond
    return Verdict(agrees, (live.status, shadow.status), tuple(beyond), max_deviation(exact))


class ShadowComparison:
    """Implements `router.executor.ShadowJudge` with metrics on `registry` and sampled logs."""

    def __init__(
        self,
        graph_name: str,
        registry: CollectorRegistry,
        tolerance: Tolerance = EXACT,
        log_every: int = 100,
    ) -> None:
        if log_every < 0:
            raise ValueError(f"shadow log_every must be >= 0, got {log_every}")
        self.graph_name = graph_name
        self.tolerance = tolerance
        self.log_every = log_every
        labels = ("graph", "node", "step")
        self._comparisons = Counter(
            "infergraph_shadow_comparisons",
            "Shadow answers compared with the live route's: agree, disagree, shadow_error.",
            (*labels, "result"),
            registry=registry,
        )
        self._deviation = Histogram(
            "infergraph_shadow_deviation",
            "Largest numeric deviation between a shadow's answer and the live one's.",
            labels,
            buckets=DEVIATION_BUCKETS,
            registry=registry,
        )
        self._counts: dict[tuple[str, str], list[int]] = {}  # (node, step) -> [agree, disagree]
        registry.register(_AgreementRatio(graph_name, self._counts))

    def compare(self, shadow: Step, live: Reply, answer: Reply) -> None:
        verdict = judge(live, answer, self.tolerance)
        counts = self._counts.setdefault((shadow.owner, shadow.key), [0, 0])
        result = AGREE if verdict.agrees else DISAGREE
        counts[0 if verdict.agrees else 1] += 1
        self._comparisons.labels(self.graph_name, shadow.owner, shadow.key, result).inc()
        self._deviation.labels(self.graph_name, shadow.owner, shadow.key).observe(verdict.deviation)
        if not verdict.agrees and self._sampled(counts[1]):
            log.warning(
                "shadow %s disagrees with the live answer (disagreement %d): %s",
                shadow.label,
                counts[1],
                describe(verdict),
                extra={
                    "node": shadow.owner,
                    "step": shadow.key,
                    "live_status": verdict.status[0],
                    "shadow_status": verdict.status[1],
                    "differences": [d.as_json() for d in verdict.differences[:LOGGED_DIFFERENCES]],
                },
            )

    def shadow_failed(self, shadow: Step, error: RouterError) -> None:
        self._comparisons.labels(self.graph_name, shadow.owner, shadow.key, SHADOW_ERROR).inc()

    def _sampled(self, disagreement: int) -> bool:
        """The first disagreement of a step, then one in `log_every` (0: none)."""
        return self.log_every > 0 and (disagreement - 1) % self.log_every == 0


def describe(verdict: Verdict) -> str:
    """One line for people: the statuses when they differ, then the first differences."""
    parts = []
    if verdict.status[0] != verdict.status[1]:
        parts.append(f"status {verdict.status[0]} live, {verdict.status[1]} shadow")
    for d in verdict.differences[:LOGGED_DIFFERENCES]:
        parts.append(f"{d.path} {d.change.value}: {d.expected!r} live, {d.actual!r} shadow")
    more = len(verdict.differences) - LOGGED_DIFFERENCES
    if more > 0:
        parts.append(f"{more} more differences")
    return "; ".join(parts)


class _AgreementRatio(Collector):
    def __init__(self, graph_name: str, counts: dict[tuple[str, str], list[int]]) -> None:
        self._graph = graph_name
        self._counts = counts

    def _family(self) -> GaugeMetricFamily:
        return GaugeMetricFamily(
            "infergraph_shadow_agreement_ratio",
            "Share of a shadow step's compared answers that agreed with the live route's.",
            labels=("graph", "node", "step"),
        )

    def describe(self) -> Iterable[Metric]:
        yield self._family()

    def collect(self) -> Iterable[Metric]:
        family = self._family()
        for (node, step), (agree, disagree) in list(self._counts.items()):
            if agree + disagree:
                family.add_metric((self._graph, node, step), agree / (agree + disagree))
        yield family
