"""grpc:// step URLs: what the schema accepts, and the URL a grpc-v2 InferenceService gets."""

from __future__ import annotations

from typing import Any

import pytest

from graph_controller.controller.render import RenderError, RenderOptions, render
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


def _graph_with(annotation: str | None) -> dict[str, Any]:
    metadata: dict[str, Any] = {"name": "g"}
    if annotation is not None:
        metadata["annotations"] = {"infergraph.dev/grpc-port": annotation}
    return {
        "apiVersion": "serving.kserve.io/v1alpha1",
        "kind": "InferenceGraph",
        "metadata": metadata,
        "spec": root_graph("Sequence", {"serviceUrl": "grpc://m.ns:80/m"}),
    }


def _rendered(annotation: str | None) -> tuple[dict[str, Any], dict[str, Any]]:
    manifests = render({"g": validate_graph(_graph_with(annotation))}, {}, (), RenderOptions())
    deployment = next(m for m in manifests if m["kind"] == "Deployment")
    service = next(m for m in manifests if m["kind"] == "Service")
    return deployment["spec"]["template"]["spec"]["containers"][0], service


def test_the_grpc_port_annotation_exposes_the_routers_grpc_port() -> None:
    container, service = _rendered("8081")
    assert container["args"][-2:] == ["--grpc-port", "8081"]
    assert container["ports"][1] == {"containerPort": 8081, "name": "grpc", "protocol": "TCP"}
    assert service["spec"]["ports"][1] == {
        "port": 8081,
        "targetPort": 8081,
        "protocol": "TCP",
        "name": "grpc",
        "appProtocol": "kubernetes.io/h2c",
    }


def test_without_the_annotation_the_router_is_kserves() -> None:
    container, service = _rendered(None)
    assert "--grpc-port" not in container["args"]
    assert [p["port"] for p in service["spec"]["ports"]] == [80]


@pytest.mark.parametrize("value", ["8080", "0", "grpc", "70000"])
def test_a_bad_grpc_port_annotation_is_refused_naming_it(value: str) -> None:
    with pytest.raises(RenderError, match=f"infergraph.dev/grpc-port: '{value}' is not a port"):
        _rendered(value)
