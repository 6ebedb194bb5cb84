"""`infergraph check`: generate inputs for a graph and report what silently goes wrong.

Runs the graph through `router.testing.GraphHarness` (the router's own executor and nodes) on
inputs generated with hypothesis (see `inputs`), models played by the user's functions, and
reports `Finding`s (see `findings` for the ids and rules), each with the node and step it
concerns and, where an input shows it, the smallest such input hypothesis could shrink to.

For users' test suites: `check(graph, models)` returns the findings, `assert_no_findings(path,
models=...)` fails with all of them listed. The CLI (`graph_controller.cli.main`) calls `run`.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Callable, Collection, Mapping, Sequence
from pathlib import Path
from typing import Any

import hypothesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from multidict import CIMultiDict, CIMultiDictProxy

from graph_controller.cli.check.findings import (
    FINDING_IDS,
    Context,
    Finding,
    Key,
    compiled_conditions,
    is_json,
    population_findings,
    run_findings,
    shown,
    splitter_shares,
    timeout_findings,
    where,
)
from graph_controller.cli.check.inputs import (
    CLIENT_HEADERS,
    default_model,
    entry_steps,
    infer_protocol,
    load_models,
    marked_defaults,
    propagated_names,
    protocol_inputs,
    schema_inputs,
    traffic_headers,
    validator,
    with_headers,
)
from router.headers import HeaderPropagator
from router.testing import GraphHarness, Model, Run
from schemas.loading import load_graph_file
from schemas.valid_graph import ValidGraph

__all__ = [
    "FINDING_IDS",
    "Finding",
    "assert_no_findings",
    "check",
    "default_model",
    "load_models",
    "report",
]


class _Sample:
    __slots__ = ("body", "headers", "run")

    def __init__(self, body: Any, headers: Mapping[str, str], run: Run) -> None:
        self.body, self.headers, self.run = body, headers, run


def check(
    graph: ValidGraph,
    models: Mapping[str, Model],
    examples: int = 200,
    inputs: st.SearchStrategy[Any] | None = None,
    seed: int = 0,
    headers: Sequence[Mapping[str, str]] = (),
    schemas: Mapping[str, Mapping[str, Any]] | None = None,
    protocol: str | None = None,
    defaults: Collection[tuple[str, str]] = (),
    propagate: Sequence[str] = (),
) -> list[Finding]:
    """Findings for `graph` with `models`, over `examples` generated inputs plus edge cases.

    `inputs` replaces the generated bodies (ValueError for one that cannot be sent as JSON;
    bytes are sent as they are); otherwise they come from `schemas` (service name
    -> JSON Schema of what that model accepts; the key `""` is the graph's request) for the
    models that get the request as it is, else from `protocol` ("v1"/"v2"; inferred when None).
    `headers` is the mix of request headers the traffic carries (request i gets set i, in turn);
    by default, what clients send plus one value per user for each sticky header and for a
    header each of `propagate` (the router's PROPAGATE_HEADERS patterns) matches. A model that
    takes two arguments gets `(body, headers)`, the headers the router forwards to its step.
    `defaults` are (node, step) conditions meant to hold for everything that reaches them.
    ValueError names a pattern of `propagate` that cannot be used.
    """
    spec = graph.spec
    propagated = propagated_names(propagate)
    propagator = HeaderPropagator(propagate)
    outbound: list[Mapping[str, str]] = [propagator.outbound(CLIENT_HEADERS)]  # the current run's
    models = {name: with_headers(m, lambda: outbound[0]) for name, m in models.items()}
    harness = GraphHarness(graph, models, seed=seed, catch_model_errors=True)
    schemas = dict(schemas or {})
    entry = entry_steps(spec)
    ctx = Context(
        spec,
        compiled_conditions(spec),
        {name: validator(s) for name, s in schemas.items() if name},
        set(entry),
        set(defaults) | marked_defaults(graph),
    )
    strategy, edges = _inputs(graph, models, inputs, schemas, entry, protocol)
    mix = list(headers) or traffic_headers(spec, propagated)

    def headers_of(index: int) -> Mapping[str, str]:
        return mix[index % len(mix)]

    findings: dict[Key, Finding] = {}
    samples: list[_Sample] = []
    with asyncio.Runner() as runner:

        def execute(body: Any, request_headers: Mapping[str, str]) -> Run | BaseException:
            outbound[0] = propagator.outbound(CIMultiDictProxy(CIMultiDict(request_headers)))
            try:
                return runner.run(harness.run_async(body, request_headers))
            except Exception as error:  # a router bug: reported with its input, not a crash
                return error

        def explore(body: Any) -> None:
            if not isinstance(body, bytes) and not is_json(body):
                # The caller's `inputs` drew it: no client could send it, and the harness would
                # fail before the router ran, which would read as a router bug.
                raise ValueError(
                    f"inputs: {shown(body)} cannot be sent as a JSON body "
                    "(bytes are sent as they are)"
                )
            request_headers = headers_of(len(samples))
            outcome = execute(body, request_headers)
            if isinstance(outcome, BaseException):
                key: Key = ("router-raised", None, None)
                findings.setdefault(
                    key,
                    Finding(*key, f"{outcome!r} on {shown(body)}", body, request_headers),
                )
                return
            samples.append(_Sample(body, request_headers, outcome))

        for body in edges:
            explore(body)
        _explore(strategy, examples, explore)
        first: dict[Key, tuple[_Sample, str]] = {}
        for sample in samples:
            for key, message in run_findings(sample.run, ctx).items():
                first.setdefault(key, (sample, message))
        # The edge cases are among what a finding shrinks to: one of them (the empty body, say)
        # is often the simplest input showing it, yet `strategy` never draws it.
        shrinking = st.one_of(st.sampled_from(edges), strategy) if edges else strategy
        for key, (sample, message) in first.items():
            body, message = _shrunk(key, sample, message, shrinking, ctx, execute)
            findings[key] = Finding(*key, message, body, sample.headers)
    ordered = timeout_findings(spec, harness.graph.timeouts.request)
    ordered += list(findings.values())
    ordered += population_findings((s.run for s in samples), ctx)
    ordered += splitter_shares(spec, harness, headers_of)
    return [dataclasses.replace(f, where=where(spec, f.node, f.step)) for f in ordered]


def _inputs(
    graph: ValidGraph,
    models: Mapping[str, Model],
    inputs: st.SearchStrategy[Any] | None,
    schemas: Mapping[str, Mapping[str, Any]],
    entry: Mapping[tuple[str, str], str],
    protocol: str | None,
) -> tuple[st.SearchStrategy[Any], list[Any]]:
    if inputs is not None:
        return inputs, []
    request_schemas = [schemas[""]] if "" in schemas else []
    request_schemas += [schemas[s] for s in sorted(set(entry.values())) if s in schemas]
    if request_schemas:
        return schema_inputs(request_schemas)
    return protocol_inputs(protocol or infer_protocol(graph.spec, models))


def _explore(strategy: st.SearchStrategy[Any], examples: int, test: Callable[[Any], None]) -> None:
    @settings(
        max_examples=examples,
        database=None,
        derandomize=True,
        deadline=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(strategy)
    def explore(body: Any) -> None:
        test(body)

    explore()


SHRINK_EXAMPLES = 100  # draws to find a finding again before shrinking it: its first input


def _shrunk(
    key: Key,
    sample: _Sample,
    message: str,
    strategy: st.SearchStrategy[Any],
    ctx: Context,
    execute: Callable[[Any, Mapping[str, str]], Run | BaseException],
) -> tuple[Any, str]:
    """The smallest input hypothesis finds that shows the same finding (same id, node and
    step), with its message; the first input that showed it when none is found again."""
    messages: dict[int, str] = {}

    def shows(body: Any) -> bool:
        outcome = execute(body, sample.headers)
        if isinstance(outcome, BaseException):
            return False
        message = run_findings(outcome, ctx).get(key)
        if message is not None:
            messages[id(body)] = message
        return message is not None

    try:
        smallest = hypothesis.find(
            strategy,
            shows,
            settings=settings(
                max_examples=SHRINK_EXAMPLES,
                database=None,
                derandomize=True,
                deadline=None,
                suppress_health_check=list(HealthCheck),
            ),
        )
    except (hypothesis.errors.NoSuchExample, hypothesis.errors.Flaky):
        # Not found again, or not every time (a Splitter's draw decided it): the input that
        # showed it is the counter-example.
        return sample.body, message
    if id(smallest) not in messages:
        # find() returns the shrunk value itself; its run is repeated to get its message.
        shows(smallest)
    return smallest, messages.get(id(smallest), message)


def report(findings: Sequence[Finding]) -> list[dict[str, Any]]:
    """The JSON `--json` prints: one object per finding, keys `id`, `node`, `step`, `where`,
    `message`, `example`, `headers` (README: "Property-testing your graphs")."""
    return [f.as_json() for f in findings]


def assert_no_findings(
    graph: ValidGraph | str | Path,
    models: Mapping[str, Model] | str | Path | None = None,
    examples: int = 100,
    **options: Any,
) -> None:
    """For a user's pytest suite: check `graph` (a ValidGraph or a graph file) with `models`
    (a dict, or a models file as for `--models`) and fail listing every finding.

    `options` are `check`'s (`schemas`, `protocol`, `headers`, `propagate`, `defaults`, `seed`,
    `inputs`)."""
    texts: list[str] = []
    if not isinstance(graph, ValidGraph):
        texts.append(Path(graph).read_text())
        graph = load_graph_file(graph)
    services = list(graph.referenced_services())
    if models is None or isinstance(models, str | Path):
        models = load_models(models, services)
    defaults = set(options.pop("defaults", ())) | marked_defaults(graph, texts)
    findings = check(graph, models, examples=examples, defaults=defaults, **options)
    if findings:
        listed = "\n".join(describe(f) for f in findings)
        raise AssertionError(f"{len(findings)} finding(s):\n{listed}")


def describe(finding: Finding) -> str:
    """One finding for people: id, where, message and counter-example."""
    where = f" at {finding.where}" if finding.where else ""
    text = f"{finding.id}{where}: {finding.message}"
    if finding.example is not None:
        text += f"\n    e.g. {shown(finding.example)}"
        # A model reading headers may fail on them, not the body: the body alone would not
        # reproduce it. The headers every client sends alike would only bury the ones that count.
        sent = _unlike_client_defaults(finding.headers or {})
        if sent:
            text += f" with headers {shown(sent)}"
    return text


def _unlike_client_defaults(headers: Mapping[str, str]) -> dict[str, str]:
    """The headers of `headers` that CLIENT_HEADERS lacks or has with another value (names
    compared case-insensitively, as HTTP does)."""
    defaults = {name.lower(): value for name, value in CLIENT_HEADERS.items()}
    return {name: value for name, value in headers.items() if defaults.get(name.lower()) != value}
