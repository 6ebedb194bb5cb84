"""CPU time and memory of a process tree, read from /proc (Linux only).

A router with `--workers N` is a supervisor and N children; the bench counts them all.
"""

import os
from pathlib import Path

TICKS = os.sysconf("SC_CLK_TCK")


def tree(pid: int) -> list[int]:
    """`pid` and its descendants that exist right now."""
    out = [pid]
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            children = (task / "children").read_text().split()
        except OSError:
            continue
        for child in children:
            out.extend(tree(int(child)))
    return out


def cpu_seconds(pids: list[int]) -> float:
    """User + system CPU seconds spent so far by `pids` (each process's own, not children's)."""
    total = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])  # utime, stime (fields 14, 15 of stat)
    return total / TICKS


def _status_kb(pid: int, key: str) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def peak_rss_mb(pids: list[int]) -> float:
    """The largest peak resident set (VmHWM) among `pids`: the per-worker figure."""
    return max((_status_kb(pid, "VmHWM") for pid in pids), default=0) / 1024


def rss_mb(pids: list[int]) -> float:
    """The largest current resident set (VmRSS) among `pids`."""
    return max((_status_kb(pid, "VmRSS") for pid in pids), default=0) / 1024
