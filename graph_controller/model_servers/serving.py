"""Start a kserve.ModelServer for one model, bound where `infergraph up` wants it.

KServe's REST server listens on 0.0.0.0 with no option to change it; a local deployment must
stay on loopback, so `--bind_host` (default 127.0.0.1) replaces the host of the uvicorn config
KServe builds. gRPC is off unless asked for: each local predictor would otherwise claim the
same fixed gRPC port (8081).
"""

from __future__ import annotations

import argparse
from typing import Any

import kserve.model_server
from kserve import Model, ModelServer, model_server
from kserve.protocol.rest.server import RESTServer


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
    ModelServer(http_port=args.http_port, enable_grpc=args.enable_grpc).start([model])
