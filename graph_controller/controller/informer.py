"""List+watch caches: one thread per (resource, namespace) keeps a Store current.

The loop is client-go's reflector: list (all pages) for a resourceVersion, watch from it
(bookmarks on, bounded server timeout), resume from the last version seen, re-list on 410
Gone; on any other API error wait with exponential backoff (on the stop event, so shutdown is
immediate) and re-list. A re-list reports objects that vanished meanwhile as DELETED.
Handlers get (event type, new object, old object or None) on the informer's thread.
"""

from __future__ import annotations

import logging
import random
import threading
from collections.abc import Callable

from .kube import ApiError, Kube
from .resources import Kind, Object

log = logging.getLogger("graph_controller.controller.informer")

WATCH_TIMEOUT = 300  # seconds the server keeps one watch open; client-go picks 5-10 minutes
RELIST_BASE, RELIST_MAX = 0.2, 30.0  # seconds of backoff between failing list/watch rounds

Handler = Callable[[str, Object, Object | None], None]
StoreKey = tuple[str, str]  # (namespace, name); namespace "" for cluster-scoped objects


class Store:
    """Objects by (namespace, name); readers get the dicts the watch produced (do not mutate)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._objects: dict[StoreKey, Object] = {}

    def get(self, namespace: str, name: str) -> Object | None:
        with self._lock:
            return self._objects.get((namespace, name))

    def items(self, namespace: str | None = None) -> list[Object]:
        with self._lock:
            return [o for (ns, _), o in self._objects.items() if namespace in (None, ns)]

    def __len__(self) -> int:
        with self._lock:
            return len(self._objects)

    def _put(self, obj: Object) -> Object | None:
        key = _key(obj)
        with self._lock:
            old = self._objects.get(key)
            self._objects[key] = obj
            return old

    def _remove(self, obj: Object) -> Object | None:
        with self._lock:
            return self._objects.pop(_key(obj), None)

    def _missing_from(self, objects: list[Object], namespace: str | None) -> list[Object]:
        """Cached objects of `namespace` (None: all) absent from a fresh list of it: deleted
        while no watch was open. With several `--namespace`s, one store holds the objects of
        every namespace's informer, and a list of one says nothing about the others."""
        fresh = {_key(o) for o in objects}
        with self._lock:
            return [
                o
                for k, o in self._objects.items()
                if k not in fresh and (namespace is None or k[0] == namespace)
            ]


def _key(obj: Object) -> StoreKey:
    metadata = obj["metadata"]
    return metadata.get("namespace", ""), metadata["name"]


class Informer:
    def __init__(
        self,
        kube: Kube,
        kind: Kind,
        namespace: str | None,
        selector: str | None,
        store: Store,
        handler: Handler,
        stop: threading.Event,
    ) -> None:
        self.kind, self.namespace, self.selector = kind, namespace, selector
        self.store, self._kube, self._handler, self._stop = store, kube, handler, stop
        self.synced = threading.Event()
        where = namespace or "all namespaces"
        self._thread = threading.Thread(
            target=self._run, name=f"informer {kind.plural} {where}", daemon=True
        )

    def start(self) -> None:
        self._thread.start()

    def _run(self) -> None:
        failures = 0
        while not self._stop.is_set():
            try:
                version = self._list()
                self.synced.set()
                failures = 0
                self._watch(version)
            except ApiError as error:
                if error.status == 410:
                    log.info("watch expired, re-listing", extra={"resource": self.kind.plural})
                    continue
                self._back_off(failures, str(error))
                failures += 1
            except Exception as error:
                # Whatever else breaks a round (a malformed event, a client bug) must not end
                # the watch for good: the cache would silently go stale. Log it, list again.
                log.exception("list/watch failed", extra={"resource": self.kind.plural})
                self._back_off(failures, repr(error))
                failures += 1

    def _back_off(self, failures: int, error: str) -> None:
        delay = min(RELIST_MAX, RELIST_BASE * 2**failures) * random.uniform(0.8, 1.2)
        log.warning(
            "list/watch failed",
            extra={"resource": self.kind.plural, "error": error, "retry_in": round(delay, 3)},
        )
        self._stop.wait(delay)

    def alive(self) -> bool:
        return self._thread.is_alive()

    def _list(self) -> str:
        page = self._kube.list(self.kind, self.namespace, self.selector)
        items: list[Object] = page["items"]
        for obj in self.store._missing_from(items, self.namespace):
            self.store._remove(obj)
            self._handler("DELETED", obj, obj)
        for obj in items:
            obj.setdefault("apiVersion", self.kind.api_version)
            obj.setdefault("kind", self.kind.kind)
            old = self.store._put(obj)
            self._handler("ADDED" if old is None else "MODIFIED", obj, old)
        version: str = page["metadata"]["resourceVersion"]
        return version

    def _watch(self, version: str) -> None:
        while not self._stop.is_set():
            timeout = int(WATCH_TIMEOUT * random.uniform(1.0, 2.0))  # spread the re-watches
            events = self._kube.watch(self.kind, self.namespace, self.selector, version, timeout)
            for kind, obj, seen in events:
                version = seen or version
                if kind == "BOOKMARK":
                    continue
                if kind == "DELETED":
                    old = self.store._remove(obj)
                    self._handler("DELETED", obj, old)
                elif kind in ("ADDED", "MODIFIED"):
                    old = self.store._put(obj)
                    self._handler("ADDED" if old is None else "MODIFIED", obj, old)
                if self._stop.is_set():
                    return
