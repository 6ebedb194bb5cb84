"""What `--live-page` costs the request path: the router with and without it, side by side.

With the flag every request is traced (a `router.live.stats.LiveTrace`) and tallied into the
per-second window, and its trace kept in the ring of the last 50. This script runs wrk against
a 2-step Sequence to a local backend, alternating the router without and with the flag (so a
change in the machine's load hits both alike), and prints per mode the median of the rounds:
requests/s, p50/p99 latency and the router's CPU time per request (read from /proc, so it
holds even when the shared machine, not the router, limits throughput), with the load average
beside them. While wrk runs, a poller reads `/graph/stats` once a second as the page would.

    .venv/bin/python -m load.live_page_cost --quick   # 2 rounds of 5 s per mode
    .venv/bin/python -m load.live_page_cost           # 5 rounds of 10 s per mode

Needs wrk (Debian's `wrk`; `make bench` installs it).
"""

import argparse
import os
import shutil
import statistics
import threading
import urllib.request
from typing import Any

from load import graphs, procstat, servers, wrk

CONNECTIONS = 16  # enough to keep one router process busy without queueing for long
MODES = {"off": (), "on": ("--live-page",)}


def _poll_page(url: str, stop: threading.Event) -> None:
    """What an open page does: one `/graph/stats` a second."""
    while not stop.wait(1.0):
        with urllib.request.urlopen(url, timeout=5) as answer:
            answer.read()


def _round(mode: str, backend: servers.Server, seconds: int, scratch: Any) -> dict[str, Any]:
    router = servers.router(graphs.two_steps(backend.url("/")), None, flags=MODES[mode])
    stop = threading.Event()
    poller = None
    try:
        if mode == "on":
            stats = router.url("/graph/stats")
            poller = threading.Thread(target=_poll_page, args=(stats, stop), daemon=True)
            poller.start()
        script = wrk.lua_script(graphs.REQUEST_BODY, scratch)
        pids = procstat.tree(router.proc.pid)
        cpu_before = procstat.cpu_seconds(pids)
        figures = wrk.run(router.url("/"), CONNECTIONS, seconds, script, None)
        cpu = procstat.cpu_seconds(pids) - cpu_before
    finally:
        stop.set()
        if poller is not None:
            poller.join(10)
        router.stop()
    errors = sum(figures[k] for k in ("connect_errors", "read_errors", "status_errors"))
    if errors:
        raise RuntimeError(f"{mode}: wrk counted {errors} errors: {figures}")
    return {
        "rps": figures["rps"],
        "p50_ms": figures["p50_us"] / 1000,
        "p99_ms": figures["p99_us"] / 1000,
        "cpu_us_per_request": cpu / figures["requests"] * 1e6,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="2 rounds of 5 s per mode")
    args = parser.parse_args()
    rounds, seconds = (2, 5) if args.quick else (5, 10)
    if shutil.which("wrk") is None:
        raise SystemExit("needs wrk: apt-get install wrk (make bench installs it)")
    scratch = wrk.scratch()
    backend = servers.delay_backend(0, None)
    results: dict[str, list[dict[str, Any]]] = {mode: [] for mode in MODES}
    load_before = os.getloadavg()
    try:
        for _ in range(rounds):
            for mode in MODES:
                results[mode].append(_round(mode, backend, seconds, scratch))
    finally:
        backend.stop()
    load_after = os.getloadavg()
    print(
        f"--live-page cost: 2-step Sequence, {CONNECTIONS} connections, {rounds} rounds x "
        f"{seconds} s per mode, alternating; {os.cpu_count()} cores"
    )
    print(
        "load average (1, 5, 15 min) before "
        + " ".join(f"{x:.2f}" for x in load_before)
        + ", after "
        + " ".join(f"{x:.2f}" for x in load_after)
    )
    print(f"{'mode':<5} {'req/s':>8} {'p50 ms':>8} {'p99 ms':>8} {'CPU us/req':>11}   (medians)")
    medians = {}
    for mode, runs in results.items():
        medians[mode] = {key: statistics.median(r[key] for r in runs) for key in runs[0]}
        m = medians[mode]
        print(
            f"{mode:<5} {m['rps']:>8.0f} {m['p50_ms']:>8.2f} {m['p99_ms']:>8.2f} "
            f"{m['cpu_us_per_request']:>11.0f}"
        )
    off, on = medians["off"], medians["on"]
    print(
        f"on/off: req/s {on['rps'] / off['rps']:.3f}, CPU per request "
        f"{on['cpu_us_per_request'] / off['cpu_us_per_request']:.3f} "
        f"({on['cpu_us_per_request'] - off['cpu_us_per_request']:+.0f} us)"
    )
    print("per round:", {mode: [round(r["rps"]) for r in runs] for mode, runs in results.items()})


if __name__ == "__main__":
    main()
