"""The `infergraph check` command: reads the graph, models, schemas and headers it is given,
runs `check`, prints the findings (or, with `--json`, the stable JSON of `report`)."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

import orjson
import yaml

from graph_controller.cli.check import check, describe, report
from graph_controller.cli.check.inputs import (
    load_models,
    marked_defaults,
    parse_schema_option,
    propagated_names,
    read_schema,
)
from graph_controller.planning.bundle import load_files
from schemas.errors import FieldError, SpecError
from schemas.valid_graph import ValidGraph


def run(args: argparse.Namespace) -> int:
    """Exit 0 with no findings, 1 with findings or when an input cannot be used."""
    try:
        graph, texts = _graph(args.file)
        services = list(graph.referenced_services())
        models = load_models(args.models, services)
        schemas = _schemas(args.schema or [], services)
        headers = _headers(args.headers) if args.headers else []
        # Split as `infergraph up` and `render` split it, for the same routers.
        propagate = [p for p in args.propagate_headers.split(",") if p]
        propagated_names(propagate)  # refuses a pattern that cannot be used, naming it
        defaults = marked_defaults(graph, texts)
    except (SpecError, OSError, ValueError) as error:
        print(f"infergraph check: {error}", file=sys.stderr)
        return 1
    started = time.perf_counter()
    findings = check(
        graph,
        models,
        examples=args.examples,
        seed=args.seed,
        headers=headers,
        schemas=schemas,
        protocol=args.protocol,
        defaults=defaults,
        propagate=propagate,
    )
    seconds = time.perf_counter() - started
    if args.json:
        sys.stdout.write(orjson.dumps(report(findings), option=orjson.OPT_INDENT_2).decode() + "\n")
    else:
        for finding in findings:
            print(describe(finding))
        print(f"{len(findings)} finding(s) in {args.examples} generated inputs ({seconds:.2f} s)")
    return 1 if findings else 0


def _graph(path: str) -> tuple[ValidGraph, list[str]]:
    """The one InferenceGraph in a file or folder, and the YAML texts it may come from (for
    `# default` comments)."""
    graphs = [d.resource for d in load_files([path]) if isinstance(d.resource, ValidGraph)]
    if len(graphs) != 1:
        raise SpecError(
            [FieldError("<file>", f"expected one InferenceGraph, found {len(graphs)}")], path
        )
    root = Path(path)
    files = sorted(root.rglob("*.y*ml")) if root.is_dir() else [root]
    return graphs[0], [f.read_text() for f in files]


def _schemas(options: list[str], services: list[str]) -> dict[str, dict[str, Any]]:
    """service -> schema ("" for the graph's request) from `--schema [MODEL=]FILE` options."""
    out: dict[str, dict[str, Any]] = {}
    for option in options:
        model, path = parse_schema_option(option)
        if model is not None and model not in services:
            raise ValueError(
                f"--schema {option}: no step of the graph calls {model!r} "
                f"(services: {', '.join(services) or 'none'})"
            )
        schema = read_schema(path, option)
        try:
            from router.testing import from_schema

            from_schema(schema)  # refuses what hypothesis-jsonschema would half-honour
        except ValueError as error:
            raise ValueError(f"--schema {option}: {error}") from error
        out[model or ""] = schema
    return out


def _headers(path: str) -> list[dict[str, str]]:
    try:
        loaded = yaml.safe_load(Path(path).read_text())
    except OSError as error:
        raise ValueError(f"--headers {path}: cannot read: {error.strerror}") from error
    except yaml.YAMLError as error:
        raise ValueError(f"--headers {path}: not JSON or YAML: {error}") from error
    if not isinstance(loaded, list) or not all(
        isinstance(h, dict) and all(isinstance(v, str) for v in h.values()) for h in loaded
    ):
        raise ValueError(
            f"--headers {path}: expected a list of header objects with string values, "
            f"got {loaded!r}"[:300]
        )
    return [{str(k): v for k, v in h.items()} for h in loaded]
