"""`--workers N`: N router processes share the port (SO_REUSEPORT), one per core.

Python runs one request at a time per process; on a machine with several cores the kernel's
SO_REUSEPORT balancing spreads connections over N independent processes. The parent only
supervises: it starts the workers with the same arguments (as single workers that bind with
reuse_port), forwards SIGTERM/SIGINT/SIGHUP to them (so drain and reload work as with one
process), and exits with the first non-zero status, stopping the rest, or 0 when all end well.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Sequence
from types import FrameType

FORWARDED = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)
WORKER_FLAG = "--worker-of-pool"  # internal: marks a child started by this supervisor


def worker_argv(argv: Sequence[str]) -> list[str]:
    """The child's command line: the same flags, one worker, bound with SO_REUSEPORT."""
    out: list[str] = []
    skip = False
    for arg in argv:
        if skip:
            skip = False
            continue
        if arg == "--workers":
            skip = True
            continue
        if arg.startswith("--workers="):
            continue
        out.append(arg)
    return [sys.executable, "-m", "router", *out, WORKER_FLAG]


def supervise(argv: Sequence[str], workers: int) -> int:
    children = [subprocess.Popen(worker_argv(argv)) for _ in range(workers)]
    stop_signals: set[int] = set()  # stop signals the supervisor was sent

    def send(signum: int) -> None:
        for child in children:
            if child.poll() is None:
                child.send_signal(signum)

    def forward(signum: int, frame: FrameType | None) -> None:
        if signum in (signal.SIGTERM, signal.SIGINT):
            stop_signals.add(signum)
        send(signum)

    for sig in FORWARDED:
        signal.signal(sig, forward)
    status = 0
    remaining = set(range(len(children)))
    while remaining:
        pid, code = os.wait()
        for index in list(remaining):
            if children[index].pid == pid:
                remaining.discard(index)
                exit_code = os.waitstatus_to_exitcode(code)
                if -exit_code in stop_signals:
                    # Still starting when the stop came (its handlers not yet installed): the
                    # signal's default action ended it, which is the stop that was asked for.
                    exit_code = 0
                children[index].returncode = exit_code
                if exit_code != 0 and status == 0:
                    status = exit_code if exit_code > 0 else 1
                    send(signal.SIGTERM)  # one worker failed: stop the pool
    return status
