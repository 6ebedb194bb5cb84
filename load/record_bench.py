"""What `--record` costs per request: the same router and graph with recording off and on.

    python -m load.record_bench [--quick] [--json]

A 2-step Sequence in front of nginx (a backend that is never the limit), the router pinned to
core 1 and wrk to core 0 as in load/bench.py; rounds alternate off and on so both see the same
machine, and each round prints the load average beside its figures (the machine is shared:
figures under load are noisy, which is why rounds are repeated and medians reported). Measured:
router CPU seconds per 1000 requests (the cost a request adds, whatever the machine's other
load), throughput and latency percentiles at 8 connections. With recording on, every request
is recorded (`--record-sample 1.0`, the worst case), to a file in a scratch directory.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path
from typing import Any

from load import graphs, procstat, servers, wrk

LOADGEN_CORE = "0"
SERVER_CORE = "1"
CONNECTIONS = 8  # enough to keep one router core busy, as load/bench.py's middle row
BODY = b'{"instances": [[6.8, 2.8, 4.8, 1.4], [6.0, 3.4, 4.5, 1.6]]}'


def loadavg() -> float:
    return float(Path("/proc/loadavg").read_text().split()[0])


def router(spec: dict[str, Any], extra: list[str]) -> servers.Server:
    port = servers.free_port()
    cmd = [sys.executable, "-m", "router", "--graph-json", json.dumps(spec)]
    cmd += ["--host", "127.0.0.1", "--port", str(port), "--drain-seconds", "0"]
    cmd += ["--log-level", "WARNING", *extra]
    return servers._spawn("router", port, cmd, SERVER_CORE, cwd=servers.REPO)


def one_round(spec: dict[str, Any], extra: list[str], seconds: int, script: Path) -> dict[str, Any]:
    server = router(spec, extra)
    try:
        url = server.url()
        wrk.run(url, CONNECTIONS, 1, script, LOADGEN_CORE)  # warm-up: imports, pools
        pids = procstat.tree(server.proc.pid)
        before = procstat.cpu_seconds(pids)
        load = loadavg()
        result = wrk.run(url, CONNECTIONS, seconds, script, LOADGEN_CORE)
        spent = procstat.cpu_seconds(pids) - before
    finally:
        server.stop()
    errors = sum(result[k] for k in ("connect_errors", "read_errors", "status_errors", "timeouts"))
    return {
        "loadavg": load,
        "rps": result["rps"],
        "p50_us": result["p50_us"],
        "p99_us": result["p99_us"],
        "cpu_ms_per_request": spent / max(result["requests"], 1) * 1000,
        "requests": result["requests"],
        "errors": errors,
    }


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m load.record_bench")
    parser.add_argument("--quick", action="store_true", help="3 rounds of 3 s (default 5 of 8 s)")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON too")
    args = parser.parse_args()
    rounds, seconds = (3, 3) if args.quick else (5, 8)
    work = wrk.scratch()
    script = wrk.lua_script(BODY, work)
    backend = servers.nginx(work, LOADGEN_CORE)
    spec = graphs.two_steps(backend.url())
    results: dict[str, list[dict[str, Any]]] = {"off": [], "on": []}
    recording = work / "traffic.jsonl"
    try:
        for index in range(rounds):
            for mode in ("off", "on"):
                extra = ["--record", str(recording)] if mode == "on" else []
                line = one_round(spec, extra, seconds, script)
                results[mode].append(line)
                print(
                    f"round {index + 1} {mode:3}  load {line['loadavg']:5.2f}  "
                    f"{line['rps']:7.0f} req/s  p50 {line['p50_us']:6.0f} us  "
                    f"p99 {line['p99_us']:6.0f} us  cpu {line['cpu_ms_per_request']:.3f} ms/req"
                    + (f"  ERRORS {line['errors']}" if line["errors"] else ""),
                    flush=True,
                )
    finally:
        backend.stop()
    summary = {}
    for key in ("rps", "p50_us", "p99_us", "cpu_ms_per_request"):
        off = statistics.median(r[key] for r in results["off"])
        on = statistics.median(r[key] for r in results["on"])
        summary[key] = {"off": off, "on": on, "ratio": on / off}
    recorded = sum(1 for _ in recording.open("rb")) if recording.exists() else 0
    print(
        f"medians over {rounds} rounds of {seconds} s, 2-step graph, c={CONNECTIONS}, "
        f"load average {statistics.median(r['loadavg'] for v in results.values() for r in v):.2f}"
    )
    for key, value in summary.items():
        print(f"  {key:20} off {value['off']:9.3f}  on {value['on']:9.3f}  x{value['ratio']:.3f}")
    extra_cpu = summary["cpu_ms_per_request"]["on"] - summary["cpu_ms_per_request"]["off"]
    size = recording.stat().st_size if recording.exists() else 0
    print(
        f"  recording adds {extra_cpu * 1000:.0f} us of router CPU per request; "
        f"{recorded} records written ({size} bytes)"
    )
    if args.json:
        print(json.dumps({"rounds": results, "summary": summary, "records": recorded}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
