"""The `infergraph` command: a thin shell over the library.

Subcommands parse arguments, call one library function and turn its typed errors into a
message and an exit status; no logic lives here.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
from collections.abc import Sequence
from pathlib import Path

from schemas.errors import FieldError, SpecError
from schemas.loading import load_documents
from schemas.valid_graph import ValidGraph


def _validate(args: argparse.Namespace) -> int:
    """Print every error of every file (folders: each YAML/JSON file in them); exit 1 on any.
    InferenceServices and a graph's deployment mode are also checked for what `--target`
    refuses (the controller's and render's refusals, `up`'s, or both), with the functions those
    run."""
    from graph_controller.planning.bundle import files_of
    from graph_controller.planning.components import Target, graph_unsupported, unsupported
    from schemas.inference_service import InferenceService

    target = Target(args.target)
    failed = False
    for name in args.files:
        try:
            files = files_of(Path(name))
        except SpecError as error:
            print(error, file=sys.stderr)
            failed = True
            continue
        for path in files:
            try:
                docs = load_documents(path.read_bytes(), str(path))
            except OSError as error:
                print(f"{path}: cannot read: {error.strerror}", file=sys.stderr)
                failed = True
            except SpecError as error:
                print(error, file=sys.stderr)
                failed = True
            else:
                # Fields InferGraph accepts but does not implement are refused here too.
                refused: list[FieldError] = []
                for doc in docs:
                    if isinstance(doc.resource, InferenceService):
                        refused += unsupported(doc.resource, target)
                    elif isinstance(doc.resource, ValidGraph):
                        annotations = doc.resource.resource.metadata.annotations
                        refused += graph_unsupported(annotations, target)
                if refused:
                    source = f"{path} (refused for target {target}: {_TARGETS[target]})"
                    print(SpecError(refused, source), file=sys.stderr)
                    failed = True
                    continue
                count = f"{len(docs)} resource{'s' if len(docs) != 1 else ''}"
                if any(isinstance(doc.resource, InferenceService | ValidGraph) for doc in docs):
                    count += f"; checked for target {target}"
                print(f"{path}: ok ({count})")
    return 1 if failed else 0


# What each `validate --target` checks for, in the words its refusals print.
_TARGETS = {
    "strict": "the controller, `render` or `up`",
    "cluster": "the controller and `render`",
    "serverless": "`render --mode serverless`",
    "local": "`up`",
}


def _print(line: str) -> None:
    print(line, flush=True)


def _up(args: argparse.Namespace) -> int:
    """Run the bundle until Ctrl-C, SIGTERM or `infergraph down`; nothing is left running."""
    from graph_controller.local.deploy import StartupError, up
    from graph_controller.planning.bundle import load_bundle
    from graph_controller.planning.local_plan import LocalPlanError
    from graph_controller.planning.runtime_selection import RuntimeSelectionError

    async def run() -> int:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        bundle = load_bundle(args.path)
        return await up(bundle, _print, stop, args.port, args.ready_timeout)

    try:
        return asyncio.run(run())
    except (SpecError, LocalPlanError, RuntimeSelectionError, StartupError) as error:
        print(f"infergraph up: {error}", file=sys.stderr)
        return 1


def _down(args: argparse.Namespace) -> int:
    from graph_controller.local.deploy import down

    if down(_print) == 0:
        print("no running `infergraph up` found")
    return 0


def _graph(path: str) -> ValidGraph:
    """The one InferenceGraph in a file or folder (which may also hold services and runtimes)."""
    from graph_controller.planning.bundle import load_files

    graphs = [d.resource for d in load_files([path]) if isinstance(d.resource, ValidGraph)]
    if len(graphs) != 1:
        raise SpecError(
            [FieldError("<file>", f"expected one InferenceGraph, found {len(graphs)}")], path
        )
    return graphs[0]


def _picture(args: argparse.Namespace) -> int:
    from graph_controller.cli import picture

    try:
        graph = _graph(args.file)
        render = {"mermaid": picture.mermaid, "dot": picture.dot, "svg": picture.svg}[args.format]
        sys.stdout.write(render(graph))
    except (SpecError, picture.PictureError, OSError) as error:
        print(f"infergraph graph: {error}", file=sys.stderr)
        return 1
    return 0


def _explain(args: argparse.Namespace) -> int:
    import random

    import orjson
    import yaml

    from router.explain import explain, explain_graph, stubs_from

    try:
        graph = explain_graph(_graph(args.file))
        request = _read_option("--request", args.request)
        stubs = (
            stubs_from(yaml.safe_load(_read_option("--responses", args.responses)))
            if args.responses
            else {}
        )
    except (SpecError, OSError, ValueError, yaml.YAMLError) as error:
        print(f"infergraph explain: {error}", file=sys.stderr)
        return 1
    rng = random.Random(args.seed)
    result = asyncio.run(explain(graph, request, stubs, rng))
    sys.stdout.write(orjson.dumps(result, option=orjson.OPT_INDENT_2).decode() + "\n")
    return 0


def _read_option(option: str, path: str) -> bytes:
    """The file an option names; an unreadable one is an error naming the option, not an errno."""
    try:
        return Path(path).read_bytes()
    except OSError as error:
        raise SpecError([FieldError(option, f"cannot read: {error.strerror}")], path) from None


def _replay(args: argparse.Namespace) -> int:
    """Exit 0 when every request replays the same, 1 when any differs, 2 when it cannot run."""
    import orjson

    from graph_controller.cli.replay_report import html_report
    from router.jsondiff import Tolerance
    from router.replay import (
        RecordingError,
        candidate_graph,
        load_records,
        render_text,
        run_replay,
    )

    try:
        tolerance = Tolerance(args.abs_tol, args.rel_tol)
        services = dict(_service_url(item) for item in args.service or ())
        records = load_records([Path(p) for p in args.recordings])
        graph = candidate_graph(_graph(args.graph), services)
    except (SpecError, RecordingError, ValueError, OSError) as error:
        print(f"infergraph replay: {error}", file=sys.stderr)
        return 2
    report = run_replay(records, graph, live=args.live, tolerance=tolerance, seed=args.seed)
    if args.html:
        Path(args.html).write_text(html_report(report.as_json()))
    if args.json:
        sys.stdout.write(orjson.dumps(report.as_json(), option=orjson.OPT_INDENT_2).decode() + "\n")
    else:
        sys.stdout.write(render_text(report))
    return 1 if report.differs else 0


def _service_url(item: str) -> tuple[str, str]:
    name, equals, url = item.partition("=")
    if not equals or not name or not url.startswith(("http://", "https://", "grpc://")):
        raise ValueError(f"--service {item!r}: expected NAME=URL (http://, https:// or grpc://)")
    return name, url


def _render(args: argparse.Namespace) -> int:
    """Print the Kubernetes manifests of every file's resources as multi-document YAML."""
    import yaml

    from graph_controller.controller.render import Mode, RenderError, RenderOptions, render
    from graph_controller.planning.builtin_runtimes import builtin_runtimes
    from graph_controller.planning.bundle import bundle_from_documents, load_files
    from graph_controller.planning.runtime_selection import RuntimeSelectionError

    try:
        bundle = bundle_from_documents(load_files(args.files), Path.cwd())
        options = RenderOptions(
            namespace=args.namespace,
            mode=Mode(args.mode),
            router_image=args.router_image,
            propagate_headers=tuple(p for p in args.propagate_headers.split(",") if p),
        )
        runtimes = (*bundle.runtimes, *builtin_runtimes())
        manifests = render(bundle.graphs, bundle.services, runtimes, options)
    except (SpecError, OSError, RenderError, RuntimeSelectionError) as error:
        print(f"infergraph render: {error}", file=sys.stderr)
        return 1
    sys.stdout.write(yaml.safe_dump_all(manifests, sort_keys=False))
    return 0


def _check(args: argparse.Namespace) -> int:
    """Exit 1 when there are findings; --json prints them for CI."""
    from graph_controller.cli.check import cli

    return cli.run(args)


def _controller(args: argparse.Namespace) -> int:
    """Reconcile InferenceGraphs and InferenceServices until SIGTERM (exit 1: lease lost)."""
    import os
    import socket
    import uuid

    from graph_controller.controller import logs
    from graph_controller.controller.kube import ConfigError
    from graph_controller.controller.leader import Timing
    from graph_controller.controller.run import main_async
    from graph_controller.controller.settings import ControllerSettings

    logs.configure(args.log_level)
    try:
        timing = Timing(args.lease_duration, args.renew_deadline, args.retry_period)
    except ValueError as error:
        print(f"infergraph controller: {error}", file=sys.stderr)
        return 2
    settings = ControllerSettings(
        namespaces=tuple(args.namespace or ()),
        kubeconfig=args.kubeconfig,
        leader_elect=args.leader_elect,
        lease_namespace=args.lease_namespace
        or os.environ.get("POD_NAMESPACE")
        or "infergraph-system",
        lease_name=args.lease_name,
        identity=args.identity or f"{socket.gethostname()}_{uuid.uuid4().hex[:8]}",
        timing=timing,
        health_host=args.health_host,
        health_port=args.health_port,
        router_image=args.router_image,
        propagate_headers=tuple(p for p in args.propagate_headers.split(",") if p),
        workers=args.workers,
        mode=args.mode,
    )

    async def run() -> int:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        return await main_async(settings, stop)

    try:
        return asyncio.run(run())
    except ConfigError as error:
        print(f"infergraph controller: {error}", file=sys.stderr)
        return 1


def _positive(value: str) -> int:
    number = int(value)
    if number < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value}")
    return number


def _add_controller(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    from graph_controller.controller import leader, render, settings

    c = sub.add_parser(
        "controller", help="reconcile InferenceGraphs and InferenceServices on Kubernetes"
    )
    c.add_argument(
        "--namespace",
        action="append",
        metavar="NS",
        help="watch this namespace (repeatable); default: all namespaces",
    )
    c.add_argument("--kubeconfig", help="default: $KUBECONFIG, else the in-cluster account")
    c.add_argument(
        "--leader-elect",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="hold a Lease so only one replica reconciles (default: on)",
    )
    c.add_argument(
        "--lease-namespace",
        help="the Lease's namespace (default: $POD_NAMESPACE or "
        f"{settings.DEFAULT_LEASE_NAMESPACE})",
    )
    c.add_argument("--lease-name", default=settings.DEFAULT_LEASE_NAME)
    c.add_argument("--identity", help="holder identity in the Lease (default: hostname_random)")
    c.add_argument("--lease-duration", type=float, default=leader.LEASE_DURATION, metavar="S")
    c.add_argument("--renew-deadline", type=float, default=leader.RENEW_DEADLINE, metavar="S")
    c.add_argument("--retry-period", type=float, default=leader.RETRY_PERIOD, metavar="S")
    c.add_argument(
        "--health-port",
        type=int,
        default=settings.DEFAULT_HEALTH_PORT,
        help="serve GET /healthz and /readyz here (0: off)",
    )
    c.add_argument("--health-host", default="0.0.0.0", help="address for the probes")
    c.add_argument("--router-image", default=render.ROUTER_IMAGE)
    c.add_argument(
        "--propagate-headers",
        default="",
        help="PROPAGATE_HEADERS for the routers (regexes, comma-separated)",
    )
    c.add_argument(
        "--workers", type=_positive, default=settings.DEFAULT_WORKERS, help="concurrent reconciles"
    )
    c.add_argument(
        "--mode",
        choices=settings.MODES,
        default="standalone",
        help="standalone: run InferenceServices and both InferenceGraph kinds; "
        "alongside-kserve: only infergraph.dev graphs, KServe's controller runs the rest",
    )
    c.add_argument("--log-level", default="INFO", choices=("DEBUG", "INFO", "WARNING", "ERROR"))
    c.set_defaults(run=_controller)


def parser() -> argparse.ArgumentParser:
    from importlib.metadata import version

    p = argparse.ArgumentParser(prog="infergraph", description="Build and run InferenceGraphs.")
    p.add_argument("--version", action="version", version=f"%(prog)s {version('infergraph')}")
    sub = p.add_subparsers(dest="command", required=True)
    validate = sub.add_parser("validate", help="check resource files; print every error")
    validate.add_argument(
        "files", nargs="+", metavar="PATH", help="YAML or JSON files, or folders of them"
    )
    validate.add_argument(
        "--target",
        choices=tuple(_TARGETS),
        default="cluster",
        help="refuse what this deployer refuses: cluster (the controller and render; the "
        "default), serverless (render --mode serverless), local (up), strict (cluster or local)",
    )
    validate.set_defaults(run=_validate)

    up = sub.add_parser("up", help="run graphs, their InferenceServices and routers locally")
    up.add_argument("path", metavar="PATH", help="a folder or multi-document YAML file")
    up.add_argument(
        "--port", type=int, default=8080, help="port of the first graph's router (0: any free)"
    )
    up.add_argument(
        "--ready-timeout",
        type=float,
        default=120.0,
        help="seconds each process may take to become ready (default 120)",
    )
    up.set_defaults(run=_up)

    down = sub.add_parser("down", help="stop what `infergraph up` started")
    down.set_defaults(run=_down)

    render = sub.add_parser("render", help="print the Kubernetes manifests for resources")
    render.add_argument("files", nargs="+", metavar="PATH", help="files or folders")
    render.add_argument("--mode", choices=("raw", "serverless"), default="raw")
    render.add_argument("--namespace", default="default")
    render.add_argument("--router-image", default="infergraph/router:0.1.0")
    render.add_argument(
        "--propagate-headers",
        default="",
        help="PROPAGATE_HEADERS for the routers (regexes, comma-separated)",
    )
    render.set_defaults(run=_render)

    checker = sub.add_parser("check", help="property-test a graph with generated inputs")
    checker.add_argument("file", metavar="GRAPH", help="a file or folder with one InferenceGraph")
    checker.add_argument("--models", help="a Python file: MODELS = {name: fn} or functions")
    checker.add_argument("--examples", type=int, default=200, help="inputs to generate")
    checker.add_argument("--json", action="store_true", help="findings as JSON, for CI")
    checker.add_argument(
        "--headers", metavar="FILE", help="a JSON/YAML list of request header sets, sent in turn"
    )
    checker.add_argument("--seed", type=int, default=0, help="Splitter draws and retry jitter")
    checker.add_argument(
        "--propagate-headers",
        default="",
        help="the routers' PROPAGATE_HEADERS (regexes, comma-separated): headers they match are "
        "generated, and models taking (body, headers) get the forwarded ones",
    )
    bodies = checker.add_mutually_exclusive_group()
    bodies.add_argument(
        "--protocol", choices=("v1", "v2"), help="generate only this protocol's bodies"
    )
    bodies.add_argument(
        "--schema",
        metavar="[MODEL=]FILE",
        action="append",
        help="a JSON Schema of what MODEL accepts (repeatable), or of the graph's request",
    )
    checker.set_defaults(run=_check)

    graph = sub.add_parser("graph", help="draw a graph: Mermaid, Graphviz DOT or SVG")
    graph.add_argument("file", metavar="PATH", help="a file or folder with one InferenceGraph")
    graph.add_argument("--format", choices=("mermaid", "dot", "svg"), default="mermaid")
    graph.set_defaults(run=_picture)

    explain = sub.add_parser(
        "explain", help="show the path a request would take, without calling any model"
    )
    explain.add_argument("file", metavar="GRAPH", help="a file or folder with one InferenceGraph")
    explain.add_argument("--request", required=True, help="a JSON file with the request body")
    explain.add_argument(
        "--responses", help="YAML mapping '<node>.<step>' or '<step>' to {status, body} stubs"
    )
    explain.add_argument("--seed", type=int, default=None, help="seed for Splitter draws")
    explain.set_defaults(run=_explain)

    replaying = sub.add_parser(
        "replay", help="re-run recorded requests (router --record) through a candidate graph"
    )
    replaying.add_argument(
        "recordings", nargs="+", metavar="RECORDING", help="JSONL files, oldest first"
    )
    replaying.add_argument(
        "--graph", required=True, help="a file or folder with the candidate InferenceGraph"
    )
    replaying.add_argument(
        "--live", action="store_true", help="call the graph's real models, not the recording"
    )
    replaying.add_argument(
        "--service",
        action="append",
        metavar="NAME=URL",
        help="the URL of a step's serviceName (repeatable), e.g. from `infergraph up`",
    )
    replaying.add_argument("--abs-tol", type=float, default=0.0, help="numbers agree within this")
    replaying.add_argument(
        "--rel-tol", type=float, default=0.0, help="... or within this share of the recorded"
    )
    replaying.add_argument("--seed", type=int, default=0, help="draws the recording lacks")
    replaying.add_argument("--json", action="store_true", help="the report as JSON, for CI")
    replaying.add_argument("--html", metavar="REPORT", help="also write an HTML report here")
    replaying.set_defaults(run=_replay)

    _add_controller(sub)
    from graph_controller.cli import install

    install.add_parser(sub)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    status: int = args.run(args)
    return status


if __name__ == "__main__":
    sys.exit(main())
