"""Typed settings for `infergraph controller`, built by the CLI from flags and environment."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from graph_controller.controller.render import ROUTER_IMAGE

from .leader import Timing

DEFAULT_LEASE_NAMESPACE = "infergraph-system"
DEFAULT_LEASE_NAME = "infergraph-controller"
DEFAULT_HEALTH_PORT = 8081  # controller-runtime's probe port
DEFAULT_WORKERS = 4  # concurrent reconciles; API round trips, not CPU, bound each one
# standalone: we run InferenceServices and both graph kinds; alongside-kserve: KServe's
# controller runs serving.kserve.io, we run only infergraph.dev graphs (README "Living beside
# KServe"). Chosen by the installer, never guessed: the CRDs' presence does not say whether
# KServe's controller is running.
Mode = Literal["standalone", "alongside-kserve"]
MODES: tuple[Mode, ...] = ("standalone", "alongside-kserve")


@dataclass(frozen=True, slots=True)
class ControllerSettings:
    namespaces: tuple[str, ...] = ()  # empty: all namespaces
    kubeconfig: str | None = None
    leader_elect: bool = True
    lease_namespace: str = DEFAULT_LEASE_NAMESPACE
    lease_name: str = DEFAULT_LEASE_NAME
    identity: str = ""
    timing: Timing = field(default_factory=Timing)
    health_host: str = "0.0.0.0"  # the kubelet probes the Pod IP
    health_port: int = DEFAULT_HEALTH_PORT
    router_image: str = ROUTER_IMAGE
    propagate_headers: tuple[str, ...] = ()
    workers: int = DEFAULT_WORKERS
    mode: Mode = "standalone"
