"""Wiring: caches, work queue, workers, leader election and probes, until SIGTERM.

Both a leader and a standby run the caches (so /readyz means "caches synced" on either and
a takeover starts warm); only the leader runs workers. Losing the Lease stops the process with
status 1, as controller-runtime does: a restart is the safe way back to a consistent state.
Graceful stop: no new keys, in-flight reconciles finish (bounded), then the Lease is released.
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
import time
from functools import partial

from graph_controller.controller.render import RenderOptions

from .health import health_app, serve
from .informer import Informer, Store
from .kube import ApiError, Kube, load_configuration
from .leader import LeaderElector
from .reconciler import Reconciler, watched
from .resources import CLUSTER_SERVING_RUNTIME, DEPLOYMENT, HPA, MANAGED_BY, POD, SERVICE, Key
from .settings import ControllerSettings
from .workqueue import WorkQueue

log = logging.getLogger("graph_controller.controller")

# Seconds in-flight reconciles get on SIGTERM; with the Lease release it fits the 30 s
# terminationGracePeriodSeconds of config/manager/deployment.yaml.
DRAIN_TIMEOUT = 10.0


class Controller:
    def __init__(self, kube: Kube, settings: ControllerSettings) -> None:
        self.settings = settings
        self.queue: WorkQueue[Key] = WorkQueue()
        self.stop = threading.Event()
        self.stores = {kind: Store() for kind in watched(settings.mode)}
        options = RenderOptions(
            router_image=settings.router_image, propagate_headers=settings.propagate_headers
        )
        self.reconciler = Reconciler(
            kube,
            self.stores,
            options,
            self.queue.add,
            identity=settings.identity,
            mode=settings.mode,
        )
        self.informers: list[Informer] = []
        namespaces: tuple[str | None, ...] = settings.namespaces or (None,)
        for kind in watched(settings.mode):
            # Only objects we labelled: a cluster's other Deployments are not our business.
            # Pods: those of our Deployments, whose template carries the same label.
            selector = MANAGED_BY if kind in (DEPLOYMENT, SERVICE, HPA, POD) else None
            for namespace in (None,) if kind is CLUSTER_SERVING_RUNTIME else namespaces:
                handler = partial(self.reconciler.on_event, kind)
                self.informers.append(
                    Informer(kube, kind, namespace, selector, self.stores[kind], handler, self.stop)
                )
        self._workers: list[threading.Thread] = []
        self.elector: LeaderElector | None = None  # set by main_async when electing

    def live(self) -> tuple[bool, str]:
        """Alive while every informer and worker thread runs (a dead one means restart me)."""
        if self.stop.is_set():
            return (False, "stopping")
        dead = [i.kind.plural for i in self.informers if not i.alive()]
        dead += [w.name for w in self._workers if not w.is_alive()]
        if self.elector is not None and not self.elector.alive():
            dead.append("leader election")
        return (not dead, "threads ended: " + ", ".join(dead))

    def synced(self) -> tuple[bool, str]:
        waiting = [f"{i.kind.plural}" for i in self.informers if not i.synced.is_set()]
        return (not waiting, "caches not synced: " + ", ".join(waiting))

    def start_informers(self) -> None:
        for informer in self.informers:
            informer.start()

    def start_workers(self) -> None:
        for n in range(self.settings.workers):
            worker = threading.Thread(target=self._work, name=f"worker {n}", daemon=True)
            worker.start()
            self._workers.append(worker)
        log.info("reconciling", extra={"workers": self.settings.workers})

    def _work(self) -> None:
        # Caches first: a reconcile against a half-listed cache would see objects as missing.
        for informer in self.informers:
            while not informer.synced.wait(1.0):
                if self.stop.is_set():
                    return
        while (key := self.queue.get()) is not None:
            started = time.monotonic()
            try:
                self.reconciler.reconcile(key)
                log.debug(
                    "reconciled",
                    extra={"object": str(key), "seconds": round(time.monotonic() - started, 4)},
                )
            except Exception as error:
                if not isinstance(error, ApiError):
                    # A bug for this one object must not take the worker down with it.
                    log.exception("reconcile crashed, retrying", extra={"object": str(key)})
                    self.queue.retry(key)
                    continue
                if not error.retryable:
                    # A 4xx other than 409/429 will not pass by retrying; the object's next
                    # change re-queues it.
                    self.queue.forget(key)
                    log.error(
                        "reconcile failed, not retried",
                        extra={"object": str(key), "status": error.status, "error": str(error)},
                    )
                    continue
                delay = self.queue.retry(key)
                log.warning(
                    "reconcile failed, retrying",
                    extra={
                        "object": str(key),
                        "status": error.status,
                        "error": str(error),
                        "retry_in": round(delay, 3),
                        "attempt": self.queue.failures(key),
                    },
                )
            else:
                self.queue.forget(key)
            finally:
                self.queue.done(key)

    def shutdown(self) -> bool:
        """Stop taking keys and wait (bounded) for in-flight reconciles; True when all ended."""
        self.queue.shutdown()
        deadline = time.monotonic() + DRAIN_TIMEOUT
        for worker in self._workers:
            worker.join(max(0.0, deadline - time.monotonic()))
        self.stop.set()
        return not any(worker.is_alive() for worker in self._workers)


async def main_async(settings: ControllerSettings, stop: asyncio.Event) -> int:
    """Run until `stop` is set (SIGTERM: 0); losing leadership ends the process (status 1)."""
    pool = len(watched(settings.mode)) * max(1, len(settings.namespaces)) + settings.workers + 2
    configuration = load_configuration(settings.kubeconfig, pool)
    kube = Kube(configuration)
    controller = Controller(kube, settings)

    def on_lost() -> None:
        # Another replica may lead from now on: stop at once, in-flight reconciles included
        # (no drain), as controller-runtime does. A restart starts again from the caches.
        for handler in logging.getLogger().handlers:
            handler.flush()
        os._exit(1)

    runner = None
    if settings.health_port:
        app = health_app(controller.live, controller.synced)
        runner = await serve(app, settings.health_host, settings.health_port)
    controller.start_informers()
    elector = None
    election_stop = threading.Event()
    if settings.leader_elect:
        elector = LeaderElector(
            kube,
            settings.lease_namespace,
            settings.lease_name,
            settings.identity,
            settings.timing,
            on_started=controller.start_workers,
            on_lost=on_lost,
            stop=election_stop,
        )
        controller.elector = elector
        elector.start()
    else:
        controller.start_workers()
    log.info(
        "controller started",
        extra={
            "namespaces": list(settings.namespaces) or "all",
            "identity": settings.identity,
            "leader_elect": settings.leader_elect,
            "mode": settings.mode,
        },
    )
    await stop.wait()
    log.info("stopping")
    drained = await asyncio.to_thread(controller.shutdown)
    if elector is not None:
        # A worker still writing: let the Lease expire instead of handing it over now.
        elector.release = drained
        election_stop.set()
        await asyncio.to_thread(elector.join, DRAIN_TIMEOUT)
    if runner is not None:
        await runner.cleanup()
    kube.close()
    return 0
