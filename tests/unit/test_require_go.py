"""tools/require-go.sh and its place in the Makefile: `make test` and `make envtest` stop at once,
saying how to install Go, when Go is missing or older than the control plane's build needs.

Fake `go` executables stand in for toolchains of other versions; the script only runs
`go version`."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).parents[2]
SCRIPT = REPO / "tools" / "require-go.sh"
# No `go` here; bash, make and coreutils are.
SYSTEM_PATH = "/usr/bin:/bin"


def fake_go(directory: Path, prints: str) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    go = directory / "go"
    go.write_text(f"#!/bin/sh\necho '{prints}'\n")
    go.chmod(0o755)
    return go


def run(argv: list[str], env: dict[str, str], cwd: Path = REPO) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True, timeout=60)


def clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in {"GO", "MAKEFLAGS", "MAKELEVEL"}}
    env["PATH"] = SYSTEM_PATH
    env.update(extra)
    return env


@pytest.mark.parametrize(
    ("version_line", "ok"),
    [
        ("go version go1.21.13 linux/amd64", False),
        ("go version go1.22.5 linux/amd64", False),
        ("go version go1.23.4 linux/arm64", False),
        ("go version go1.24.0 linux/amd64", True),
        ("go version go1.25rc1 linux/amd64", True),
        ("go version devel go1.26-abcdef Tue Jan 1 linux/amd64", True),
        ("go version go2.0.0 linux/amd64", True),
    ],
    ids=["1.21", "1.22", "1.23", "1.24.0", "1.25rc1", "devel-1.26", "2.0"],
)
def test_go_on_path_is_checked_against_1_24(tmp_path: Path, version_line: str, ok: bool) -> None:
    fake_go(tmp_path / "bin", version_line)
    result = run([str(SCRIPT)], clean_env(PATH=f"{tmp_path / 'bin'}:{SYSTEM_PATH}"))
    if ok:
        assert (result.returncode, result.stderr) == (0, "")
    else:
        assert result.returncode == 1
        found = version_line.split()[2].removeprefix("go").rsplit(".", 1)[0]
        assert f"need Go 1.24 or newer: {tmp_path / 'bin' / 'go'} is Go {found}" in result.stderr
        assert "https://go.dev/dl/" in result.stderr


def test_missing_go_says_where_to_get_it(tmp_path: Path) -> None:
    result = run([str(SCRIPT)], clean_env(GO=str(tmp_path / "no-such-go")))
    assert result.returncode == 1
    assert f"GO={tmp_path / 'no-such-go'} is not an executable file" in result.stderr
    assert "https://go.dev/dl/go1.24.0.linux-amd64.tar.gz" in result.stderr


def test_a_go_that_prints_no_version_is_refused(tmp_path: Path) -> None:
    go = fake_go(tmp_path / "bin", "command not understood")
    result = run([str(SCRIPT)], clean_env(GO=str(go)))
    assert result.returncode == 1
    assert "printed 'command not understood', which names no Go version" in result.stderr


def test_make_envtest_stops_before_building_with_an_old_go(tmp_path: Path) -> None:
    go = fake_go(tmp_path / "bin", "go version go1.22.5 linux/amd64")
    # An empty cache: were build.sh reached, it would run the fake `go` and print a bin dir.
    env = clean_env(GO=str(go), INFERGRAPH_CACHE=str(tmp_path / "cache"))
    result = run(["make", "--no-print-directory", "envtest"], env)
    assert result.returncode != 0
    assert "need Go 1.24 or newer" in result.stderr
    assert "building" not in result.stderr
    assert not (tmp_path / "cache").exists()


def test_make_test_checks_go_before_installing_or_testing() -> None:
    # A dry run: the recipes `make test` would run, in order, without running them.
    result = run(["make", "--no-print-directory", "-n", "-B", "test"], clean_env())
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    check = lines.index("tools/require-go.sh")
    assert all("pip install" not in line for line in lines[:check])
    assert check < next(i for i, line in enumerate(lines) if "pytest" in line)
