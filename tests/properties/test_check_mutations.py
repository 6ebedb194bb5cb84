"""`infergraph check`'s own proof: clean graphs give no finding; each one-defect mutant is caught
with the defect's node and step named; nothing crashes.

The corpus (tests/check_corpus: graphs, their models, and under schemas/<graph>/ the JSON
Schemas of what a model accepts, given as `--schema MODEL=FILE` would) covers every node type,
the three condition languages, InferGraph's extensions and intended defaults. Each mutant is
one edit of a clean graph (or one model swapped) and names the finding that must report it. The
figures are printed, and the README's "Property-testing your graphs" states them from here: run
with INFERGRAPH_WRITE_README=1 to rewrite them there (with the README's table of finding ids and
an example of each, taken from the mutants' findings); otherwise a stale README fails this test.
"""

from __future__ import annotations

import concurrent.futures
import copy
import json
import multiprocessing
import os
import re
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from graph_controller.cli.check import FINDING_IDS, Finding, check, describe, load_models
from graph_controller.cli.check.inputs import marked_defaults
from router.testing import GraphHarness, Model, Run
from schemas.valid_graph import validate_graph

CORPUS = Path(__file__).parents[1] / "check_corpus"
README = Path(__file__).parents[2] / "README.md"
EXAMPLES = 50  # per graph: every planted defect shows within far fewer (see the figures)
TIMED_EXAMPLES = 200


def clean_graphs() -> list[str]:
    return sorted(p.stem for p in CORPUS.glob("*.yaml"))


def load(name: str) -> tuple[dict[str, Any], str]:
    text = (CORPUS / f"{name}.yaml").read_text()
    return yaml.safe_load(text), text


def schemas_of(name: str) -> dict[str, dict[str, Any]]:
    """The JSON Schemas a corpus graph is checked with (as `--schema MODEL=FILE`):
    tests/check_corpus/schemas/<graph>/<service>.json."""
    return {p.stem: json.loads(p.read_text()) for p in (CORPUS / "schemas" / name).glob("*.json")}


def run_check(
    name: str,
    doc: dict[str, Any],
    text: str,
    swap: dict[str, Model] | None = None,
    examples: int = EXAMPLES,
) -> list[Finding]:
    graph = validate_graph(doc)
    models = load_models(CORPUS / "models.py", list(graph.referenced_services()))
    models.update(swap or {})
    return check(
        graph,
        models,
        examples=examples,
        defaults=marked_defaults(graph, [text]),
        schemas=schemas_of(name),
    )


def edit(path: str, value: Any = None, delete: bool = False) -> Callable[[dict[str, Any]], None]:
    """An edit of the graph at a dotted path (list indexes as numbers)."""

    def apply(doc: dict[str, Any]) -> None:
        *parents, last = path.split(".")
        target: Any = doc
        for part in parents:
            target = target[int(part)] if isinstance(target, list) else target[part]
        if delete:
            del target[last]
        elif isinstance(target, list):
            target[int(last)] = value
        else:
            target[last] = value

    return apply


def raises_on_negatives(body: Any) -> Any:
    rows = body["instances"] if "instances" in body else [body["inputs"][0]["data"]]
    if rows and rows[0] and rows[0][0] < 0:
        raise ArithmeticError("negative score")
    return {"predictions": [sum(r) for r in rows]}


def answers_a_list(body: Any) -> Any:
    return [1, 2]  # not an object: an Ensemble cannot merge it


def rejects_all(body: Any) -> Any:
    return (422, {"error": "unsupported"})


def amount_guard(body: Any) -> Any:
    """A guard that only refuses amounts beyond a limit far outside +-1000."""
    rows = body["instances"] if "instances" in body else [body["inputs"][0]["data"]]
    if any(isinstance(r, list) and any(x > 1e6 for x in r) for r in rows):
        return (422, {"error": "amount above limit"})
    return {"valid": len(rows)}


def stacks_rows(body: Any) -> Any:
    """A scorer that reads the rows as one matrix (as numpy would): ragged rows break it."""
    rows = body["instances"] if "instances" in body else [body["inputs"][0]["data"]]
    if any(len(r) != len(rows[0]) for r in rows):
        raise ValueError("setting an array element with a sequence")
    return {"predictions": [sum(r) for r in rows]}


@dataclass(frozen=True)
class Mutant:
    id: str
    graph: str
    edits: tuple[Callable[[dict[str, Any]], None], ...]
    finding: str  # the id that must report it
    node: str | None
    step: str | None  # None: any step of the node (or the graph itself)
    swap: tuple[tuple[str, Model], ...] = ()  # models replaced


def mutant(
    id: str,
    graph: str,
    finding: str,
    node: str | None,
    step: str | None,
    *edits: Any,
    **swap: Model,
) -> Mutant:
    return Mutant(id, graph, tuple(edits), finding, node, step, tuple(swap.items()))


S = "spec.nodes"
MUTANTS = [
    # --- errors swallowed into a success
    mutant("seq-validator-soft", "seq-dog", "error-swallowed", "root", "validate",
           edit(f"{S}.root.steps.0.dependency", "Soft")),
    mutant("seq-validator-default-soft", "seq-dog", "error-swallowed", "root", "validate",
           edit(f"{S}.root.steps.0.dependency", delete=True)),
    mutant("merge-member-soft", "ensemble-merge", "error-swallowed", "root", "scores",
           edit(f"{S}.root.steps.1.dependency", "Soft")),
    mutant("audit-error-answered", "seq-audit", "error-swallowed", "root", "audit",
           edit(f"{S}.root.steps.2.condition", "logged")),
    mutant("nested-check-soft", "nested-mean", "error-swallowed", "root", "check",
           edit(f"{S}.root.steps.0.dependency", "Soft")),
    mutant("ten-validate-soft", "ten-nodes", "error-swallowed", "root", "validate",
           edit(f"{S}.root.steps.0.dependency", "Soft")),
    # --- Switch routes and conditions (gjson, jmespath, jsonpath)
    mutant("gjson-never", "seq-dog", "condition-never-holds", "root", "breed",
           edit(f"{S}.root.steps.2.condition", 'predictions.#(label=="Dog")')),
    mutant("gjson-always", "seq-dog", "condition-always-holds", "root", "breed",
           edit(f"{S}.root.steps.2.condition", "predictions.0.label")),
    mutant("jmespath-never", "switch-jmespath", "condition-never-holds", "root", "many",
           edit(f"{S}.root.steps.1.condition", "length(instances) > `10`")),
    mutant("jmespath-always-first", "switch-jmespath", "condition-always-holds", "root", "one",
           edit(f"{S}.root.steps.0.condition", "length(instances) >= `0`")),
    mutant("jmespath-shadowed", "switch-jmespath", "unreached-step", "root", "many",
           edit(f"{S}.root.steps.0.condition", "length(instances) >= `1`")),
    mutant("jmespath-no-default", "switch-jmespath", "switch-no-route", "root", None,
           edit(f"{S}.root.steps.2.condition", "length(instances) > `5`")),
    mutant("jmespath-raises", "switch-jmespath", "condition-raised", "root", "one",
           edit(f"{S}.root.steps.0.condition", 'instances[0][0] > `"a"`')),
    mutant("jmespath-no-condition", "switch-jmespath", "unreached-step", "root", "many",
           edit(f"{S}.root.steps.1.condition", delete=True)),
    mutant("jsonpath-never", "switch-jsonpath", "condition-never-holds", "root", "positive",
           edit(f"{S}.root.steps.0.condition", "jsonpath:$.instance[?(@[0] > 0)]")),
    mutant("jsonpath-always-first", "switch-jsonpath", "condition-always-holds", "root",
           "positive", edit(f"{S}.root.steps.0.condition", "jsonpath:$.instances")),
    mutant("jsonpath-raises", "switch-jsonpath", "condition-raised", "root", "positive",
           edit(f"{S}.root.steps.0.condition", "jsonpath:$.instances[*].`sub(/x/, y)`")),
    mutant("ten-jsonpath-never", "ten-nodes", "condition-never-holds", "label", "positive",
           edit(f"{S}.label.steps.0.condition", "jsonpath:$.instance[?(@[0] > 0)]")),
    mutant("ten-jmespath-always", "ten-nodes", "condition-always-holds", "route", "single",
           edit(f"{S}.route.steps.0.condition", "jmespath:length(instances) > `0`")),
    # --- Splitters
    mutant("sticky-content-type", "splitter-sticky", "splitter-share", "root", None,
           edit(f"{S}.root.stickyHeader", "Content-Type")),
    mutant("ten-sticky-user-agent", "ten-nodes", "splitter-share", "split", None,
           edit(f"{S}.split.stickyHeader", "User-Agent")),
    # --- Ensembles
    mutant("mean-of-labels", "nested-mean", "ensemble-not-aggregatable", "average", "b",
           edit(f"{S}.average.steps.1.serviceName", "labeler")),
    mutant("ten-mean-of-labels", "ten-nodes", "ensemble-not-aggregatable", "mean", "b",
           edit(f"{S}.mean.steps.1.serviceName", "labeler")),
    mutant("majority-all-soft", "ensemble-majority", "ensemble-all-reject", "root", None,
           *(edit(f"{S}.root.steps.{i}.dependency", "Soft") for i in range(3)),
           **{"voter-a": rejects_all, "voter-b": rejects_all, "voter-c": rejects_all}),
    mutant("merge-not-object", "ensemble-merge", "5xx-with-healthy-models", "root", "labels",
           classifier=answers_a_list),
    # --- data paths and mappings
    mutant("template-path-typo", "sequence-mapping", "data-path-missing", "root", "report",
           edit(f"{S}.root.steps.1.data.instances", "$response.prediction")),
    mutant("path-index", "sequence-mapping", "data-path-missing", "root", "report",
           edit(f"{S}.root.steps.1.data", "$response.predictions[3]")),
    mutant("map-outputs-on-v1", "nested-mean", "data-path-missing", "root", "show",
           edit(f"{S}.root.steps.2.mapPredictionsToInstances", delete=True),
           edit(f"{S}.root.steps.2.mapOutputsToInputs", True)),
    mutant("report-gets-response-object", "sequence-mapping", "model-input-invalid", "root",
           "report", edit(f"{S}.root.steps.1.data.instances", "$response")),
    # --- intended defaults (a complement route, a catch-all behind it, a marked condition)
    mutant("complement-default-unmarked", "switch-complement", "condition-always-holds", "root",
           "show", edit("metadata.annotations", delete=True)),
    mutant("complement-tautology", "switch-complement", "condition-always-holds", "pick",
           "others", edit(f"{S}.pick.steps.1.condition", "length(instances) >= `0`")),
    mutant("complement-specific-last", "switch-complement", "condition-never-holds", "pick",
           "rest", edit(f"{S}.pick.steps.2.condition", "length(instances) > `5`")),
    # --- timeouts
    mutant("client-timeout", "sequence-mapping", "client-timeout-exceeds-graph", None, None,
           edit("spec.routerTimeouts", {"serviceClient": 20})),
    mutant("step-timeout", "sequence-mapping", "step-timeout-exceeds-graph", "root", "score",
           edit(f"{S}.root.steps.0.timeout", 20)),
    mutant("retries", "sequence-mapping", "retries-exceed-deadline", "root", "score",
           edit(f"{S}.root.steps.0.retry", {"maxRetries": 5})),
    mutant("sequence-timeouts", "sequence-mapping", "sequence-timeouts-exceed-graph", "root",
           "report", edit(f"{S}.root.steps.1.timeout", 9)),
    mutant("sequence-timeouts-retried", "sequence-mapping", "sequence-timeouts-exceed-graph",
           "root", "report", edit(f"{S}.root.steps.1.timeout", 9),
           edit(f"{S}.root.steps.1.retry", {"maxRetries": 1})),
    mutant("ten-deadline", "ten-nodes", "step-timeout-exceeds-graph", "left", "score",
           edit(f"{S}.left.steps.0.timeout", 31)),
    # --- models that raise or reject
    mutant("model-raises", "ensemble-merge", "model-raised", "root", "scores",
           scorer=raises_on_negatives),
    mutant("ten-model-raises", "ten-nodes", "model-raised", "tail", "score",
           scorer=raises_on_negatives),
    mutant("rejects-soft-member", "nested-mean", "error-swallowed", "root", "check",
           edit(f"{S}.root.steps.0.dependency", "Soft"), validator=rejects_all),
    # --- what only the boundary inputs show (values far beyond +-1000, ragged, scalar rows)
    mutant("soft-guard-large-amounts", "seq-dog", "error-swallowed", "root", "validate",
           edit(f"{S}.root.steps.0.dependency", "Soft"), validator=amount_guard),
    mutant("model-breaks-on-ragged-rows", "ensemble-merge", "model-raised", "root", "scores",
           scorer=stacks_rows),
    mutant("jmespath-scalar-row", "switch-jmespath", "condition-raised", "root", "one",
           edit(f"{S}.root.steps.0.condition",
                "length(instances) == `1` && abs(instances[0][0]) < `500`")),
]  # fmt: skip


@dataclass
class Outcome:
    mutant: Mutant
    findings: list[Finding]
    crashed: str | None  # the exception's repr

    @property
    def caught(self) -> bool:
        m = self.mutant
        return any(
            f.id == m.finding and f.node == m.node and (m.step is None or f.step == m.step)
            for f in self.findings
        )


def _run_suite() -> dict[str, Any]:
    """Every check of the suite; run in a fresh interpreter (see `outcomes`)."""
    clean: dict[str, list[Finding]] = {}
    for name in clean_graphs():
        doc, text = load(name)
        clean[name] = run_check(name, doc, text)
    mutants: list[tuple[list[Finding], str | None]] = []
    for m in MUTANTS:
        doc, text = load(m.graph)
        doc = copy.deepcopy(doc)
        for apply in m.edits:
            apply(doc)
        try:
            mutants.append((run_check(m.graph, doc, text, dict(m.swap)), None))
        except Exception as error:  # the suite counts crashes instead of stopping at the first
            mutants.append(([], repr(error)))
    doc, text = load("ten-nodes")
    started = time.perf_counter()
    run_check("ten-nodes", doc, text, examples=TIMED_EXAMPLES)
    seconds = time.perf_counter() - started
    return {"clean": clean, "mutants": mutants, "seconds": seconds, "fault": _router_fault()}


class FaultyHarness(GraphHarness):
    """The harness with a router bug planted: anything but the router's own errors raised for
    a body of two rows. No valid graph makes the real router do that; this is how
    `router-raised` is proven to turn such a bug into a finding instead of a crash."""

    async def run_async(self, body: Any, headers: Mapping[str, str] | None = None) -> Run:
        if isinstance(body, dict) and len(body.get("instances") or ()) == 2:
            raise RuntimeError("planted router bug")
        return await super().run_async(body, headers)


def _router_fault() -> list[Finding]:
    package = sys.modules["graph_controller.cli.check"]
    real = package.GraphHarness
    package.GraphHarness = FaultyHarness  # the bug, planted
    try:
        doc, text = load("switch-jmespath")
        return run_check("switch-jmespath", doc, text)
    finally:
        package.GraphHarness = real


@pytest.fixture(scope="module")
def outcomes() -> dict[str, Any]:
    # Hypothesis mixes constants from the source of every local module already imported into
    # what it generates, so in one process the same derandomized check sees other inputs after
    # other tests have run. A fresh interpreter imports the same modules every time: the
    # suite's figures are the same whatever ran before it.
    with concurrent.futures.ProcessPoolExecutor(
        max_workers=1, mp_context=multiprocessing.get_context("spawn")
    ) as pool:
        result = pool.submit(_run_suite).result()
    mutants = [
        Outcome(m, findings, crashed)
        for m, (findings, crashed) in zip(MUTANTS, result["mutants"], strict=True)
    ]
    return {
        "clean": result["clean"],
        "mutants": mutants,
        "seconds": result["seconds"],
        "fault": result["fault"],
    }


def figures(outcomes: dict[str, Any]) -> str:
    mutants: list[Outcome] = outcomes["mutants"]
    caught = sum(o.caught for o in mutants)
    clean: dict[str, list[Finding]] = outcomes["clean"]
    flagged = sum(1 for f in clean.values() if f)
    return (
        f"{caught} of {len(mutants)} mutants caught with the defect's node and step named "
        f"({caught / len(mutants):.0%}); findings on {flagged} of {len(clean)} clean graphs"
    )


FIGURES = re.compile(r"(<!-- check-mutation-figures -->)(.*?)(<!-- /check-mutation-figures -->)")


def test_the_mutation_suite_meets_its_targets(outcomes: dict[str, Any]) -> None:
    mutants: list[Outcome] = outcomes["mutants"]
    line = figures(outcomes)
    print(f"\ncheck mutation suite: {line}")
    print(f"check of ten-nodes.yaml at {TIMED_EXAMPLES} examples: {outcomes['seconds']:.2f} s")
    crashed = [(o.mutant.id, o.crashed) for o in mutants if o.crashed is not None]
    assert not crashed
    flagged = {name: [f.as_json() for f in fs] for name, fs in outcomes["clean"].items() if fs}
    assert not flagged
    missed = [
        (o.mutant.id, [(f.id, f.node, f.step) for f in o.findings]) for o in mutants if not o.caught
    ]
    assert len(missed) <= len(mutants) * 0.05, missed


def test_the_readme_states_the_suites_figures(outcomes: dict[str, Any]) -> None:
    text = README.read_text()
    line = figures(outcomes)
    if os.environ.get("INFERGRAPH_WRITE_README"):
        README.write_text(FIGURES.sub(lambda m: f"{m[1]}{line}{m[3]}", text))
        text = README.read_text()
    found = FIGURES.search(text)
    assert found is not None, "README: no <!-- check-mutation-figures --> marker"
    assert found[2] == line, "stale figures: run with INFERGRAPH_WRITE_README=1 to rewrite them"


def test_a_router_fault_is_a_finding_with_its_input(outcomes: dict[str, Any]) -> None:
    # Edge cases come first; the first with two rows is the largest-magnitude one.
    two_rows = {"instances": [[1000.0] * 4, [-1000.0] * 4]}
    assert [(f.id, f.node, f.step, f.example) for f in outcomes["fault"]] == [
        ("router-raised", None, None, two_rows)
    ]
    assert outcomes["fault"][0].message.startswith("RuntimeError('planted router bug') on ")


def finding_examples(outcomes: dict[str, Any]) -> dict[str, Finding]:
    """For each finding id, the finding of the first mutant (in the suite's order) that it
    caught; `router-raised`'s from the planted router fault."""
    examples: dict[str, Finding] = {}
    for outcome in outcomes["mutants"]:
        m = outcome.mutant
        for f in outcome.findings:
            if f.id == m.finding and f.node == m.node and (m.step is None or f.step == m.step):
                examples.setdefault(f.id, f)
    for f in outcomes["fault"]:
        examples.setdefault(f.id, f)
    return examples


def findings_section(examples: dict[str, Finding]) -> str:
    """The README's table of finding ids and an example of each, as `infergraph check` prints
    it (ids in FINDING_IDS' order)."""
    rows = [f"| `{id}` | {what} |" for id, what in FINDING_IDS.items()]
    printed = [describe(examples[id]) for id in FINDING_IDS if id in examples]
    return "\n".join(["| id | what |", "|---|---|", *rows, "", "```text", *printed, "```", ""])


FINDINGS = re.compile(r"(<!-- check-findings -->\n)(.*?)(<!-- /check-findings -->)", re.DOTALL)
NUMBER = re.compile(r"\d+(?:\.\d+)?(?:e[+-]?\d+)?")


def masked(text: str) -> str:
    """The text with its numbers masked: generated values and counts may move when hypothesis'
    draws do (it mixes in constants of the project's source); ids, places and wording may not."""
    return NUMBER.sub("N", text)


def test_every_finding_id_has_a_mutant_or_fault_that_shows_it(outcomes: dict[str, Any]) -> None:
    assert sorted(FINDING_IDS) == sorted(finding_examples(outcomes))


def test_the_readme_shows_every_finding_with_an_example(outcomes: dict[str, Any]) -> None:
    section = findings_section(finding_examples(outcomes))
    text = README.read_text()
    if os.environ.get("INFERGRAPH_WRITE_README"):
        README.write_text(FINDINGS.sub(lambda m: f"{m[1]}{section}{m[3]}", text))
        text = README.read_text()
    found = FINDINGS.search(text)
    assert found is not None, "README: no <!-- check-findings --> marker"
    assert masked(found[2]) == masked(section), (
        "stale finding examples: run with INFERGRAPH_WRITE_README=1 to rewrite them"
    )
