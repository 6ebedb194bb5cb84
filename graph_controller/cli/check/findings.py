"""What `infergraph check` reports: `Finding` (a stable id, the node and step it concerns, a
message, a counter-example) and the rules that turn recorded runs into findings.

Every rule reads values the harness records (`router.testing`: the calls each model got and
answered, each node visit's input, its steps' replies and its status, where the router's own
error arose and its type), never the wording of a message. Conditions are evaluated again here
with `schemas.expressions` (the router's own compiler), which says when an evaluation fails.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable, Collection, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import jsonschema
import orjson

from router.testing import (
    AnswersNotAggregatable,
    GraphHarness,
    NoRouteMatched,
    Run,
    Visit,
)
from schemas.expressions import ConditionEvaluationError, Expression, compile_expression
from schemas.graph import (
    Aggregation,
    ConditionLanguage,
    Dependency,
    InferenceGraphSpec,
    InferenceRouter,
    RouterType,
)
from schemas.mapping import RESPONSE, compile_data

SPLIT_SIGMAS = 5.0  # a share further than this many binomial deviations is a finding
SPLIT_DRAWS = 2000  # Splitter draws per node: 5 sigmas of a 50/50 split is then +-5.6%
SHOWN_CHARS = 200  # a body quoted in a message is cut here: generated bodies can be long

# Every finding id, with what it means: the README's table of findings is generated from this
# (tests/properties/test_check_mutations.py, with an example of each as the CLI prints it).
FINDING_IDS: Mapping[str, str] = {
    "model-raised": "a model function raised; it then answers 500, as a model server would",
    "error-swallowed": "a step rejected its input (4xx: a Soft validator or guard) and the "
    "graph answered success anyway, or a step's 5xx error body is in (or decides) a success "
    "answer; a 5xx of a best-effort step whose answer feeds nothing is not a finding",
    "5xx-with-healthy-models": "the graph answered 5xx while no model failed, at the node and "
    "step where it arose",
    "switch-no-route": "an input that matches no route of a Switch (404)",
    "unreached-step": "a step no generated input reaches (a Switch route shadowed by earlier "
    "ones, a route without a condition)",
    "condition-never-holds": "a condition that held for no input it was evaluated on",
    "condition-always-holds": "a condition that held for every input that reached it, where no "
    "default is meant (see intended defaults below)",
    "condition-raised": "a condition whose evaluation fails (JMESPath comparing a number with a "
    "string); the router treats it as not holding",
    "splitter-share": "a Splitter route's share far (5 sigma over 2000 requests) from its "
    "weight, e.g. a `stickyHeader` every client sends alike",
    "ensemble-not-aggregatable": "an Ensemble whose answers its aggregation cannot combine, at "
    "the member whose answer does not fit",
    "ensemble-all-reject": "every member of an Ensemble rejected an input, and the client "
    "gets no rejection",
    "data-path-missing": "a `data` path, template or mapping that finds nothing in what it reads",
    "model-input-invalid": "a model got a body its `--schema` refuses",
    "step-timeout-exceeds-graph": "a step's timeout is longer than the graph's deadline",
    "retries-exceed-deadline": "a step's tries at its timeout cannot fit in the graph's deadline",
    "sequence-timeouts-exceed-graph": "a Sequence's step timeouts add up past the deadline",
    "client-timeout-exceeds-graph": "`routerTimeouts.serviceClient` is longer than the deadline",
    "router-raised": "the router raised something other than its own errors (a router bug)",
}

Key = tuple[str, str | None, str | None]  # (id, node, step)


@dataclass(frozen=True)
class Finding:
    """One thing that looks wrong. `node`/`step` say where (None for the graph as a whole;
    `step` is the step's name, or its index when unnamed); `example` is the smallest input
    found that shows it (None for findings about the graph itself) and `headers` the request
    headers it was sent with."""

    id: str
    node: str | None
    step: str | None
    message: str
    example: Any = None
    headers: Mapping[str, str] | None = None
    where: str = ""  # the YAML path: `nodes.root.steps[1]`, `nodes.root`, '' for the graph

    @property
    def key(self) -> Key:
        return (self.id, self.node, self.step)

    def as_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "node": self.node,
            "step": self.step,
            "where": self.where,
            "message": self.message,
            "example": self.example,
            "headers": dict(self.headers) if self.headers is not None else None,
        }


def where(spec: InferenceGraphSpec, node: str | None, step: str | None) -> str:
    """The YAML path of a node or step (`step` is its key: its name, or its index)."""
    if node is None:
        return ""
    if step is None or node not in spec.nodes:
        return f"nodes.{node}"
    router = spec.nodes[node]
    keys = [step_key(router, i) for i in range(len(router.steps))]
    return f"nodes.{node}.steps[{keys.index(step)}]" if step in keys else f"nodes.{node}"


def shown(value: Any) -> str:
    text = orjson.dumps(value).decode() if is_json(value) else repr(value)
    return text if len(text) <= SHOWN_CHARS else text[: SHOWN_CHARS - 3] + "..."


def is_json(value: Any) -> bool:
    """Whether the harness can send `value` as a JSON body (orjson: no integer beyond 64 bits,
    string keys only, JSON types only)."""
    try:
        orjson.dumps(value)
    except TypeError:
        return False
    return True


def step_key(node: InferenceRouter, index: int) -> str:
    """KServe's key of a step: its name, or its index."""
    name = node.steps[index].name
    return name if name else str(index)


def is_extended_ensemble(node: InferenceRouter) -> bool:
    """An Ensemble that reports failed members itself (aggregation with `contributors`,
    partialResults' `errors`, a quorum): a Soft member's failure there is handled, not lost."""
    return node.router_type is RouterType.ENSEMBLE and (
        (node.aggregation not in (None, Aggregation.MERGE))
        or bool(node.partial_results)
        or node.quorum is not None
    )


@dataclass
class Context:
    """What the rules need besides the runs."""

    spec: InferenceGraphSpec
    conditions: dict[tuple[str, str], Expression]
    validators: Mapping[str, Any] = field(default_factory=dict)  # service -> jsonschema validator
    entry: Collection[tuple[str, str]] = ()  # (node, step) of steps that get the request as is
    defaults: Collection[tuple[str, str]] = ()  # (node, step) marked as intended defaults


def compiled_conditions(spec: InferenceGraphSpec) -> dict[tuple[str, str], Expression]:
    out: dict[tuple[str, str], Expression] = {}
    for name, node in spec.nodes.items():
        for index, step in enumerate(node.steps):
            if step.condition:
                language = (
                    step.condition_language or spec.condition_language or ConditionLanguage.GJSON
                )
                out[(name, step_key(node, index))] = compile_expression(step.condition, language)
    return out


# --- per run: findings with a counter-example ------------------------------------------------


def run_findings(run: Run, ctx: Context) -> dict[Key, str]:
    """The findings one run shows, each with its message; the same run always gives the same."""
    out: dict[Key, str] = {}
    raised = [c for c in run.calls if c.raised is not None]
    if raised and _refused(run, ctx):
        # A Hard step that gets the request rejected it and the client gets that rejection: a
        # model raising on the same body (a Soft step before it, an Ensemble member beside it)
        # changes nothing the client sees. Boundary inputs are often bodies like that.
        raised = []
    for call in raised:
        out[("model-raised", call.node, call.step)] = (
            f"model {call.service} raised {call.raised!r} on input {shown(call.request)}"
        )
    if raised:
        return out  # the model's 500 says nothing about the graph
    for call in run.calls:
        validator = ctx.validators.get(call.service)
        if validator is None or (call.node, call.step) in ctx.entry:
            continue
        error = jsonschema.exceptions.best_match(validator.iter_errors(call.request))
        if error is not None:
            out[("model-input-invalid", call.node, call.step)] = (
                f"model {call.service} got {shown(call.request)}, which its schema refuses: "
                f"{error.message}"
            )
    for visit in run.visits:
        _condition_errors(visit, ctx, out)
    healthy = all(c.status is not None and c.status < 500 for c in run.calls)
    rejected_all = _ensembles_rejecting(run, ctx, out)
    if run.status < 400:
        _swallowed(run, ctx, rejected_all, out)
    if isinstance(run.error, NoRouteMatched):
        out[("switch-no-route", run.error.node, None)] = run.error.explanation
    elif run.status >= 500 and healthy:
        _server_error(run, rejected_all, out)
    return out


def _refused(run: Run, ctx: Context) -> bool:
    """Whether the graph refused the request: it answered 4xx, and a Hard step that gets the
    request as it is answered 4xx."""
    if not 400 <= run.status < 500:
        return False
    for call in run.calls:
        if call.status is None or not 400 <= call.status < 500:
            continue
        if (call.node, call.step) not in ctx.entry:
            continue
        node = ctx.spec.nodes[call.node]
        keys = [step_key(node, i) for i in range(len(node.steps))]
        if node.steps[keys.index(call.step)].dependency is Dependency.HARD:
            return True
    return False


def _condition_errors(visit: Visit, ctx: Context, out: dict[Key, str]) -> None:
    for key, document in condition_documents(visit, ctx.spec):
        try:
            ctx.conditions[(visit.node, key)].evaluate(document)
        except ConditionEvaluationError as error:
            out[("condition-raised", visit.node, key)] = f"{error}, on {shown(document)}"


def condition_documents(visit: Visit, spec: InferenceGraphSpec) -> list[tuple[str, Any]]:
    """(step key, document) for each condition of the visited node the router evaluated, or
    (Switch) would evaluate if the earlier routes did not hold: the node's input for a Switch
    and for a Sequence's first step, the previous step's answer after that."""
    node = spec.nodes[visit.node]
    if node.router_type is RouterType.SWITCH:
        document = visit.input
        if isinstance(document, bytes):
            return []
        return [
            (step_key(node, i), document) for i, step in enumerate(node.steps) if step.condition
        ]
    if node.router_type is not RouterType.SEQUENCE:
        return []
    out: list[tuple[str, Any]] = []
    previous: Any = visit.input
    for index, step in enumerate(node.steps):
        key = step_key(node, index)
        if index > 0:
            before = visit.replies.get(step_key(node, index - 1))
            if before is None:
                break
            if node.steps[index - 1].dependency is Dependency.HARD and before.status >= 400:
                break
            previous = before.body
        if step.condition and not isinstance(previous, bytes):
            out.append((key, previous))
        if key not in visit.replies:
            break
    return out


def _ensembles_rejecting(run: Run, ctx: Context, out: dict[Key, str]) -> set[str]:
    """Ensemble visits where every member answered 4xx/5xx and the node's answer is not a
    rejection the client can act on (a 4xx): `ensemble-all-reject`."""
    nodes: set[str] = set()
    for visit in run.visits:
        node = ctx.spec.nodes[visit.node]
        if node.router_type is not RouterType.ENSEMBLE or visit.status is None:
            continue
        replies = [visit.replies.get(step_key(node, i)) for i in range(len(node.steps))]
        if not all(r is not None and r.status >= 400 for r in replies):
            continue
        if 400 <= visit.status < 500:
            continue
        statuses = ", ".join(str(r.status) for r in replies if r is not None)
        out[("ensemble-all-reject", visit.node, None)] = (
            f"every member rejected the input ({statuses}) and the node answered {visit.status}"
        )
        nodes.add(visit.node)
    return nodes


def _swallowed(run: Run, ctx: Context, rejected_all: set[str], out: dict[Key, str]) -> None:
    """A step's 4xx (its rejection of what it got) in a node that answered success: ignored
    whatever follows; a step's 5xx only where its error body is in the node's answer or decides
    it (`_error_used`): a best-effort step whose failure feeds nothing is working as meant."""
    for visit in run.visits:
        node = ctx.spec.nodes[visit.node]
        if visit.status is None or visit.status >= 400 or visit.node in rejected_all:
            continue
        if is_extended_ensemble(node):
            continue
        for key, reply in visit.replies.items():
            if reply.status < 400:
                continue
            answered = f"yet node '{visit.node}' answered {visit.status} and the graph {run.status}"
            if reply.status < 500:
                out[("error-swallowed", visit.node, key)] = (
                    f"step rejected its input with {reply.status} ({shown(reply.body)}), "
                    f"{answered}: the rejection is ignored"
                )
                continue
            used = _error_used(node, key, visit)
            if used is not None:
                out[("error-swallowed", visit.node, key)] = (
                    f"step answered {reply.status} ({shown(reply.body)}) and its error body "
                    f"{used}, {answered}"
                )


def _error_used(node: InferenceRouter, key: str, visit: Visit) -> str | None:
    """How a failed step's error body reaches the answer of its node, which answered success:
    merged into it (a KServe merge Ensemble), or in a Sequence what the next step does with it
    (its condition is evaluated on it; it reads it as `$response`); None when it goes nowhere."""
    if node.router_type is RouterType.ENSEMBLE:
        return "is merged into the node's answer"
    if node.router_type is not RouterType.SEQUENCE:
        return None
    keys = [step_key(node, i) for i in range(len(node.steps))]
    index = keys.index(key)
    if index + 1 >= len(keys):
        return None  # the last step's reply is the node's answer, status and all
    after = node.steps[index + 1]
    if after.condition:
        if keys[index + 1] not in visit.replies:
            return f"is the node's answer (step {keys[index + 1]!r}'s condition did not hold on it)"
        return f"decides step {keys[index + 1]!r} (its condition is evaluated on it)"
    if RESPONSE in compile_data(after.data).uses:
        return f"is the input of step {keys[index + 1]!r} ($response)"
    return None


def _server_error(run: Run, rejected_all: set[str], out: dict[Key, str]) -> None:
    site = run.error_site
    error = run.error
    if isinstance(error, AnswersNotAggregatable):
        # The member whose answer does not fit, as the router's aggregation singles it out.
        out[("ensemble-not-aggregatable", error.node, error.step)] = error.explanation
        return
    if site is not None and site.building_body and site.error.status >= 500:
        out[("data-path-missing", site.node, site.step)] = site.error.explanation
        return
    if site is not None and site.node in rejected_all:
        return
    if error is not None and error.node is not None:  # the error names its node and step
        node, step, what = error.node, error.step, error.explanation
    elif site is not None:
        node, step, what = site.node, site.step, site.error.explanation
    else:  # an answer with a 5xx status, not an error: the innermost node that answered it
        failing = [v for v in run.visits if v.status is not None and v.status >= 500]
        if not failing or failing[-1].node in rejected_all:
            return
        node, step, what = failing[-1].node, None, shown(run.body)
    out[("5xx-with-healthy-models", node, step)] = f"{run.status}: {what}"


# --- over all runs: findings about the population ----------------------------------------------


@dataclass
class _Tally:
    evaluated: int = 0
    held: int = 0
    reached: int = 0  # Switch: evaluated in the router's order (every earlier route failed)
    held_when_reached: int = 0


def population_findings(runs: Iterable[Run], ctx: Context) -> list[Finding]:
    spec = ctx.spec
    tallies: dict[tuple[str, str], _Tally] = {}
    entered: set[tuple[str, str]] = set()
    visited: set[str] = set()
    count = 0
    for run in runs:
        count += 1
        entered |= run.entered
        for visit in run.visits:
            visited.add(visit.node)
            _tally(visit, ctx, tallies)
    findings: list[Finding] = []
    concerned: set[tuple[str, str]] = set()
    for name, node in spec.nodes.items():
        last = len(node.steps) - 1
        for index, step in enumerate(node.steps):
            key = step_key(node, index)
            tally = tallies.get((name, key))
            if node.router_type is RouterType.SWITCH and not step.condition:
                findings.append(
                    Finding(
                        "unreached-step",
                        name,
                        key,
                        "a Switch step without a condition never matches (as in KServe)",
                    )
                )
                concerned.add((name, key))
                continue
            if tally is None or tally.evaluated == 0:
                continue
            if tally.held == 0:
                findings.append(
                    Finding(
                        "condition-never-holds",
                        name,
                        key,
                        f"{step.condition!r} held for none of the {tally.evaluated} inputs "
                        "it was evaluated on",
                    )
                )
                concerned.add((name, key))
            elif node.router_type is RouterType.SWITCH and tally.held_when_reached == 0:
                if _spare_catch_all(index, last, tally):
                    continue
                findings.append(
                    Finding(
                        "unreached-step",
                        name,
                        key,
                        f"{step.condition!r} held for {tally.held} inputs, but earlier routes "
                        "took every one of them",
                    )
                )
                concerned.add((name, key))
            elif _always_holds(node, index, last, tally, (name, key) in ctx.defaults):
                reached = tally.reached if node.router_type is RouterType.SWITCH else tally.held
                findings.append(
                    Finding(
                        "condition-always-holds",
                        name,
                        key,
                        f"{step.condition!r} held for all {reached} inputs that reached it "
                        "(mark an intended default with a `# default` comment on it, or in "
                        "the infergraph.dev/check-defaults annotation)",
                    )
                )
    for name, node in spec.nodes.items():
        if name not in visited or node.router_type is RouterType.SPLITTER:
            continue  # a Splitter's routes: see splitter_shares
        for index, step in enumerate(node.steps):
            key = step_key(node, index)
            if (name, key) in entered or (name, key) in concerned or step.shadow:
                continue
            if node.router_type is RouterType.SWITCH:
                continue  # every route is judged by its condition's tally above
            if (
                node.router_type is RouterType.SEQUENCE
                and index > 0
                and (name, step_key(node, index - 1)) not in entered
            ):
                continue  # the earlier step's own finding explains it
            if (name, key) in tallies:
                continue  # its condition's finding explains it
            findings.append(
                Finding("unreached-step", name, key, f"never ran in {count} generated inputs")
            )
    return findings


def _spare_catch_all(index: int, last: int, tally: _Tally) -> bool:
    """A Switch's last route that held for every input yet was never reached: a catch-all kept
    behind routes that already cover everything (a complement of earlier routes), by design."""
    return 0 < index == last and tally.held == tally.evaluated


def _always_holds(
    node: InferenceRouter, index: int, last: int, tally: _Tally, marked: bool
) -> bool:
    if marked:
        return False
    if node.router_type is RouterType.SEQUENCE:
        return tally.held == tally.evaluated
    if tally.reached == 0 or tally.held_when_reached < tally.reached:
        return False
    if index > 0 and index == last:
        return False  # the last route catching what the others leave: an intended default
    # Holding whenever reached but not on every input: the complement of the earlier routes.
    return not (index > 0 and tally.held < tally.evaluated)


def _tally(visit: Visit, ctx: Context, tallies: dict[tuple[str, str], _Tally]) -> None:
    node = ctx.spec.nodes[visit.node]
    still_open = True  # Switch: no earlier route held
    for key, document in condition_documents(visit, ctx.spec):
        condition = ctx.conditions[(visit.node, key)]
        tally = tallies.setdefault((visit.node, key), _Tally())
        held = condition.holds(document)
        tally.evaluated += 1
        tally.held += held
        if node.router_type is RouterType.SWITCH:
            if still_open:
                tally.reached += 1
                tally.held_when_reached += held
            still_open = still_open and not held


def splitter_shares(
    spec: InferenceGraphSpec,
    harness: GraphHarness,
    headers: Callable[[int], Mapping[str, str]],
    draws: int = SPLIT_DRAWS,
) -> list[Finding]:
    """Each Splitter's routes drawn `draws` times for the request headers of the generated
    traffic (`headers(i)`: the i-th request's): a share far from its weight is a finding."""
    findings: list[Finding] = []
    for name, node in spec.nodes.items():
        if node.router_type is not RouterType.SPLITTER:
            continue
        counts = Counter(harness.draw_route(name, headers(i)) for i in range(draws))
        for index, step in enumerate(node.steps):
            if step.shadow:
                continue
            key = step_key(node, index)
            share = (step.weight or 0) / 100
            observed = counts[key]
            sd = math.sqrt(draws * share * (1 - share)) or 1.0
            if abs(observed - draws * share) > SPLIT_SIGMAS * sd:
                sticky = (
                    f" (stickyHeader {node.sticky_header!r}: its values in the traffic hash "
                    "to too few points)"
                    if node.sticky_header
                    else ""
                )
                findings.append(
                    Finding(
                        "splitter-share",
                        name,
                        key,
                        f"weight {step.weight} but {observed} of {draws} requests "
                        f"({observed / draws:.1%}){sticky}",
                        headers=headers(0),
                    )
                )
    return findings


# --- the graph itself --------------------------------------------------------------------------


def timeout_findings(spec: InferenceGraphSpec, deadline: float) -> list[Finding]:
    """Timeouts that cannot be honoured within the graph's deadline (`spec.timeout`, else
    routerTimeouts.serverWrite, else 60 s)."""
    findings: list[Finding] = []
    client = spec.router_timeouts.service_client if spec.router_timeouts else None
    if client is not None and client > deadline:
        findings.append(
            Finding(
                "client-timeout-exceeds-graph",
                None,
                None,
                f"routerTimeouts.serviceClient {client}s is longer than the graph's deadline "
                f"{deadline:g}s",
            )
        )
    for name, node in spec.nodes.items():
        total = 0.0
        for index, step in enumerate(node.steps):
            key = step_key(node, index)
            if step.timeout is None:
                continue
            before = total
            total += step.timeout
            if step.timeout > deadline:
                findings.append(
                    Finding(
                        "step-timeout-exceeds-graph",
                        name,
                        key,
                        f"timeout {step.timeout}s is longer than the graph's deadline "
                        f"{deadline:g}s",
                    )
                )
                continue  # the Sequence's sum crossing the deadline here says nothing more
            retry = step.retry or spec.retry
            tries = 1 + (retry.max_retries if retry is not None else 0)
            if tries > 1 and step.timeout * tries > deadline:
                findings.append(
                    Finding(
                        "retries-exceed-deadline",
                        name,
                        key,
                        f"{tries} tries of {step.timeout}s each need {step.timeout * tries:g}s, "
                        f"more than the graph's deadline {deadline:g}s",
                    )
                )
            # Each step within the deadline (retries or not), yet the steps in turn are not.
            if node.router_type is RouterType.SEQUENCE and before <= deadline < total:
                findings.append(
                    Finding(
                        "sequence-timeouts-exceed-graph",
                        name,
                        key,
                        f"the step timeouts of Sequence '{name}' reach {total:g}s here, "
                        f"past the graph's deadline {deadline:g}s",
                    )
                )
    return findings
