"""`infergraph controller`: flags and start-up errors (the reconciling itself: tests/k8s)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

TIMEOUT = 60.0  # seconds for a process that only parses flags and exits


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "graph_controller", "controller", *args],
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        check=False,
    )


def test_help_lists_the_flags() -> None:
    answer = run("--help")
    assert answer.returncode == 0
    for flag in (
        "--namespace",
        "--kubeconfig",
        "--leader-elect",
        "--no-leader-elect",
        "--lease-namespace",
        "--lease-name",
        "--health-port",
        "--router-image",
        "--propagate-headers",
        "--workers",
    ):
        assert flag in answer.stdout


def test_missing_kubeconfig_is_a_message_not_a_traceback(tmp_path: Path) -> None:
    answer = run(f"--kubeconfig={tmp_path / 'absent'}", "--health-port=0")
    assert answer.returncode == 1
    assert "infergraph controller: no Kubernetes configuration" in answer.stderr
    assert "Traceback" not in answer.stderr


@pytest.mark.parametrize(
    "args",
    [
        pytest.param(["--lease-duration=5", "--renew-deadline=6"], id="deadline-past-lease"),
        pytest.param(["--retry-period=10"], id="retry-past-deadline"),
    ],
)
def test_leader_timings_must_be_ordered(args: list[str]) -> None:
    answer = run(*args, "--health-port=0")
    assert answer.returncode == 2
    assert "leader election needs retry period" in answer.stderr


def test_workers_must_be_positive() -> None:
    answer = run("--workers=0")
    assert answer.returncode == 2
    assert "expected a positive integer" in answer.stderr
