"""A plain `pip install infergraph` (what the Docker image does: no extras) can import every
module it ships: each third-party import in router/, schemas/ and graph_controller/ belongs to a
distribution that `project.dependencies` requires, directly or through its own requirements.

The model servers (`model_servers/`) are the exception the `models` extra exists for: they run
only as `infergraph up`'s child processes, with kserve and scikit-learn installed."""

from __future__ import annotations

import ast
import importlib.metadata
import re
import sys
import tomllib
from pathlib import Path

from packaging.requirements import Requirement

REPO = Path(__file__).parents[2]
PACKAGES = ("router", "schemas", "graph_controller")
EXTRA_ONLY = "model_servers"
# Loaded only by pytest itself (the `pytest11` entry point): pytest is there whenever it is.
PYTEST_PLUGIN = REPO / "graph_controller" / "pytest_plugin.py"


def _name(requirement: str) -> str:
    return re.sub(r"[-_.]+", "-", Requirement(requirement).name).lower()


def base_closure() -> set[str]:
    """Distribution names a no-extras install brings: the base list and what it requires."""
    declared = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"]
    pending = [Requirement(text) for text in declared]
    seen: set[str] = set()
    while pending:
        requirement = pending.pop()
        name = _name(str(requirement))
        if name in seen:
            continue
        if requirement.marker is not None and not requirement.marker.evaluate({"extra": ""}):
            continue
        seen.add(name)
        try:
            pending.extend(Requirement(r) for r in importlib.metadata.requires(name) or [])
        except importlib.metadata.PackageNotFoundError:
            continue
    return seen


def third_party_imports() -> dict[str, set[str]]:
    """Top-level module -> the files importing it, for every non-stdlib, non-project import."""
    found: dict[str, set[str]] = {}
    for package in PACKAGES:
        for path in sorted((REPO / package).rglob("*.py")):
            if EXTRA_ONLY in path.parts:
                continue
            plugin = path == PYTEST_PLUGIN
            for node in ast.walk(ast.parse(path.read_text(), str(path))):
                if isinstance(node, ast.Import):
                    names = [alias.name for alias in node.names]
                elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                    names = [node.module]
                else:
                    continue
                for name in names:
                    top = name.partition(".")[0]
                    if top in sys.stdlib_module_names or top in PACKAGES:
                        continue
                    if plugin and top == "pytest":
                        continue
                    found.setdefault(top, set()).add(str(path.relative_to(REPO)))
    return found


def test_every_shipped_import_comes_with_a_plain_install() -> None:
    closure = base_closure()
    providers = importlib.metadata.packages_distributions()
    missing = {
        module: sorted(files)
        for module, files in third_party_imports().items()
        if not {_name(d) for d in providers.get(module, [])} & closure
    }
    assert missing == {}, f"imported, but only an extra (or nothing) installs them: {missing}"


def test_the_import_scan_sees_the_property_testing_toolkit() -> None:
    # The scan must reach what a no-extras install uses for `infergraph check` and
    # `router.testing`; were it blind, the test above could not fail.
    assert "hypothesis" in third_party_imports()
