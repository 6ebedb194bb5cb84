"""graph_controller.controller.events: which Event a status change calls for (pure)."""

from __future__ import annotations

from typing import Any

import pytest

from graph_controller.controller import events


def status(*conditions: tuple[str, str]) -> dict[str, Any]:
    return {"conditions": [{"type": t, "status": s, "reason": "R"} for t, s in conditions]}


READY = status(("PredictorReady", "True"), ("Ready", "True"))
NOT_READY = status(("PredictorReady", "False"), ("Ready", "False"))


@pytest.mark.parametrize(
    ("before", "after", "expected"),
    [
        pytest.param(
            None,
            READY,
            events.Event("Normal", "InferenceServiceReady", "InferenceService [m] is Ready"),
            id="first-status-ready",
        ),
        pytest.param(
            NOT_READY,
            READY,
            events.Event("Normal", "InferenceServiceReady", "InferenceService [m] is Ready"),
            id="became-ready",
        ),
        pytest.param(
            READY,
            NOT_READY,
            events.Event(
                "Warning",
                "InferenceServiceNotReady",
                "InferenceService [m] is no longer Ready because of: PredictorReady, Ready",
            ),
            id="lost-ready",
        ),
        pytest.param(None, NOT_READY, None, id="never-ready"),
        pytest.param(READY, READY, None, id="still-ready"),
        pytest.param(NOT_READY, NOT_READY, None, id="still-not-ready"),
    ],
)
def test_inference_service_readiness_events_follow_kserve(
    before: dict[str, Any] | None, after: dict[str, Any], expected: events.Event | None
) -> None:
    assert events.readiness_event("InferenceService", "m", before, after) == expected


def test_a_graph_losing_ready_says_so_without_conditions() -> None:
    event = events.readiness_event("InferenceGraph", "g", READY, NOT_READY)
    assert event == events.Event(
        "Warning", "InferenceGraphNotReady", "InferenceGraph [g] is no longer Ready"
    )


def test_event_object_names_the_involved_object() -> None:
    involved = {
        "apiVersion": "serving.kserve.io/v1beta1",
        "kind": "InferenceService",
        "metadata": {"name": "m", "namespace": "ns", "uid": "u1", "resourceVersion": "7"},
    }
    event = events.Event("Warning", "InternalError", "boom")
    body = events.event_object(involved, event, "2026-01-01T00:00:00Z", 255, "pod-1")
    assert body["metadata"] == {"name": "m.ff", "namespace": "ns"}
    assert body["involvedObject"] == {
        "apiVersion": "serving.kserve.io/v1beta1",
        "kind": "InferenceService",
        "name": "m",
        "namespace": "ns",
        "uid": "u1",
        "resourceVersion": "7",
    }
    assert (body["type"], body["reason"], body["message"]) == ("Warning", "InternalError", "boom")
    assert body["source"] == {"component": "infergraph-controller"}
    assert body["reportingInstance"] == "pod-1"


def ready_as(status: str, reason: str, message: str) -> dict[str, Any]:
    return {"conditions": [{"type": "Ready", "status": status, "reason": reason,
                            "message": message}]}  # fmt: skip


@pytest.mark.parametrize(
    ("before", "after", "changed"),
    [
        pytest.param(None, ready_as("False", "InvalidSpec", "a"), True, id="first-status"),
        pytest.param(
            ready_as("False", "InvalidSpec", "a"), ready_as("False", "InvalidSpec", "a"), False,
            id="same-failure-again",
        ),
        pytest.param(
            ready_as("False", "InvalidSpec", "a"), ready_as("False", "InvalidSpec", "b"), True,
            id="other-message",
        ),
        pytest.param(
            ready_as("False", "InvalidSpec", "a"), ready_as("False", "Unsupported", "a"), True,
            id="other-reason",
        ),
        pytest.param(ready_as("True", "", ""), ready_as("False", "Unsupported", "a"), True,
                     id="was-ready"),
    ],
)  # fmt: skip
def test_a_failure_event_is_due_when_the_ready_condition_moves(
    before: dict[str, Any] | None, after: dict[str, Any], changed: bool
) -> None:
    assert events.ready_changed(before, after) is changed
