"""The README's table of `infergraph` subcommands and flags is the parser's: every subcommand
has a row, every flag of the parser is in its row and every flag in a row is the parser's, and
a default the README states is the parser's default. `--version` prints the project's version.
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from graph_controller.cli.main import main, parser

REPO = Path(__file__).parents[2]
ROW = re.compile(r"^\| `infergraph (?P<command>[a-z-]+)[^`]*` \| (?P<flags>.*) \|$")
# A flag as the table writes it, `--flag VALUE`, and the parenthesised text right after it.
FLAG = re.compile(r"`(?P<flag>--[a-z][a-z-]*)[^`]*`(?:\s*\((?P<note>[^)]*)\))?")


def readme_table() -> dict[str, dict[str, str | None]]:
    """subcommand -> {flag: the note after it, or None}."""
    rows: dict[str, dict[str, str | None]] = {}
    for line in (REPO / "README.md").read_text().splitlines():
        row = ROW.match(line)
        if row is not None:
            flags = FLAG.finditer(row["flags"])
            rows[row["command"]] = {m["flag"]: m["note"] for m in flags}
    return rows


def parser_flags() -> dict[str, dict[str, object]]:
    """subcommand -> {flag: its default}, every option string of every subcommand."""
    (subcommands,) = [a for a in parser()._actions if isinstance(a, argparse._SubParsersAction)]
    return {
        name: {
            flag: action.default
            for action in sub._actions
            if not isinstance(action, argparse._HelpAction)
            for flag in action.option_strings
        }
        for name, sub in subcommands.choices.items()
    }


def shown(default: object) -> str:
    """A default as the table writes it: 120.0 as 120."""
    if isinstance(default, float) and default.is_integer():
        return str(int(default))
    return str(default)


def test_every_subcommand_has_a_row_and_no_row_is_stale() -> None:
    assert set(readme_table()) == set(parser_flags())


@pytest.mark.parametrize("command", sorted(parser_flags()))
def test_a_rows_flags_are_the_parsers(command: str) -> None:
    assert set(readme_table()[command]) == set(parser_flags()[command])


@pytest.mark.parametrize("command", sorted(parser_flags()))
def test_stated_defaults_are_the_parsers(command: str) -> None:
    notes = readme_table()[command]
    for flag, default in parser_flags()[command].items():
        if default in (None, "", False, True):
            continue  # nothing to state, or said in words (on, off)
        note = notes.get(flag)
        assert note is not None, f"infergraph {command} {flag}: README gives no default"
        assert note.split(";")[0] == shown(default), f"infergraph {command} {flag}: {note}"


def test_the_flag_parser_sees_defaults() -> None:
    # The pattern the tests above rely on, on a row of the README's shape.
    row = "`--port N` (8080; 0: any free), `--json`, `--a` / `--no-a` (on)"
    assert {m["flag"]: m["note"] for m in FLAG.finditer(row)} == {
        "--port": "8080; 0: any free",
        "--json": None,
        "--a": None,
        "--no-a": "on",
    }


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    declared = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["version"]
    with pytest.raises(SystemExit) as exit_:
        main(["--version"])
    assert exit_.value.code == 0
    assert capsys.readouterr().out == f"infergraph {declared}\n"
    command = Path(sys.executable).parent / "infergraph"
    result = subprocess.run([command, "--version"], capture_output=True, text=True, timeout=60)
    assert (result.returncode, result.stdout) == (0, f"infergraph {declared}\n")
