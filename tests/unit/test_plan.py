"""Pure planning: serviceName resolution as KServe's controller does it, and local plans."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from graph_controller.planning.addressing import (
    predict_url,
    resolve_graph,
    resolve_service_names,
)
from graph_controller.planning.builtin_runtimes import builtin_runtimes
from graph_controller.planning.bundle import load_bundle
from graph_controller.planning.local_plan import (
    LocalPlanError,
    local_command,
    model_dir,
    plan_local,
)
from graph_controller.planning.runtime_selection import Runtime, Scope
from schemas.errors import SpecError
from schemas.inference_service import InferenceService, ProtocolVersion
from schemas.serving_runtime import LOCAL_COMMAND_ANNOTATION, ServingRuntimeSpec
from schemas.valid_graph import ValidGraph, validate_graph


def isvc(name: str, ready: bool | None = True, protocol: str | None = None) -> InferenceService:
    model: dict[str, Any] = {"modelFormat": {"name": "sklearn"}, "storageUri": f"models/{name}"}
    if protocol:
        model["protocolVersion"] = protocol
    doc: dict[str, Any] = {
        "apiVersion": "serving.kserve.io/v1beta1",
        "kind": "InferenceService",
        "metadata": {"name": name},
        "spec": {"predictor": {"model": model}},
    }
    if ready is not None:
        doc["status"] = {
            "conditions": [{"type": "Ready", "status": str(ready)}],
            "address": {"url": f"http://{name}.default.svc.cluster.local"},
        }
    return InferenceService.model_validate(doc)


def graph(*steps: dict[str, Any]) -> ValidGraph:
    return validate_graph({"nodes": {"root": {"routerType": "Sequence", "steps": list(steps)}}})


@pytest.mark.parametrize(
    ("protocol", "expected"),
    [
        (ProtocolVersion.V1, "http://m.ns/v1/models/m:predict"),
        (ProtocolVersion.V2, "http://m.ns/v2/models/m/infer"),
    ],
    ids=["v1", "v2"],
)
def test_predict_url_follows_kserve_protocol_paths(
    protocol: ProtocolVersion, expected: str
) -> None:
    assert predict_url("http://m.ns/", "m", protocol) == expected


def test_resolution_fills_service_url_and_keeps_service_name() -> None:
    spec = graph(
        {"serviceName": "a"},
        {"serviceName": "b", "serviceUrl": "http://given/x"},
        {"serviceName": "c", "data": "$response"},
    )
    resolution = resolve_graph(spec, {"a": isvc("a"), "c": isvc("c", protocol="v2")})
    steps = resolution.graph.spec.nodes["root"].steps
    assert steps[0].service_url == "http://a.default.svc.cluster.local/v1/models/a:predict"
    assert steps[0].service_name == "a"
    assert steps[1].service_url == "http://given/x"  # an explicit serviceUrl is left alone
    assert steps[2].service_url == "http://c.default.svc.cluster.local/v2/models/c/infer"
    assert resolution.ready


@pytest.mark.parametrize(
    ("services", "missing", "unready"),
    [
        ({}, ("a",), ()),
        ({"a": isvc("a", ready=False)}, (), ("a",)),
        ({"a": isvc("a", ready=None)}, (), ("a",)),
    ],
    ids=["missing", "not-ready", "no-status-yet"],
)
def test_missing_or_unready_services_are_reported_not_raised(
    services: dict[str, InferenceService], missing: tuple[str, ...], unready: tuple[str, ...]
) -> None:
    resolution = resolve_graph(graph({"serviceName": "a"}), services)
    assert not resolution.ready
    assert (resolution.missing, resolution.unready) == (missing, unready)
    assert resolution.graph.spec.nodes["root"].steps[0].service_url is None


@settings(derandomize=True, max_examples=100)
@given(
    st.lists(st.sampled_from("abcde"), min_size=1, max_size=6),
    st.sets(st.sampled_from("abcde")),
)
def test_resolution_resolves_exactly_the_ready_services(used: list[str], ready: set[str]) -> None:
    spec = graph(*({"serviceName": name} for name in used))
    services = {name: isvc(name) for name in ready}
    resolution = resolve_graph(spec, services)
    for step in resolution.graph.spec.nodes["root"].steps:
        assert (step.service_url is not None) == (step.service_name in ready)
    assert set(resolution.missing) == set(used) - ready
    assert resolution.ready == (set(used) <= ready)


def test_resolve_service_names_names_the_unknown_step() -> None:
    with pytest.raises(SpecError) as error:
        resolve_service_names(graph({"serviceName": "a"}, {"serviceName": "zz"}), {"a": "http://a"})
    (problem,) = error.value.errors
    assert problem.path == "nodes.root.steps[1].serviceName"
    assert "'zz' is not known (available: a)" in problem.message


def runtime_with(annotation: str | None) -> Runtime:
    spec = ServingRuntimeSpec.model_validate(
        {"supportedModelFormats": [{"name": "sklearn", "autoSelect": True}]}
    )
    annotations = {} if annotation is None else {LOCAL_COMMAND_ANNOTATION: annotation}
    return Runtime("mine", Scope.NAMESPACE, spec, annotations)


@pytest.mark.parametrize(
    ("annotation", "message"),
    [("not json", "is not JSON"), ('{"a": 1}', "must be a JSON list"), ("[]", "must be a JSON")],
    ids=["not-json", "object", "empty"],
)
def test_bad_local_command_annotations_are_explained(annotation: str, message: str) -> None:
    with pytest.raises(LocalPlanError, match=message):
        local_command(runtime_with(annotation))


def test_local_plan_uses_the_runtime_kserve_would_select(tmp_path: Path) -> None:
    (tmp_path / "models" / "a").mkdir(parents=True)
    plan = plan_local({"a": isvc("a")}, builtin_runtimes(), tmp_path, "/usr/bin/python3")
    (predictor,) = plan.predictors
    assert predictor.runtime == "kserve-sklearnserver"
    command = predictor.command(9000)
    assert command[:3] == ["/usr/bin/python3", "-m", "graph_controller.model_servers.sklearn"]
    assert command[command.index("--model_dir") + 1] == str(tmp_path / "models" / "a")
    assert command[command.index("--http_port") + 1] == "9000"
    assert predictor.ready_path == "/v1/models/a"


@pytest.mark.parametrize(
    ("model", "ready_path"),
    [
        pytest.param({"args": ["--model_name", "iris"]}, "/v1/models/iris", id="args"),
        pytest.param({"args": ["--model_name=iris"]}, "/v1/models/iris", id="args-equals"),
        pytest.param(
            {"env": [{"name": "MLSERVER_MODEL_NAME", "value": "iris"}], "protocolVersion": "v2"},
            "/v2/models/iris/ready",
            id="mlserver-env",
        ),
    ],
)
def test_a_model_is_awaited_under_the_name_graphs_call(
    tmp_path: Path, model: dict[str, Any], ready_path: str
) -> None:
    # KServe's GetModelName: the name in the URL a graph calls, and so the one to await.
    (tmp_path / "models" / "m").mkdir(parents=True)
    doc = isvc("m").model_dump(by_alias=True, exclude_none=True)
    doc["spec"]["predictor"]["model"].update(model)
    service = InferenceService.model_validate(doc)
    (predictor,) = plan_local({"m": service}, builtin_runtimes(), tmp_path, "py").predictors
    assert predictor.ready_path == ready_path


def test_a_namespace_runtime_wins_and_must_say_how_to_run_locally(tmp_path: Path) -> None:
    (tmp_path / "models" / "a").mkdir(parents=True)
    runtimes = (runtime_with(None), *builtin_runtimes())
    with pytest.raises(LocalPlanError, match="runtime 'mine' has no local command"):
        plan_local({"a": isvc("a")}, runtimes, tmp_path, "python")
    argv = json.dumps(["{python}", "-m", "srv", "--port", "{port}", "--name", "{model_name}"])
    runtimes = (runtime_with(argv), *builtin_runtimes())
    (predictor,) = plan_local({"a": isvc("a")}, runtimes, tmp_path, "py").predictors
    assert predictor.command(1) == ["py", "-m", "srv", "--port", "1", "--name", "a"]


@pytest.mark.parametrize(
    ("uri", "expected"),
    [
        ("file:///srv/models/a", Path("/srv/models/a")),
        ("models/a", Path("/bundle/models/a")),
        ("/abs/a", Path("/abs/a")),
    ],
    ids=["file-uri", "relative", "absolute"],
)
def test_model_dir_reads_local_storage_uris(uri: str, expected: Path) -> None:
    assert model_dir(uri, Path("/bundle")) == expected


def test_remote_storage_uris_are_refused_locally() -> None:
    with pytest.raises(LocalPlanError, match="remote"):
        model_dir("gs://bucket/model", Path("/bundle"))


def test_missing_model_folder_is_reported(tmp_path: Path) -> None:
    with pytest.raises(LocalPlanError, match=r"InferenceService 'a': model at .* does not exist"):
        plan_local({"a": isvc("a")}, builtin_runtimes(), tmp_path, "python")


@pytest.mark.parametrize(
    ("endpoint", "path"),
    [("chat", "/openai/v1/chat/completions"), ("completions", "/openai/v1/completions")],
    ids=["chat", "completions"],
)
def test_an_openai_step_resolves_to_kserves_openai_endpoint(endpoint: str, path: str) -> None:
    spec = graph({"serviceName": "llm", "openai": endpoint}, {"serviceName": "llm"})
    steps = resolve_graph(spec, {"llm": isvc("llm")}).graph.spec.nodes["root"].steps
    assert steps[0].service_url == f"http://llm.default.svc.cluster.local{path}"
    # The same service called by a step without `openai` keeps its predict URL.
    assert steps[1].service_url == "http://llm.default.svc.cluster.local/v1/models/llm:predict"


def test_the_llm_example_runs_its_generators_on_the_openai_runtime_it_declares() -> None:
    # The bundle's ServingRuntime lists the `text-generator` format; KServe's selection finds it
    # for the generators, and the built-in custom runtime for the guard.
    bundle = load_bundle(Path(__file__).parents[2] / "examples" / "llm-stream")
    runtimes = (*bundle.runtimes, *builtin_runtimes())
    plan = plan_local(bundle.services, runtimes, bundle.root, "py")
    assert {p.service: p.runtime for p in plan.predictors} == {
        "prompt-guard": "infergraph-custom",
        "zen-writer": "text-generator-openai",
        "data-writer": "text-generator-openai",
    }
    writer = next(p for p in plan.predictors if p.service == "zen-writer")
    assert writer.command(7)[:3] == ["py", "-m", "graph_controller.model_servers.openai_server"]
    assert writer.command(7)[-2:] == ["--model_class", "markov:MarkovWriter"]
    assert writer.ready_path == "/v1/models/zen-writer"
