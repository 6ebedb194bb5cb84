"""The local plan: for each InferenceService, the runtime KServe would select and the command
that runs it as a process on this machine (`infergraph up`). Pure but for checking that a model
folder exists.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from graph_controller.planning.runtime_selection import (
    Runtime,
    RuntimeSelectionError,
    model_protocol,
    select_runtime,
)
from schemas.inference_service import InferenceService, ProtocolVersion
from schemas.serving_runtime import LOCAL_COMMAND_ANNOTATION


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
    return LocalPlan(tuple(predictors))


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
