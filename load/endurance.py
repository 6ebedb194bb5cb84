"""Memory under sustained load: the router's RSS sampled while wrk saturates it for minutes.

The figure the issue asks for is "no growth": RSS after the warm-up against RSS at the end, and
the largest sample, per worker process. A leak of even a few bytes per request shows here (a
5-minute run at ~6k req/s is ~2 million requests).
"""

import subprocess
import time
from pathlib import Path
from typing import Any

from load import graphs, procstat, servers, wrk

CONNECTIONS = 64
WARMUP_SECONDS = 10
SAMPLE_SECONDS = 5.0


def run(
    backend_url: str, seconds: int, script: Path, loadgen_core: str, core: str
) -> dict[str, Any]:
    router = servers.router(graphs.one_step(backend_url), core)
    try:
        wrk.run(router.url(), CONNECTIONS, WARMUP_SECONDS, script, loadgen_core)
        pids = procstat.tree(router.proc.pid)
        cmd = wrk.command(router.url(), CONNECTIONS, seconds, script, loadgen_core)
        load = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        samples: list[tuple[float, float]] = []
        started = time.monotonic()
        while load.poll() is None:
            samples.append((time.monotonic() - started, procstat.rss_mb(pids)))
            time.sleep(SAMPLE_SECONDS)
        output = load.communicate()[0]
        requests = wrk.figures(output)["requests"]
    finally:
        router.stop()
    rss = [mb for _, mb in samples]
    return {
        "seconds": seconds,
        "connections": CONNECTIONS,
        "requests": requests,
        "rss_start_mb": rss[0] if rss else None,
        "rss_end_mb": rss[-1] if rss else None,
        "rss_max_mb": max(rss) if rss else None,
        "growth": (rss[-1] / rss[0] - 1) if rss else None,
        "samples": samples,
    }
