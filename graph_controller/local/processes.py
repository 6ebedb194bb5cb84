"""Child processes that never outlive their supervisor: started, logged, watched, stopped.

Each child runs in its own session (process group), so stopping it stops whatever it spawned
(model servers fork workers). On Linux each child also gets PR_SET_PDEATHSIG, so even a
SIGKILLed supervisor takes its children with it. Output is streamed line by line with the
child's name as a prefix, and the last lines are kept to explain a failed start.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import os
import signal
import sys
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

TAIL_LINES = 30  # enough of a log to show a traceback when a start fails
STOP_GRACE_SECONDS = 10.0  # after SIGTERM, before SIGKILL
_PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:
    """Runs in the child before exec: SIGTERM us when the supervisor dies (Linux only)."""
    if sys.platform.startswith("linux"):
        with contextlib.suppress(OSError, AttributeError):
            ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


@dataclass
class Child:
    name: str
    process: asyncio.subprocess.Process
    tail: deque[str] = field(default_factory=lambda: deque(maxlen=TAIL_LINES))
    pump: asyncio.Task[None] | None = None

    @property
    def pid(self) -> int:
        return self.process.pid

    def log_tail(self) -> str:
        return "\n".join(f"    {line}" for line in self.tail) or "    (no output)"


class Supervisor:
    """Owns a set of children; `stop_all` (also run by `async with`) ends every one of them."""

    def __init__(self, emit: Callable[[str], None]) -> None:
        self._emit = emit
        self.children: list[Child] = []

    async def __aenter__(self) -> Supervisor:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop_all()

    async def start(
        self,
        name: str,
        argv: Sequence[str],
        env: Mapping[str, str] | None = None,
        cwd: Path | None = None,
    ) -> Child:
        process = await asyncio.create_subprocess_exec(
            *argv,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
            env={**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})},
            cwd=cwd,
            start_new_session=True,
            preexec_fn=_die_with_parent,
        )
        child = Child(name, process)
        child.pump = asyncio.create_task(self._pump(child))
        self.children.append(child)
        return child

    async def _pump(self, child: Child) -> None:
        stream = child.process.stdout
        assert stream is not None  # created with stdout=PIPE
        width = max(12, len(child.name))
        while line := await stream.readline():
            text = line.decode(errors="replace").rstrip()
            child.tail.append(text)
            self._emit(f"{child.name:>{width}} | {text}")

    async def wait_any_exit(self) -> Child:
        """The first child to exit (for noticing a crash while serving)."""
        waits = {asyncio.ensure_future(c.process.wait()): c for c in self.children}
        try:
            done, _ = await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
            return waits[next(iter(done))]
        finally:
            for task in waits:
                task.cancel()

    async def stop_all(self) -> None:
        """Stop children in reverse start order: routers before the models they call."""
        for child in reversed(self.children):
            await stop(child)
        self.children.clear()


async def stop(child: Child) -> None:
    process = child.process
    if process.returncode is None:
        _signal_group(process.pid, signal.SIGTERM)
        try:
            await asyncio.wait_for(process.wait(), STOP_GRACE_SECONDS)
        except TimeoutError:
            _signal_group(process.pid, signal.SIGKILL)
            await process.wait()
    # Workers the child forked may linger after it exits; its group still names them.
    _signal_group(process.pid, signal.SIGKILL)
    if child.pump is not None:
        with contextlib.suppress(asyncio.CancelledError, TimeoutError):
            await asyncio.wait_for(child.pump, 2)  # the pipe closes once the group is gone


def _signal_group(pgid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


def group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
