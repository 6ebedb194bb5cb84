"""router.grpc_codes: both tables, and the README's gRPC section that documents them."""

from __future__ import annotations

from pathlib import Path

import pytest
from grpc import StatusCode

from router.grpc_codes import HTTP_FROM_GRPC, go_name, grpc_code, http_status

README = (Path(__file__).parents[2] / "README.md").read_text()


def test_every_grpc_code_has_an_http_status_and_the_readme_names_it() -> None:
    section = README[README.index("### gRPC: the Open Inference Protocol v2") :]
    section = section[: section.index("\n### ", 1)]
    for code in StatusCode:
        assert code in HTTP_FROM_GRPC
        assert code.name in section, f"README's gRPC table lacks {code.name}"


@pytest.mark.parametrize(
    "code",
    [
        StatusCode.INVALID_ARGUMENT,
        StatusCode.NOT_FOUND,
        StatusCode.UNAUTHENTICATED,
        StatusCode.DEADLINE_EXCEEDED,
        StatusCode.UNAVAILABLE,
        StatusCode.INTERNAL,
        StatusCode.UNIMPLEMENTED,
    ],
    ids=lambda c: c.name,
)
def test_a_step_code_reaches_a_grpc_client_unchanged(code: StatusCode) -> None:
    assert grpc_code(http_status(code)) is code


@pytest.mark.parametrize(
    ("status", "code"),
    [
        (418, StatusCode.FAILED_PRECONDITION),
        (302, StatusCode.UNKNOWN),
        (413, StatusCode.RESOURCE_EXHAUSTED),
    ],
    ids=["other-4xx", "other", "too-large"],
)
def test_http_statuses_without_an_exact_code(status: int, code: StatusCode) -> None:
    assert grpc_code(status) is code


def test_go_spells_codes_in_camel_case() -> None:
    assert go_name(StatusCode.DEADLINE_EXCEEDED) == "DeadlineExceeded"
    assert go_name(StatusCode.OK) == "OK"
