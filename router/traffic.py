"""Traffic recording (`--record PATH`): sampled requests, one JSONL record each, for replay.

`router.app` asks `TrafficRecorder.start` at the beginning of each request; one in `sample`
gets a `RequestRecord`, which is attached to the request's execution as a `Recorder` (step
timings, attempts, decisions) while `TrafficRecorder.caller` (wrapped around the step caller)
keeps what each step call sent and got back. When the answer is ready, `finish` appends the
record to a bounded pending list; a writer thread, waking every WRITE_INTERVAL, turns each into
JSON (parsing bodies, redacting) and appends it to the file. So the request path only collects
references to bytes it already has and never waits on the disk: a full list drops the record,
a failing file (a full disk) stops the recorder with one log line; both are counted in
`/metrics` and neither touches the answer.

A record (one line; `router.replay` reads it):

    {"id", "time", "graph", "graphHash",
     "request": {"method", "path", "headers", "body"},
     "steps": [{"node", "step", "target", "input", "status", "answer", "error",
                "startMs", "durationMs", "attempts"}],
     "decisions": [{"decision", "node", "step", "outcome", "detail", "point"}],
     "response": {"status", "body", "durationMs"}}

A body that is JSON is kept as JSON (`body`, `input`, `answer`); any other as base64
(`bodyBase64`, `inputBase64`, `answerBase64`), or, when redaction is on, left out with
`bodyOmitted` (a JSON path cannot redact what is not JSON). Redaction replaces what each JSON
path matches, in every body of the record, with "[REDACTED]", and the value of each redacted
header. Files rotate as logging's RotatingFileHandler does: PATH.1 is the newest full one.
"""

from __future__ import annotations

import base64
import collections
import contextlib
import contextvars
import logging
import os
import random
import threading
import time
import uuid
from collections.abc import Mapping, MutableMapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any, Final

import orjson
from jsonpath_ng import JSONPath
from jsonpath_ng.exceptions import JSONPathError
from jsonpath_ng.ext.parser import parse as parse_jsonpath
from prometheus_client import CollectorRegistry, Counter

from router.executor import StepCaller
from router.graph import CompiledGraph, Node, Step
from router.payload import InvalidJSON, Reply, encode
from router.recording import Decision

log = logging.getLogger("router.record")

REDACTED: Final = "[REDACTED]"
DEFAULT_SAMPLE: Final = 1.0  # every request: a recording is asked for; production sets 0.01
DEFAULT_MAX_BYTES: Final = 100 * 1024 * 1024  # a file replay reads at once, at most
DEFAULT_KEEP: Final = 5  # rotated files kept beside the current one
DEFAULT_HEADERS: Final = ("content-type",)
# Records waiting for the writer: a few seconds of a busy router's sampled traffic. Beyond it
# the disk is not keeping up, and records are dropped rather than held in memory.
QUEUE_SIZE: Final = 1024
# How often the writer wakes to write what is pending: short enough that a record is on disk
# a moment after its answer, long enough that the writer costs the router no wake-up per request.
WRITE_INTERVAL: Final = 0.05


@dataclass(frozen=True, slots=True)
class Redaction:
    """What to blank out of every record: JSON paths (in bodies) and header names."""

    paths: tuple[tuple[str, JSONPath], ...] = ()
    headers: frozenset[str] = frozenset()  # lower-case

    @classmethod
    def parse(cls, items: tuple[str, ...]) -> Redaction:
        """`$...` items are JSONPath (jsonpath-ng's extended syntax), the others header names.
        Raises ValueError naming an item that does not parse."""
        paths: list[tuple[str, JSONPath]] = []
        headers: set[str] = set()
        for item in items:
            if item.startswith("$"):
                try:
                    paths.append((item, parse_jsonpath(item)))
                except (JSONPathError, Exception) as error:  # jsonpath-ng's lexer raises bare
                    raise ValueError(
                        f"--record-redact {item!r}: not a JSON path: {error}"
                    ) from None
            elif item.strip() and item == item.strip():
                headers.add(item.lower())
            else:
                raise ValueError(f"--record-redact {item!r}: expected a JSON path or header name")
        return cls(tuple(paths), frozenset(headers))

    @property
    def active(self) -> bool:
        return bool(self.paths or self.headers)

    def body(self, value: Any) -> Any:
        for _, path in self.paths:
            value = path.update(value, REDACTED)
        return value


@dataclass(frozen=True, slots=True)
class RecordingSettings:
    path: Path
    sample: float = DEFAULT_SAMPLE
    max_bytes: int = DEFAULT_MAX_BYTES
    keep: int = DEFAULT_KEEP
    headers: frozenset[str] = frozenset(DEFAULT_HEADERS)  # recorded request headers, lower-case
    redaction: Redaction = field(default_factory=Redaction)
    queue_size: int = QUEUE_SIZE

    def __post_init__(self) -> None:
        if not 0.0 < self.sample <= 1.0:
            raise ValueError(f"--record-sample must be in (0, 1], got {self.sample}")
        if self.max_bytes < 1024:
            raise ValueError(f"--record-max-bytes must be at least 1024, got {self.max_bytes}")
        if self.keep < 0:
            raise ValueError(f"--record-keep must be >= 0, got {self.keep}")
        unrecorded = sorted(self.redaction.headers - self.headers)
        if unrecorded:
            raise ValueError(
                f"--record-redact {', '.join(unrecorded)}: not a recorded header (add it with "
                "--record-header to record it redacted; unrecorded headers are never written)"
            )


# The step call the current task is making for a sampled request: set by `step_started`,
# read by the wrapped caller (Ensemble steps run in tasks of their own, each with its own).
_CALL: contextvars.ContextVar[StepCall | None] = contextvars.ContextVar(
    "infergraph_recorded_call", default=None
)


@dataclass(slots=True, eq=False)
class StepCall:
    step: Step
    started: float
    ended: float | None = None
    input: bytes | None = None  # the last attempt's body
    answer: bytes | None = None  # the last attempt's answer
    status: int | None = None
    error: str | None = None
    attempts: int = 0


class RequestRecord:
    """One sampled request, as the request path collects it: references, no copies, no JSON.
    A `router.recording.Recorder`."""

    __slots__ = (
        "body",
        "calls",
        "decisions",
        "digest",
        "ended",
        "headers",
        "method",
        "path",
        "response_body",
        "started",
        "status",
        "wall",
    )

    def __init__(self, method: str, path: str, headers: dict[str, str], digest: str) -> None:
        self.method = method
        self.path = path
        self.headers = headers
        self.digest = digest
        self.wall = time.time()
        self.started = time.perf_counter()
        self.body: bytes | None = None
        self.calls: list[StepCall] = []
        self.decisions: list[Decision] = []
        self.status = 0
        self.response_body = b""
        self.ended = self.started

    def node_started(self, node: Node) -> object:
        return None

    def node_finished(self, token: object, status: int | None, error: str | None) -> None:
        pass

    def step_started(self, step: Step, headers: MutableMapping[str, str]) -> object:
        call = StepCall(step, time.perf_counter())
        self.calls.append(call)
        _CALL.set(call)
        return call

    def step_finished(
        self, token: object, status: int | None, error: str | None, attempts: int
    ) -> None:
        assert isinstance(token, StepCall)
        token.ended, token.status, token.error, token.attempts = (
            time.perf_counter(),
            status,
            error,
            attempts,
        )
        _CALL.set(None)

    def decision(self, decision: Decision) -> None:
        self.decisions.append(decision)


class RecordingCaller:
    """Wraps the step caller: keeps each sampled call's body and answer on its `StepCall`."""

    __slots__ = ("_inner",)

    def __init__(self, inner: StepCaller) -> None:
        self._inner = inner

    async def __call__(
        self, step: Step, body: bytes, headers: Mapping[str, str], seconds: float
    ) -> Reply:
        call = _CALL.get()
        if call is None or call.step is not step:
            return await self._inner(step, body, headers, seconds)
        call.input, call.answer = body, None
        reply = await self._inner(step, body, headers, seconds)
        call.answer = reply.payload.raw
        return reply


class TrafficRecorder:
    """Samples requests, queues their records, and writes them from a thread of its own."""

    def __init__(
        self,
        settings: RecordingSettings,
        graph_name: str,
        registry: CollectorRegistry | None = None,
        rng: random.Random | None = None,
    ) -> None:
        self.settings = settings
        self.graph_name = graph_name
        self._rng = rng or random.Random()
        self._pending: collections.deque[RequestRecord] = collections.deque()
        self._closing = threading.Event()
        self._unflushed = 0  # records written since the last flush: counted once flushed
        self._thread: threading.Thread | None = None
        self.stopped: str | None = None  # why the writer stopped (a full disk...), once it has
        # Record ids: this run's random prefix and a count (a uuid4 per record costs a syscall).
        self._run = uuid.uuid4().hex[:12]
        self._count = 0
        registry = registry or CollectorRegistry()
        self._written = Counter(
            "infergraph_recorded_requests",
            "Requests written to the --record file.",
            ("graph",),
            registry=registry,
        ).labels(graph_name)
        dropped = Counter(
            "infergraph_recording_dropped",
            "Sampled requests not recorded: queue_full (the writer fell behind), stopped (the "
            "file failed, e.g. a full disk), shutdown (still queued after 10 s), unencodable.",
            ("graph", "reason"),
            registry=registry,
        )
        self._dropped = {
            reason: dropped.labels(graph_name, reason)
            for reason in ("queue_full", "stopped", "shutdown", "unencodable")
        }

    # --- the request path -------------------------------------------------------------------

    def start(
        self, method: str, path: str, headers: Mapping[str, str], graph: CompiledGraph
    ) -> RequestRecord | None:
        """A record for this request, or None when it is not sampled (or recording stopped: then
        counted as dropped, so the counter says what the failure cost)."""
        if self.settings.sample < 1.0 and self._rng.random() >= self.settings.sample:
            return None
        if self.stopped is not None:
            self._dropped["stopped"].inc()
            return None
        wanted = self.settings.headers
        redacted = self.settings.redaction.headers
        kept = {
            # str(): aiohttp's names are `istr`, which orjson does not take as keys.
            str(name): (REDACTED if name.lower() in redacted else str(value))
            for name, value in headers.items()
            if name.lower() in wanted
        }
        return RequestRecord(method, path, kept, graph.digest)

    def finish(self, record: RequestRecord, status: int, body: bytes) -> None:
        """Queue the finished record; never blocks (a full queue drops it, counted)."""
        record.status, record.response_body, record.ended = status, body, time.perf_counter()
        # The writer thread gets finished calls only: a shadow still running would change its
        # StepCall while the thread reads it.
        record.calls = [call for call in record.calls if call.ended is not None]
        record.decisions = list(record.decisions)
        if self.stopped is not None:
            self._dropped["stopped"].inc()
            return
        # deque appends and pops are atomic, so the writer thread needs no lock with us.
        if len(self._pending) >= self.settings.queue_size:
            self._dropped["queue_full"].inc()
        else:
            self._pending.append(record)

    def caller(self, inner: StepCaller) -> StepCaller:
        return RecordingCaller(inner)

    # --- the writer -------------------------------------------------------------------------

    def open(self) -> None:
        """Start the writer thread; the file is opened (created) now, so a bad path fails at
        start-up (raises OSError)."""
        self.settings.path.parent.mkdir(parents=True, exist_ok=True)
        file = self.settings.path.open("ab")
        self._thread = threading.Thread(
            target=self._write_all, args=(file,), name="infergraph-recorder", daemon=True
        )
        self._thread.start()

    def close(self, seconds: float = 10.0) -> None:
        """Write what is pending (for at most `seconds`), then stop the thread."""
        if self._thread is None:
            return
        self._closing.set()
        self._thread.join(seconds)
        self._thread = None
        if self._pending:
            self._dropped["shutdown"].inc(len(self._pending))
            self._pending.clear()

    def _write_all(self, file: IO[bytes]) -> None:
        try:
            while True:
                # Woken by time, not per record: a wake-up per request (a condition variable
                # and a GIL hand-over) cost the router more than writing the record did.
                closing = self._closing.wait(WRITE_INTERVAL)
                while self._pending:
                    file = self._write(file, self._pending.popleft())
                if self.stopped is None and self._unflushed:
                    try:
                        file.flush()
                    except OSError as error:
                        self._stop(error)
                    else:
                        self._written.inc(self._unflushed)
                        self._unflushed = 0
                if closing:
                    return
        finally:
            with contextlib.suppress(OSError):  # a failed close was reported with its write
                file.close()

    def _write(self, file: IO[bytes], record: RequestRecord) -> IO[bytes]:
        if self.stopped is not None:
            self._dropped["stopped"].inc()
            return file
        try:
            line = encode(self.to_json(record)) + b"\n"
        except InvalidJSON as error:  # nested too deeply even for the json module
            log.warning("request not recorded: %s", error)
            self._dropped["unencodable"].inc()
            return file
        try:
            file = self._rotated(file, len(line))
            file.write(line)
        except OSError as error:
            self._unflushed += 1  # this one, lost with those still in the buffer
            self._stop(error)
            return file
        self._unflushed += 1
        return file

    def _stop(self, error: OSError) -> None:
        # A full disk (ENOSPC), a removed mount: stop for good, say so once, and let answers
        # flow. Writing on would fail per record and fill the logs.
        self.stopped = f"{error.strerror or error} ({self.settings.path})"
        log.error(
            "recording stopped: cannot write %s: %s; requests are still answered, "
            "no more are recorded",
            self.settings.path,
            error.strerror or error,
            extra={"path": str(self.settings.path), "errno": error.errno},
        )
        # Records written to the buffer but not flushed are lost with it.
        self._dropped["stopped"].inc(self._unflushed)
        self._unflushed = 0

    def _rotated(self, file: IO[bytes], incoming: int) -> IO[bytes]:
        """The file to append to: a fresh one once this line would pass `max_bytes` (a file
        holds at least one record, however large)."""
        size = file.tell()
        if size == 0 or size + incoming <= self.settings.max_bytes:
            return file
        file.close()  # flushes: what was pending is on disk now
        self._written.inc(self._unflushed)
        self._unflushed = 0
        path, keep = self.settings.path, self.settings.keep
        if keep == 0:
            path.unlink(missing_ok=True)
        else:
            for index in range(keep - 1, 0, -1):
                older = path.with_name(f"{path.name}.{index}")
                if older.exists():
                    os.replace(older, path.with_name(f"{path.name}.{index + 1}"))
            os.replace(path, path.with_name(f"{path.name}.1"))
        return path.open("ab")

    def to_json(self, record: RequestRecord) -> dict[str, Any]:
        """The record as written (bodies parsed and redacted); runs in the writer thread."""
        origin = record.started
        self._count += 1
        out: dict[str, Any] = {
            "id": f"{self._run}-{self._count}",
            "time": datetime.fromtimestamp(record.wall, UTC).isoformat(timespec="milliseconds"),
            "graph": self.graph_name,
            "graphHash": record.digest,
        }
        request: dict[str, Any] = {
            "method": record.method,
            "path": record.path,
            "headers": record.headers,
        }
        self._put_body(request, "body", record.body)
        out["request"] = request
        steps = []
        for call in record.calls:
            assert call.ended is not None  # `finish` kept finished calls only
            step: dict[str, Any] = {
                "node": call.step.owner,
                "step": call.step.key,
                "target": call.step.url,
            }
            if call.step.shadow:
                step["shadow"] = True
            self._put_body(step, "input", call.input)
            step["status"] = call.status
            self._put_body(step, "answer", call.answer)
            if call.error is not None:
                step["error"] = call.error
            step["startMs"] = round((call.started - origin) * 1000, 3)
            step["durationMs"] = round((call.ended - call.started) * 1000, 3)
            step["attempts"] = call.attempts
            steps.append(step)
        out["steps"] = steps
        out["decisions"] = [d.as_json() for d in record.decisions]
        response: dict[str, Any] = {"status": record.status}
        self._put_body(response, "body", record.response_body)
        response["durationMs"] = round((record.ended - origin) * 1000, 3)
        out["response"] = response
        return out

    def _put_body(self, into: dict[str, Any], name: str, raw: bytes | None) -> None:
        if raw is None:
            return
        try:
            value = orjson.loads(raw) if raw else None
        except orjson.JSONDecodeError:
            if self.settings.redaction.paths:
                into[f"{name}Omitted"] = "not JSON, so the redaction paths cannot apply"
            else:
                into[f"{name}Base64"] = base64.b64encode(raw).decode()
            return
        into[name] = self.settings.redaction.body(value)
