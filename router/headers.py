"""Which incoming request headers are forwarded to steps: KServe's PROPAGATE_HEADERS rules.

The env var holds comma-separated regular expressions; a header is forwarded when any pattern
*searches* successfully in its canonical name (Go's `regexp.MatchString` is unanchored, and Go
canonicalises names to `X-User-Id`), so patterns written for KServe select the same headers.
Hop-by-hop and framing headers are never forwarded, whatever the patterns say: forwarding them
would corrupt the outbound request. Decisions are cached per header name, so the request path
does no regex work for names it has seen.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping

from multidict import CIMultiDict, CIMultiDictProxy

NEVER_FORWARDED = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "proxy-connection",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
        "host",
        "content-length",
        # The router sends the body as it decoded it (aiohttp inflates gzip/deflate/br request
        # bodies), so the client's Content-Encoding would mislabel the outbound bytes.
        "content-encoding",
        "expect",
    }
)
_JSON_ONLY: CIMultiDictProxy[str] = CIMultiDictProxy(
    CIMultiDict({"Content-Type": "application/json"})
)
# W3C trace context always reaches the steps, so a trace continues through the graph even when
# PROPAGATE_HEADERS does not list it (KServe forwards it only if listed).
ALWAYS_FORWARDED = frozenset({"traceparent", "tracestate"})
# Bounds the decision cache against clients that send endless distinct header names.
_CACHE_LIMIT = 4096


class HeaderPatternError(ValueError):
    """A PROPAGATE_HEADERS pattern is not a valid regular expression."""


def canonical_name(name: str) -> str:
    """Go's textproto.CanonicalMIMEHeaderKey for ASCII names: `x-user-id` -> `X-User-Id`."""
    return "-".join(part[:1].upper() + part[1:].lower() for part in name.split("-"))


class HeaderPropagator:
    def __init__(self, patterns: Iterable[str]) -> None:
        compiled = []
        for pattern in patterns:
            if not pattern:
                continue  # "a,,b" and a trailing comma: Go compiles "" to match-all; we skip it
            try:
                compiled.append(re.compile(pattern))
            except re.error as error:
                raise HeaderPatternError(
                    f"PROPAGATE_HEADERS pattern {pattern!r} is invalid: {error}"
                ) from None
        self._patterns = tuple(compiled)
        self._decisions: dict[str, bool] = {}

    @classmethod
    def from_env(cls, value: str | None) -> HeaderPropagator:
        return cls(value.split(",") if value else ())

    def _forwarded(self, name: str) -> bool:
        decision = self._decisions.get(name)
        if decision is None:
            canonical = canonical_name(name)
            lowered = canonical.lower()
            decision = lowered in ALWAYS_FORWARDED or (
                lowered not in NEVER_FORWARDED and any(p.search(canonical) for p in self._patterns)
            )
            if len(self._decisions) < _CACHE_LIMIT:
                self._decisions[name] = decision
        return decision

    def outbound(self, incoming: Mapping[str, str]) -> Mapping[str, str]:
        """Headers for every step call of one request: the forwarded ones plus Content-Type."""
        if not self._patterns and "traceparent" not in incoming:
            return _JSON_ONLY  # shared and immutable: no per-request copy when nothing propagates
        out: CIMultiDict[str] = CIMultiDict()
        for name, value in incoming.items():
            if self._forwarded(name):
                out.add(name, value)
        if "Content-Type" not in out:
            out["Content-Type"] = "application/json"
        return out
