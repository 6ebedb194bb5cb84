"""Pydantic's validation errors as InferGraph's: a field path and a plain sentence each.

Locations become paths like `spec.nodes.root.steps[1].weight`, an unknown field names the
nearest known one, and a missing field says so. Used by every validating entry point.
"""

from __future__ import annotations

import difflib
import types
import typing
from collections.abc import Iterator
from typing import Any, Union

from pydantic import BaseModel, ValidationError
from pydantic_core import ErrorDetails

from schemas.errors import FieldError, PathPart, render_path


def field_errors(model: type[BaseModel], error: ValidationError) -> list[FieldError]:
    """Every error of `error` (raised validating `model`), rewritten with its field path."""
    return [_field_error(model, detail) for detail in error.errors()]


def _field_error(model: type[BaseModel], detail: ErrorDetails) -> FieldError:
    loc: tuple[PathPart, ...] = tuple(detail["loc"])
    path = render_path(loc)
    if detail["type"] == "extra_forbidden" and loc:
        known = _known_fields(model, loc[:-1])
        unknown = str(loc[-1])
        close = difflib.get_close_matches(unknown, known, n=1, cutoff=0.6)
        hint = f"; did you mean '{close[0]}'?" if close else ""
        return FieldError(path, f"unknown field '{unknown}'{hint} (known: {', '.join(known)})")
    if detail["type"] == "missing":
        return FieldError(path, "required field is missing")
    return FieldError(path, _plain_message(detail))


def _plain_message(detail: ErrorDetails) -> str:
    message = detail["msg"]
    given = detail.get("input")
    if isinstance(given, str | int | float | bool) or given is None:
        return f"{message}, got {given!r}"
    return message


def _known_fields(model: type[BaseModel], loc: tuple[PathPart, ...]) -> list[str]:
    """The JSON field names of the model found at `loc` under `model` (empty if not a model)."""
    current: Any = model
    for part in loc:
        current = _step_into(current, part)
        if current is None:
            return []
    if isinstance(current, type) and issubclass(current, BaseModel):
        return [info.alias or name for name, info in current.model_fields.items()]
    return []


def _step_into(annotation: Any, part: PathPart) -> Any:
    for candidate in _unwrap(annotation):
        if isinstance(candidate, type) and issubclass(candidate, BaseModel):
            if not isinstance(part, str):
                continue
            for name, info in candidate.model_fields.items():
                if part in (info.alias, name):
                    return info.annotation
        origin = typing.get_origin(candidate)
        args = typing.get_args(candidate)
        if origin is dict and len(args) == 2:
            return args[1]
        if origin is list and args and isinstance(part, int):
            return args[0]
    return None


def _unwrap(annotation: Any) -> Iterator[Any]:
    """The members of an Optional/Union annotation, or the annotation itself."""
    origin = typing.get_origin(annotation)
    if origin is Union or origin is types.UnionType:
        for arg in typing.get_args(annotation):
            yield from _unwrap(arg)
    else:
        yield annotation
