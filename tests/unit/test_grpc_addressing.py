"""grpc:// step URLs: what the schema accepts, and the URL a grpc-v2 InferenceService gets."""

from __future__ import annotations

import pytest

from graph_controller.planning.addressing import predict_url
from schemas.errors import SpecError
from schemas.inference_service import ProtocolVersion
from schemas.valid_graph import validate_graph
from tests.support import root_graph


@pytest.mark.parametrize(
    ("address", "url"),
    [
        (
            "http://iris-predictor.ns.svc.cluster.local",
            "grpc://iris-predictor.ns.svc.cluster.local:80/iris",
        ),
        ("http://127.0.0.1:9001/", "grpc://127.0.0.1:9001/iris"),
        ("https://iris.example", "grpc://iris.example:443/iris"),
    ],
    ids=["cluster", "local", "https"],
)
def test_a_grpc_v2_service_is_called_on_its_port(address: str, url: str) -> None:
    assert predict_url(address, "iris", ProtocolVersion.GRPC_V2) == url


def test_a_grpc_url_is_a_valid_service_url() -> None:
    validate_graph(root_graph("Sequence", {"serviceUrl": "grpc://127.0.0.1:8081/iris"}))


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("grpc://127.0.0.1/iris", "'grpc://127.0.0.1/iris' needs a host and a port"),
        ("grpc://127.0.0.1:8081", "needs exactly a model name as its path"),
        ("grpc://127.0.0.1:8081/a/b", "needs exactly a model name as its path"),
        ("ftp://a/b", "'ftp://a/b' is not an absolute http(s) URL (or grpc://host:port/<model>)"),
    ],
    ids=["no-port", "no-model", "two-segments", "other-scheme"],
)
def test_malformed_step_urls_are_refused_with_the_reason(url: str, message: str) -> None:
    with pytest.raises(SpecError) as error:
        validate_graph(root_graph("Sequence", {"serviceUrl": url}))
    assert message in str(error.value)
