"""Pure planning shared by the local and Kubernetes deployers.

Resolving a graph's `serviceName` references into the URLs the router calls, the way KServe's
controller does (it fills `serviceUrl` and keeps `serviceName`), and the local plan: for each
InferenceService, the runtime KServe would select and the command that runs it as a process.
Nothing here does I/O beyond checking that a model folder exists.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from graph_controller.runtime_selection import (
    Runtime,
    RuntimeSelectionError,
    model_protocol,
    select_runtime,
)
from schemas.errors import FieldError, SpecError, render_path
from schemas.graph import InferenceGraphSpec
from schemas.inference_service import InferenceService, ProtocolVersion
from schemas.serving_runtime import LOCAL_COMMAND_ANNOTATION


def predict_url(address: str, model: str, protocol: ProtocolVersion = ProtocolVersion.V1) -> str:
    """KServe's inference URL for `model` served at `address` (an InferenceService's URL)."""
    base = address.rstrip("/")
    if protocol is not ProtocolVersion.V1:
        return f"{base}/v2/models/{model}/infer"
    return f"{base}/v1/models/{model}:predict"


def resolve_service_names(
    spec: InferenceGraphSpec, urls: Mapping[str, str], source: str = "graph"
) -> InferenceGraphSpec:
    """`spec` with `serviceUrl` set on every step that names a service in `urls`.

    Steps that already have a `serviceUrl` are left alone, as KServe does. A name missing from
    `urls` is a SpecError naming the step, listing what is available.
    """
    known = ", ".join(sorted(urls)) or "none"
    errors = [
        FieldError(
            render_path(("nodes", node_name, "steps", index, "serviceName")),
            f"InferenceService '{step.service_name}' is not known (available: {known})",
        )
        for node_name, node in spec.nodes.items()
        for index, step in enumerate(node.steps)
        if step.service_name is not None
        and step.service_url is None
        and step.service_name not in urls
    ]
    if errors:
        raise SpecError(errors, source)
    return _fill_urls(spec, urls)


@dataclass(frozen=True, slots=True)
class Resolution:
    """A graph with every resolvable serviceName filled, and what kept the rest unresolved."""

    spec: InferenceGraphSpec
    missing: tuple[str, ...]  # named InferenceServices that do not exist
    unready: tuple[str, ...]  # that exist but are not Ready or have no address yet

    @property
    def ready(self) -> bool:
        return not self.missing and not self.unready

    def conditions(self) -> list[dict[str, str]]:
        """Knative-style status conditions, as KServe reports them on the InferenceGraph."""
        if self.missing:
            names = ", ".join(self.missing)
            return [_condition("False", "InferenceServiceNotFound", f"not found: {names}")]
        if self.unready:
            names = ", ".join(self.unready)
            return [_condition("False", "InferenceServiceNotReady", f"not ready: {names}")]
        return [_condition("True", "AllInferenceServicesReady", "")]


def _condition(status: str, reason: str, message: str) -> dict[str, str]:
    condition = {"type": "Ready", "status": status, "reason": reason}
    if message:
        condition["message"] = message
    return condition


def service_address(service: InferenceService) -> str | None:
    """Where a Ready InferenceService answers (status.address.url, else status.url)."""
    status = service.status
    if status is None or not status.is_ready():
        return None
    if status.address is not None and status.address.url:
        return status.address.url
    return status.url


def resolve_graph(spec: InferenceGraphSpec, services: Mapping[str, InferenceService]) -> Resolution:
    """Fill each step's serviceUrl from the InferenceService it names, as KServe's controller."""
    urls: dict[str, str] = {}
    missing: list[str] = []
    unready: list[str] = []
    for name in referenced_services(spec):
        service = services.get(name)
        if service is None:
            missing.append(name)
            continue
        address = service_address(service)
        model = service.spec.predictor.model_spec()
        protocol = model_protocol(model) if model is not None else ProtocolVersion.V1
        if address is None:
            unready.append(name)
        else:
            urls[name] = predict_url(address, name, protocol)
    resolved = _fill_urls(spec, urls)
    return Resolution(resolved, tuple(missing), tuple(unready))


def referenced_services(spec: InferenceGraphSpec) -> list[str]:
    """Names of InferenceServices the graph calls without a serviceUrl, in first-use order."""
    names: dict[str, None] = {}
    for node in spec.nodes.values():
        for step in node.steps:
            if step.service_name is not None and step.service_url is None:
                names[step.service_name] = None
    return list(names)


def _fill_urls(spec: InferenceGraphSpec, urls: Mapping[str, str]) -> InferenceGraphSpec:
    nodes = {}
    for node_name, node in spec.nodes.items():
        steps = []
        for step in node.steps:
            url = urls.get(step.service_name or "") if step.service_url is None else None
            steps.append(step if url is None else step.model_copy(update={"service_url": url}))
        nodes[node_name] = node.model_copy(update={"steps": steps})
    return spec.model_copy(update={"nodes": nodes})


@dataclass(frozen=True, slots=True)
class PredictorPlan:
    """How one InferenceService runs as a local process (its port is chosen at start)."""

    service: str
    runtime: str
    protocol: ProtocolVersion
    argv: tuple[str, ...]  # placeholders {port} still unfilled
    env: Mapping[str, str]
    ready_path: str  # GET this on the process's port; 200 means the model is loaded

    def command(self, port: int) -> list[str]:
        return [arg.replace("{port}", str(port)) for arg in self.argv]


@dataclass(frozen=True, slots=True)
class LocalPlan:
    predictors: tuple[PredictorPlan, ...]
    graphs: Mapping[str, InferenceGraphSpec]  # specs with serviceName still unresolved


class LocalPlanError(ValueError):
    """A bundle that cannot run locally; the message names the resource and the reason."""


def local_command(runtime: Runtime) -> list[str] | None:
    """The runtime's local argv template from its annotation, or None when it has none."""
    raw = runtime.annotations.get(LOCAL_COMMAND_ANNOTATION)
    if raw is None:
        return None
    try:
        argv = json.loads(raw)
    except json.JSONDecodeError as error:
        raise LocalPlanError(
            f"runtime '{runtime.name}': annotation {LOCAL_COMMAND_ANNOTATION} is not JSON: {error}"
        ) from None
    if not isinstance(argv, list) or not argv or not all(isinstance(a, str) for a in argv):
        raise LocalPlanError(
            f"runtime '{runtime.name}': annotation {LOCAL_COMMAND_ANNOTATION} must be a JSON "
            'list of strings, e.g. ["{python}", "-m", "my_server", "--port", "{port}"]'
        )
    return argv


def model_dir(storage_uri: str | None, root: Path) -> Path:
    """A local folder for a storageUri: `file://` URIs and paths relative to the bundle."""
    if storage_uri is None:
        return root
    if storage_uri.startswith("file://"):
        return Path(storage_uri.removeprefix("file://"))
    if "://" in storage_uri:
        raise LocalPlanError(
            f"storageUri '{storage_uri}' is remote; locally only file:// URIs and paths are read"
        )
    path = Path(storage_uri)
    return path if path.is_absolute() else (root / path)


def plan_local(
    services: Mapping[str, InferenceService],
    graphs: Mapping[str, InferenceGraphSpec],
    runtimes: Sequence[Runtime],
    root: Path,
    python: str,
) -> LocalPlan:
    """Pick each predictor's runtime (as KServe would) and fill its local command."""
    predictors = []
    problems: list[str] = []
    for name, service in services.items():
        try:
            predictors.append(_plan_predictor(name, service, runtimes, root, python))
        except (RuntimeSelectionError, LocalPlanError) as error:
            problems.append(f"InferenceService '{name}': {error}")
    if problems:
        raise LocalPlanError("; ".join(problems))
    return LocalPlan(tuple(predictors), graphs)


def _plan_predictor(
    name: str, service: InferenceService, runtimes: Sequence[Runtime], root: Path, python: str
) -> PredictorPlan:
    model = service.spec.predictor.model_spec()
    if model is None:
        raise LocalPlanError(
            "custom predictor containers cannot run locally; use spec.predictor.model with "
            "a runtime that has a local command"
        )
    runtime = select_runtime(model, runtimes)
    template = local_command(runtime)
    if template is None:
        raise LocalPlanError(
            f"runtime '{runtime.name}' has no local command: add the annotation "
            f"{LOCAL_COMMAND_ANNOTATION} (a JSON argv with {{port}}, {{model_dir}}, "
            "{model_name}, {python}) to run it as a local process"
        )
    directory = model_dir(model.storage_uri, root)
    if not directory.exists():
        raise LocalPlanError(f"model at '{directory}' (storageUri) does not exist")
    fills = {
        "{python}": python,
        "{model_name}": name,
        "{model_dir}": str(directory),
    }
    argv = [_fill(arg, fills) for arg in template] + list(model.args or [])
    env = {e.name: e.value for e in model.env or [] if e.value is not None}
    protocol = model_protocol(model)
    if protocol is ProtocolVersion.GRPC_V2:
        raise LocalPlanError("protocol grpc-v2 is not supported locally; use v1 or v2 (REST)")
    ready = f"/v2/models/{name}/ready" if protocol is ProtocolVersion.V2 else f"/v1/models/{name}"
    return PredictorPlan(name, runtime.name, protocol, tuple(argv), env, ready)


def _fill(arg: str, fills: Mapping[str, str]) -> str:
    for key, value in fills.items():
        arg = arg.replace(key, value)
    return arg
