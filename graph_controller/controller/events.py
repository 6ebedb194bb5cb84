"""Kubernetes Events about InferenceServices and InferenceGraphs, as KServe emits them.

KServe's controllers (v0.15) record a Normal `InferenceServiceReady` / `InferenceGraphReady`
Event when an object becomes Ready, a Warning `InferenceServiceNotReady` /
`InferenceGraphNotReady` when it stops being Ready, a Warning `InternalError` with the
error's text when a reconcile fails (an InferenceService's component: no runtime supports the
model, an invalid predictor spec, an apply the API server refuses), and a Warning
`ServerlessModeRejected` when an object resolves to Serverless mode and Knative Serving is not
installed. `kubectl describe` shows them; nothing reads them back.

Pure: which Event a status change calls for, and the core/v1 Event object to create (the
shape client-go's recorder writes). The reconciler creates it through `Kube.create_event`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from .resources import Object

NORMAL: Literal["Normal"] = "Normal"
WARNING: Literal["Warning"] = "Warning"
INTERNAL_ERROR = "InternalError"
SERVERLESS_MODE_REJECTED = "ServerlessModeRejected"
# KServe's text for it, word for word (InferenceService and InferenceGraph controllers alike).
SERVERLESS_MODE_REJECTED_MESSAGE = (
    "It is not possible to use Serverless deployment mode when Knative Services are not available"
)

# KServe's EventSource components: v1beta1Controllers (InferenceService) and
# InferenceGraphController; ours names itself, so `kubectl get events` tells them apart.
COMPONENT = "infergraph-controller"


@dataclass(frozen=True, slots=True)
class Event:
    type: Literal["Normal", "Warning"]
    reason: str
    message: str


def _ready(status: Mapping[str, Any] | None) -> bool | None:
    """The Ready condition's status: True, False, or None when there is none (or Unknown)."""
    for condition in (status or {}).get("conditions") or []:
        if condition.get("type") == "Ready":
            value = condition.get("status")
            return True if value == "True" else False if value == "False" else None
    return None


def _ready_condition(status: Mapping[str, Any] | None) -> tuple[Any, Any, Any] | None:
    for condition in (status or {}).get("conditions") or []:
        if condition.get("type") == "Ready":
            return condition.get("status"), condition.get("reason"), condition.get("message")
    return None


def ready_changed(before: Mapping[str, Any] | None, after: Mapping[str, Any]) -> bool:
    """Whether the Ready condition's status, reason or message moved: a failure's Event is
    recorded when the failure appears or changes, not again on every reconcile that finds the
    same one (client-go's recorder would only count those up)."""
    return _ready_condition(before) != _ready_condition(after)


def readiness_event(
    kind: str, name: str, before: Mapping[str, Any] | None, after: Mapping[str, Any]
) -> Event | None:
    """The Event for a status written over `before`: Ready reached or lost, else none.

    As KServe: "no longer Ready" only when Ready was True and is now False, and for an
    InferenceService the message lists the conditions that are False.
    """
    was, now = _ready(before), _ready(after)
    if was is not True and now is True:
        return Event(NORMAL, f"{kind}Ready", f"{kind} [{name}] is Ready")
    if was is True and now is False:
        message = f"{kind} [{name}] is no longer Ready"
        if kind == "InferenceService":
            failed = ", ".join(
                c["type"] for c in after.get("conditions") or [] if c.get("status") == "False"
            )
            message += f" because of: {failed}"
        return Event(WARNING, f"{kind}NotReady", message)
    return None


def event_object(
    involved: Object, event: Event, now: str, unique: int, instance: str
) -> dict[str, Any]:
    """The core/v1 Event about `involved`; `unique` (e.g. a nanosecond clock) makes its name."""
    metadata = involved["metadata"]
    return {
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": {"name": f"{metadata['name']}.{unique:x}", "namespace": metadata["namespace"]},
        "involvedObject": {
            "apiVersion": involved.get("apiVersion"),
            "kind": involved.get("kind"),
            "name": metadata["name"],
            "namespace": metadata["namespace"],
            "uid": metadata.get("uid"),
            "resourceVersion": metadata.get("resourceVersion"),
        },
        "type": event.type,
        "reason": event.reason,
        "message": event.message,
        "source": {"component": COMPONENT},
        "reportingComponent": COMPONENT,
        "reportingInstance": instance,
        "firstTimestamp": now,
        "lastTimestamp": now,
        "count": 1,
    }
