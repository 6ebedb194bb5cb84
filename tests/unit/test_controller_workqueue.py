"""graph_controller.controller.workqueue: de-duplication, one worker per key, backoff."""

from __future__ import annotations

import threading

from hypothesis import given
from hypothesis import strategies as st

from graph_controller.controller.workqueue import WorkQueue


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_duplicates_are_queued_once() -> None:
    queue: WorkQueue[str] = WorkQueue()
    for key in ("a", "b", "a", "a"):
        queue.add(key)
    assert [queue.get(), queue.get()] == ["a", "b"]
    assert len(queue) == 0


def test_a_key_being_processed_is_not_handed_out_again_until_done() -> None:
    queue: WorkQueue[str] = WorkQueue()
    queue.add("a")
    assert queue.get() == "a"
    queue.add("a")  # changed while a worker holds it
    queue.add("b")
    assert queue.get() == "b"  # not "a": the holder has not finished
    queue.done("a")
    assert queue.get() == "a"  # queued again once, after done


def test_backoff_doubles_until_the_cap_and_resets_on_forget() -> None:
    queue: WorkQueue[str] = WorkQueue(base_delay=0.1, max_delay=0.5, clock=Clock())
    delays = [queue.retry("k") for _ in range(5)]
    assert delays == [0.1, 0.2, 0.4, 0.5, 0.5]
    queue.forget("k")
    assert queue.retry("k") == 0.1


def test_delayed_key_waits_for_its_time() -> None:
    clock = Clock()
    queue: WorkQueue[str] = WorkQueue(clock=clock)
    queue.add_after("late", 5.0)
    queue.add("now")
    assert queue.get() == "now"
    clock.now = 5.0
    assert queue.get() == "late"


def test_shutdown_wakes_a_blocked_worker() -> None:
    queue: WorkQueue[str] = WorkQueue()
    got: list[str | None] = []
    worker = threading.Thread(target=lambda: got.append(queue.get()))
    worker.start()
    queue.shutdown()
    worker.join(5.0)
    assert got == [None]


@given(st.lists(st.sampled_from("abcd"), max_size=30))
def test_every_added_key_is_handed_out_exactly_once_when_idle(keys: list[str]) -> None:
    queue: WorkQueue[str] = WorkQueue()
    for key in keys:
        queue.add(key)
    out = []
    while len(queue):
        key = queue.get()
        assert key is not None
        out.append(key)
        queue.done(key)
    assert sorted(out) == sorted(set(keys))
