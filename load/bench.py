"""`make bench`: the router's overhead, measured side by side with a direct backend, a bare
Python proxy and KServe's own Go router, all in one run on 127.0.0.1.

    python -m load.bench [--quick] [--name latest] [--before DIR] [--no-kserve] [--no-profile]

For every scenario and concurrency (1, 16, 64): a warm-up, then `--repeat` wrk runs; reported
are medians and the spread (min-max) of requests/s and p50/p90/p99 latency, the server's CPU
seconds per 1,000 requests (from /proc, all its processes), and its peak RSS per process. wrk
and the backends run on core 0, the server under test on core 1 (`taskset`), so the load
generator is not the router's competitor for CPU. Results go to load/results/<name>.json,
.md (the table) and .png (the plot); a py-spy flame graph of the 2-step Sequence at saturation
to load/results/profile-2step.svg. `--before DIR` adds the single-worker router scenarios run
from another checkout (e.g. main before a change), for before/after figures from one run.
"""

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from load import endurance, flame, graphs, procstat, scaling, servers, wrk

RESULTS = Path(__file__).resolve().parent / "results"
LOADGEN_CORE = "0"  # wrk and the backends
SERVER_CORE = "1"  # the router (or proxy, or KServe's router) under test
BOTH_CORES = "0,1"
CONCURRENCY = (1, 16, 64)
FANOUT_DELAY_MS = 20.0
GRAPHS = ("1step", "2step", "switch", "ensemble4x20ms", "nested10")


@dataclass(frozen=True)
class Scenario:
    name: str
    kind: str  # "direct", "proxy", "router", "kserve"
    backend: str  # "nginx" or "delay"
    hops: int  # backend calls per request
    spec: Callable[[str], graphs.Spec] | None = None
    workers: int = 1
    src: Path | None = None  # router source tree; None: this checkout
    stack: tuple[str, str] | None = None  # a bare proxy's (server, client); None: the baseline


# Candidate HTTP stacks for the router's hop (issue 15), each a bare proxy (load/proxy_stacks.py).
STACKS = (
    ("aiohttp", "pyreqwest"),
    ("aiohttp", "rnet"),
    ("granian", "aiohttp"),
    ("granian", "pyreqwest"),
    ("granian", "rnet"),
)


def scenarios(before: Path | None, kserve: Path | None) -> list[Scenario]:
    """Every scenario, each graph's KServe, router and before rows next to each other, so
    that the ones compared are measured minutes apart, under the same conditions."""
    out = [
        Scenario("direct-nginx", "direct", "nginx", 1),
        Scenario("direct-delay20ms", "direct", "delay", 1),
        Scenario("proxy-baseline", "proxy", "nginx", 1),
        *(
            Scenario(f"proxy-{server}-{client}", "proxy", "nginx", 1, stack=(server, client))
            for server, client in STACKS
        ),
    ]
    routers = [
        ("1step", "nginx", 1, graphs.one_step),
        ("2step", "nginx", 2, graphs.two_steps),
        ("switch", "nginx", 1, graphs.switch),
        ("ensemble4x20ms", "delay", 4, graphs.ensemble),
        ("nested10", "nginx", 1, graphs.nested),
    ]
    for n, b, h, s in routers:
        # Every graph here uses only what KServe's router supports, so it runs the same spec.
        if kserve is not None:
            out.append(Scenario(f"kserve-{n}", "kserve", b, h, s))
        out.append(Scenario(f"router-{n}", "router", b, h, s))
        if before is not None:
            out.append(Scenario(f"before-{n}", "router", b, h, s, src=before))
    # N workers against KServe's router given the same N cores (GOMAXPROCS=N, same pinning).
    if kserve is not None:
        out.append(Scenario("kserve-1step-2cores", "kserve", "nginx", 1, graphs.one_step, 2))
    out.append(Scenario("router-1step-w2", "router", "nginx", 1, graphs.one_step, 2))
    return out


def start(scenario: Scenario, backend_url: str, kserve: Path | None) -> servers.Server | None:
    if scenario.kind == "direct":
        return None
    if scenario.kind == "proxy":
        if scenario.stack is not None:
            return servers.proxy_stack(*scenario.stack, backend_url, SERVER_CORE)
        return servers.proxy_baseline(backend_url, SERVER_CORE)
    assert scenario.spec is not None
    spec = scenario.spec(backend_url)
    core = BOTH_CORES if scenario.workers > 1 else SERVER_CORE
    if scenario.kind == "kserve":
        assert kserve is not None
        return servers.kserve_router(kserve, spec, core, scenario.workers)
    return servers.router(spec, core, scenario.workers, scenario.src or servers.REPO)


def loadavg() -> float:
    """The 1-minute load average now."""
    return float(Path("/proc/loadavg").read_text().split()[0])


def _spread(values: list[float]) -> dict[str, float]:
    return {"median": statistics.median(values), "min": min(values), "max": max(values)}


def measure(
    url: str, pid: int | None, connections: int, args: argparse.Namespace, script: Path
) -> dict[str, Any]:
    wrk.run(url, connections, args.warmup, script, LOADGEN_CORE)
    runs = []
    for _ in range(args.repeat):
        pids = procstat.tree(pid) if pid is not None else []
        cpu_before = procstat.cpu_seconds(pids)
        result = wrk.run(url, connections, args.duration, script, LOADGEN_CORE)
        if pids:
            spent = procstat.cpu_seconds(pids) - cpu_before
            result["cpu_s_per_1k"] = spent / max(result["requests"], 1) * 1000
        runs.append(result)
    errors = sum(
        r[k] for r in runs for k in ("connect_errors", "read_errors", "status_errors", "timeouts")
    )
    summary: dict[str, Any] = {"runs": runs, "errors": errors}
    for key in ("rps", "p50_us", "p90_us", "p99_us", "cpu_s_per_1k"):
        values = [r[key] for r in runs if key in r]
        if values:
            summary[key] = _spread(values)
    return summary


def run_scenario(
    scenario: Scenario,
    backends: dict[str, servers.Server],
    args: argparse.Namespace,
    kserve: Path | None,
    script: Path,
) -> dict[str, Any]:
    backend = backends[scenario.backend]
    server = start(scenario, backend.url(), kserve)
    url = backend.url() if server is None else server.url()
    pid = server.proc.pid if server is not None else None
    try:
        result: dict[str, Any] = {"kind": scenario.kind, "hops": scenario.hops}
        result["workers"] = scenario.workers
        # Other work on the machine makes figures noise: each row says how busy it was.
        result["loadavg_before"] = loadavg()
        for c in CONCURRENCY:
            result[f"c{c}"] = measure(url, pid, c, args, script)
            line = result[f"c{c}"]
            print(
                f"  {scenario.name:22} c={c:<3} {line['rps']['median']:8.0f} req/s  "
                f"p50 {line['p50_us']['median']:7.0f} us  p99 {line['p99_us']['median']:7.0f} us"
                + (
                    f"  cpu {line['cpu_s_per_1k']['median']:.3f} s/1k"
                    if "cpu_s_per_1k" in line
                    else ""
                )
                + (f"  ERRORS {line['errors']}" if line["errors"] else ""),
                flush=True,
            )
        result["loadavg_after"] = loadavg()
        if pid is not None:
            pids = procstat.tree(pid)
            # A router pool's first process only supervises; KServe's is one Go process.
            pooled = scenario.workers > 1 and scenario.kind == "router"
            workers = pids[1:] if pooled else pids
            result["peak_rss_mb"] = procstat.peak_rss_mb(workers)
        return result
    finally:
        if server is not None:
            server.stop()


def derive(results: dict[str, Any]) -> dict[str, Any]:
    """The figures the targets speak of, computed from one run's medians."""

    def med(name: str, c: int, key: str) -> float | None:
        entry = results.get(name, {}).get(f"c{c}", {}).get(key)
        return entry["median"] if entry else None

    out: dict[str, Any] = {"overhead_per_hop_us_c1": {}}
    for name, result in results.items():
        if result["kind"] in ("router", "kserve", "proxy"):
            direct = "direct-delay20ms" if "ensemble" in name else "direct-nginx"
            p50, base = med(name, 1, "p50_us"), med(direct, 1, "p50_us")
            if p50 is not None and base is not None:
                hops = 1 if "ensemble" in name else result["hops"]  # parallel: one hop deep
                out["overhead_per_hop_us_c1"][name] = (p50 - base) / hops

    def ratio(a: float | None, b: float | None) -> float | None:
        return a / b if a is not None and b else None

    for name, result in results.items():
        if result["kind"] == "proxy":
            for c in (16, 64):
                out[f"{name}_rps_vs_kserve_c{c}"] = ratio(
                    med(name, c, "rps"), med("kserve-1step", c, "rps")
                )
            out[f"{name}_cpu_vs_kserve_c64"] = ratio(
                med(name, 64, "cpu_s_per_1k"), med("kserve-1step", 64, "cpu_s_per_1k")
            )
    for prefix in ("router", "before"):
        for graph in GRAPHS:
            for c in (16, 64):
                out[f"{prefix}_{graph}_rps_vs_kserve_c{c}"] = ratio(
                    med(f"{prefix}-{graph}", c, "rps"), med(f"kserve-{graph}", c, "rps")
                )
            out[f"{prefix}_{graph}_cpu_vs_kserve_c64"] = ratio(
                med(f"{prefix}-{graph}", 64, "cpu_s_per_1k"),
                med(f"kserve-{graph}", 64, "cpu_s_per_1k"),
            )
    for c in (16, 64):
        out[f"router_1step_w2_rps_vs_kserve_2cores_c{c}"] = ratio(
            med("router-1step-w2", c, "rps"), med("kserve-1step-2cores", c, "rps")
        )
        out[f"router_w2_scaling_c{c}"] = ratio(
            med("router-1step-w2", c, "rps"), med("router-1step", c, "rps")
        )
    return {k: v for k, v in out.items() if v is not None and v != {}}


# Issue 15's targets: (figure in `derived`, or a scenario's median, and the bound it must meet).
PREVIOUS_ENSEMBLE_RPS = {16: 469.0, 64: 1215.0}  # the router before issue 15, last full run
HOP_P50_US = 180.0
RSS_MB = 80.0


def targets(report: dict[str, Any]) -> list[dict[str, Any]]:
    """Each of issue 15's targets with the measured value and whether this run meets it."""
    derived = report.get("derived", {})
    scenarios_ = report.get("scenarios", {})
    rows: list[dict[str, Any]] = []

    def check(what: str, value: float | None, bound: float, at_least: bool) -> None:
        if value is None:
            return
        met = value >= bound if at_least else value <= bound
        sign = ">=" if at_least else "<="
        rows.append({"target": f"{what} {sign} {bound:g}", "value": value, "met": met})

    def med(name: str, c: int, key: str) -> float | None:
        entry = scenarios_.get(name, {}).get(f"c{c}", {}).get(key)
        return entry["median"] if entry else None

    check("1step req/s vs KServe, c=16", derived.get("router_1step_rps_vs_kserve_c16"), 1.1, True)
    check("1step req/s vs KServe, c=64", derived.get("router_1step_rps_vs_kserve_c64"), 1.5, True)
    for graph in ("2step", "switch"):
        for c in (16, 64):
            key = f"router_{graph}_rps_vs_kserve_c{c}"
            check(f"{graph} req/s vs KServe, c={c}", derived.get(key), 1.0, True)
    for c in (16, 64):
        rps = med("router-ensemble4x20ms", c, "rps")
        check(f"ensemble4x20ms req/s, c={c}", rps, PREVIOUS_ENSEMBLE_RPS[c], True)
        key = f"router_ensemble4x20ms_rps_vs_kserve_c{c}"
        check(f"ensemble4x20ms req/s vs KServe, c={c}", derived.get(key), 1.0, True)
    hop = derived.get("overhead_per_hop_us_c1", {}).get("router-1step")
    check("1step added p50 per hop at c=1, µs", hop, HOP_P50_US, False)
    cpu = derived.get("router_1step_cpu_vs_kserve_c64")
    check("1step CPU s/1k vs KServe, c=64", cpu, 1.0, False)
    rss = scenarios_.get("router-1step", {}).get("peak_rss_mb")
    check("1step peak RSS per worker, MB", rss, RSS_MB, False)
    endurance = report.get("endurance")
    if endurance and endurance.get("rss_max_mb") is not None:
        check("RSS over the endurance run, max MB", endurance["rss_max_mb"], RSS_MB, False)
        check("RSS growth over the endurance run", endurance["growth"], 0.10, False)
    return rows


def profile(backend_url: str, seconds: float, script: Path) -> dict[str, Any]:
    """py-spy flame graph of the 2-step Sequence at saturation (64 connections)."""
    server = servers.router(graphs.two_steps(backend_url), SERVER_CORE)
    svg = RESULTS / "profile-2step.svg"
    raw = RESULTS.parent / ".profile-2step.txt"
    try:
        wrk.run(server.url(), 64, 1, script, LOADGEN_CORE)
        pyspy = str(Path(sys.executable).parent / "py-spy")
        common = ["--pid", str(server.proc.pid), "--duration", f"{seconds:g}", "--rate", "250"]
        spies = [
            subprocess.Popen(
                [pyspy, "record", *common, "-o", str(svg)],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            ),
        ]
        wrk.run(server.url(), 64, seconds + 1, script, LOADGEN_CORE)
        for spy in spies:
            spy.wait(60)
        # A second, raw pass for the text summary of where the time goes.
        spy = subprocess.Popen(
            [pyspy, "record", *common, "--format", "raw", "-o", str(raw)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        wrk.run(server.url(), 64, seconds + 1, script, LOADGEN_CORE)
        spy.wait(60)
        top = flame.top_frames(raw.read_text()) if raw.exists() else []
        raw.unlink(missing_ok=True)
        (RESULTS / "profile-2step-top.txt").write_text(
            "share of samples  own time in function (py-spy, 2-step Sequence, 64 connections)\n"
            + "".join(f"{share:6.1%}  {frame}\n" for frame, share in top)
        )
        return {"flamegraph": svg.name, "top_self": top[:25]}
    finally:
        server.stop()


def environment(kserve: Path | None) -> dict[str, Any]:
    def version(cmd: list[str]) -> str:
        try:
            done = subprocess.run(cmd, capture_output=True, text=True, timeout=10)
        except OSError:
            return "missing"
        return (done.stdout + done.stderr).strip().splitlines()[0]

    import aiohttp
    import uvloop

    cpu = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        "?",
    )
    return {
        "time_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "cores": os.cpu_count(),
        "cpu": cpu,
        "loadavg_at_start": Path("/proc/loadavg").read_text().split()[:3],
        "kernel": platform.release(),
        "python": platform.python_version(),
        "aiohttp": aiohttp.__version__,
        "http_stacks": {name: _version(name) for name in ("rnet", "pyreqwest", "granian")},
        "uvloop": uvloop.__version__,
        "wrk": version(["wrk", "-v"]),
        "nginx": version(["nginx", "-v"]),
        "kserve_router": str(kserve) if kserve else None,
        "cores_used": {"wrk+backends": LOADGEN_CORE, "server": SERVER_CORE, "workers2": BOTH_CORES},
    }


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="1 s runs, 1 repeat: a smoke check")
    p.add_argument("--duration", type=int, default=4, help="seconds per wrk run (whole)")
    p.add_argument("--warmup", type=int, default=1, help="seconds of warm-up per point (whole)")
    p.add_argument("--repeat", type=int, default=3, help="measured runs per point")
    p.add_argument("--name", default="latest", help="results file stem (default latest)")
    p.add_argument("--before", type=Path, help="another checkout: its router, side by side")
    p.add_argument("--kserve", type=Path, help="KServe's router binary (default: build/cached)")
    p.add_argument("--no-kserve", action="store_true", help="skip KServe's Go router")
    p.add_argument("--no-profile", action="store_true", help="skip the py-spy flame graph")
    p.add_argument("--no-scaling", action="store_true", help="skip the graph-size scaling check")
    p.add_argument("--only", nargs="*", help="scenario names to run (default all)")
    p.add_argument("--no-grpc", action="store_true", help="skip the gRPC rows (ghz)")
    p.add_argument("--no-stream", action="store_true", help="skip the streaming (SSE) rows")
    p.add_argument(
        "--endurance", type=int, default=300, help="seconds of RSS-under-load run (0: skip)"
    )
    args = p.parse_args()
    if args.quick:
        args.duration, args.warmup, args.repeat = 1, 1, 1
        args.endurance = min(args.endurance, 20)
    RESULTS.mkdir(exist_ok=True)
    kserve = None if args.no_kserve else (args.kserve or _kserve_binary())
    if kserve is not None and servers.port_taken(servers.KSERVE_PORT):
        print(f"port {servers.KSERVE_PORT} is taken: skipping KServe's router", file=sys.stderr)
        kserve = None
    work = wrk.scratch()
    script = wrk.lua_script(graphs.REQUEST_BODY, work)
    report: dict[str, Any] = {
        "environment": environment(kserve),
        "settings": vars(args)
        | {
            "before": str(args.before) if args.before else None,
            "kserve": str(args.kserve) if args.kserve else None,
        },
    }
    print(json.dumps(report["environment"]), flush=True)
    backends = {
        "nginx": servers.nginx(work, LOADGEN_CORE),
        "delay": servers.delay_backend(FANOUT_DELAY_MS, LOADGEN_CORE),
    }
    results: dict[str, Any] = {}
    try:
        for scenario in scenarios(args.before, kserve):
            if args.only and scenario.name not in args.only:
                continue
            results[scenario.name] = run_scenario(scenario, backends, args, kserve, script)
        report["scenarios"] = results
        report["derived"] = derive(results)
        grpc_rows(args, work, report)
        if not args.no_stream and not args.only:
            from load import stream_bench

            report["stream"] = stream_bench.run(args.quick, LOADGEN_CORE, SERVER_CORE)
        if not args.no_profile:
            report["profile"] = profile(backends["nginx"].url(), 4 if args.quick else 8, script)
        if not args.no_scaling:
            report["scaling"] = scaling.run(quick=args.quick)
        if args.endurance > 0:
            report["endurance"] = endurance.run(
                backends["nginx"].url(), args.endurance, script, LOADGEN_CORE, SERVER_CORE
            )
    finally:
        for backend in backends.values():
            backend.stop()
    report["environment"]["loadavg_at_end"] = Path("/proc/loadavg").read_text().split()[:3]
    report["targets"] = targets(report)
    (RESULTS / f"{args.name}.json").write_text(json.dumps(report, indent=1) + "\n")
    table = render_table(report)
    (RESULTS / f"{args.name}.md").write_text(table)
    print(table)
    from load import plot

    plot.write(report, RESULTS / f"{args.name}.png")
    print(f"wrote {RESULTS / args.name}.json, .md, .png")
    return 0


def _version(package: str) -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(package)
    except PackageNotFoundError:
        return "missing"


def grpc_rows(args: argparse.Namespace, work: Path, report: dict[str, Any]) -> None:
    """ModelInfer through the router vs direct (load/grpc_bench.py), unless --no-grpc or --only
    names no gRPC scenario."""
    if args.no_grpc or (args.only and not any(n.startswith("grpc-") for n in args.only)):
        return
    from load import grpc_bench

    grpc = grpc_bench.run(args, work, LOADGEN_CORE, SERVER_CORE)
    if grpc is not None:
        report["grpc"] = grpc


def _kserve_binary() -> Path | None:
    build = Path(__file__).resolve().parent / "build_kserve_router.sh"
    done = subprocess.run([str(build)], capture_output=True, text=True)
    if done.returncode != 0:
        print(
            f"building KServe's router failed; skipping it:\n{done.stderr[-2000:]}", file=sys.stderr
        )
        return None
    return Path(done.stdout.strip().splitlines()[-1])


def render_table(report: dict[str, Any]) -> str:
    from load.table import render

    table = render(report)
    if "grpc" in report:
        from load import grpc_bench

        loadavg = report["environment"]["loadavg_at_start"]
        table += grpc_bench.table(report["grpc"], report.get("derived", {}), loadavg)
    if "stream" in report:
        from load import stream_bench

        table += stream_bench.table(report["stream"])
    return table


if __name__ == "__main__":
    sys.exit(main())
