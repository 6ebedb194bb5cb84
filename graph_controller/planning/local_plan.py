"""The local plan: for each InferenceService, the runtime KServe would select and the command
that runs it as a process on this machine (`infergraph up`), and, for a `spec.transformer`, the
transformer's command. Pure but for checking that a model folder exists.

A transformer runs locally from the annotation `infergraph.dev/local-command` on
`spec.transformer.annotations` (a JSON argv with `{python}`, `{port}`, `{model_name}`,
`{predictor_host}`), started in the bundle's folder; KServe's transformer flags
(`--model_name`, `--predictor_host`, `--http_port`) are added when the argv lacks them, as
KServe adds them to the transformer container.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from graph_controller.planning.components import (
    Target,
    model_name,
    transformer_args,
    unsupported,
    with_webhook_defaults,
)
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

    @property
    def grpc(self) -> bool:
        """Whether graphs call it over gRPC (protocol grpc-v2): it needs a gRPC port too."""
        return self.protocol is ProtocolVersion.GRPC_V2

    def command(self, port: int, grpc_port: int | None = None) -> list[str]:
        """The argv on `port` (REST, where readiness is probed); with `grpc_port`, KServe's
        ModelServer flags turn its gRPC server on there (last flag wins over the template's
        `--enable_grpc false`)."""
        argv = [arg.replace("{port}", str(port)) for arg in self.argv]
        if grpc_port is not None:
            argv += ["--enable_grpc", "true", "--grpc_port", str(grpc_port)]
        return argv


@dataclass(frozen=True, slots=True)
class TransformerPlan:
    """A transformer in front of a predictor; `{port}`, `{predictor_host}` filled at start."""

    service: str
    argv: tuple[str, ...]
    env: Mapping[str, str]
    ready_path: str

    def command(self, port: int, predictor_host: str) -> list[str]:
        fills = {"{port}": str(port), "{predictor_host}": predictor_host}
        return [_fill(arg, fills) for arg in self.argv]


@dataclass(frozen=True, slots=True)
class LocalPlan:
    predictors: tuple[PredictorPlan, ...]
    transformers: tuple[TransformerPlan, ...] = ()


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
    transformers = []
    problems: list[str] = []
    for name, service in services.items():
        refused = unsupported(service, Target.LOCAL)
        if refused:
            problems.append(f"InferenceService '{name}': " + "; ".join(map(str, refused)))
            continue
        try:
            predictors.append(_plan_predictor(name, service, runtimes, root, python))
            if service.spec.transformer is not None:
                transformers.append(_plan_transformer(name, service, python))
        except (RuntimeSelectionError, LocalPlanError) as error:
            problems.append(f"InferenceService '{name}': {error}")
    if problems:
        raise LocalPlanError("; ".join(problems))
    return LocalPlan(tuple(predictors), tuple(transformers))


def _plan_transformer(name: str, service: InferenceService, python: str) -> TransformerPlan:
    transformer = service.spec.transformer
    if transformer is None:
        raise LocalPlanError("no transformer")  # unreachable: callers check
    raw = (transformer.annotations or {}).get(LOCAL_COMMAND_ANNOTATION)
    field = f"spec.transformer.annotations.{LOCAL_COMMAND_ANNOTATION}"
    if raw is None:
        raise LocalPlanError(
            f"the transformer has no local command: add {field}, a JSON argv with "
            "{python}, {port}, {model_name}, {predictor_host} (e.g. "
            '["{python}", "transformer/my_transformer.py"])'
        )
    try:
        argv = json.loads(raw)
    except json.JSONDecodeError as error:
        raise LocalPlanError(f"{field} is not JSON: {error}") from None
    if not isinstance(argv, list) or not argv or not all(isinstance(a, str) for a in argv):
        raise LocalPlanError(f"{field} must be a JSON list of strings")
    containers = transformer.containers or []
    if containers and containers[0].env:
        env = {e.name: e.value for e in containers[0].env if e.value is not None}
    else:
        env = {}
    filled = [_fill(arg, {"{python}": python, "{model_name}": name}) for arg in argv]
    given = list(containers[0].args or []) if containers else []
    args = transformer_args(
        [*filled, *given], name, "", None, predictor_host="{predictor_host}", http_port="{port}"
    )
    # The transformer serves the model name a graph calls (KServe's GetModelName).
    return TransformerPlan(name, tuple(args), env, f"/v1/models/{model_name(service)}")


def _plan_predictor(
    name: str, service: InferenceService, runtimes: Sequence[Runtime], root: Path, python: str
) -> PredictorPlan:
    model = with_webhook_defaults(service).spec.predictor.model
    if model is None:  # unreachable: `unsupported` refuses custom predictors for Target.LOCAL
        raise LocalPlanError("spec.predictor has no model")
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
    if protocol not in (ProtocolVersion.V1, ProtocolVersion.V2, ProtocolVersion.GRPC_V2):
        raise LocalPlanError(
            f"protocol {protocol} is not supported locally; use v1, v2 (REST) or grpc-v2"
        )
    # A grpc-v2 model server serves REST beside gRPC (KServe's ModelServer does): readiness is
    # probed over REST on its HTTP port. The model is awaited under the name graphs call
    # (KServe's GetModelName: `--model_name` in the args, MLSERVER_MODEL_NAME), not the
    # InferenceService's, which the server does not serve once renamed.
    served = model_name(service)
    ready = (
        f"/v1/models/{served}" if protocol == ProtocolVersion.V1 else f"/v2/models/{served}/ready"
    )
    return PredictorPlan(name, runtime.name, ProtocolVersion(protocol), tuple(argv), env, ready)


def _fill(arg: str, fills: Mapping[str, str]) -> str:
    for key, value in fills.items():
        arg = arg.replace(key, value)
    return arg
