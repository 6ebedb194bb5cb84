"""What the cluster should look like, given what the controller observed (pure).

For an InferenceService: its rendered Deployment/Service(/HPA) and a status as KServe's
RawDeployment controller writes it with ingress creation off: `PredictorReady` (and
`TransformerReady`) following the Deployments' `Available` conditions, `IngressReady`,
`Ready`, `url`, `address`, `components`, `deploymentMode` and `modelStatus`. For an
InferenceGraph: its router's objects once every InferenceService it names is Ready (their
addresses resolved into `--graph-json`), and a status with `PredictorReady`, `RouterReady`,
`Ready` and `url`. Also which InferenceServices a graph names, so an InferenceService that
becomes ready (or changes its URL) re-queues the graphs that wait for it.

No I/O, no clock: `now` is passed in. The reconciler feeds this module objects from its caches.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from pydantic import ValidationError

from graph_controller.controller.render import (
    STORAGE_INITIALIZER,
    Manifest,
    RenderError,
    RenderOptions,
    render_graph,
    render_service,
    service_address,
)
from graph_controller.planning.addressing import resolve_graph, status_address
from graph_controller.planning.components import (
    DEPLOYMENT_MODE,
    KSERVE_CONTAINER,
    RAW_DEPLOYMENT,
    Target,
    graph_unsupported,
    is_stopped,
    predictor_name,
    transformer_name,
    unsupported,
)
from graph_controller.planning.router_ports import RouterPortError, grpc_port
from graph_controller.planning.runtime_selection import Runtime, RuntimeSelectionError, Scope
from schemas.errors import SpecError
from schemas.inference_service import InferenceService, InferenceServiceStatus
from schemas.pydantic_errors import field_errors
from schemas.serving_runtime import ServingRuntimeSpec
from schemas.valid_graph import ValidGraph, validate_graph

from .events import (
    INTERNAL_ERROR,
    SERVERLESS_MODE_REJECTED,
    SERVERLESS_MODE_REJECTED_MESSAGE,
    WARNING,
    Event,
)
from .resources import Object

Condition = dict[str, str]

READY = "Ready"
PREDICTOR_READY = "PredictorReady"
TRANSFORMER_READY = "TransformerReady"
INGRESS_READY = "IngressReady"  # KServe's; True once the addresses exist (no Ingress object)
STOPPED = "Stopped"  # KServe's condition for `serving.kserve.io/stop: "true"`
ROUTER_READY = "RouterReady"
SERVICE_CONDITIONS = (PREDICTOR_READY, READY)  # an InferenceService's, in status order
GRAPH_CONDITIONS = (PREDICTOR_READY, ROUTER_READY, READY)  # an InferenceGraph's
WORKLOAD_KINDS = ("Deployment", "Service", "HorizontalPodAutoscaler")
# Modes KServe's controllers render as Knative Services: both reject the object with a
# ServerlessModeRejected Event when Knative Serving is not installed (an InferenceGraph goes the
# Knative way for any mode but RawDeployment; KServe's InferenceService skips ModelMesh).
SERVICE_KNATIVE_MODES = ("Serverless",)


@dataclass(frozen=True, slots=True)
class Readiness:
    ready: bool
    reason: str
    message: str = ""


@dataclass(frozen=True, slots=True)
class Desired:
    """Objects to apply (empty: apply nothing yet) and the status to write."""

    manifests: list[Manifest]
    status: dict[str, Any]
    # (kind, name) of owned objects the spec no longer asks for: deleted if they exist.
    prune: frozenset[tuple[str, str]] = field(default_factory=frozenset)
    # The Warning Event KServe records for this failure; recorded when the Ready condition
    # this status carries is new (events.ready_changed).
    event: Event | None = None


def _unrendered(names: Sequence[str], manifests: Sequence[Manifest]) -> frozenset[tuple[str, str]]:
    rendered = {(m["kind"], m["metadata"]["name"]) for m in manifests}
    return frozenset((k, n) for k in WORKLOAD_KINDS for n in names if (k, n) not in rendered)


# --- readiness ------------------------------------------------------------------------------


def deployment_readiness(deployment: Object | None, what: str) -> Readiness:
    """Ready when the Deployment has seen its latest spec and reports Available=True."""
    if deployment is None:
        return Readiness(False, "DeploymentNotFound", f"{what} Deployment does not exist yet")
    metadata, status = deployment.get("metadata", {}), deployment.get("status") or {}
    if status.get("observedGeneration", 0) < metadata.get("generation", 0):
        return Readiness(False, "RolloutInProgress", f"{what} Deployment spec not observed yet")
    for condition in status.get("conditions") or []:
        if condition.get("type") == "Available":
            if condition.get("status") == "True":
                return Readiness(True, condition.get("reason") or "MinimumReplicasAvailable")
            return Readiness(
                False, condition.get("reason") or "Unavailable", condition.get("message", "")
            )
    return Readiness(False, "DeploymentUnavailable", f"{what} Deployment has no Available yet")


def service_url(obj: Object) -> str | None:
    """Where a Ready InferenceService answers, read from its status (None when not Ready)."""
    try:
        status = InferenceServiceStatus.model_validate(obj.get("status") or {})
    except ValidationError:
        return None  # a status we cannot read gives no address to route to
    return status_address(status)


def valid_graph(obj: Object) -> ValidGraph | SpecError:
    """The graph as `infergraph validate` sees it: valid, or every problem with its path."""
    try:
        return validate_graph(obj, "InferenceGraph")
    except SpecError as error:
        return error


def referenced_services(obj: Object) -> frozenset[str]:
    """InferenceServices a graph calls by serviceName; none for a graph that is not valid.

    An invalid graph is never deployed, so it waits for no InferenceService: its own next
    change re-queues it.
    """
    graph = valid_graph(obj)
    return frozenset(graph.referenced_services()) if isinstance(graph, ValidGraph) else frozenset()


# --- conditions -----------------------------------------------------------------------------


def condition(kind: str, readiness: Readiness) -> Condition:
    """A Knative condition as KServe's MarkTrue/MarkFalse write it: a True one carries no
    reason or message, a False one says why."""
    if readiness.ready:
        return {"type": kind, "status": "True"}
    out = {"type": kind, "status": "False", "reason": readiness.reason}
    if readiness.message:
        out["message"] = readiness.message
    return out


def with_transition_times(
    new: Sequence[Condition], old: Sequence[Mapping[str, Any]], now: str
) -> list[Condition]:
    """Keep a condition's lastTransitionTime while its status is unchanged (Knative rules)."""
    previous = {c.get("type"): c for c in old}
    out = []
    for c in new:
        before = previous.get(c["type"])
        same = before is not None and before.get("status") == c["status"]
        stamp = str(before.get("lastTransitionTime", now)) if same and before else now
        out.append({**c, "lastTransitionTime": stamp})
    return out


def status_differs(current: Mapping[str, Any] | None, desired: Mapping[str, Any]) -> bool:
    """Whether writing `desired` would change anything but transition times."""

    def strip(status: Mapping[str, Any] | None) -> dict[str, Any]:
        status = dict(status or {})
        status["conditions"] = [
            {k: v for k, v in c.items() if k != "lastTransitionTime"}
            for c in status.get("conditions") or []
        ]
        return status

    return strip(current) != strip(desired)


def _status(
    obj: Object, conditions: Sequence[Condition], now: str, **fields: Any
) -> dict[str, Any]:
    old = (obj.get("status") or {}).get("conditions") or []
    status: dict[str, Any] = {
        "observedGeneration": obj.get("metadata", {}).get("generation", 0),
        "conditions": with_transition_times(conditions, old, now),
    }
    status.update({k: v for k, v in fields.items() if v is not None})
    return status


def _overall(*parts: Readiness) -> Readiness:
    for part in parts:
        if not part.ready:
            return Readiness(False, part.reason, part.message)
    return Readiness(True, "Ready")


# --- InferenceServices ----------------------------------------------------------------------


def runtimes_from(cluster: Sequence[Object], namespaced: Sequence[Object]) -> list[Runtime]:
    """Runtime records for selection; one that fails validation is skipped (not selectable)."""
    out = []
    for scope, objects in ((Scope.CLUSTER, cluster), (Scope.NAMESPACE, namespaced)):
        for obj in objects:
            try:
                spec = ServingRuntimeSpec.model_validate(obj.get("spec") or {})
            except ValidationError:
                continue
            metadata = obj.get("metadata", {})
            out.append(Runtime(metadata["name"], scope, spec, metadata.get("annotations") or {}))
    return out


def plan_service(
    obj: Object,
    runtimes: Sequence[Runtime],
    deployment: Object | None,
    options: RenderOptions,
    now: str,
    transformer: Object | None = None,
    pods: Sequence[Object] = (),
) -> Desired:
    """`deployment`/`transformer`: the predictor's and transformer's Deployments it owns;
    `pods`: the predictor's Pods, in name order."""
    name = obj["metadata"]["name"]
    components = (predictor_name(name), transformer_name(name))
    try:
        service = InferenceService.model_validate(obj)
    except ValidationError as error:
        why = Readiness(False, "InvalidSpec", _every_error(InferenceService, error))
        return failed(obj, why, now, SERVICE_CONDITIONS, internal_error(why))
    refused = unsupported(service, Target.CLUSTER)
    if refused:
        why = Readiness(False, "Unsupported", "; ".join(str(e) for e in refused))
        annotations = service.metadata.annotations or {}
        # KServe checks the mode before anything else and stops there, with its own Event.
        knative = annotations.get(DEPLOYMENT_MODE) in SERVICE_KNATIVE_MODES
        event = serverless_rejected() if knative else internal_error(why)
        return failed(obj, why, now, SERVICE_CONDITIONS, event)
    if is_stopped(service.metadata.annotations):
        # As KServe: every object of the service removed, PredictorReady False, Stopped True.
        stopped = Readiness(False, STOPPED, 'serving.kserve.io/stop is "true"')
        conditions = [
            condition(PREDICTOR_READY, stopped),
            condition(STOPPED, Readiness(True, "StopAnnotationSet")),
            condition(READY, stopped),
        ]
        status = _status(obj, conditions, now, deploymentMode=RAW_DEPLOYMENT)
        return Desired([], status, _unrendered(components, []))
    try:
        manifests = render_service(name, service, runtimes, options)
    except RuntimeSelectionError as error:
        return no_supporting_runtime(obj, error, now)
    except RenderError as error:
        why = Readiness(False, "InvalidSpec", str(error))
        return failed(obj, why, now, SERVICE_CONDITIONS, internal_error(why))
    predictor = deployment_readiness(deployment, f"predictor {predictor_name(name)}")
    # KServe's raw ingress reconciler with Ingress creation off: the addresses are set and
    # IngressReady is True on every reconcile that got this far.
    conditions = [
        condition(INGRESS_READY, Readiness(True, "")),
        condition(PREDICTOR_READY, predictor),
    ]
    parts = [predictor]
    component_urls = {"predictor": service_address(name, options)}
    has_transformer = service.spec.transformer is not None
    if has_transformer:
        transformed = deployment_readiness(transformer, f"transformer {transformer_name(name)}")
        conditions.append(condition(TRANSFORMER_READY, transformed))
        parts.append(transformed)
        component_urls["transformer"] = service_address(name, options, transformer=True)
    conditions.append(condition(READY, _overall(*parts)))
    url = service_address(name, options, has_transformer)
    # KServe's PropagateRawStatus: a component's url once its Deployment is Available.
    ready = {"predictor": predictor.ready, "transformer": has_transformer and parts[-1].ready}
    previous = obj.get("status") or {}
    # KServe's IsReady() there: PredictorReady and IngressReady (always True here).
    models = model_status(predictor.ready, pods, previous)
    status = _status(
        obj,
        conditions,
        now,
        url=url,
        address={"url": url},
        components={c: {"url": u} if ready[c] else {} for c, u in component_urls.items()},
        deploymentMode=RAW_DEPLOYMENT,
        modelStatus=models if models is not None else previous.get("modelStatus"),
    )
    return Desired(manifests, status, _unrendered(components, manifests))


def no_supporting_runtime(obj: Object, error: RuntimeSelectionError, now: str) -> Desired:
    """KServe's predictor reconcile when no runtime fits: nothing rendered, the modelStatus its
    UpdateModelTransitionStatus(InvalidSpec, FailureInfo) leaves (over the previous one: the
    target state becomes FailedToLoad, the active one stays), the deployment mode its
    updateStatus records, and an InternalError Event with the error."""
    why = Readiness(False, "NoSupportingRuntime", str(error))
    previous = obj.get("status") or {}
    models: dict[str, Any] = copy.deepcopy(dict(previous.get("modelStatus") or {}))
    models["transitionStatus"] = "InvalidSpec"
    models.setdefault("states", {"activeModelState": ""})["targetModelState"] = "FailedToLoad"
    models["lastFailureInfo"] = {"reason": error.reason, "message": error.summary}
    conditions = [condition(kind, why) for kind in SERVICE_CONDITIONS]
    status = _status(obj, conditions, now, deploymentMode=RAW_DEPLOYMENT, modelStatus=models)
    return Desired([], status, event=internal_error(why))


def internal_error(why: Readiness) -> Event:
    """KServe's Warning for a reconcile that failed, with the error's text. Ours has no
    admission webhook, so a spec KServe's webhook would refuse at `kubectl apply` fails here,
    and says so the same way."""
    return Event(WARNING, INTERNAL_ERROR, why.message)


def serverless_rejected() -> Event:
    return Event(WARNING, SERVERLESS_MODE_REJECTED, SERVERLESS_MODE_REJECTED_MESSAGE)


def model_status(
    ready: bool, pods: Sequence[Object], previous: Mapping[str, Any]
) -> dict[str, Any] | None:
    """KServe's PropagateModelStatus for RawDeployment, from the predictor's Pods (name order)
    and whether the InferenceService is Ready; None: leave the status as it was (KServe
    requeues when a storage-initializer runs again after failing). Updated in place as
    KServe does: the active state and copies of an earlier Loaded, and the last failure,
    stay until replaced."""
    status: dict[str, Any] = copy.deepcopy(dict(previous.get("modelStatus") or {}))
    if not pods:
        return _model_state(status, "Pending", 0)
    first = pods[0].get("status") or {}
    for container in first.get("initContainerStatuses") or []:
        if container.get("name") != STORAGE_INITIALIZER:
            continue
        state = container.get("state") or {}
        if "running" in state:
            if (container.get("lastState") or {}).get("terminated"):
                return None
            return _model_state(status, "Loading", len(pods))
        if (state.get("terminated") or {}).get("reason") == "Error":
            return _model_state(status, "FailedToLoad", len(pods), _failure(state["terminated"]))
        if (state.get("waiting") or {}).get("reason") == "CrashLoopBackOff":
            last = (container.get("lastState") or {}).get("terminated") or {}
            return _model_state(status, "FailedToLoad", len(pods), _failure(last))
    if ready:
        return _model_state(status, "Loaded", len(pods))
    for container in first.get("containerStatuses") or []:
        if container.get("name") != KSERVE_CONTAINER:
            continue
        state = container.get("state") or {}
        if (state.get("terminated") or {}).get("reason") == "Error":
            status = _model_state(status, "FailedToLoad", len(pods), _failure(state["terminated"]))
        elif (state.get("waiting") or {}).get("reason") == "CrashLoopBackOff":
            last = (container.get("lastState") or {}).get("terminated") or {}
            status = _model_state(status, "FailedToLoad", len(pods), _failure(last))
        else:
            status = _model_state(status, "Pending", len(pods))
    return status


_TRANSITIONS = {
    "Pending": "InProgress",
    "Loading": "InProgress",
    "Loaded": "UpToDate",
    "FailedToLoad": "BlockedByFailedLoad",
}


def _model_state(
    status: dict[str, Any], state: str, pods: int, failure: dict[str, Any] | None = None
) -> dict[str, Any]:
    """KServe's UpdateModelRevisionStates."""
    states = status.setdefault("states", {"activeModelState": ""})
    states["targetModelState"] = state
    status["transitionStatus"] = _TRANSITIONS[state]
    if state == "Loaded":
        status["copies"] = {"failedCopies": 0, "totalCopies": pods}
        states["activeModelState"] = "Loaded"
    if failure is not None:
        status["lastFailureInfo"] = failure
    return status


def _failure(terminated: Mapping[str, Any]) -> dict[str, Any]:
    """KServe's FailureInfo for a container that ended with an error (omitempty fields)."""
    out: dict[str, Any] = {"reason": "ModelLoadFailed"}
    if terminated.get("message"):
        out["message"] = terminated["message"]
    if terminated.get("exitCode"):
        out["exitCode"] = terminated["exitCode"]
    return out


def failed(
    obj: Object, why: Readiness, now: str, kinds: Sequence[str], event: Event | None = None
) -> Desired:
    """Nothing to apply; every condition of `kinds` False for the same reason."""
    conditions = [condition(kind, why) for kind in kinds]
    return Desired([], _status(obj, conditions, now), event=event)


def _every_error(model: type[InferenceService], error: ValidationError) -> str:
    return "; ".join(f"{e.path}: {e.message}" for e in field_errors(model, error))


# --- InferenceGraphs ------------------------------------------------------------------------


def graph_url(name: str, options: RenderOptions) -> str:
    return f"http://{name}.{options.namespace}.svc.{options.cluster_domain}"


def plan_graph(
    obj: Object,
    services: Mapping[str, Object],
    router: Object | None,
    options: RenderOptions,
    now: str,
) -> Desired:
    """`services`: the InferenceServices of the graph's namespace that it names, by name."""
    name = obj["metadata"]["name"]
    graph = valid_graph(obj)
    if isinstance(graph, SpecError):
        why = Readiness(False, "InvalidSpec", "; ".join(str(e) for e in graph.errors))
        return failed(obj, why, now, GRAPH_CONDITIONS, internal_error(why))
    annotations = graph.resource.metadata.annotations or {}
    refused = graph_unsupported(annotations, Target.CLUSTER)
    if refused:
        # KServe's graph controller goes the Knative way for these modes, and rejects the graph
        # with ServerlessModeRejected where Knative is missing.
        why = Readiness(False, "Unsupported", "; ".join(str(e) for e in refused))
        return failed(obj, why, now, GRAPH_CONDITIONS, serverless_rejected())
    try:
        grpc_port(annotations)  # render_graph reads it
    except RouterPortError as error:
        why = Readiness(False, "InvalidSpec", str(error))
        return failed(obj, why, now, GRAPH_CONDITIONS, internal_error(why))
    parsed = {}
    invalid = []
    for service_name, service in services.items():
        try:
            parsed[service_name] = InferenceService.model_validate(service)
        except ValidationError:
            invalid.append(service_name)  # it exists but can never become ready as it is
    resolution = resolve_graph(graph, parsed)
    if resolution.missing:
        predictors = Readiness(
            False, "InferenceServiceNotFound", _names("not found", resolution.missing)
        )
    elif resolution.unready or invalid:
        waiting = (*resolution.unready, *invalid)
        predictors = Readiness(False, "InferenceServiceNotReady", _names("not ready", waiting))
    else:
        predictors = Readiness(True, "AllInferenceServicesReady")
    manifests: list[Manifest] = []
    if predictors.ready:
        manifests = render_graph(name, graph, parsed, options)
    if router is None and not predictors.ready:
        routed = Readiness(False, "WaitingForInferenceServices", "router not created yet")
    else:
        routed = deployment_readiness(router, f"router {name}")
    conditions = [
        condition(PREDICTOR_READY, predictors),
        condition(ROUTER_READY, routed),
        condition(READY, _overall(predictors, routed)),
    ]
    url = graph_url(name, options) if (manifests or router is not None) else None
    status = _status(obj, conditions, now, url=url)
    prune = _unrendered([name], manifests) if manifests else frozenset()
    return Desired(manifests, status, prune)


def _names(what: str, names: Sequence[str]) -> str:
    quoted = ", ".join(f"InferenceService '{n}'" for n in names)
    return f"{quoted} {what}"


def controlled_elsewhere(
    obj: Object, manifests: Sequence[Manifest], existing: Mapping[tuple[str, str], Object]
) -> list[str]:
    """Each object `manifests` would write that exists under another controller of ours, as
    `Kind 'name' is controlled by ...`: e.g. InferenceService `iris`'s transformer Deployment
    `iris-transformer` and the router of a graph named `iris-transformer` in one namespace.
    Applying over it would take it from its owner, who would take it back."""
    uid = obj["metadata"].get("uid")
    out = []
    for manifest in manifests:
        kind, name = manifest["kind"], manifest["metadata"]["name"]
        found = existing.get((kind, name))
        references = (found or {}).get("metadata", {}).get("ownerReferences") or []
        owner = next((r for r in references if r.get("controller")), None)
        if owner is None or owner.get("uid") == uid:
            continue
        who = f"{owner.get('kind')} '{owner.get('name')}'"
        if (owner.get("kind"), owner.get("name")) == (obj["kind"], obj["metadata"]["name"]):
            who = (
                f"an earlier {who} (uid {owner.get('uid')}), until the garbage collector removes it"
            )
        out.append(f"{kind} '{name}' is controlled by {who}")
    return out


def name_conflict(obj: Object, taken: Sequence[str], now: str, kinds: Sequence[str]) -> Desired:
    """Nothing applied: the names KServe's layout gives this object's workloads are taken."""
    why = Readiness(False, "NameConflict", "; ".join(taken) + "; rename one of them")
    return failed(obj, why, now, kinds)


def name_taken(obj: Object, rival_api_version: str, now: str) -> Desired:
    """A graph whose name an older graph of the other API group already uses: the router
    Deployment and Service are named after the graph, so only one of them can have them."""
    name = obj["metadata"]["name"]
    why = Readiness(
        False,
        "NameConflict",
        f"InferenceGraph '{name}' of {rival_api_version} already owns the router named '{name}'; "
        "rename one of them",
    )
    return failed(obj, why, now, GRAPH_CONDITIONS)
