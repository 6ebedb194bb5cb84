"""Where InferenceServices answer, and a graph with its service names resolved to those URLs.

KServe's controller fills each step's `serviceUrl` from the InferenceService it names (keeping
`serviceName`) before starting the router; every deployer here does the same through
`resolve_graph`: `infergraph up` with the local processes' addresses, `render` and the
Kubernetes controller with the cluster addresses (`cluster_address`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import urlsplit

from graph_controller.planning.components import (
    model_name,
    predictor_name,
    protocol,
    transformer_name,
)
from schemas.errors import FieldError, SpecError, render_path
from schemas.graph import InferenceStep
from schemas.inference_service import (
    Addressable,
    InferenceService,
    InferenceServiceStatus,
    ProtocolVersion,
)
from schemas.valid_graph import ValidGraph


def predict_url(address: str, model: str, protocol: str = ProtocolVersion.V1) -> str:
    """KServe's inference URL for `model` served at `address` (an InferenceService's URL).

    grpc-v2: `grpc://host:port/<model>`, what the router's gRPC steps call. KServe's
    Service for a gRPC predictor maps its port 80 to the container's first (`h2c`) port, so
    an address without a port is port 80 (443 for https).
    """
    base = address.rstrip("/")
    if protocol == ProtocolVersion.GRPC_V2:
        parts = urlsplit(base)
        port = parts.port or (443 if parts.scheme == "https" else 80)
        host = f"[{parts.hostname}]" if parts.hostname and ":" in parts.hostname else parts.hostname
        return f"grpc://{host}:{port}/{model}"
    if protocol != ProtocolVersion.V1:
        return f"{base}/v2/models/{model}/infer"
    return f"{base}/v1/models/{model}:predict"


__all__ = ["cluster_address", "predict_url", "predictor_name", "resolve_graph"]


def cluster_address(
    service: str,
    namespace: str,
    cluster_domain: str = "cluster.local",
    transformer: bool = False,
) -> str:
    """The in-cluster URL KServe gives an InferenceService: its transformer's Service when it
    has one, else its predictor's (KServe's getRawServiceHost)."""
    host = transformer_name(service) if transformer else predictor_name(service)
    return f"http://{host}.{namespace}.svc.{cluster_domain}"


def status_address(status: InferenceServiceStatus | None) -> str | None:
    """Where a Ready InferenceService answers (status.address.url, else status.url)."""
    if status is None or not status.is_ready():
        return None
    if status.address is not None and status.address.url:
        return status.address.url
    return status.url


def ready_at(service: InferenceService, address: str) -> InferenceService:
    """`service` as its controller reports it once its predictor answers at `address`."""
    status = InferenceServiceStatus(
        conditions=[{"type": "Ready", "status": "True"}],
        url=address,
        address=Addressable(url=address),
    )
    return service.model_copy(update={"status": status})


def resolve_service_names(
    graph: ValidGraph, urls: Mapping[str, str], source: str = "graph"
) -> ValidGraph:
    """`graph` with `serviceUrl` set on every step that names a service in `urls`.

    A name missing from `urls` is a SpecError naming the step, listing what is available.
    """
    known = ", ".join(sorted(urls)) or "none"
    errors = [
        FieldError(
            render_path(("nodes", node_name, "steps", index, "serviceName")),
            f"InferenceService '{step.service_name}' is not known (available: {known})",
        )
        for node_name, node in graph.spec.nodes.items()
        for index, step in enumerate(node.steps)
        if step.service_name is not None
        and step.service_url is None
        and step.service_name not in urls
    ]
    if errors:
        raise SpecError(errors, source)
    return graph.with_service_urls(urls)


@dataclass(frozen=True, slots=True)
class Resolution:
    """A graph with every resolvable serviceName filled, and what kept the rest unresolved."""

    graph: ValidGraph
    missing: tuple[str, ...]  # named InferenceServices that do not exist
    unready: tuple[str, ...]  # that exist but are not Ready or have no address yet

    @property
    def ready(self) -> bool:
        return not self.missing and not self.unready


def resolve_graph(graph: ValidGraph, services: Mapping[str, InferenceService]) -> Resolution:
    """Fill each step's serviceUrl from the InferenceService it names, as KServe's controller.

    `services` are keyed by the name graphs use; each service's metadata.name is that name.
    """
    urls: dict[str, str] = {}
    addresses: dict[str, str] = {}
    missing: list[str] = []
    unready: list[str] = []
    for name in graph.referenced_services():
        service = services.get(name)
        if service is None:
            missing.append(name)
            continue
        address = status_address(service.status)
        if address is None:
            unready.append(name)
        else:
            # KServe's GetPredictorEndpoint: the model name and protocol of the component
            # the address belongs to (the transformer when there is one).
            urls[name] = predict_url(address, model_name(service), protocol(service))
            addresses[name] = address

    def url_for(node: str, index: int, step: InferenceStep) -> str | None:
        if step.service_url is not None or step.service_name not in urls:
            return None
        if step.openai is not None:
            # KServe's model server serves OpenAI's protocol beside v1/v2, under /openai.
            return addresses[step.service_name].rstrip("/") + step.openai.path
        return urls[step.service_name]

    return Resolution(graph.with_step_urls(url_for), tuple(missing), tuple(unready))
