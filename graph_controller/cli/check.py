"""`infergraph check`: generate inputs for a graph and report what looks wrong, with examples.

Runs the graph through `router.testing.GraphHarness` (the router's own executor) on inputs
generated with hypothesis (v1 and v2 bodies, one protocol's, or bodies valid under a JSON
Schema), models played by the user's functions (`--models models.py`: a dict `MODELS`, which
wins, or functions named after the services) or, by default, by a model that answers
`{"predictions": <its instances>}`. Findings, each with a counter-example:

- unreached steps (dead branches); Switch inputs that match no route; conditions that always
  held; Splitter shares far from their weights; Ensembles whose answers cannot be aggregated;
  step timeouts longer than the graph's deadline; any 5xx while every model is healthy;
- a user's model that raised: the exception and the input it got (the run goes on, the model
  answering 500 as a model server would).

Everything is read from the values the executor records (decisions' kind and outcome, the
router error's type), never from the wording of a message.
"""

from __future__ import annotations

import importlib.util
import inspect
import math
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import orjson
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from router.testing import (
    AnswersNotAggregatable,
    DecisionKind,
    GraphHarness,
    Model,
    ModelFailure,
    ModelUnreachable,
    NoRouteMatched,
    Outcome,
    Run,
    payloads,
)
from schemas.graph import InferenceGraphSpec, RouterType
from schemas.valid_graph import ValidGraph

SPLIT_SIGMAS = 5.0  # a share further than this many binomial deviations is a finding
SHOWN_CHARS = 200  # a model input quoted in a finding is cut here: generated bodies can be long


@dataclass(frozen=True)
class Finding:
    kind: str
    where: str
    message: str
    example: Any = None


def default_model(request: Any) -> Any:
    if isinstance(request, dict) and "instances" in request:
        return {"predictions": request["instances"]}
    if isinstance(request, dict) and "inputs" in request:
        return {"outputs": request["inputs"]}
    return {"predictions": []}


def load_models(path: str | None, services: list[str]) -> dict[str, Model]:
    """The models for `services`: from `path`'s `MODELS` dict, else its function named after
    the service (`-` read as `_`), else `default_model`. ValueError names a `MODELS` entry
    that is not a service of the graph or not callable."""
    models: dict[str, Model] = {name: default_model for name in services}
    if path is None:
        return models
    spec = importlib.util.spec_from_file_location("infergraph_user_models", path)
    if spec is None or spec.loader is None:
        raise ValueError(f"cannot import models from {path}")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    for name in services:
        function = getattr(module, name.replace("-", "_"), None)
        if callable(function):
            models[name] = function
    given_models = getattr(module, "MODELS", None)
    if given_models is None:
        return models
    if not isinstance(given_models, Mapping):
        raise ValueError(f"{path}: MODELS must be a dict of service name to function")
    for name, function in given_models.items():
        if name not in models:
            raise ValueError(
                f"{path}: MODELS names {name!r}, which no step of the graph calls "
                f"(services: {', '.join(services) or 'none'})"
            )
        if not callable(function):
            raise ValueError(f"{path}: MODELS[{name!r}] is {function!r}, not a function")
        models[name] = function
    return models


@dataclass(frozen=True)
class Raised:
    """A user's model raised: which, what, and on which input."""

    service: str
    error: Exception
    model_input: Any


class _Guarded:
    """A user's model whose exceptions are recorded and answered as a model server would
    (500), so `check` reports them with their input instead of stopping at a traceback."""

    def __init__(self, service: str, model: Model, raised: list[Raised]) -> None:
        self._service = service
        self._model = model
        self._raised = raised

    async def __call__(self, body: Any) -> Any:
        try:
            answer = self._model(body)
            if inspect.isawaitable(answer):
                answer = await answer
        except (ModelFailure, ModelUnreachable):
            raise  # the model's way of answering an error: part of the graph's behaviour
        except Exception as error:  # user code: anything it raises is the finding
            self._raised.append(Raised(self._service, error, body))
            raise ModelFailure(500, {"error": f"{self._service} raised {error!r}"}) from error
        return answer


def check(
    graph: ValidGraph,
    models: Mapping[str, Model],
    examples: int = 200,
    inputs: st.SearchStrategy[Any] | None = None,
    seed: int = 0,
    headers: Sequence[Mapping[str, str]] = (),
) -> list[Finding]:
    """Findings for `graph` with `models`, over `examples` generated inputs.

    `headers` is the mix of request headers the traffic carries (each request gets the next
    set, in turn; none by default): with a Splitter's `stickyHeader` among them, the shares
    are those of that traffic, which may be far from the weights (a few users, one route).
    """
    spec = graph.spec
    raised: list[Raised] = []
    guarded = {name: _Guarded(name, model, raised) for name, model in models.items()}
    harness = GraphHarness(graph, guarded, seed=seed)
    runs: list[tuple[Any, Run]] = []
    raising: list[tuple[Any, Raised]] = []  # (the graph's input, what a model raised on it)

    @settings(
        max_examples=examples,
        database=None,
        derandomize=True,
        deadline=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(inputs if inputs is not None else payloads())
    def explore(body: Any) -> None:
        raised.clear()
        run = harness.run(body, _headers(headers, len(runs)))
        if raised:
            raising.extend((body, r) for r in raised)
        else:  # with a model that raised, its 500 says nothing about the graph
            runs.append((body, run))

    explore()
    findings = _static(spec, harness)
    findings += _model_raised(raising)
    findings += _from_runs(spec, runs)
    first = runs[0][0] if runs else {"instances": [[0]]}
    findings += _splitter_shares(spec, harness, first, headers)
    return findings


def _model_raised(raising: list[tuple[Any, Raised]]) -> list[Finding]:
    """One finding per model and exception type, with the first input that raised it."""
    findings: list[Finding] = []
    seen: set[tuple[str, type[Exception]]] = set()
    for body, r in raising:
        key = (r.service, type(r.error))
        if key in seen:
            continue
        seen.add(key)
        shown = (
            orjson.dumps(r.model_input).decode() if _is_json(r.model_input) else repr(r.model_input)
        )
        if len(shown) > SHOWN_CHARS:
            shown = shown[: SHOWN_CHARS - 3] + "..."
        findings.append(
            Finding(
                "model-raised",
                f"models.{r.service}",
                f"model {r.service} raised {r.error!r} on input {shown}",
                body,
            )
        )
    return findings


def _is_json(value: Any) -> bool:
    try:
        orjson.dumps(value)
    except TypeError:
        return False
    return True


def _headers(mix: Sequence[Mapping[str, str]], index: int) -> Mapping[str, str] | None:
    return mix[index % len(mix)] if mix else None


def _static(spec: InferenceGraphSpec, harness: GraphHarness) -> list[Finding]:
    deadline = harness.graph.timeouts.request
    return [
        Finding(
            "step-timeout-exceeds-graph",
            f"nodes.{name}.steps[{index}]",
            f"timeout {step.timeout}s is longer than the graph's deadline {deadline:g}s",
        )
        for name, node in spec.nodes.items()
        for index, step in enumerate(node.steps)
        if step.timeout is not None and step.timeout > deadline
    ]


def _from_runs(spec: InferenceGraphSpec, runs: list[tuple[Any, Run]]) -> list[Finding]:
    findings: list[Finding] = []
    reached: set[tuple[str, str]] = set()
    held: Counter[tuple[str, str]] = Counter()
    evaluated: Counter[tuple[str, str]] = Counter()
    first_5xx = first_no_route = first_unaggregatable = None
    for body, run in runs:
        reached.update(run.steps)
        for decision in run.decisions:
            if decision.kind is DecisionKind.CONDITION:
                key = (decision.node, decision.step or "")
                evaluated[key] += 1
                if decision.outcome is Outcome.HELD:
                    held[key] += 1
                    reached.add(key)
        if isinstance(run.error, NoRouteMatched):
            first_no_route = first_no_route or (body, run.error.explanation)
        elif isinstance(run.error, AnswersNotAggregatable):
            first_unaggregatable = first_unaggregatable or (body, run.error.explanation)
        elif run.status >= 500:
            what = run.error.explanation if run.error is not None else run.body
            first_5xx = first_5xx or (body, f"{run.status}: {what}")
    for name, node in spec.nodes.items():
        for index, step in enumerate(node.steps):
            key = (name, step.name or str(index))
            if key not in reached and step.node_name is None:
                findings.append(
                    Finding(
                        "unreached-step",
                        f"nodes.{name}.steps[{index}]",
                        f"never ran in {len(runs)} generated inputs",
                    )
                )
            if (
                evaluated[key]
                and held[key] == evaluated[key]
                and node.router_type is not RouterType.SPLITTER
            ):
                findings.append(
                    Finding(
                        "condition-always-holds",
                        f"nodes.{name}.steps[{index}].condition",
                        f"{step.condition!r} held for all {evaluated[key]} inputs that reached it",
                    )
                )
    if first_no_route:
        findings.append(Finding("switch-no-route", "", first_no_route[1], first_no_route[0]))
    if first_unaggregatable:
        findings.append(
            Finding(
                "ensemble-not-aggregatable", "", first_unaggregatable[1], first_unaggregatable[0]
            )
        )
    if first_5xx:
        findings.append(Finding("5xx-with-healthy-models", "", first_5xx[1], first_5xx[0]))
    return findings


def _splitter_shares(
    spec: InferenceGraphSpec,
    harness: GraphHarness,
    body: Any,
    headers: Sequence[Mapping[str, str]] = (),
    draws: int = 2000,
) -> list[Finding]:
    splitters = [
        name for name, node in spec.nodes.items() if node.router_type is RouterType.SPLITTER
    ]
    if not splitters:
        return []
    counts: Counter[tuple[str, str]] = Counter()
    seen: Counter[str] = Counter()
    for index in range(draws):
        run = harness.run(body, _headers(headers, index))
        for decision in run.decisions:
            if decision.kind is DecisionKind.ROUTE and decision.node in splitters:
                counts[(decision.node, decision.step or "")] += 1
                seen[decision.node] += 1
    findings = []
    for name in splitters:
        total = seen[name]
        if total == 0:
            continue
        for index, step in enumerate(spec.nodes[name].steps):
            if step.shadow:
                continue
            share = (step.weight or 0) / 100
            observed = counts[(name, step.name or str(index))]
            sd = math.sqrt(total * share * (1 - share)) or 1.0
            if abs(observed - total * share) > SPLIT_SIGMAS * sd:
                findings.append(
                    Finding(
                        "splitter-share",
                        f"nodes.{name}.steps[{index}]",
                        f"weight {step.weight} but {observed} of {total} draws "
                        f"({observed / total:.1%})",
                    )
                )
    return findings


def report(findings: list[Finding]) -> list[dict[str, Any]]:
    return [asdict(f) for f in findings]
