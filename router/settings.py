"""Typed settings of a router process, built from the command line and the environment.

Only `main()` calls `from_args`; everything below it receives a `RouterSettings`. The flags are
KServe's (`--graph-json`, port 8080) plus ours; the KServe-only flags are accepted so the
controller's command line works unchanged.
"""

from __future__ import annotations

import argparse
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

from router.jsondiff import EXACT, Tolerance
from router.traffic import (
    DEFAULT_HEADERS,
    DEFAULT_KEEP,
    DEFAULT_MAX_BYTES,
    DEFAULT_SAMPLE,
    RecordingSettings,
    Redaction,
)

DISTRIBUTION = "infergraph"  # pyproject.toml's project name
DEFAULT_PORT = 8080  # KServe's router port
DEFAULT_DRAIN_SECONDS = 30.0  # KServe's drainSleepDuration
DEFAULT_MAX_BODY_BYTES = 16 * 1024 * 1024  # generous for tensors; bounds memory per request
# Concurrent connections to step services; high enough that fan-out never queues in the pool.
DEFAULT_CONNECTION_LIMIT = 1024


@dataclass(frozen=True, slots=True)
class RouterSettings:
    graph_json: str | None
    graph_file: str | None
    host: str
    port: int
    drain_seconds: float
    max_body_bytes: int
    connection_limit: int
    propagate_headers: str | None
    max_in_flight: int
    workers: int
    reuse_port: bool
    ready_fd: int | None
    metrics_port: int | None
    grpc_port: int | None
    auth_token_file: str | None
    log_level: str
    request_log: bool
    live_page: bool
    live_dir: str | None
    enable_tls: bool
    graph_name: str | None
    recording: RecordingSettings | None = None
    shadow_tolerance: Tolerance = EXACT
    shadow_log_every: int = 100


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m router", description="Run an InferenceGraph behind one HTTP endpoint."
    )
    p.add_argument(
        "--version", action="version", version=f"%(prog)s {version()}", help="print the version"
    )
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument("--graph-json", help="the graph spec as JSON (what KServe passes)")
    source.add_argument("--graph-file", help="a YAML or JSON file with the graph or its spec")
    p.add_argument("--host", default="0.0.0.0", help="address to listen on (default 0.0.0.0)")
    p.add_argument("--port", type=int, default=DEFAULT_PORT, help="port (default 8080)")
    p.add_argument(
        "--drain-seconds",
        type=float,
        default=DEFAULT_DRAIN_SECONDS,
        help="after SIGTERM, seconds to keep serving with /readyz at 503 (default 30)",
    )
    p.add_argument(
        "--max-body-bytes",
        type=int,
        default=DEFAULT_MAX_BODY_BYTES,
        help="largest request body accepted; larger gets 413 (default 16 MiB)",
    )
    p.add_argument(
        "--connection-limit",
        type=int,
        default=DEFAULT_CONNECTION_LIMIT,
        help="most concurrent connections to step services (default 1024)",
    )
    p.add_argument(
        "--max-in-flight",
        type=int,
        default=0,
        help="answer 503 with Retry-After beyond this many concurrent requests (0: no limit)",
    )
    p.add_argument(
        "--workers",
        type=int,
        default=1,
        help="processes sharing the port with SO_REUSEPORT, e.g. one per core (default 1)",
    )
    p.add_argument("--worker-of-pool", action="store_true", help=argparse.SUPPRESS)
    # Internal: a pool worker writes a byte here once it listens (router.workers).
    p.add_argument("--ready-fd", type=int, help=argparse.SUPPRESS)
    p.add_argument(
        "--metrics-port",
        type=int,
        help="also serve GET /metrics on this port, without --auth-token-file's token "
        "(default: /metrics only on --port, behind the token when one is required)",
    )
    p.add_argument(
        "--grpc-port",
        type=int,
        help="also serve the Open Inference Protocol's gRPC service (inference."
        "GRPCInferenceService) on this port; KServe's model servers use 8081 (default: off)",
    )
    p.add_argument(
        "--log-level",
        default="INFO",
        choices=("DEBUG", "INFO", "WARNING", "ERROR", "debug", "info", "warning", "error"),
        help="JSON logs on stderr at this level (default INFO)",
    )
    p.add_argument(
        "--request-log",
        action="store_true",
        help="one JSON line per request at INFO (and per step call at DEBUG); off by default "
        "so the request path does no logging unless asked",
    )
    p.add_argument(
        "--live-page",
        action="store_true",
        help="serve GET /graph: the graph drawn with its live rates, errors, latencies, breakers "
        "and route shares, and the last requests' traces; off by default, as it traces every "
        "request",
    )
    # Internal: the directory where a pool's workers share their live figures (router.live).
    p.add_argument("--live-dir", help=argparse.SUPPRESS)
    p.add_argument(
        "--auth-token-file",
        help="require 'Authorization: Bearer <token>' with the token in this file (else 401)",
    )
    _add_recording(p)
    # KServe's own flags, accepted for drop-in compatibility.
    p.add_argument(
        "--enable-tls",
        action="store_true",
        help="serve HTTPS with /etc/tls/private/tls.{crt,key}, as KServe's router does",
    )
    p.add_argument("--enable-auth", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--inferencegraph-name", help="name of the InferenceGraph resource")
    return p


def _add_recording(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--record",
        metavar="PATH",
        help="append sampled requests to this JSONL file for `infergraph replay` (default: off)",
    )
    p.add_argument(
        "--record-sample",
        type=float,
        default=DEFAULT_SAMPLE,
        help="share of requests recorded, in (0, 1] (default 1.0: all; e.g. 0.01 in production)",
    )
    p.add_argument(
        "--record-max-bytes",
        type=int,
        default=DEFAULT_MAX_BYTES,
        help="rotate the file before it passes this size (default 100 MiB)",
    )
    p.add_argument(
        "--record-keep",
        type=int,
        default=DEFAULT_KEEP,
        help="rotated files kept as PATH.1 (newest) ... PATH.N (default 5)",
    )
    p.add_argument(
        "--record-header",
        action="append",
        metavar="NAME",
        help="record this request header (repeatable; default: Content-Type only)",
    )
    p.add_argument(
        "--record-redact",
        action="append",
        metavar="PATH|HEADER",
        help="blank this out of every record: a JSON path ($.instances[*].ssn) in every body, "
        "or a recorded header's value (repeatable)",
    )
    p.add_argument(
        "--shadow-abs-tol",
        type=float,
        default=0.0,
        help="a shadow's number agrees with the live one within this (default 0)",
    )
    p.add_argument(
        "--shadow-rel-tol",
        type=float,
        default=0.0,
        help="... or within this share of the live number (default 0)",
    )
    p.add_argument(
        "--shadow-log-every",
        type=int,
        default=100,
        help="log a shadow's first disagreement, then one in N (default 100; 0: none)",
    )


def _recording(args: argparse.Namespace) -> RecordingSettings | None:
    given = [
        flag
        for flag, value in (
            ("--record-sample", args.record_sample != DEFAULT_SAMPLE),
            ("--record-max-bytes", args.record_max_bytes != DEFAULT_MAX_BYTES),
            ("--record-keep", args.record_keep != DEFAULT_KEEP),
            ("--record-header", args.record_header),
            ("--record-redact", args.record_redact),
        )
        if value
    ]
    if args.record is None:
        if given:
            raise UnsupportedFlag(f"{', '.join(given)} without --record: nothing is recorded")
        return None
    if args.workers > 1:
        raise UnsupportedFlag(
            f"--record with --workers {args.workers}: one file is written by one process; "
            "run the pool without --record, or one router per recording"
        )
    headers = args.record_header or list(DEFAULT_HEADERS)
    try:
        return RecordingSettings(
            path=Path(args.record),
            sample=args.record_sample,
            max_bytes=args.record_max_bytes,
            keep=args.record_keep,
            headers=frozenset(h.lower() for h in headers),
            redaction=Redaction.parse(tuple(args.record_redact or ())),
        )
    except ValueError as error:
        raise UnsupportedFlag(str(error)) from None


def version() -> str:
    """The installed distribution's version: one number, kept in pyproject.toml."""
    try:
        return metadata.version(DISTRIBUTION)
    except metadata.PackageNotFoundError:
        return "(unknown: the infergraph package is not installed, so it has no metadata)"


class UnsupportedFlag(ValueError):
    """A KServe flag we recognise but cannot honour yet: refuse rather than run unprotected."""


def from_args(argv: Sequence[str], environ: Mapping[str, str]) -> RouterSettings:
    args = parser().parse_args(argv)
    if args.workers < 1:
        raise UnsupportedFlag(f"--workers must be at least 1, got {args.workers}")
    if args.metrics_port is not None and args.metrics_port == args.port:
        raise UnsupportedFlag(
            f"--metrics-port {args.metrics_port} is also --port: metrics need a port of their own"
        )
    if args.grpc_port is not None and args.grpc_port in (args.port, args.metrics_port):
        raise UnsupportedFlag(
            f"--grpc-port {args.grpc_port} is also --port or --metrics-port: gRPC needs a port "
            "of its own"
        )
    if args.enable_auth:
        raise UnsupportedFlag(
            "--enable-auth (Kubernetes TokenReview/SubjectAccessReview) is not supported yet; "
            "refusing to start an unprotected router"
        )
    try:
        shadow_tolerance = Tolerance(args.shadow_abs_tol, args.shadow_rel_tol)
    except ValueError as error:
        raise UnsupportedFlag(f"--shadow-{error}") from None
    if args.shadow_log_every < 0:
        raise UnsupportedFlag(f"--shadow-log-every must be >= 0, got {args.shadow_log_every}")
    return RouterSettings(
        graph_json=args.graph_json,
        graph_file=args.graph_file,
        host=args.host,
        port=args.port,
        drain_seconds=args.drain_seconds,
        max_body_bytes=args.max_body_bytes,
        connection_limit=args.connection_limit,
        propagate_headers=environ.get("PROPAGATE_HEADERS"),
        max_in_flight=args.max_in_flight,
        workers=args.workers,
        reuse_port=args.worker_of_pool,
        ready_fd=args.ready_fd,
        metrics_port=args.metrics_port,
        grpc_port=args.grpc_port,
        auth_token_file=args.auth_token_file,
        log_level=args.log_level.upper(),
        request_log=args.request_log,
        live_page=args.live_page,
        live_dir=args.live_dir,
        enable_tls=args.enable_tls,
        graph_name=args.inferencegraph_name,
        recording=_recording(args),
        shadow_tolerance=shadow_tolerance,
        shadow_log_every=args.shadow_log_every,
    )
