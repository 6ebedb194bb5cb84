"""Hot reload: a new graph file is compiled and swapped in whole, or rejected and logged.

With `--graph-file`, the router polls the file's identity (mtime, size, inode; polling needs no
inotify and sees Kubernetes ConfigMap updates, which swap a symlink) and reloads on SIGHUP.
A valid graph replaces `ServingState.graph` in one assignment: requests already running keep
the graph they started with (they hold a reference), new ones get the new graph. An invalid
file changes nothing but an error log line.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Callable
from pathlib import Path

from router.app import ServingState
from router.graph import CompiledGraph
from schemas.errors import SpecError

log = logging.getLogger("router.reload")
POLL_SECONDS = 1.0  # a stat() per second is free, and a second is fast enough for a rollout

Signature = tuple[int, int, int] | None


def signature(path: Path) -> Signature:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_mtime_ns, st.st_size, st.st_ino)


class GraphReloader:
    def __init__(
        self, state: ServingState, path: Path, load: Callable[[Path], CompiledGraph]
    ) -> None:
        self._state = state
        self._path = path
        self._load = load
        self._seen = signature(path)
        self.reloads = 0  # successful swaps, for tests and logs
        self.rejections = 0

    def reload(self) -> bool:
        """Compile the file now; swap it in if valid. Returns whether the graph changed."""
        self._seen = signature(self._path)
        try:
            graph = self._load(self._path)
        except (SpecError, OSError) as error:
            self.rejections += 1
            log.error("graph reload rejected, still serving the previous graph: %s", error)
            return False
        self._state.graph = graph
        self.reloads += 1
        log.info("graph reloaded from %s", self._path)
        return True

    async def watch(self, interval: float = POLL_SECONDS) -> None:
        while True:
            await asyncio.sleep(interval)
            current = signature(self._path)
            if current is not None and current != self._seen:
                self.reload()
