"""Reconcile one key: read the caches, ask `decide` what should exist, apply it, write status.

Also turns cache events into work: an owner changed (spec generation) -> itself; an owned
Deployment/Service/HPA changed -> its controller owner; an InferenceService's URL or readiness
changed -> every graph naming it (an index kept from the graph events); a serving runtime
changed -> the InferenceServices it may serve; a predictor Pod's status changed -> its
InferenceService (KServe's modelStatus reads the Pods). Errors propagate as `ApiError` to the
worker, which retries the key with backoff, except a write the API server refuses (a 4xx other
than 409/429): that becomes `Ready=False` (reason `ApplyRejected`, the server's message) on the
owner's status and a Warning Event, since no retry can pass until the spec changes. Status
changes that reach or lose Ready are Events too, as KServe records them (`events`), and so is
a refusal `decide` plans (its `Desired.event`), when the Ready condition it writes is new.

Modes (`watched`): "standalone" reconciles InferenceServices and both graph kinds
(serving.kserve.io and infergraph.dev); "alongside-kserve" reconciles only infergraph.dev
graphs and reads InferenceServices (run by KServe's controller) only for their status address,
never writing to a serving.kserve.io object.
"""

from __future__ import annotations

import hashlib
import logging
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime

import orjson

from graph_controller.controller.render import (
    COMPONENT_LABEL,
    INFERENCE_SERVICE_LABEL,
    Manifest,
    RenderOptions,
    raw_service_label,
)
from graph_controller.planning.components import predictor_name, transformer_name

from . import decide, events
from .informer import Store
from .kube import ApiError, Kube
from .resources import (
    CLUSTER_SERVING_RUNTIME,
    DEPLOYMENT,
    GRAPH,
    GRAPHS,
    HPA,
    INFERGRAPH_GRAPH,
    ISVC,
    OWNER_BY_KEY,
    POD,
    SERVICE,
    SERVING_RUNTIME,
    Key,
    Kind,
    Object,
    owner_key,
    owner_uid,
)
from .settings import Mode

log = logging.getLogger("graph_controller.controller.reconciler")

WATCHED = (
    GRAPH,
    INFERGRAPH_GRAPH,
    ISVC,
    SERVING_RUNTIME,
    CLUSTER_SERVING_RUNTIME,
    DEPLOYMENT,
    SERVICE,
    HPA,
    POD,
)
# Beside KServe: our graphs, KServe's InferenceServices (read for their address) and what we
# own; KServe's controller keeps its graphs, services and runtimes.
WATCHED_ALONGSIDE_KSERVE = (INFERGRAPH_GRAPH, ISVC, DEPLOYMENT, SERVICE, HPA)


def watched(mode: Mode) -> tuple[Kind, ...]:
    return WATCHED if mode == "standalone" else WATCHED_ALONGSIDE_KSERVE


@dataclass(frozen=True, slots=True)
class Applied:
    """What this process last applied for an owner, to skip no-op applies on status events."""

    fingerprint: str
    generations: Mapping[tuple[str, str], int | None]  # (kind, name) -> generation after apply


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class Reconciler:
    def __init__(
        self,
        kube: Kube,
        stores: Mapping[Kind, Store],
        options: RenderOptions,
        enqueue: Callable[[Key], None],
        now: Callable[[], str] = _now,
        identity: str = "",
        mode: Mode = "standalone",
    ) -> None:
        self._kube, self._stores, self._options = kube, stores, options
        self._enqueue, self._now, self._identity = enqueue, now, identity
        self._mode = mode
        self._lock = threading.Lock()
        self._references: dict[Key, frozenset[str]] = {}  # graph -> services it names
        # (namespace, kind, name) of an object another owner controls -> who waits for it
        self._waiting: dict[tuple[str, str, str], set[Key]] = {}
        self._applied: dict[Key, Applied] = {}

    # --- events (on informer threads) ---

    def on_event(self, kind: Kind, event: str, obj: Object, old: Object | None) -> None:
        metadata = obj.get("metadata", {})
        namespace, name = metadata.get("namespace", ""), metadata.get("name", "")
        if kind in GRAPHS:
            key = Key(kind.key, namespace, name)
            self._index_graph(event, key, obj)
            if _spec_changed(event, obj, old):
                self._enqueue(key)
            if event in ("ADDED", "DELETED"):
                # The same name in the other group may be waiting for this one to go.
                other = INFERGRAPH_GRAPH if kind is GRAPH else GRAPH
                if other in self._stores and self._stores[other].get(namespace, name):
                    self._enqueue(Key(other.key, namespace, name))
        elif kind is ISVC:
            if self._mode == "standalone" and _spec_changed(event, obj, old):
                self._enqueue(Key(ISVC.kind, namespace, name))
            if event != "MODIFIED" or decide.service_url(obj) != decide.service_url(old or {}):
                for graph in self.graphs_naming(namespace, name):
                    self._enqueue(graph)
        elif kind is POD:
            labels = metadata.get("labels") or {}
            service = labels.get(INFERENCE_SERVICE_LABEL)
            moved = event != "MODIFIED" or obj.get("status") != (old or {}).get("status")
            if service and labels.get(COMPONENT_LABEL) == "predictor" and moved:
                self._enqueue(Key(ISVC.kind, namespace, service))
        elif kind in (SERVING_RUNTIME, CLUSTER_SERVING_RUNTIME):
            if _spec_changed(event, obj, old):
                scope = namespace if kind is SERVING_RUNTIME else None
                for service in self._stores[ISVC].items(scope):
                    self._enqueue(Key(ISVC.kind, *_ns_name(service)))
        else:
            owner = owner_key(obj)
            if owner is not None:
                self._enqueue(owner)
            with self._lock:
                waiting = self._waiting.get((namespace, kind.kind, name), set()).copy()
            for key in waiting:  # it may be free now (deleted, or its owner let go)
                self._enqueue(key)

    def _index_graph(self, event: str, key: Key, obj: Object) -> None:
        with self._lock:
            if event == "DELETED":
                self._references.pop(key, None)
            else:
                self._references[key] = decide.referenced_services(obj)

    def graphs_naming(self, namespace: str, service: str) -> list[Key]:
        with self._lock:
            return [
                graph
                for graph, names in self._references.items()
                if graph.namespace == namespace and service in names
            ]

    # --- reconcile (on worker threads; one key never on two at once) ---

    def reconcile(self, key: Key) -> None:
        kind = OWNER_BY_KEY[key.kind]
        if kind not in self._stores or (
            self._mode != "standalone" and kind is not INFERGRAPH_GRAPH
        ):
            return  # KServe's controller runs it (an object we owned in an earlier mode)
        obj = self._stores[kind].get(key.namespace, key.name)
        if obj is None or obj["metadata"].get("deletionTimestamp"):
            # Deleted: the cluster's garbage collector removes what it owned.
            self._applied.pop(key, None)
            return
        options = replace(self._options, namespace=key.namespace)
        if kind is ISVC:
            desired = self._plan_service(obj, options)
            conditions: tuple[str, ...] = decide.SERVICE_CONDITIONS
        else:
            rival = self._rival(kind, obj)
            if rival is not None:
                desired = decide.name_taken(obj, rival, self._now())
            else:
                desired = self._plan_graph(obj, options)
            conditions = decide.GRAPH_CONDITIONS
        taken = decide.controlled_elsewhere(obj, desired.manifests, self._cached(desired))
        self._wait_for(key, [] if not taken else desired.manifests)
        if taken:
            desired = decide.name_conflict(obj, taken, self._now(), conditions)
        try:
            self._replace_immutable(key, obj, desired.manifests)
            self._apply(key, obj, desired.manifests)
            self._prune(key, obj, desired.prune)
        except ApiError as error:
            if error.retryable:
                raise
            # The API server refused what we rendered (e.g. 422 for an invalid env var name):
            # no retry can pass until the spec changes, so the owner's status says why.
            self._record(obj, events.Event(events.WARNING, events.INTERNAL_ERROR, str(error)))
            why = decide.Readiness(False, "ApplyRejected", str(error))
            desired = decide.failed(obj, why, self._now(), conditions)
        if decide.status_differs(obj.get("status"), desired.status):
            self._kube.patch_status(kind, key.namespace, key.name, desired.status)
            log.info(
                "status written",
                extra={"object": str(key), "conditions": _summary(desired.status)},
            )
            if desired.event is not None and events.ready_changed(
                obj.get("status"), desired.status
            ):
                self._record(obj, desired.event)
            change = events.readiness_event(kind.kind, key.name, obj.get("status"), desired.status)
            if change is not None:
                self._record(obj, change)

    def _cached(self, desired: decide.Desired) -> dict[tuple[str, str], Object]:
        by_kind = {k.kind: k for k in (DEPLOYMENT, SERVICE, HPA)}
        out = {}
        for manifest in desired.manifests:
            kind, metadata = manifest["kind"], manifest["metadata"]
            found = self._stores[by_kind[kind]].get(metadata["namespace"], metadata["name"])
            if found is not None:
                out[(kind, metadata["name"])] = found
        return out

    def _wait_for(self, key: Key, manifests: list[Manifest]) -> None:
        """Re-queue `key` when any of these objects changes (it waits for their names)."""
        wanted = {(key.namespace, m["kind"], m["metadata"]["name"]) for m in manifests}
        with self._lock:
            for target in list(self._waiting):
                if target not in wanted:
                    self._waiting[target].discard(key)
                    if not self._waiting[target]:
                        del self._waiting[target]
            for target in wanted:
                self._waiting.setdefault(target, set()).add(key)

    def _record(self, obj: Object, event: events.Event) -> None:
        """Create the Event; best effort, as client-go's recorder: a failure is only logged."""
        body = events.event_object(obj, event, self._now(), time.time_ns(), self._identity)
        try:
            self._kube.create_event(body)
        except ApiError as error:
            log.warning(
                "event not recorded",
                extra={"object": f"{obj['kind']}/{obj['metadata']['name']}", "error": str(error)},
            )

    def _rival(self, kind: Kind, obj: Object) -> str | None:
        """The apiVersion of an older graph of the same name in the other group, if any: both
        would own the router Deployment and Service named after them, so the older one keeps
        them (KServe's on a tie) and this one waits."""
        other = INFERGRAPH_GRAPH if kind is GRAPH else GRAPH
        if other not in self._stores:
            return None
        namespace, name = _ns_name(obj)
        found = self._stores[other].get(namespace, name)
        if found is None:
            return None
        mine = obj["metadata"].get("creationTimestamp", "")
        theirs = found["metadata"].get("creationTimestamp", "")
        if theirs < mine or (theirs == mine and other is GRAPH):
            return other.api_version
        return None

    def _plan_service(self, obj: Object, options: RenderOptions) -> decide.Desired:
        namespace, name = _ns_name(obj)
        runtimes = decide.runtimes_from(
            self._stores[CLUSTER_SERVING_RUNTIME].items(),
            self._stores[SERVING_RUNTIME].items(namespace),
        )
        deployment = self._owned(DEPLOYMENT, namespace, predictor_name(name), obj)
        transformer = self._owned(DEPLOYMENT, namespace, transformer_name(name), obj)
        # KServe's ListPodsByLabel(app=isvc.<name>-predictor), in name order.
        app = raw_service_label(predictor_name(name))
        pods = sorted(
            (
                pod
                for pod in (self._stores[POD].items(namespace) if POD in self._stores else [])
                if (pod["metadata"].get("labels") or {}).get("app") == app
            ),
            key=lambda pod: str(pod["metadata"].get("name")),
        )
        return decide.plan_service(
            obj, runtimes, deployment, options, self._now(), transformer, pods
        )

    def _plan_graph(self, obj: Object, options: RenderOptions) -> decide.Desired:
        namespace, name = _ns_name(obj)
        services = {}
        for service in decide.referenced_services(obj):
            found = self._stores[ISVC].get(namespace, service)
            if found is not None:
                services[service] = found
        router = self._owned(DEPLOYMENT, namespace, name, obj)
        return decide.plan_graph(obj, services, router, options, self._now())

    def _owned(self, kind: Kind, namespace: str, name: str, owner: Object) -> Object | None:
        """The cached object of that name, if `owner` controls it (not a stranger's)."""
        found = self._stores[kind].get(namespace, name)
        if found is None or owner_uid(found) != owner["metadata"].get("uid"):
            return None
        return found

    def _apply(self, key: Key, owner: Object, manifests: list[Manifest]) -> None:
        if not manifests:
            return
        fingerprint = hashlib.sha256(
            orjson.dumps(manifests, option=orjson.OPT_SORT_KEYS)
        ).hexdigest()
        previous = self._applied.get(key)
        if (
            previous is not None
            and previous.fingerprint == fingerprint
            and self._unchanged(key.namespace, previous)
        ):
            return
        generations: dict[tuple[str, str], int | None] = {}
        for manifest in manifests:
            result = self._kube.apply(manifest)
            metadata = result.get("metadata", {})
            generations[(manifest["kind"], metadata.get("name", ""))] = metadata.get("generation")
            log.info(
                "applied",
                extra={"object": str(key), "applied": f"{manifest['kind']}/{metadata.get('name')}"},
            )
        self._applied[key] = Applied(fingerprint, generations)

    def _unchanged(self, namespace: str, applied: Applied) -> bool:
        """Every object applied last time is cached, with the generation our apply left:
        nobody changed its spec since (a deleted or edited object is applied again)."""
        by_kind = {k.kind: k for k in (DEPLOYMENT, SERVICE, HPA)}
        for (kind, name), generation in applied.generations.items():
            cached = self._stores[by_kind[kind]].get(namespace, name)
            if cached is None or cached["metadata"].get("generation") != generation:
                return False
        return True

    def _replace_immutable(self, key: Key, owner: Object, manifests: list[Manifest]) -> None:
        """Delete an owned Deployment whose selector differs from the desired one (a selector
        is immutable: routers made with `app: <graph>` before KServe's `app: isvc.<graph>`)."""
        for manifest in manifests:
            if manifest["kind"] != DEPLOYMENT.kind:
                continue
            name = manifest["metadata"]["name"]
            found = self._owned(DEPLOYMENT, key.namespace, name, owner)
            wanted = manifest["spec"]["selector"]
            if found is not None and (found.get("spec") or {}).get("selector") != wanted:
                self._kube.delete(DEPLOYMENT, key.namespace, name, found["metadata"]["uid"])
                log.info("deleted", extra={"object": str(key), "deleted": f"Deployment/{name}"})
                self._applied.pop(key, None)

    def _prune(self, key: Key, owner: Object, objects: frozenset[tuple[str, str]]) -> None:
        """Delete the objects this owner controls that its spec no longer asks for."""
        by_kind = {k.kind: k for k in (DEPLOYMENT, SERVICE, HPA)}
        for kind_name, name in sorted(objects):
            kind = by_kind[kind_name]
            found = self._owned(kind, key.namespace, name, owner)
            if found is not None:
                self._kube.delete(kind, key.namespace, name, found["metadata"]["uid"])
                log.info("deleted", extra={"object": str(key), "deleted": f"{kind_name}/{name}"})


def _ns_name(obj: Object) -> tuple[str, str]:
    metadata = obj["metadata"]
    return metadata.get("namespace", ""), metadata["name"]


def _spec_changed(event: str, obj: Object, old: Object | None) -> bool:
    """Added, or its spec generation, labels or annotations moved (labels and annotations are
    propagated and `serving.kserve.io/*` annotations steer the reconcile, yet editing them
    does not bump the generation; status-only writes, ours included, do not count)."""
    if event == "DELETED":
        return False
    if event == "ADDED" or old is None:
        return True
    new, before = obj.get("metadata") or {}, old.get("metadata") or {}
    return any(new.get(f) != before.get(f) for f in ("generation", "labels", "annotations"))


def _summary(status: Object) -> str:
    return ",".join(
        f"{c['type']}={c['status']}({c.get('reason', '')})" for c in status.get("conditions", [])
    )
