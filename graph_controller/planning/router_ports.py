"""The router's gRPC port, asked for per InferenceGraph with an annotation (pure).

KServe's router has no gRPC (kserve/kserve#2449), so a KServe InferenceGraph has no field for
it. `infergraph.dev/grpc-port: "8081"` on an InferenceGraph has its router serve the Open
Inference Protocol over gRPC there: `render` and the controller add `--grpc-port` and a
container port named `grpc` (so the Service port gets `appProtocol: kubernetes.io/h2c`, as
KServe gives ports named grpc/h2c); `infergraph up` starts the router with a gRPC port too.
Without the annotation the manifests are KServe's.
"""

from __future__ import annotations

from collections.abc import Mapping

GRPC_PORT_ANNOTATION = "infergraph.dev/grpc-port"
ROUTER_HTTP_PORT = 8080  # KServe's router port


class RouterPortError(ValueError):
    """The annotation's value is not a port the router can take; the text names both."""


def grpc_port(annotations: Mapping[str, str] | None) -> int | None:
    """The gRPC port an InferenceGraph's annotations ask for, or None."""
    raw = (annotations or {}).get(GRPC_PORT_ANNOTATION)
    if raw is None:
        return None
    port = int(raw) if raw.isdigit() else 0
    if not 1 <= port <= 65535 or port == ROUTER_HTTP_PORT:
        raise RouterPortError(
            f"annotation {GRPC_PORT_ANNOTATION}: '{raw}' is not a port for gRPC (1-65535, "
            f"not the router's HTTP port {ROUTER_HTTP_PORT})"
        )
    return port
