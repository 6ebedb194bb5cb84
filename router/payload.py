"""Bodies moving through a graph: raw bytes, parsed at most once and only when needed.

A step's response is passed on as the bytes it arrived as; a condition, a mapping or an
ensemble merge asks for `json()`, which parses once and caches. This keeps pass-through hops
free of JSON work, the router's main cost beyond the HTTP hop itself.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

import orjson

if TYPE_CHECKING:
    from router.streams import StreamedBody

_UNPARSED: Any = object()


class InvalidJSON(ValueError):
    """The body is not JSON; callers turn it into a 400 (request) or 502 (step response)."""


class Payload:
    __slots__ = ("_parsed", "raw")

    def __init__(self, raw: bytes, parsed: Any = _UNPARSED) -> None:
        self.raw = raw
        self._parsed = parsed

    @classmethod
    def from_json(cls, value: Any) -> Payload:
        """A body the router built; raises InvalidJSON when even the fallback cannot write it."""
        return cls(encode(value), value)

    def json(self) -> Any:
        """The parsed body; raises InvalidJSON (once per call, never cached as valid)."""
        if self._parsed is _UNPARSED:
            try:
                self._parsed = orjson.loads(self.raw)
            except orjson.JSONDecodeError as error:
                raise InvalidJSON(str(error)) from None
        return self._parsed

    def is_json(self) -> bool:
        try:
            self.json()
        except InvalidJSON:
            return False
        return True


def encode(value: Any) -> bytes:
    """JSON bytes for a value parsed from JSON, however deeply it nests.

    orjson reads documents nested up to 1024 levels but writes only 254, so a client's deep
    (valid) body that a mapping or an Ensemble re-encodes would otherwise fail with a 500.
    Past orjson's limit the standard library writes it (the same compact JSON, slower); past
    Python's recursion limit nothing can, and the caller answers with the router's error.
    """
    try:
        return orjson.dumps(value)
    except orjson.JSONEncodeError:
        try:
            return json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode()
        except RecursionError:
            raise InvalidJSON("JSON nested too deeply to re-encode") from None


class Reply:
    """What a step or node answered: HTTP status, body, whether the body is known JSON, and
    the Content-Type the step declared (None for bodies the router built)."""

    __slots__ = ("content_type", "json_content", "payload", "status", "stream")

    def __init__(
        self,
        status: int,
        payload: Payload,
        json_content: bool = False,
        content_type: str | None = None,
        stream: StreamedBody | None = None,
    ) -> None:
        self.status = status
        self.payload = payload
        # True when the backend declared application/json, so the router need not re-validate.
        self.json_content = json_content
        # Kept so a non-JSON answer passed through as the graph's answer keeps its own type.
        self.content_type = content_type
        # The rest of an answer still arriving (router.streams); `payload` is then empty.
        self.stream = stream

    @property
    def ok(self) -> bool:
        return 200 <= self.status <= 299
