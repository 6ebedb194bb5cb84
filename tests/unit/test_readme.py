"""The README's examples work as written.

Every ```python block is saved as a test file and run by pytest from the repository root (as a
reader would run it), with the project's strict settings: it must collect at least one test and
pass. Every `infergraph` command line in a ```sh block whose subcommand only reads files
(CHEAP_SUBCOMMANDS) runs through bash from the repository root and must exit 0. A block preceded
by `<!-- readme-test: skip REASON -->` is left out, with its reason in the test id list."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).parents[2]
README = REPO / "README.md"
# Subcommands that read files and print, so they run in a test in well under a second;
# `up`, `down` and `controller` start or stop servers and are tested by their own suites.
CHEAP_SUBCOMMANDS = frozenset({"validate", "graph", "explain", "check", "render", "replay"})
SKIP = re.compile(r"<!--\s*readme-test:\s*skip\b\s*(?P<reason>.*?)\s*-->")
FENCE = re.compile(r"^```(?P<lang>\S*)\s*$")


@dataclass(frozen=True)
class Block:
    lang: str
    line: int  # of the opening fence, 1-based
    text: str
    skipped: str | None  # the reason, when marked

    @property
    def id(self) -> str:
        return f"{self.lang}@README.md:{self.line}"


def blocks(markdown: str) -> list[Block]:
    """Fenced blocks with their language, opening line and skip marker (the nearest non-blank
    line before the fence)."""
    found: list[Block] = []
    lines = markdown.splitlines()
    index = 0
    while index < len(lines):
        opening = FENCE.match(lines[index])
        if opening is None or not opening["lang"]:
            index += 1
            continue
        end = next(j for j in range(index + 1, len(lines)) if lines[j].startswith("```"))
        before = next((lines[j] for j in range(index - 1, -1, -1) if lines[j].strip()), "")
        marker = SKIP.search(before)
        found.append(
            Block(
                opening["lang"],
                index + 1,
                "\n".join(lines[index + 1 : end]) + "\n",
                marker["reason"] or "no reason given" if marker else None,
            )
        )
        index = end + 1
    return found


OPTIONAL = re.compile(r"\s*\[[^\]]*\]")


def commands(block: Block) -> list[str]:
    """The block's `infergraph <cheap subcommand>` lines, `$ ` prompts dropped. A synopsis line
    (with `[--optional]` parts) runs as its required part: brackets and any pipe removed."""
    out: list[str] = []
    for raw in block.text.replace("\\\n", " ").splitlines():
        line = raw.removeprefix("$ ").strip()
        if OPTIONAL.search(line):
            line = OPTIONAL.sub("", line).partition("|")[0].strip()
        words = line.split()
        if len(words) >= 2 and words[0] == "infergraph" and words[1] in CHEAP_SUBCOMMANDS:
            out.append(line)
    return out


README_BLOCKS = blocks(README.read_text())
PYTHON = [b for b in README_BLOCKS if b.lang == "python" and b.skipped is None]
COMMANDS = [(b, line) for b in README_BLOCKS if b.lang in ("sh", "console") for line in commands(b)]


def run_python_block(block: Block, directory: Path) -> subprocess.CompletedProcess[str]:
    test_file = directory / f"test_readme_line_{block.line}.py"
    test_file.write_text(block.text)
    # --rootdir keeps pytest from reading tests/conftest.py and pyproject.toml; -W error and
    # strict markers are what the project's own suite runs with; the loop scope is set (as in
    # pyproject.toml) only because the dev venv's pytest-asyncio warns when it is not.
    argv = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-W", "error"]
    argv += ["--strict-markers", "-o", "asyncio_default_fixture_loop_scope=function"]
    argv += ["--rootdir", str(directory), str(test_file)]
    return subprocess.run(argv, cwd=REPO, capture_output=True, text=True, timeout=300)


def test_the_readme_has_examples_to_run() -> None:
    # A parser that found nothing would make the tests below vacuous.
    assert [b.line for b in PYTHON]
    assert any("infergraph validate" in line for _, line in COMMANDS)


@pytest.mark.parametrize("block", PYTHON, ids=[b.id for b in PYTHON])
def test_python_block_runs_as_written(block: Block, tmp_path: Path) -> None:
    result = run_python_block(block, tmp_path)
    summary = result.stdout.strip().splitlines()[-1] if result.stdout.strip() else ""
    assert result.returncode == 0, result.stdout + result.stderr
    assert re.match(r"\d+ passed", summary), summary


@pytest.mark.parametrize(
    ("block", "line"), COMMANDS, ids=[f"{b.id}:{line}" for b, line in COMMANDS]
)
def test_command_runs_as_written(block: Block, line: str) -> None:
    env = dict(os.environ)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    result = subprocess.run(
        ["bash", "-c", line], cwd=REPO, env=env, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, f"{line}\n{result.stdout}{result.stderr}"


def test_a_failing_example_is_reported(tmp_path: Path) -> None:
    # The README's example before it asked for v1 bodies: its models read `instances`, and
    # `payloads()` also draws v2 bodies, which have none.
    (python,) = [b for b in PYTHON if "test_breed_only_for_dogs" in b.text]
    broken = Block("python", python.line, python.text.replace('protocol="v1"', ""), None)
    result = run_python_block(broken, tmp_path)
    assert result.returncode == 1
    assert "KeyError: 'instances'" in result.stdout


def test_a_synopsis_runs_as_its_required_part() -> None:
    block = Block(
        "sh",
        1,
        "infergraph render g.yaml [--mode raw|serverless] \\\n  [--x y] | kubectl apply -f -\n",
        None,
    )
    assert commands(block) == ["infergraph render g.yaml"]


def test_blocks_marked_skip_are_left_out() -> None:
    markdown = "<!-- readme-test: skip needs a cluster -->\n```python\nraise SystemExit(1)\n```\n"
    (block,) = blocks(markdown)
    assert block.skipped == "needs a cluster"
