"""Structured logs for the controller: one JSON object per line on stderr, with the record's
`extra` fields (object, status, retry_in, ...) as keys, so tests and log pipelines can read
them without parsing prose."""

from __future__ import annotations

import logging
import sys

from router.jsonlog import JsonFormatter


def configure(level: str = "INFO") -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter(thread=True))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # urllib3 warns per retried connection; our own lines already say what failed.
    logging.getLogger("urllib3").setLevel(logging.ERROR)
