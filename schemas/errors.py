"""Validation errors that name the exact field, e.g. `spec.nodes.root.steps[1].weight`.

Every check in `schemas` reports `FieldError`s; `SpecError` carries all of them at once so a
user fixes a file in one pass. Paths are rendered the way a YAML reader navigates: dotted keys,
`[i]` for list indexes.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

PathPart = str | int


def render_path(parts: Iterable[PathPart]) -> str:
    """`("spec", "nodes", "root", "steps", 1, "weight")` -> `spec.nodes.root.steps[1].weight`."""
    out = ""
    for part in parts:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else part
    return out or "<document>"


@dataclass(frozen=True, slots=True)
class FieldError:
    path: str
    message: str

    def __str__(self) -> str:
        return f"{self.path}: {self.message}"


class SpecError(ValueError):
    """A document failed validation; `errors` lists every problem found, each with its path."""

    def __init__(self, errors: Sequence[FieldError], source: str = "<input>") -> None:
        self.errors = tuple(errors)
        self.source = source
        lines = "\n".join(f"  {e}" for e in self.errors)
        super().__init__(f"{source}: {len(self.errors)} error(s)\n{lines}")
