"""`--workers N`: N router processes share the port (SO_REUSEPORT), one per core.

Python runs one request at a time per process; on a machine with several cores the kernel's
SO_REUSEPORT balancing spreads connections over N independent processes. The parent only
supervises (`supervise`, called by `router.__main__`): it starts the workers with the same
arguments (as single workers that bind with reuse_port, each reporting on a pipe once it
listens), forwards SIGTERM/SIGINT/SIGHUP to them (so drain and reload work as with one
process), and:

- a worker that ends while the pool serves (a crash, the OOM killer, a stray signal) is
  started again: at once if it had been listening, after a backoff if it ended before (0.5 s,
  doubling up to 30 s), so a worker that cannot start does not spin;
- when every worker has failed to start `START_ATTEMPTS` times in a row (a port taken by
  another program, a missing TLS certificate: restarting cannot help), the pool gives up:
  it stops the rest and exits 1;
- after SIGTERM/SIGINT it waits for every worker and exits 0, or with the first non-zero
  status a worker ended with.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field

log = logging.getLogger("router.workers")

FORWARDED = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)
STOPS = (signal.SIGTERM, signal.SIGINT)
WORKER_FLAG = "--worker-of-pool"  # internal: marks a child started by this supervisor
READY_FLAG = "--ready-fd"  # internal: the pipe on which the child says it listens
# A worker that fails this many starts in a row has a cause a restart cannot fix; when every
# worker is there, nothing serves and nothing will: give up.
START_ATTEMPTS = 3
FIRST_BACKOFF_SECONDS = 0.5  # a transient start failure (a port still in TIME_WAIT) clears fast
MAX_BACKOFF_SECONDS = 30.0  # a worker that keeps failing costs at most a start per 30 s


def worker_argv(argv: Sequence[str], ready_fd: int) -> list[str]:
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
    return [sys.executable, "-m", "router", *out, WORKER_FLAG, READY_FLAG, str(ready_fd)]


def backoff(failures: int) -> float:
    """Seconds before the next start of a worker that failed to start `failures` times."""
    return min(FIRST_BACKOFF_SECONDS * 2.0 ** (failures - 1), MAX_BACKOFF_SECONDS)


@dataclass
class _Pool:
    argv: Sequence[str]
    size: int
    stop: asyncio.Event = field(default_factory=asyncio.Event)
    stop_signals: set[int] = field(default_factory=set)  # stop signals the supervisor was sent
    children: dict[int, asyncio.subprocess.Process] = field(default_factory=dict)  # by slot
    start_failures: dict[int, int] = field(default_factory=dict)  # in a row, by slot
    status: int = 0
    gave_up: bool = False

    def send(self, signum: int) -> None:
        for child in self.children.values():
            if child.returncode is None:
                child.send_signal(signum)

    def on_signal(self, signum: int) -> None:
        if signum in STOPS:
            self.stop_signals.add(signum)
            self.stop.set()
        self.send(signum)

    async def start(self, slot: int) -> tuple[asyncio.subprocess.Process, asyncio.Future[bool]]:
        """A worker for `slot`, and a future telling whether it came to listen."""
        read_end, write_end = os.pipe()
        try:
            process = await asyncio.create_subprocess_exec(
                *worker_argv(self.argv, write_end), pass_fds=(write_end,)
            )
        except BaseException:
            os.close(read_end)
            raise
        finally:
            os.close(write_end)  # the child's copy is the only one: its exit means EOF
        self.children[slot] = process
        for signum in self.stop_signals:  # a stop that came while it was being spawned
            process.send_signal(signum)
        loop = asyncio.get_running_loop()
        listening: asyncio.Future[bool] = loop.create_future()

        def readable() -> None:
            loop.remove_reader(read_end)
            try:
                said = os.read(read_end, 1)
            finally:
                os.close(read_end)
            listening.set_result(said == b"\n")

        loop.add_reader(read_end, readable)
        return process, listening

    async def run_slot(self, slot: int) -> None:
        while not self.stop.is_set():
            process, listening = await self.start(slot)
            if await listening:
                self.start_failures[slot] = 0
            code = await process.wait()
            if self.stop.is_set():
                self.record_stop_exit(code)
                return
            if listening.result():
                log.warning(
                    "worker %d (pid %d) ended with status %d while serving; starting another",
                    slot,
                    process.pid,
                    code,
                    extra={"worker": slot, "pid": process.pid, "status": code},
                )
                continue
            failures = self.start_failures.get(slot, 0) + 1
            self.start_failures[slot] = failures
            if len(self.start_failures) == self.size and all(
                n >= START_ATTEMPTS for n in self.start_failures.values()
            ):
                log.error(
                    "every worker failed to start %d times in a row (worker %d: status %d); "
                    "giving up",
                    START_ATTEMPTS,
                    slot,
                    code,
                    extra={"worker": slot, "status": code},
                )
                self.gave_up = True
                self.on_signal(signal.SIGTERM)
                return
            delay = backoff(failures)
            log.warning(
                "worker %d (pid %d) ended with status %d before listening (%d in a row); "
                "starting another in %gs",
                slot,
                process.pid,
                code,
                failures,
                delay,
                extra={"worker": slot, "pid": process.pid, "status": code},
            )
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.stop.wait(), delay)

    def record_stop_exit(self, code: int) -> None:
        if -code in self.stop_signals:
            # Still starting when the stop came (its handlers not yet installed): the signal's
            # default action ended it, which is the stop that was asked for.
            code = 0
        if code != 0 and self.status == 0:
            self.status = code if code > 0 else 1


async def _supervise(argv: Sequence[str], workers: int) -> int:
    pool = _Pool(argv, workers)
    loop = asyncio.get_running_loop()
    for sig in FORWARDED:
        loop.add_signal_handler(sig, pool.on_signal, sig)
    try:
        await asyncio.gather(*(pool.run_slot(slot) for slot in range(workers)))
    finally:
        for sig in FORWARDED:
            loop.remove_signal_handler(sig)
    return 1 if pool.gave_up else pool.status


def supervise(argv: Sequence[str], workers: int) -> int:
    """Run the pool until it is stopped (or gives up); the parent's exit status."""
    return asyncio.run(_supervise(argv, workers))
