"""Scale run of the Kubernetes controller against a real control plane (tests/k8s/envtest.py).

    python load/controller_scale.py [--graphs 500] [--workers 4] [--out FILE.json]

Starts its own control plane (etcd, kube-apiserver, KCM, scheduler, KWOK), installs the CRDs,
starts `python -m graph_controller controller` as a subprocess (one namespace, no leader
election, DEBUG logs so each reconcile is a line), then creates N InferenceServices and N
InferenceGraphs (graph i calls service i) and waits until every graph reports Ready. Reports:
seconds from the first create to all services Ready and to all graphs Ready, reconciles and
reconciles/s, API writes (applies, status patches), reconcile latency percentiles, the
controller's CPU seconds (user+system, from /proc) and RSS (current and peak), and the
environment. Readiness includes the cluster's own work (Deployments -> ReplicaSets -> Pods ->
scheduled -> KWOK Ready), which KCM's default client rate limit (20 QPS) bounds.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.k8s.controller import ControllerProcess, graph, isvc  # noqa: E402
from tests.k8s.envtest import ControlPlane  # noqa: E402

NAMESPACE = "scale"
CREATE_THREADS = 8  # parallel creates; the API server, not the client, is the limit
POLL = 1.0  # seconds between readiness counts (one list of each kind)
TICKS = os.sysconf("SC_CLK_TCK")


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS  # utime + stime


def _memory_kib(pid: int) -> dict[str, int]:
    out = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            out[key] = int(value.split()[0])
    return out


def _ready_count(custom: Any, plural: str, version: str) -> int:
    listed = custom.list_namespaced_custom_object("serving.kserve.io", version, NAMESPACE, plural)
    return sum(
        any(
            c.get("type") == "Ready" and c.get("status") == "True"
            for c in (item.get("status") or {}).get("conditions") or []
        )
        for item in listed["items"]
    )


def run_scale(
    plane: ControlPlane, graphs: int, workers: int, work: Path, timeout: float
) -> dict[str, Any]:
    """Create `graphs` services+graphs in namespace `scale` of `plane` (CRDs installed) and
    measure; raises TimeoutError naming what was not Ready when `timeout` s pass."""
    from kubernetes import client

    plane.kubectl("create", "namespace", NAMESPACE)
    controller = ControllerProcess(
        plane,
        work / "controller.log",
        f"--namespace={NAMESPACE}",
        f"--workers={workers}",
        "--log-level=DEBUG",
    )
    try:
        controller.wait_ready()
        cpu_before = _cpu_seconds(controller.popen.pid)
        with plane.api_client() as api:
            custom = client.CustomObjectsApi(api)

            def create(obj: dict[str, Any]) -> None:
                group, version = obj["apiVersion"].split("/")
                plural = obj["kind"].lower() + "s"
                custom.create_namespaced_custom_object(group, version, NAMESPACE, plural, obj)

            objects = [isvc(f"m{i}") for i in range(graphs)]
            objects += [graph(f"g{i}", [f"m{i}"]) for i in range(graphs)]
            started = time.monotonic()
            with ThreadPoolExecutor(CREATE_THREADS) as pool:
                list(pool.map(create, objects))
            created = time.monotonic() - started
            services_ready_at = None
            deadline = started + timeout
            while True:
                services = _ready_count(custom, "inferenceservices", "v1beta1")
                ready = _ready_count(custom, "inferencegraphs", "v1alpha1")
                now = time.monotonic()
                if services_ready_at is None and services == graphs:
                    services_ready_at = now - started
                if ready == graphs:
                    break
                if now > deadline:
                    raise TimeoutError(
                        f"after {timeout:.0f}s: {services}/{graphs} InferenceServices and "
                        f"{ready}/{graphs} InferenceGraphs Ready"
                    )
                time.sleep(POLL)
            all_ready = time.monotonic() - started
        cpu = _cpu_seconds(controller.popen.pid) - cpu_before
        memory = _memory_kib(controller.popen.pid)
    finally:
        code = controller.terminate()
    lines = controller.lines()
    reconciles = [line for line in lines if line.get("msg") == "reconciled"]
    seconds = sorted(line["seconds"] for line in reconciles)
    quantiles = statistics.quantiles(seconds, n=100) if len(seconds) > 1 else seconds * 99
    return {
        "graphs": graphs,
        "inference_services": graphs,
        "workers": workers,
        "create_seconds": round(created, 2),
        "all_services_ready_seconds": round(services_ready_at or all_ready, 2),
        "all_graphs_ready_seconds": round(all_ready, 2),
        "reconciles": len(reconciles),
        "reconciles_per_second": round(len(reconciles) / all_ready, 1),
        "applies": sum(line.get("msg") == "applied" for line in lines),
        "status_writes": sum(line.get("msg") == "status written" for line in lines),
        "retried_errors": sum(line.get("msg") == "reconcile failed, retrying" for line in lines),
        "reconcile_seconds": {
            "p50": round(quantiles[49], 4),
            "p90": round(quantiles[89], 4),
            "p99": round(quantiles[98], 4),
            "max": round(seconds[-1], 4) if seconds else None,
        },
        "controller_cpu_seconds": round(cpu, 2),
        "controller_cpu_share": round(cpu / all_ready, 3),
        "controller_rss_mib": round(memory.get("VmRSS", 0) / 1024, 1),
        "controller_peak_rss_mib": round(memory.get("VmHWM", 0) / 1024, 1),
        "controller_exit": code,
        "environment": {
            "python": platform.python_version(),
            "cores": os.cpu_count(),
            "kubernetes": "envtest 1.31.4 (etcd 3.5.17), KWOK fake node",
            "loadavg_at_end": os.getloadavg(),
        },
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--graphs", type=int, default=500)
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--timeout", type=float, default=900.0, help="seconds to wait for Ready")
    parser.add_argument("--out", default=str(REPO / "load" / "results" / "controller_scale.json"))
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="infergraph-scale-") as work, ControlPlane() as plane:
        plane.install_crds()
        result = run_scale(plane, args.graphs, args.workers, Path(work), args.timeout)
    text = json.dumps(result, indent=2)
    Path(args.out).write_text(text + "\n")
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
