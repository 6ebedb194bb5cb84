"""`infergraph up`: run a bundle's predictors and routers as local processes on 127.0.0.1.

The order is KServe's: predictors first (runtime chosen by `plan_local`, as KServe selects it),
each waited for on its readiness endpoint; then transformers, each given its predictor's
address as `--predictor_host` and answering for its InferenceService; then serviceNames
are resolved to those processes' URLs with the same `resolve_graph` the Kubernetes
controller uses; then one router per graph.
Any failure stops everything already started and reports the failing process's log tail.
A state file lets `infergraph down` (another process) stop a running `up`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shlex
import signal
import socket
import sys
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path

import aiohttp

from graph_controller.local.processes import Child, Supervisor, group_alive
from graph_controller.planning.addressing import ready_at, resolve_graph
from graph_controller.planning.builtin_runtimes import builtin_runtimes
from graph_controller.planning.bundle import Bundle
from graph_controller.planning.local_plan import LocalPlan, LocalPlanError, plan_local
from graph_controller.planning.router_ports import RouterPortError, grpc_port
from schemas.inference_service import InferenceService
from schemas.valid_graph import ValidGraph

LOOPBACK = "127.0.0.1"
# Loading a model (unpickling, importing sklearn) on a busy 2-core machine can take a while.
DEFAULT_READY_TIMEOUT = 120.0
POLL_INTERVAL = 0.1  # seconds between readiness probes
# A request body for the curl line `up` prints, as JSON, on the InferenceGraph's metadata.
SAMPLE_ANNOTATION = "infergraph.dev/sample-request"
PLACEHOLDER_BODY = '{"instances": [[...]]}'


class StartupError(RuntimeError):
    """A process did not come up; the message carries its log tail."""


@dataclass(frozen=True)
class RunningGraph:
    name: str
    url: str


def free_port(host: str = LOOPBACK) -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        port: int = s.getsockname()[1]
        return port


def ensure_port_free(port: int, host: str = LOOPBACK) -> None:
    """StartupError when `port` cannot be bound on `host`: checked before anything starts,
    because a server already there would answer the router's readiness probe in its place."""
    with socket.socket() as s:
        try:
            s.bind((host, port))
        except OSError as error:
            raise StartupError(
                f"port {port} on {host} is already in use ({error.strerror}): another "
                "`infergraph up` or server is listening there; stop it, or choose another "
                "port with --port (0: any free one)"
            ) from error


def state_dir() -> Path:
    base = os.environ.get("XDG_RUNTIME_DIR") or str(Path.home() / ".cache")
    return Path(base) / "infergraph" / "up"


def make_plan(bundle: Bundle) -> LocalPlan:
    """The local plan of a bundle, with the built-in ClusterServingRuntimes available."""
    runtimes = (*bundle.runtimes, *builtin_runtimes())
    return plan_local(bundle.services, runtimes, bundle.root, sys.executable)


@dataclass(frozen=True)
class Deployment:
    supervisor: Supervisor
    graphs: tuple[RunningGraph, ...]


@contextlib.asynccontextmanager
async def deployment(
    bundle: Bundle,
    emit: Callable[[str], None],
    router_port: int = 0,
    ready_timeout: float = DEFAULT_READY_TIMEOUT,
    child_output: Callable[[str], None] | None = None,
) -> AsyncIterator[Deployment]:
    """Everything of `bundle` running and ready; all of it stopped when the block exits.

    `emit` gets progress lines; `child_output` (default: `emit`) the processes' own output.
    """
    if router_port:
        ensure_port_free(router_port)
    plan = make_plan(bundle)
    _check_references(bundle)
    async with Supervisor(child_output or emit) as supervisor:
        services: dict[str, InferenceService] = {}
        hosts: dict[
            str, str
        ] = {}  # predictor host:port, what a transformer's --predictor_host takes
        starting: list[tuple[Child, str]] = []
        for predictor in plan.predictors:
            port = free_port()
            model_grpc = free_port() if predictor.grpc else None
            child = await supervisor.start(
                predictor.service, predictor.command(port, model_grpc), predictor.env, bundle.root
            )
            address = f"http://{LOOPBACK}:{port}"
            hosts[predictor.service] = f"{LOOPBACK}:{port}"
            starting.append((child, f"{address}{predictor.ready_path}"))
            emit(f"starting {predictor.service} (runtime {predictor.runtime}) on {address}")
            # Graphs call a grpc-v2 predictor on its gRPC port (predict_url: grpc://...).
            called = address if model_grpc is None else f"http://{LOOPBACK}:{model_grpc}"
            if model_grpc is not None:
                emit(f"  {predictor.service} serves gRPC v2 on {LOOPBACK}:{model_grpc}")
            services[predictor.service] = ready_at(bundle.services[predictor.service], called)
        await asyncio.gather(*(wait_ready(c, url, ready_timeout) for c, url in starting))

        # A transformer answers for its InferenceService (KServe's address), calling the
        # predictor process started above.
        starting = []
        for transformer in plan.transformers:
            port = free_port()
            child = await supervisor.start(
                f"{transformer.service}/transformer",
                transformer.command(port, hosts[transformer.service]),
                transformer.env,
                bundle.root,
            )
            address = f"http://{LOOPBACK}:{port}"
            starting.append((child, f"{address}{transformer.ready_path}"))
            emit(f"starting {transformer.service} transformer on {address}")
            services[transformer.service] = ready_at(bundle.services[transformer.service], address)
        await asyncio.gather(*(wait_ready(c, url, ready_timeout) for c, url in starting))

        graphs: list[RunningGraph] = []
        for index, (name, graph) in enumerate(bundle.graphs.items()):
            resolved = resolve_graph(graph, services).graph
            port = router_port if index == 0 and router_port else free_port()
            argv = [
                sys.executable, "-m", "router", "--graph-json",
                resolved.router_json(),
                "--host", LOOPBACK, "--port", str(port), "--drain-seconds", "0",
            ]  # fmt: skip
            wants_grpc = grpc_port(graph.resource.metadata.annotations) is not None
            # Locally on a free port: the annotation's number (8081) may be taken here.
            router_grpc = free_port() if wants_grpc else None
            if router_grpc is not None:
                argv += ["--grpc-port", str(router_grpc)]
            child = await supervisor.start(f"router/{name}", argv)
            url = f"http://{LOOPBACK}:{port}"
            await wait_ready(child, f"{url}/readyz", ready_timeout)
            if router_grpc is not None:
                emit(f"graph {name} serves gRPC v2 on {LOOPBACK}:{router_grpc}")
            graphs.append(RunningGraph(name, url))
        yield Deployment(supervisor, tuple(graphs))


def sample_request(name: str, graph: ValidGraph) -> str | None:
    """The graph's sample request body as one line of JSON, or None without the annotation;
    LocalPlanError when the annotation is not JSON."""
    annotations = graph.resource.metadata.annotations or {}
    text = annotations.get(SAMPLE_ANNOTATION)
    if text is None:
        return None
    try:
        body = json.loads(text)
    except ValueError as error:
        raise LocalPlanError(
            f"InferenceGraph '{name}': annotation {SAMPLE_ANNOTATION} is not JSON ({error}): "
            f"{text[:80]!r}"
        ) from error
    return json.dumps(body, separators=(", ", ": "))


def curl_lines(url: str, sample: str | None) -> list[str]:
    """The curl command for a graph, with its sample body or a placeholder saying so."""
    command = f"  curl -s -X POST {url} -H 'Content-Type: application/json' -d "
    if sample is not None:
        return [command + shlex.quote(sample)]
    return [
        command + shlex.quote(PLACEHOLDER_BODY),
        f"  ([...] is a placeholder for one input of your model; a {SAMPLE_ANNOTATION} "
        "annotation on the InferenceGraph, holding a JSON body, puts a real one here)",
    ]


async def up(
    bundle: Bundle,
    emit: Callable[[str], None],
    stop: asyncio.Event,
    router_port: int = 8080,
    ready_timeout: float = DEFAULT_READY_TIMEOUT,
) -> int:
    """Run until `stop` is set or a process dies; returns the exit status for the CLI."""
    samples = {name: sample_request(name, graph) for name, graph in bundle.graphs.items()}
    async with deployment(bundle, emit, router_port, ready_timeout) as running:
        for graph in running.graphs:
            emit(f"graph {graph.name} ready at {graph.url}")
            for line in curl_lines(graph.url, samples[graph.name]):
                emit(line)
        state = _write_state(running.supervisor, running.graphs)
        try:
            crashed = await _serve_until(stop, running.supervisor)
        finally:
            state.unlink(missing_ok=True)
        if crashed is not None:
            emit(f"{crashed.name} exited with {crashed.process.returncode}:\n{crashed.log_tail()}")
            return 1
        emit("stopping")
    emit("stopped")
    return 0


def _check_references(bundle: Bundle) -> None:
    problems = [
        f"InferenceGraph '{name}' calls InferenceService '{service}', which the bundle lacks"
        for name, graph in bundle.graphs.items()
        for service in graph.referenced_services()
        if service not in bundle.services
    ]
    for name, graph in bundle.graphs.items():
        try:
            grpc_port(graph.resource.metadata.annotations)
        except RouterPortError as error:
            problems.append(f"InferenceGraph '{name}': {error}")
    if problems:
        raise LocalPlanError("; ".join(problems))


async def wait_ready(child: Child, url: str, seconds: float) -> None:
    deadline = time.monotonic() + seconds
    async with aiohttp.ClientSession() as session:
        while time.monotonic() < deadline:
            if child.process.returncode is not None:
                raise StartupError(
                    f"{child.name} exited with status {child.process.returncode} while "
                    f"starting:\n{child.log_tail()}"
                )
            try:
                async with session.get(url, timeout=aiohttp.ClientTimeout(total=2)) as response:
                    if response.status == 200:
                        return
            except (aiohttp.ClientError, TimeoutError):
                pass
            await asyncio.sleep(POLL_INTERVAL)
    raise StartupError(f"{child.name} not ready at {url} within {seconds:g}s:\n{child.log_tail()}")


async def _serve_until(stop: asyncio.Event, supervisor: Supervisor) -> Child | None:
    stopped = asyncio.ensure_future(stop.wait())
    crashed = asyncio.ensure_future(supervisor.wait_any_exit())
    try:
        done, _ = await asyncio.wait({stopped, crashed}, return_when=asyncio.FIRST_COMPLETED)
        return crashed.result() if crashed in done and not stop.is_set() else None
    finally:
        stopped.cancel()
        crashed.cancel()


def _write_state(supervisor: Supervisor, graphs: tuple[RunningGraph, ...]) -> Path:
    directory = state_dir()
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{os.getpid()}.json"
    # Start times make the pids checkable: `down` signals only processes that are still these.
    state = {
        "pid": os.getpid(),
        "start": start_time(os.getpid()),
        "children": [
            {"name": c.name, "pgid": c.pid, "start": start_time(c.pid)} for c in supervisor.children
        ],
        "graphs": {g.name: g.url for g in graphs},
    }
    path.write_text(json.dumps(state))
    return path


def down(emit: Callable[[str], None], timeout: float = 30.0) -> int:
    """Stop every running `infergraph up` of this user; returns how many were stopped.

    A state file left by an `up` that died without removing it may name pids that now belong
    to other programs: a process is signalled only if its start time is still the recorded one.
    """
    stopped = 0
    directory = state_dir()
    for path in sorted(directory.glob("*.json")) if directory.exists() else []:
        try:
            state = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        pid = int(state["pid"])
        signalled = False
        if _is_same_process(pid, state.get("start")):
            signalled = True
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)
            deadline = time.monotonic() + timeout
            while _alive(pid) and time.monotonic() < deadline:
                time.sleep(POLL_INTERVAL)
        # If `up` itself was gone or stuck, its children's groups are stopped directly.
        for child in state.get("children", []):
            pgid = int(child["pgid"])
            if _is_same_group(pgid, child.get("start")):
                signalled = True
                os.killpg(pgid, signal.SIGKILL)
        path.unlink(missing_ok=True)
        graphs = ", ".join(state.get("graphs", {}))
        if signalled:
            emit(f"stopped infergraph up (pid {pid}): {graphs}")
            stopped += 1
        else:
            emit(
                f"removed {path}: infergraph up (pid {pid}: {graphs}) had ended; its pids are "
                "gone or belong to other programs now, so nothing was signalled"
            )
    return stopped


def start_time(pid: int) -> int | None:
    """When `pid` started, in clock ticks since boot (/proc/<pid>/stat field 22); None when
    there is no such process or no /proc (not Linux)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name (field 2) is in parentheses and may hold spaces and ')'.
    fields = stat[stat.rindex(")") + 2 :].split()
    return int(fields[19])  # field 22 counts from 1 and includes pid and comm


def _is_same_process(pid: int, recorded: int | None) -> bool:
    if not Path("/proc").is_dir():
        return _alive(pid)  # not Linux: nothing to compare with; trust the state file
    now = start_time(pid)
    return now is not None and recorded is not None and now == recorded


def _is_same_group(pgid: int, recorded: int | None) -> bool:
    """Whether process group `pgid` is still one `up` started: its leader (pid `pgid`) lives
    with the recorded start time. A group whose leader is gone is left alone: its id could
    since have been taken by another program's group, and `up`'s children are the leaders
    (each dies with `up`, PR_SET_PDEATHSIG), so a leaderless group is not one of ours."""
    return group_alive(pgid) and _is_same_process(pgid, recorded)


def _alive(pid: int) -> bool:
    """Whether `pid` still runs; a zombie has exited (only its parent's wait() is left)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True  # no /proc (not Linux): signal 0 is all there is
    return stat[stat.rindex(")") + 2 :].split()[0] != "Z"
