"""Reconcile one key: read the caches, ask `decide` what should exist, apply it, write status.

Also turns cache events into work: an owner changed (spec generation) -> itself; an owned
Deployment/Service/HPA changed -> its controller owner; an InferenceService's URL or readiness
changed -> every graph naming it (an index kept from the graph events); a serving runtime
changed -> the InferenceServices it may serve. Errors propagate as `ApiError` to the worker,
which retries the key with backoff, except a write the API server refuses (a 4xx other than
409/429): that becomes `Ready=False` (reason `ApplyRejected`, the server's message) on the
owner's status and a Warning Event, since no retry can pass until the spec changes. Status
changes that reach or lose Ready are Events too, as KServe records them (`events`).
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

from graph_controller.controller.render import Manifest, RenderOptions
from graph_controller.planning.components import predictor_name, transformer_name

from . import decide, events
from .informer import Store
from .kube import ApiError, Kube
from .resources import (
    CLUSTER_SERVING_RUNTIME,
    DEPLOYMENT,
    GRAPH,
    HPA,
    ISVC,
    SERVICE,
    SERVING_RUNTIME,
    Key,
    Kind,
    Object,
    owner_key,
    owner_uid,
)

log = logging.getLogger("graph_controller.controller.reconciler")

WATCHED = (GRAPH, ISVC, SERVING_RUNTIME, CLUSTER_SERVING_RUNTIME, DEPLOYMENT, SERVICE, HPA)


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
    ) -> None:
        self._kube, self._stores, self._options = kube, stores, options
        self._enqueue, self._now, self._identity = enqueue, now, identity
        self._lock = threading.Lock()
        self._references: dict[tuple[str, str], frozenset[str]] = {}  # graph -> services
        self._applied: dict[Key, Applied] = {}

    # --- events (on informer threads) ---

    def on_event(self, kind: Kind, event: str, obj: Object, old: Object | None) -> None:
        metadata = obj.get("metadata", {})
        namespace, name = metadata.get("namespace", ""), metadata.get("name", "")
        if kind is GRAPH:
            self._index_graph(event, namespace, name, obj)
            if _spec_changed(event, obj, old):
                self._enqueue(Key(GRAPH.kind, namespace, name))
        elif kind is ISVC:
            if _spec_changed(event, obj, old):
                self._enqueue(Key(ISVC.kind, namespace, name))
            if event != "MODIFIED" or decide.service_url(obj) != decide.service_url(old or {}):
                for graph in self.graphs_naming(namespace, name):
                    self._enqueue(Key(GRAPH.kind, namespace, graph))
        elif kind in (SERVING_RUNTIME, CLUSTER_SERVING_RUNTIME):
            if _spec_changed(event, obj, old):
                scope = namespace if kind is SERVING_RUNTIME else None
                for service in self._stores[ISVC].items(scope):
                    self._enqueue(Key(ISVC.kind, *_ns_name(service)))
        else:
            owner = owner_key(obj)
            if owner is not None:
                self._enqueue(owner)

    def _index_graph(self, event: str, namespace: str, name: str, obj: Object) -> None:
        with self._lock:
            if event == "DELETED":
                self._references.pop((namespace, name), None)
            else:
                self._references[(namespace, name)] = decide.referenced_services(obj)

    def graphs_naming(self, namespace: str, service: str) -> list[str]:
        with self._lock:
            return [
                graph
                for (ns, graph), names in self._references.items()
                if ns == namespace and service in names
            ]

    # --- reconcile (on worker threads; one key never on two at once) ---

    def reconcile(self, key: Key) -> None:
        kind = ISVC if key.kind == ISVC.kind else GRAPH
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
            desired = self._plan_graph(obj, options)
            conditions = decide.GRAPH_CONDITIONS
        try:
            self._replace_immutable(key, obj, desired.manifests)
            self._apply(key, obj, desired.manifests)
            self._prune(key, obj, desired.prune)
        except ApiError as error:
            if error.retryable:
                raise
            # The API server refused what we rendered (e.g. 422 for an invalid quantity):
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
            change = events.readiness_event(kind.kind, key.name, obj.get("status"), desired.status)
            if change is not None:
                self._record(obj, change)

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

    def _plan_service(self, obj: Object, options: RenderOptions) -> decide.Desired:
        namespace, name = _ns_name(obj)
        runtimes = decide.runtimes_from(
            self._stores[CLUSTER_SERVING_RUNTIME].items(),
            self._stores[SERVING_RUNTIME].items(namespace),
        )
        deployment = self._owned(DEPLOYMENT, namespace, predictor_name(name), obj)
        transformer = self._owned(DEPLOYMENT, namespace, transformer_name(name), obj)
        return decide.plan_service(obj, runtimes, deployment, options, self._now(), transformer)

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
