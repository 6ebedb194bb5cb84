"""Leader election on a coordination.k8s.io/v1 Lease, with client-go's rules.

A candidate takes the Lease when nobody holds it, when it holds it already, or when the
holder's record has not changed for leaseDurationSeconds *by our own clock* (we time how long
we have seen the same record, so clock skew between replicas does not matter). Writes carry
the resourceVersion read, so two candidates racing get one 409 and one Lease. The leader
renews every retry period and gives up (stops reconciling, exits) when no renewal succeeded for
the renew deadline, which is shorter than the lease duration: a leader that cannot renew stops
before anyone else may start. On a graceful stop it releases the Lease so a standby takes over
at once. `should_take` and `lease_body` are pure; `LeaderElector` does the I/O.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from .kube import ApiError, Kube
from .resources import LEASE, Object

log = logging.getLogger("graph_controller.controller.leader")

LEASE_DURATION = 15.0  # seconds a standby waits on a silent leader (client-go's default)
RENEW_DEADLINE = 10.0  # seconds a leader keeps trying to renew before it steps down
RETRY_PERIOD = 2.0  # seconds between attempts, both to acquire and to renew


@dataclass(frozen=True, slots=True)
class Timing:
    lease_duration: float = LEASE_DURATION
    renew_deadline: float = RENEW_DEADLINE
    retry_period: float = RETRY_PERIOD

    def __post_init__(self) -> None:
        if not self.retry_period < self.renew_deadline < self.lease_duration:
            raise ValueError(
                f"leader election needs retry period ({self.retry_period}s) < renew deadline "
                f"({self.renew_deadline}s) < lease duration ({self.lease_duration}s)"
            )


def micro_time(moment: datetime) -> str:
    """A Kubernetes MicroTime (RFC 3339 with microseconds, UTC)."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def should_take(spec: Object, me: str, unchanged_for: float, lease_duration: float) -> bool:
    """Whether `me` may write the Lease whose spec is `spec`, seen unchanged for that long."""
    holder = spec.get("holderIdentity") or ""
    if holder in ("", me):
        return True
    duration = float(spec.get("leaseDurationSeconds") or lease_duration)
    return unchanged_for >= duration


def lease_body(current: Object, me: str, lease_duration: float, now: datetime) -> Object:
    """`current` (with its resourceVersion) rewritten to name `me` as holder, renewed now."""
    spec = dict(current.get("spec") or {})
    taking_over = spec.get("holderIdentity") != me
    stamp = micro_time(now)
    spec.update(
        holderIdentity=me,
        leaseDurationSeconds=max(1, round(lease_duration)),
        renewTime=stamp,
    )
    if taking_over:
        spec["acquireTime"] = stamp
        spec["leaseTransitions"] = int(spec.get("leaseTransitions") or 0) + (
            1 if current.get("spec", {}).get("holderIdentity") else 0
        )
    return {**current, "spec": spec}


class LeaderElector:
    def __init__(
        self,
        kube: Kube,
        namespace: str,
        name: str,
        identity: str,
        timing: Timing,
        on_started: Callable[[], None],
        on_lost: Callable[[], None],
        stop: threading.Event,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.namespace, self.name, self.identity, self.timing = namespace, name, identity, timing
        self._kube, self._on_started, self._on_lost, self._stop = kube, on_started, on_lost, stop
        self._clock = clock
        self._observed: tuple[Any, ...] | None = None  # (holder, renewTime) last seen
        self._observed_at = 0.0
        self.leading = threading.Event()
        # Cleared by a stop that could not drain every worker: the Lease then expires rather
        # than being handed to a standby while one of ours may still write.
        self.release = True
        self._thread = threading.Thread(target=self._guarded, name="leader election", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def join(self, timeout: float) -> None:
        self._thread.join(timeout)

    def _run(self) -> None:
        log.info("waiting for the leader lease", extra=self._where())
        while not self._stop.is_set():
            if self._try():
                break
            self._stop.wait(self.timing.retry_period * random.uniform(1.0, 1.2))
        else:
            return
        self.leading.set()
        log.info("became leader", extra=self._where())
        self._on_started()
        # Renewals count from when they were sent, not answered, and each gets only what is
        # left of the renew deadline: a stalled call cannot keep us leading past the Lease.
        last_renewed = self._clock()
        while not self._stop.wait(self.timing.retry_period):
            sent = self._clock()
            budget = self.timing.renew_deadline - (sent - last_renewed)
            if budget > 0 and self._try(budget):
                last_renewed = sent
            elif self._clock() - last_renewed > self.timing.renew_deadline:
                self.leading.clear()
                log.error("lost the leader lease", extra=self._where())
                self._on_lost()
                return
        if self.release:
            self._release()

    def _guarded(self) -> None:
        """`_run`, where any unexpected failure counts as losing the Lease: a dead elector
        thread with workers still running would let a standby lead beside us."""
        try:
            self._run()
        except Exception:
            log.exception("leader election failed", extra=self._where())
            if self.leading.is_set():
                self.leading.clear()
                self._on_lost()

    def _where(self) -> dict[str, str]:
        return {"lease": f"{self.namespace}/{self.name}", "identity": self.identity}

    def alive(self) -> bool:
        return self._thread.is_alive() or self._stop.is_set()

    def _try(self, budget: float | None = None) -> bool:
        """One acquire-or-renew attempt within `budget` seconds (default: the renew
        deadline); False on any failure (logged)."""
        now = datetime.now(UTC)
        started = self._clock()
        budget = self.timing.renew_deadline if budget is None else budget

        def left() -> float:
            return budget - (self._clock() - started)

        try:
            current = self._kube.get_lease(self.namespace, self.name, left())
            if current is None:
                body = lease_body(self._new_lease(), self.identity, self.timing.lease_duration, now)
                self._kube.create_lease(body, left())
                return True
            spec = current.get("spec") or {}
            record = (spec.get("holderIdentity"), spec.get("renewTime"))
            if record != self._observed:
                self._observed, self._observed_at = record, self._clock()
            unchanged_for = self._clock() - self._observed_at
            if not should_take(spec, self.identity, unchanged_for, self.timing.lease_duration):
                return False
            body = lease_body(current, self.identity, self.timing.lease_duration, now)
            self._kube.update_lease(body, left())
            return True
        except ApiError as error:
            if error.status != 409:  # 409: another candidate wrote first; normal
                log.warning("lease attempt failed", extra={**self._where(), "error": str(error)})
            return False

    def _new_lease(self) -> Object:
        return {
            "apiVersion": LEASE.api_version,
            "kind": LEASE.kind,
            "metadata": {"name": self.name, "namespace": self.namespace},
            "spec": {},
        }

    def _release(self) -> None:
        """Hand the Lease back (holder cleared, 1 s duration) so a standby need not wait."""
        if not self.leading.is_set():
            return
        try:
            current = self._kube.get_lease(self.namespace, self.name, self.timing.retry_period)
            if (
                current is None
                or (current.get("spec") or {}).get("holderIdentity") != self.identity
            ):
                return
            spec = {**current["spec"], "holderIdentity": None, "leaseDurationSeconds": 1}
            spec["renewTime"] = micro_time(datetime.now(UTC))
            self._kube.update_lease({**current, "spec": spec}, self.timing.retry_period)
            log.info("released the leader lease", extra=self._where())
        except ApiError as error:
            log.warning("could not release the lease", extra={**self._where(), "error": str(error)})
