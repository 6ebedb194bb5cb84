"""Start a kserve.ModelServer for one model, bound where `infergraph up` wants it.

KServe's REST server listens on 0.0.0.0 and its gRPC server on [::] with no option to change
either; a local deployment must stay on loopback, so `--bind_host` (default 127.0.0.1) replaces
the host of both. gRPC is off unless asked for (`--enable_grpc true --grpc_port P`, what
`infergraph up` adds for a grpc-v2 predictor): each local predictor would otherwise claim the
same fixed gRPC port (8081).
"""

from __future__ import annotations

import argparse
import warnings
from typing import Any

import grpc
import kserve.model_server
import kserve.protocol.grpc.server as kserve_grpc_server
from kserve import Model, ModelServer, model_server
from kserve.protocol.rest.server import RESTServer

# kserve 0.21 answers through FastAPI's ORJSONResponse, which FastAPI now deprecates with a
# warning on every response: one log line per request in `infergraph up`'s output that no user
# can act on. Only that warning is silenced; any other still shows.
warnings.filterwarnings("ignore", message="ORJSONResponse is deprecated", category=UserWarning)


def parser(description: str) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=description, parents=[model_server.parser])
    p.add_argument("--model_dir", required=True, help="the model's folder (from storageUri)")
    p.add_argument("--bind_host", default="127.0.0.1", help="address to listen on")
    return p


def serve(model: Model, args: argparse.Namespace) -> None:
    host = args.bind_host

    class BoundRESTServer(RESTServer):  # type: ignore[misc]
        def __init__(self, *a: Any, **kw: Any) -> None:
            super().__init__(*a, **kw)
            self.config.host = host

    kserve.model_server.RESTServer = BoundRESTServer
    # KServe's gRPC server binds [::]:<grpc_port>; the same loopback rule holds for it.
    kserve_grpc_server.aio = _BoundGrpc(host)
    ModelServer(
        http_port=args.http_port, grpc_port=args.grpc_port, enable_grpc=args.enable_grpc
    ).start([model])


class _BoundGrpc:
    """`grpc.aio` as KServe's GRPCServer uses it, with every listening address on `host`."""

    def __init__(self, host: str) -> None:
        self._host = host

    def __getattr__(self, name: str) -> Any:
        return getattr(grpc.aio, name)

    def server(self, *args: Any, **kwargs: Any) -> Any:
        server = grpc.aio.server(*args, **kwargs)
        add_insecure_port = server.add_insecure_port

        def bound(address: str) -> int:
            port = address.rsplit(":", 1)[1]
            port_number: int = add_insecure_port(f"{self._host}:{port}")
            return port_number

        server.add_insecure_port = bound  # type: ignore[method-assign]
        return server
