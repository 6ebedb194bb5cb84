"""Which incoming request headers are forwarded to steps: KServe's PROPAGATE_HEADERS rules.

`router.__main__` builds one `HeaderPropagator` from the env var (`from_env`); `router.app`
asks it for each request's outbound headers (`outbound`).

KServe's router (cmd/router/main.go) reads the variable with `os.LookupEnv`, splits it with
`strings.Split(value, ",")` (no trimming), compiles each piece with Go's `regexp.Compile`, logs
the pieces that do not compile and goes on with the rest, and forwards a header when any
pattern's `MatchString` (an unanchored search) holds on its Go-canonical name (`X-User-Id`).
We do the same, with RE2 (google-re2), the syntax Go's regexp implements, so `[[:alpha:]]`,
`\\pL` and `(?i)` mean what they mean there and Python-only syntax (lookaround, `\\Z`) is
refused as Go refuses it. Consequences kept on purpose, each logged at start-up: a variable set
but empty, or an empty piece (`a,,b`, a trailing comma), compiles to the empty pattern, which
matches every header; a piece with spaces around it (`a, b`) keeps them and so matches no
header name.

Hop-by-hop and framing headers are never forwarded, whatever the patterns say: the fixed ones
below and those the client names in its `Connection` header (RFC 9110 7.6.1); forwarding them
would corrupt the outbound request. Decisions are cached per header name, so the request path
does no regex work for names it has seen.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from typing import Final

import re2
from multidict import CIMultiDict, CIMultiDictProxy, MultiMapping

log = logging.getLogger("router.headers")

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


def _re2_options() -> re2.Options:
    options = re2.Options()
    # RE2 would also print each bad pattern on stderr, outside our JSON log lines.
    options.log_errors = False
    return options


_OPTIONS: Final = _re2_options()


def canonical_name(name: str) -> str:
    """Go's textproto.CanonicalMIMEHeaderKey for ASCII names: `x-user-id` -> `X-User-Id`."""
    return "-".join(part[:1].upper() + part[1:].lower() for part in name.split("-"))


def connection_options(incoming: Mapping[str, str]) -> frozenset[str]:
    """The header names (lower case) a request's `Connection` header(s) mark hop-by-hop."""
    if isinstance(incoming, MultiMapping):
        values: Iterable[str] = incoming.getall("Connection", ())
    else:
        value = incoming.get("Connection")
        values = () if value is None else (value,)
    return frozenset(
        token
        for value in values
        for token in (t.strip().lower() for t in value.split(","))
        if token
    )


class HeaderPropagator:
    def __init__(self, patterns: Iterable[str]) -> None:
        """Compile `patterns` as KServe does; a pattern that does not compile is logged, skipped."""
        compiled = []
        invalid = []
        for pattern in patterns:
            try:
                compiled.append(re2.compile(pattern, _OPTIONS))
            except re2.error as error:
                reason = error.args[0].decode() if error.args else str(error)
                invalid.append(pattern)
                log.error(
                    "PROPAGATE_HEADERS pattern %r is not a valid Go (RE2) regular expression: "
                    "%s; skipped, as KServe's router skips it",
                    pattern,
                    reason,
                    extra={"pattern": pattern},
                )
                continue
            if pattern == "":
                log.warning(
                    "PROPAGATE_HEADERS has an empty pattern (an empty variable, ',,' or a "
                    "trailing comma): it matches every header, as in KServe's router; "
                    "hop-by-hop headers are still never forwarded"
                )
            elif pattern != pattern.strip():
                log.warning(
                    "PROPAGATE_HEADERS pattern %r has surrounding whitespace, which KServe's "
                    "router keeps too: it matches no header name unless the spaces are removed",
                    pattern,
                    extra={"pattern": pattern},
                )
        self._patterns = tuple(compiled)
        self.invalid = tuple(invalid)  # the patterns skipped, for the caller and tests
        self._decisions: dict[str, bool] = {}

    @classmethod
    def from_env(cls, value: str | None) -> HeaderPropagator:
        """`value` is PROPAGATE_HEADERS or None when unset; split exactly as KServe splits it."""
        return cls(value.split(",") if value is not None else ())

    def _forwarded(self, name: str) -> bool:
        decision = self._decisions.get(name)
        if decision is None:
            canonical = canonical_name(name)
            lowered = canonical.lower()
            decision = lowered in ALWAYS_FORWARDED or (
                lowered not in NEVER_FORWARDED
                and any(p.search(canonical) is not None for p in self._patterns)
            )
            if len(self._decisions) < _CACHE_LIMIT:
                self._decisions[name] = decision
        return decision

    def outbound(self, incoming: Mapping[str, str]) -> Mapping[str, str]:
        """Headers for every step call of one request: the forwarded ones plus Content-Type."""
        if not self._patterns and "traceparent" not in incoming:
            return _JSON_ONLY  # shared and immutable: no per-request copy when nothing propagates
        hop_by_hop = connection_options(incoming) if "Connection" in incoming else frozenset()
        out: CIMultiDict[str] = CIMultiDict()
        for name, value in incoming.items():
            if self._forwarded(name) and name.lower() not in hop_by_hop:
                out.add(name, value)
        if "Content-Type" not in out:
            out["Content-Type"] = "application/json"
        return out
