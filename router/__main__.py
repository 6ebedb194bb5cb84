"""`python -m router`: load and compile the graph, then serve it. A thin shell over the library.

An invalid graph exits with status 1 and every validation error on stderr, before listening.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import sys
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path

from router import logs
from router.app import STATE, build_app
from router.auth import TokenFileError, read_token
from router.graph import CompiledGraph, compile_graph
from router.grpc_server import add_grpc_ingress
from router.headers import HeaderPropagator
from router.logs import RequestLog
from router.reload import GraphReloader
from router.server import TLS_CERT, TLS_KEY, serve
from router.settings import UnsupportedFlag, from_args
from router.tracing import Tracing
from router.workers import supervise
from schemas.errors import SpecError
from schemas.loading import load_graph, load_graph_file


def _load_file(path: Path) -> CompiledGraph:
    return compile_graph(load_graph_file(path))


def _readiness(fd: int | None) -> Callable[[], None] | None:
    """What tells a pool's supervisor this worker listens: one byte on the inherited pipe."""
    if fd is None:
        return None

    def ready() -> None:
        with os.fdopen(fd, "wb") as pipe:
            pipe.write(b"\n")

    return ready


def main(argv: Sequence[str] | None = None) -> int:
    # Until `serve` handles SIGHUP (reload, or a logged no-op), one arriving while we start must
    # not end the process; workers inherit the disposition through exec for the same window.
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    try:
        settings = from_args(sys.argv[1:] if argv is None else argv, os.environ)
        logs.configure(settings.log_level)
        if not settings.request_log:
            # Per-request lines are opt-in: the hot path stays free of logging by default.
            logging.getLogger(logs.REQUESTS_LOGGER).setLevel(logging.WARNING)
        if settings.graph_json is not None:
            valid = load_graph(settings.graph_json, "--graph-json")
        else:
            assert settings.graph_file is not None  # argparse requires one of the two
            valid = load_graph_file(settings.graph_file)
        graph = compile_graph(valid)
        propagator = HeaderPropagator.from_env(settings.propagate_headers)
        token = read_token(settings.auth_token_file) if settings.auth_token_file else None
        tracing = (
            Tracing.from_env(os.environ) if settings.workers == 1 or settings.reuse_port else None
        )
    except (SpecError, UnsupportedFlag, TokenFileError, ValueError) as error:
        print(f"router: {error}", file=sys.stderr)
        return 1
    app = build_app(
        graph,
        propagator,
        max_body_bytes=settings.max_body_bytes,
        connection_limit=settings.connection_limit,
        max_in_flight=settings.max_in_flight,
        auth_token=token,
        graph_name=settings.graph_name or "graph",
        tracing=tracing,
        request_log=RequestLog(settings.graph_name or "graph") if settings.request_log else None,
        recording=settings.recording,
        shadow_tolerance=settings.shadow_tolerance,
        shadow_log_every=settings.shadow_log_every,
        live_page=settings.live_page,
        live_share_dir=Path(settings.live_dir) if settings.live_dir is not None else None,
    )
    if settings.workers > 1:
        # The graph was validated above, so a bad graph fails once, here, not in every worker.
        args = list(sys.argv[1:] if argv is None else argv)
        if not settings.live_page:
            return supervise(args, settings.workers)
        # The live page sums the pool's figures: the workers meet in a directory of their own.
        try:
            share = tempfile.TemporaryDirectory(prefix="infergraph-live-")
        except OSError as error:
            print(
                f"router: --live-page with --workers {settings.workers}: the workers share their "
                f"figures through a temporary directory, and none can be made ({error}); set "
                "TMPDIR to a writable directory",
                file=sys.stderr,
            )
            return 1
        with share:
            return supervise([*args, "--live-dir", share.name], settings.workers)
    if settings.grpc_port is not None:
        add_grpc_ingress(
            app,
            settings.host,
            settings.grpc_port,
            reuse_port=settings.reuse_port,
            tls=(Path(TLS_CERT), Path(TLS_KEY)) if settings.enable_tls else None,
        )
    reloader = None
    if settings.graph_file is not None:
        reloader = GraphReloader(app[STATE], Path(settings.graph_file), _load_file)
    coroutine = serve(
        app,
        graph,
        settings.host,
        settings.port,
        settings.drain_seconds,
        settings.enable_tls,
        reloader,
        settings.reuse_port,
        settings.metrics_port,
        _readiness(settings.ready_fd),
    )
    try:
        import uvloop
    except ImportError:
        asyncio.run(coroutine)
    else:
        uvloop.run(coroutine)
    return 0


if __name__ == "__main__":
    sys.exit(main())
