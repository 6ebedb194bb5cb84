"""The gRPC rows of `make bench`: ModelInfer through the router vs straight to the model server.

The model server is KServe's Python ModelServer serving the iris classifier of the examples on
its gRPC port (what a grpc-v2 InferenceService runs); the load generator is ghz, built once from
the Go module proxy (load/build_ghz.sh). ghz and the model server run on the load-generator
core, the router on the server core, as the REST rows. Scenarios: `grpc-direct` (ghz -> model),
`grpc-router-1step` (ghz -> router --grpc-port -> model) and `grpc-router-2step` (two steps
to the model in a Sequence, the second again with the request, as the model answers outputs,
not inputs). Each at c=1/16/64 on one HTTP/2 connection, gRPC's own way to be concurrent.

The added latency per hop is (router p50 - direct p50) / hops at c=1, set beside the REST
rows' same figure (`overhead_per_hop_us_c1` of router-1step/2step against nginx).
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from load import graphs, procstat, servers

REPO = servers.REPO
PROTO = REPO / "router" / "inference_proto" / "grpc_predict_v2.proto"
MODEL_DIR = REPO / "examples" / "iris-ensemble" / "models" / "iris-logreg"
CALL = "inference.GRPCInferenceService.ModelInfer"
CONCURRENCY = (1, 16, 64)
MODEL_READY_SECONDS = 120.0  # importing kserve and unpickling sklearn on a busy machine


def build_ghz() -> Path | None:
    done = subprocess.run([str(REPO / "load" / "build_ghz.sh")], capture_output=True, text=True)
    if done.returncode != 0:
        print(f"building ghz failed; no gRPC rows:\n{done.stderr[-2000:]}", file=sys.stderr)
        return None
    return Path(done.stdout.strip().splitlines()[-1])


def request_file(work: Path) -> Path:
    """One iris row as a serialized ModelInferRequest (raw FP32 contents), for ghz -B."""
    from router.inference_proto.grpc_predict_v2_pb2 import ModelInferRequest
    from router.tensors import json_to_request

    body = {"inputs": [{"name": "input-0", "datatype": "FP32", "shape": [1, 4],
                        "data": [6.8, 2.8, 4.8, 1.4]}]}  # fmt: skip
    request: ModelInferRequest = json_to_request(body, "iris")
    path = work / "iris-request.bin"
    path.write_bytes(request.SerializeToString())
    return path


def model_server(core: str) -> tuple[servers.Server, int]:
    if not (MODEL_DIR / "model.joblib").exists():
        subprocess.run([sys.executable, str(REPO / "examples" / "train.py")], check=True)
    http, grpc_port = servers.free_port(), servers.free_port()
    cmd = [sys.executable, "-m", "graph_controller.model_servers.sklearn", "--model_name", "iris",
           "--model_dir", str(MODEL_DIR), "--http_port", str(http), "--enable_grpc", "true",
           "--grpc_port", str(grpc_port)]  # fmt: skip
    proc = subprocess.Popen(
        ["taskset", "-c", core, *cmd],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        cwd=REPO,
    )
    server = servers.Server("kserve-modelserver", http, proc)
    try:
        servers.wait_listening(grpc_port, proc, MODEL_READY_SECONDS)
    except RuntimeError:
        server.stop()
        raise
    return server, grpc_port


def grpc_router(spec: graphs.Spec, core: str) -> tuple[servers.Server, int]:
    port, grpc_port = servers.free_port(), servers.free_port()
    cmd = [sys.executable, "-m", "router", "--graph-json", json.dumps(spec), "--host",
           "127.0.0.1", "--port", str(port), "--grpc-port", str(grpc_port),
           "--drain-seconds", "0", "--log-level", "WARNING"]  # fmt: skip
    proc = subprocess.Popen(
        ["taskset", "-c", core, *cmd],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        cwd=REPO,
    )
    server = servers.Server("router", port, proc)
    try:
        servers.wait_listening(grpc_port, proc)
    except RuntimeError:
        server.stop()
        raise
    return server, grpc_port


def ghz_run(
    ghz: Path, port: int, connections: int, seconds: int, data: Path, core: str
) -> dict[str, Any]:
    cmd = ["taskset", "-c", core, str(ghz), "--insecure", "--cpus", "1", "--proto", str(PROTO),
           "--call", CALL, "-B", str(data), "-c", str(connections), "-z", f"{seconds}s",
           "-O", "json", f"127.0.0.1:{port}"]  # fmt: skip
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=seconds + 60)
    if not done.stdout.strip():
        raise RuntimeError(f"ghz failed: {done.stderr[-1000:]}")
    report = json.loads(done.stdout)
    percentiles = {
        p["percentage"]: p["latency"] / 1000 for p in report["latencyDistribution"] or []
    }
    statuses = report.get("statusCodeDistribution") or {}
    # ghz closes its connection when the duration ends; the calls in flight then (one per
    # worker) fail with this text. They are the run's end, not the server's errors.
    cut = sum(
        n
        for text, n in (report.get("errorDistribution") or {}).items()
        if "use of closed network connection" in text
    )
    return {
        "rps": report["rps"],
        "requests": report["count"],
        "p50_us": percentiles.get(50, 0.0),
        "p90_us": percentiles.get(90, 0.0),
        "p99_us": percentiles.get(99, 0.0),
        "errors": sum(n for code, n in statuses.items() if code != "OK") - cut,
        "cut_at_end": cut,
    }


def _spread(values: list[float]) -> dict[str, float]:
    ordered = sorted(values)
    return {"median": ordered[len(ordered) // 2], "min": ordered[0], "max": ordered[-1]}


def measure(
    ghz: Path, port: int, pid: int | None, c: int, args: Any, data: Path, core: str
) -> dict[str, Any]:
    ghz_run(ghz, port, c, args.warmup, data, core)
    runs = []
    for _ in range(args.repeat):
        pids = procstat.tree(pid) if pid is not None else []
        before = procstat.cpu_seconds(pids)
        result = ghz_run(ghz, port, c, args.duration, data, core)
        if pids:
            spent = procstat.cpu_seconds(pids) - before
            result["cpu_s_per_1k"] = spent / max(result["requests"], 1) * 1000
        runs.append(result)
    summary: dict[str, Any] = {"runs": runs, "errors": sum(r["errors"] for r in runs)}
    for key in ("rps", "p50_us", "p90_us", "p99_us", "cpu_s_per_1k"):
        values = [r[key] for r in runs if key in r]
        if values:
            summary[key] = _spread(values)
    return summary


def run(args: Any, work: Path, loadgen_core: str, server_core: str) -> dict[str, Any] | None:
    """The gRPC scenarios and their derived figures; None (and why, on stderr) without ghz."""
    ghz = build_ghz()
    if ghz is None:
        return None
    data = request_file(work)
    model, model_port = model_server(loadgen_core)
    target = f"grpc://127.0.0.1:{model_port}/iris"
    second = {"serviceUrl": target, "name": "b", "data": "$request"}
    specs: dict[str, tuple[graphs.Spec | None, int]] = {
        "grpc-direct": (None, 1),
        "grpc-router-1step": (graphs.one_step(target), 1),
        "grpc-router-2step": (
            {
                "nodes": {
                    "root": {
                        "routerType": "Sequence",
                        "steps": [{"serviceUrl": target, "name": "a"}, second],
                    }
                }
            },
            2,
        ),
    }
    scenarios: dict[str, Any] = {}
    try:
        for name, (spec, hops) in specs.items():
            router = grpc_router(spec, server_core) if spec is not None else None
            port = router[1] if router is not None else model_port
            pid = router[0].proc.pid if router is not None else None
            try:
                result: dict[str, Any] = {"kind": "grpc", "hops": hops}
                for c in CONCURRENCY:
                    line = result[f"c{c}"] = measure(ghz, port, pid, c, args, data, loadgen_core)
                    print(
                        f"  {name:22} c={c:<3} {line['rps']['median']:8.0f} req/s  "
                        f"p50 {line['p50_us']['median']:7.0f} us  "
                        f"p99 {line['p99_us']['median']:7.0f} us"
                        + (f"  ERRORS {line['errors']}" if line["errors"] else ""),
                        flush=True,
                    )
                scenarios[name] = result
            finally:
                if router is not None:
                    router[0].stop()
    finally:
        model.stop()
    return {"ghz": str(ghz), "scenarios": scenarios, "derived": derive(scenarios)}


def derive(scenarios: dict[str, Any]) -> dict[str, float]:
    def p50(name: str) -> float | None:
        entry = scenarios.get(name, {}).get("c1", {}).get("p50_us")
        return entry["median"] if entry else None

    out: dict[str, float] = {}
    base = p50("grpc-direct")
    for name in ("grpc-router-1step", "grpc-router-2step"):
        value = p50(name)
        if value is not None and base is not None:
            out[f"overhead_per_hop_us_c1: {name}"] = (value - base) / scenarios[name]["hops"]
    return out


def table(grpc: dict[str, Any], rest_derived: dict[str, Any], loadavg: list[str]) -> str:
    """The gRPC rows as Markdown, with the per-hop overhead beside the REST rows' own."""
    lines = [
        "",
        f"gRPC rows: ghz ({grpc['ghz']}) -> KServe ModelServer (iris, gRPC) on the load-generator "
        f"core, router on the server core; load average at start {' '.join(loadavg)}"
        + (" (a busy machine: these figures are noise)" if float(loadavg[0]) >= 1.0 else "")
        + ".",
        "",
        "| scenario | c | req/s | p50 µs | p90 µs | p99 µs | router CPU s/1k req |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for name, result in grpc["scenarios"].items():
        for c in CONCURRENCY:
            entry = result[f"c{c}"]

            def cell(key: str, fmt: str, entry: dict[str, Any] = entry) -> str:
                if key not in entry:
                    return "-"
                s = entry[key]
                return f"{fmt.format(s['median'])} ({fmt.format(s['min'])}-{fmt.format(s['max'])})"

            errors = f" ⚠ {entry['errors']} errors" if entry["errors"] else ""
            lines.append(
                f"| {name}{errors} | {c} | {cell('rps', '{:.0f}')} | {cell('p50_us', '{:.0f}')} | "
                f"{cell('p90_us', '{:.0f}')} | {cell('p99_us', '{:.0f}')} | "
                f"{cell('cpu_s_per_1k', '{:.3f}')} |"
            )
    rest = rest_derived.get("overhead_per_hop_us_c1", {})
    lines += ["", "| added latency per hop, c=1 (p50) | µs |", "|---|---:|"]
    for key, value in grpc["derived"].items():
        lines.append(f"| {key.split(': ')[1]} (gRPC, vs direct gRPC) | {value:.0f} |")
    for name in ("router-1step", "router-2step"):
        if name in rest:
            lines.append(f"| {name} (REST, vs direct nginx) | {rest[name]:.0f} |")
    return "\n".join(lines) + "\n"


def main() -> int:
    """`python -m load.grpc_bench [--quick]`: only the gRPC rows, printed as a table."""
    import argparse

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="1 s runs, 1 repeat")
    args = p.parse_args()
    args.duration, args.warmup, args.repeat = (1, 1, 1) if args.quick else (4, 1, 3)
    work = Path(f"/tmp/infergraph-grpc-bench-{int(time.time())}")
    work.mkdir(parents=True, exist_ok=True)
    loadavg = Path("/proc/loadavg").read_text().split()[:3]
    result = run(args, work, "0", "1")
    if result is None:
        return 1
    print(table(result, {}, loadavg))
    return 0


if __name__ == "__main__":
    sys.exit(main())
