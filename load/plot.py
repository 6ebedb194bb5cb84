"""The bench's PNG: latency percentiles and throughput per scenario, at each concurrency."""

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # no display here; must precede pyplot's import
import matplotlib.pyplot as plt

CONCURRENCY = (1, 16, 64)


def write(report: dict[str, Any], path: Path) -> None:
    names = list(report["scenarios"])
    fig, axes = plt.subplots(2, 3, figsize=(18, 10), constrained_layout=True)
    y = range(len(names))
    for col, c in enumerate(CONCURRENCY):
        lat, thr = axes[0][col], axes[1][col]
        for offset, key in ((-0.25, "p50_us"), (0.0, "p90_us"), (0.25, "p99_us")):
            values = [_median(report, n, c, key) for n in names]
            lat.barh([i + offset for i in y], values, height=0.25, label=key.split("_")[0])
        lat.set_xscale("log")
        lat.set_title(f"latency at {c} connection(s), µs (log)")
        rps = [_median(report, n, c, "rps") for n in names]
        lo = [r - _bound(report, n, c, "rps", "min") for r, n in zip(rps, names, strict=True)]
        hi = [_bound(report, n, c, "rps", "max") - r for r, n in zip(rps, names, strict=True)]
        thr.barh(list(y), rps, xerr=[lo, hi], color="tab:green")
        thr.set_title(f"requests/s at {c} connection(s) (bars: min-max)")
        for ax in (lat, thr):
            ax.set_yticks(list(y), names)
            ax.invert_yaxis()
            ax.grid(axis="x", alpha=0.3)
        lat.legend(loc="lower right")
    env = report["environment"]
    fig.suptitle(f"InferGraph bench {env['time_utc']} ({env['cores']} cores, {env['cpu']})")
    fig.savefig(path, dpi=80)
    plt.close(fig)


def _median(report: dict[str, Any], name: str, c: int, key: str) -> float:
    return _bound(report, name, c, key, "median")


def _bound(report: dict[str, Any], name: str, c: int, key: str, which: str) -> float:
    entry = report["scenarios"][name].get(f"c{c}", {}).get(key)
    return float(entry[which]) if entry else 0.0
