"""router.settings: the command line, and the README's flag table that documents it."""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
from importlib import metadata
from pathlib import Path

import pytest

from router.settings import UnsupportedFlag, from_args, parser

README = Path(__file__).parents[2] / "README.md"


def test_version_is_the_package_version() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "router", "--version"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["python", "-m", "router", metadata.version("infergraph")]


def _readme_flags() -> list[str]:
    """The flags of README's router flag table, one per row, in order."""
    lines = README.read_text().splitlines()
    start = lines.index("| flag | default | what it does |")
    flags = []
    for line in lines[start + 2 :]:
        if not line.startswith("|"):
            break
        first_cell = line.split("|")[1]
        found = re.findall(r"`(--[a-z][a-z-]*)", first_cell)
        assert len(found) == 1, f"README flag row without exactly one flag: {line}"
        flags.extend(found)
    return flags


def test_readme_flag_table_lists_every_flag_of_help() -> None:
    visible, hidden = set(), set()
    for action in parser()._actions:
        for option in action.option_strings:
            if option.startswith("--") and option != "--help":
                (hidden if action.help == argparse.SUPPRESS else visible).add(option)
    documented = _readme_flags()
    assert len(documented) == len(set(documented)), "a flag is listed twice"
    assert visible - set(documented) == set(), "flags of --help missing from README"
    # Hidden flags may be documented (--enable-auth is, as refused); nothing else may be.
    assert set(documented) - visible - hidden == set(), "README lists flags that do not exist"


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--workers", "0"], "--workers must be at least 1"),
        (["--metrics-port", "8080"], "--metrics-port 8080 is also --port"),
        (["--enable-auth"], "--enable-auth"),
        (["--grpc-port", "8080"], "--grpc-port 8080 is also --port or --metrics-port"),
        (
            ["--metrics-port", "9090", "--grpc-port", "9090"],
            "--grpc-port 9090 is also --port or --metrics-port",
        ),
    ],
    ids=["no-workers", "metrics-on-main-port", "enable-auth", "grpc-on-main", "grpc-on-metrics"],
)
def test_refused_flag_combinations(argv: list[str], message: str) -> None:
    with pytest.raises(UnsupportedFlag, match=re.escape(message)):
        from_args(["--graph-json", "{}", *argv], {})
