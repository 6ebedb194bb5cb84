"""One JSON object per log line, shared by the router and the controller.

Kept free of the rest of `router` so `graph_controller` can use it without importing the
router's internals (the import contracts in pyproject.toml).
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Any, Final

import orjson

# What every LogRecord has; anything else on a record came from `extra=` and is logged.
_RECORD_ATTRIBUTES: Final = frozenset(
    (*vars(logging.LogRecord("", 0, "", 0, "", None, None)), "message", "asctime", "taskName")
)


class JsonFormatter(logging.Formatter):
    """A record as one JSON object: ts, level, logger, msg, then the record's `extra` fields.

    `thread=True` adds the thread's name: the controller works on threads (caches, workers,
    leader election), the router on one event loop.
    """

    def __init__(self, thread: bool = False) -> None:
        super().__init__()
        self._thread = thread

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
        }
        if self._thread:
            out["thread"] = record.threadName
        out["msg"] = record.getMessage()
        for key, value in record.__dict__.items():
            if key not in _RECORD_ATTRIBUTES and key not in out:
                out[key] = value
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        if record.stack_info:
            out["stack"] = self.formatStack(record.stack_info)
        # default=str: a log line must never fail because an extra is not JSON (a URL object).
        return orjson.dumps(out, default=str, option=orjson.OPT_NON_STR_KEYS).decode()


__all__ = ["JsonFormatter"]
