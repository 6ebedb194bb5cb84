"""A de-duplicating work queue with per-key exponential backoff, as client-go's.

A key added while queued is queued once; a key added while a worker holds it is queued again
only when that worker calls `done`, so no two workers ever reconcile one key at once. `retry`
schedules a key after base * 2**failures (capped); `forget` resets its count after a success.
Waiting is on a condition variable with a deadline: no polling, no busy loop.
"""

from __future__ import annotations

import heapq
import itertools
import threading
import time
from collections import deque
from collections.abc import Callable, Hashable
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)

BASE_DELAY = 0.05  # seconds; client-go's per-item limiter starts at 5 ms, API errors need more
MAX_DELAY = 30.0  # seconds; a key failing for minutes is still retried twice a minute


class WorkQueue(Generic[K]):
    def __init__(
        self,
        base_delay: float = BASE_DELAY,
        max_delay: float = MAX_DELAY,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._base, self._max, self._clock = base_delay, max_delay, clock
        self._lock = threading.Condition()
        self._queue: deque[K] = deque()
        self._queued: set[K] = set()
        self._processing: set[K] = set()
        self._dirty: set[K] = set()  # added while processing: queue again on done()
        self._waiting: list[tuple[float, int, K]] = []  # (due, sequence, key) heap
        self._sequence = itertools.count()
        self._failures: dict[K, int] = {}
        self._closed = False

    def add(self, key: K) -> None:
        with self._lock:
            self._add(key)

    def _add(self, key: K) -> None:
        if self._closed or key in self._queued:
            return
        if key in self._processing:
            self._dirty.add(key)
            return
        self._queued.add(key)
        self._queue.append(key)
        self._lock.notify()

    def add_after(self, key: K, delay: float) -> None:
        with self._lock:
            if delay <= 0:
                self._add(key)
                return
            heapq.heappush(self._waiting, (self._clock() + delay, next(self._sequence), key))
            self._lock.notify()

    def retry(self, key: K) -> float:
        """Schedule `key` again after its backoff; return the delay chosen."""
        with self._lock:
            failures = self._failures.get(key, 0)
            self._failures[key] = failures + 1
        delay = min(self._max, self._base * 2.0**failures)
        self.add_after(key, delay)
        return delay

    def forget(self, key: K) -> None:
        with self._lock:
            self._failures.pop(key, None)

    def failures(self, key: K) -> int:
        with self._lock:
            return self._failures.get(key, 0)

    def get(self) -> K | None:
        """The next key to work on, blocking; None once the queue is shut down."""
        with self._lock:
            while True:
                if self._closed:
                    return None
                now = self._clock()
                while self._waiting and self._waiting[0][0] <= now:
                    self._add(heapq.heappop(self._waiting)[2])
                if self._queue:
                    key = self._queue.popleft()
                    self._queued.discard(key)
                    self._processing.add(key)
                    return key
                timeout = self._waiting[0][0] - now if self._waiting else None
                self._lock.wait(timeout)

    def done(self, key: K) -> None:
        with self._lock:
            self._processing.discard(key)
            if key in self._dirty:
                self._dirty.discard(key)
                self._add(key)

    def shutdown(self) -> None:
        with self._lock:
            self._closed = True
            self._lock.notify_all()

    def __len__(self) -> int:
        with self._lock:
            return len(self._queue) + len(self._waiting)
