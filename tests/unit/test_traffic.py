"""router.traffic without a server: redaction, settings, sampling, the record's JSON."""

from __future__ import annotations

import base64
import random
import re
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

from router.graph import compile_graph
from router.traffic import REDACTED, RecordingSettings, Redaction, TrafficRecorder
from schemas.valid_graph import validate_graph

SPEC = {"routerType": "Sequence", "steps": [{"name": "a", "serviceUrl": "http://127.0.0.1:9/a"}]}
GRAPH = compile_graph(validate_graph({"nodes": {"root": SPEC}}))


def test_redaction_blanks_every_match_of_a_path_and_names_headers() -> None:
    redaction = Redaction.parse(("$..ssn", "$.user.name", "X-Api-Key"))
    assert redaction.headers == frozenset({"x-api-key"})
    body = {"user": {"name": "ann", "ssn": 1}, "rows": [{"ssn": 2}, {"other": 3}]}
    assert redaction.body(body) == {
        "user": {"name": REDACTED, "ssn": REDACTED},
        "rows": [{"ssn": REDACTED}, {"other": 3}],
    }


@pytest.mark.parametrize(
    ("items", "message"),
    [
        (("$[[",), "--record-redact '$[[': not a JSON path"),
        ((" X-Key",), "--record-redact ' X-Key': expected a JSON path or header name"),
        (("",), "--record-redact '': expected a JSON path or header name"),
    ],
    ids=["bad-path", "padded-header", "empty"],
)
def test_redaction_names_what_it_cannot_read(items: tuple[str, ...], message: str) -> None:
    with pytest.raises(ValueError, match=f"^{re.escape(message)}"):
        Redaction.parse(items)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"sample": 0.0}, "--record-sample must be in (0, 1], got 0.0"),
        ({"sample": 1.5}, "--record-sample must be in (0, 1], got 1.5"),
        ({"max_bytes": 10}, "--record-max-bytes must be at least 1024, got 10"),
        ({"keep": -1}, "--record-keep must be >= 0, got -1"),
        (
            {"redaction": Redaction.parse(("X-Secret",))},
            "--record-redact x-secret: not a recorded header",
        ),
    ],
    ids=["sample-0", "sample-above-1", "tiny-file", "negative-keep", "unrecorded-header"],
)
def test_settings_refuse_what_cannot_work(overrides: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=f"^{re.escape(message)}"):
        RecordingSettings(Path("x.jsonl"), **overrides)  # type: ignore[arg-type]


def test_sampling_follows_the_random_source() -> None:
    settings = RecordingSettings(Path("x.jsonl"), sample=0.3)
    recorder = TrafficRecorder(settings, "g", rng=random.Random(7))
    chosen = [recorder.start("POST", "/", {}, GRAPH) is not None for _ in range(200)]
    reference = random.Random(7)
    assert chosen == [reference.random() < 0.3 for _ in range(200)]
    assert 30 < sum(chosen) < 90


def test_headers_are_allow_listed_and_redacted_case_insensitively() -> None:
    settings = RecordingSettings(
        Path("x.jsonl"),
        headers=frozenset({"content-type", "x-user"}),
        redaction=Redaction.parse(("X-USER",)),
    )
    recorder = TrafficRecorder(settings, "g")
    record = recorder.start(
        "POST", "/", {"Content-Type": "application/json", "X-User": "ann", "Cookie": "c"}, GRAPH
    )
    assert record is not None
    assert record.headers == {"Content-Type": "application/json", "X-User": REDACTED}


def test_bodies_that_are_not_json_are_base64_or_left_out_under_redaction() -> None:
    for redaction, expected in (
        (Redaction(), {"bodyBase64": base64.b64encode(b"\x00raw").decode()}),
        (
            Redaction.parse(("$.a",)),
            {"bodyOmitted": "not JSON, so the redaction paths cannot apply"},
        ),
    ):
        recorder = TrafficRecorder(RecordingSettings(Path("x.jsonl"), redaction=redaction), "g")
        record = recorder.start("POST", "/", {}, GRAPH)
        assert record is not None
        record.body = b"\x00raw"
        document = recorder.to_json(record)
        request = {k: v for k, v in document["request"].items() if k.startswith("body")}
        assert request == expected


def test_a_full_pending_list_drops_and_counts(tmp_path: Path) -> None:
    settings = RecordingSettings(tmp_path / "x.jsonl", queue_size=2)
    registry = CollectorRegistry()
    recorder = TrafficRecorder(settings, "g", registry)  # not opened: nothing drains the list
    for _ in range(5):
        record = recorder.start("POST", "/", {}, GRAPH)
        assert record is not None
        recorder.finish(record, 200, b"{}")
    labels = {"graph": "g", "reason": "queue_full"}
    assert registry.get_sample_value("infergraph_recording_dropped_total", labels) == 3
