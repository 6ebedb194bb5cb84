"""router.headers: PROPAGATE_HEADERS as KServe's router reads, compiles and matches it."""

from __future__ import annotations

import logging

import pytest
from multidict import CIMultiDict, CIMultiDictProxy

from router.headers import HeaderPropagator

# What a client sends; `outbound` picks from these.
INCOMING = (
    ("X-Trace-Id", "t"),
    ("X-User-Id", "u"),
    ("Authorization", "Bearer x"),
    ("Émoji-Name", "e"),  # not a valid token in HTTP, but a name RE2's \pL can tell from ASCII
    ("Content-Type", "application/json; charset=utf-8"),  # not the router's default
    ("Connection", "keep-alive"),
    ("Keep-Alive", "timeout=5"),
    ("Host", "router"),
    ("Content-Length", "2"),
)
EVERY_END_TO_END = {"X-Trace-Id", "X-User-Id", "Authorization", "Émoji-Name", "Content-Type"}


def forwarded(env: str | None, incoming: tuple[tuple[str, str], ...] = INCOMING) -> set[str]:
    """The names of the client's headers that reach the steps (with the client's value)."""
    headers = CIMultiDictProxy(CIMultiDict(incoming))
    out = HeaderPropagator.from_env(env).outbound(headers)
    return {name for name, value in out.items() if (name, value) in incoming}


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        (None, set()),
        ("X-User-Id", {"X-User-Id"}),
        ("user", set()),  # Go-canonical names: "X-User-Id" has no "user"
        ("(?i)user", {"X-User-Id"}),
        ("Id$", {"X-Trace-Id", "X-User-Id"}),  # unanchored search, anchors where written
        ("[[:alpha:]]+-Id$", {"X-Trace-Id", "X-User-Id"}),  # a POSIX class, as in Go
        (r"^\pL{4}", {"Authorization", "Émoji-Name", "Content-Type"}),  # Unicode letters
        ("^[[:alpha:]]{4}", {"Authorization", "Content-Type"}),  # ASCII only, as in Go
        ("", EVERY_END_TO_END),  # set but empty: Go compiles "" and it matches every header
        ("X-User-Id,,Nothing", EVERY_END_TO_END),  # so does an empty piece
        ("X-User-Id,", EVERY_END_TO_END),  # and a trailing comma
        ("X-Nothing, X-User-Id", set()),  # no trimming: " X-User-Id" matches no name
        ("*Trace-Id*,X-User-Id", {"X-User-Id"}),  # KServe's documented example is invalid
        ("(?=X)X-User-Id,Authorization", {"Authorization"}),  # lookahead: not Go syntax
    ],
    ids=[
        "unset",
        "exact",
        "canonical-case",
        "case-insensitive-flag",
        "unanchored",
        "posix-class",
        "unicode-letter-class",
        "posix-class-is-ascii",
        "set-but-empty",
        "empty-piece",
        "trailing-comma",
        "spaces-kept",
        "invalid-skipped",
        "perl-lookahead-refused",
    ],
)
def test_patterns_select_what_kserve_selects(env: str | None, expected: set[str]) -> None:
    assert forwarded(env) == expected


def test_an_invalid_pattern_is_logged_and_the_rest_still_work(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with caplog.at_level(logging.WARNING, logger="router.headers"):
        propagator = HeaderPropagator.from_env("*Trace-Id*,X-User-Id")
    assert propagator.invalid == ("*Trace-Id*",)
    [record] = caplog.records
    assert record.levelno == logging.ERROR
    assert "'*Trace-Id*'" in record.getMessage()
    assert "repetition operator" in record.getMessage()  # RE2's own reason


@pytest.mark.parametrize(
    ("env", "warning"),
    [
        ("", "matches every header"),
        ("a,,b", "matches every header"),
        ("a, b", "surrounding whitespace"),
    ],
    ids=["set-but-empty", "empty-piece", "space-after-comma"],
)
def test_surprising_but_kserve_compatible_patterns_are_logged(
    caplog: pytest.LogCaptureFixture, env: str, warning: str
) -> None:
    with caplog.at_level(logging.WARNING, logger="router.headers"):
        HeaderPropagator.from_env(env)
    assert [r.levelno for r in caplog.records] == [logging.WARNING]
    assert warning in caplog.records[0].getMessage()


def test_headers_named_in_connection_are_never_forwarded() -> None:
    incoming = (
        ("Connection", "keep-alive, X-Hop"),
        ("Connection", "x-other-hop"),  # a second Connection header counts too
        ("X-Hop", "1"),
        ("X-Other-Hop", "2"),
        ("X-End", "3"),
        ("traceparent", "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"),
    )
    assert forwarded(".*", incoming) == {"X-End", "traceparent"}
    hop_trace = (("Connection", "traceparent"), *incoming[-1:])
    assert forwarded(None, hop_trace) == set()
