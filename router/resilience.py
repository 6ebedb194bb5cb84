"""Pure resilience rules: backoff delays, and circuit breakers per step target and policy.

Both take time and randomness as arguments (the executor injects a clock and a `Random`), so
every rule is testable without sleeping. The executor applies them: a step call is retried
while the policy allows and the request's deadline leaves room for the wait; a target whose
breaker is open is answered at once with 503.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from enum import StrEnum

from schemas.graph import CircuitBreakerPolicy, RetryPolicy


def backoff_seconds(policy: RetryPolicy, attempt: int, rng: random.Random) -> float:
    """Delay before retry number `attempt` (1-based): exponential, capped, with full jitter.

    Full jitter (uniform in [0, cap]) spreads retries of many clients so a recovering backend
    is not hit by synchronized waves.
    """
    cap = min(policy.max_delay_ms, policy.initial_delay_ms * 2 ** (attempt - 1)) / 1000
    return rng.uniform(0, cap)


class BreakerState(StrEnum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


@dataclass(slots=True)
class Breaker:
    """One target's breaker: opens after N consecutive failures, probes after the cooldown."""

    policy: CircuitBreakerPolicy
    failures: int = 0
    opened_at: float | None = None
    probing: bool = False

    def state(self, now: float) -> BreakerState:
        if self.opened_at is None:
            return BreakerState.CLOSED
        if now - self.opened_at >= self.policy.cooldown_seconds:
            return BreakerState.HALF_OPEN
        return BreakerState.OPEN

    def allow(self, now: float) -> bool:
        """May a call go out now? In half-open state exactly one probe is let through."""
        state = self.state(now)
        if state is BreakerState.CLOSED:
            return True
        if state is BreakerState.HALF_OPEN and not self.probing:
            self.probing = True
            return True
        return False

    def retry_after(self, now: float) -> float:
        if self.opened_at is None:
            return 0.0
        return max(0.0, self.policy.cooldown_seconds - (now - self.opened_at))

    def release(self) -> None:
        """Frees the half-open slot of a probe that ended without a verdict (it was cancelled).

        Without this a probe cancelled by a quorum or a client hang-up would hold the slot for
        ever: the breaker would stay half-open with no probe allowed, i.e. open for good.
        """
        self.probing = False

    def record(self, success: bool, now: float) -> None:
        self.probing = False
        if success:
            self.failures = 0
            self.opened_at = None
            return
        self.failures += 1
        if self.opened_at is not None or self.failures >= self.policy.failure_threshold:
            self.opened_at = now  # a failed probe re-opens for a full cooldown


_BreakerKey = tuple[str, int, float]  # target URL, failureThreshold, cooldownSeconds

# Which of several breakers on one target a per-target view shows: the most open one.
_OPENNESS = {BreakerState.CLOSED: 0, BreakerState.HALF_OPEN: 1, BreakerState.OPEN: 2}


@dataclass(slots=True)
class Breakers:
    """Breakers by (target URL, policy), shared by all requests of one router process.

    Two steps calling one URL with different policies each keep their own breaker: with one
    breaker per URL, each would replace the other's on every call and neither would open.
    """

    by_key: dict[_BreakerKey, Breaker] = field(default_factory=dict)

    def get(self, target: str, policy: CircuitBreakerPolicy) -> Breaker:
        key = (target, policy.failure_threshold, float(policy.cooldown_seconds))
        breaker = self.by_key.get(key)
        if breaker is None:
            breaker = self.by_key[key] = Breaker(policy)
        return breaker

    def states(self, now: float) -> dict[str, BreakerState]:
        """Each target's state; with several policies on one target, the most open one."""
        states: dict[str, BreakerState] = {}
        # A copy: a request may add a breaker while a scrape reads them in another thread.
        for (target, _, _), breaker in list(self.by_key.items()):
            state = breaker.state(now)
            if _OPENNESS[state] >= _OPENNESS[states.get(target, BreakerState.CLOSED)]:
                states[target] = state
        return states
