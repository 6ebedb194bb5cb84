"""Step `data`: what body a step receives, compiled once from the graph.

KServe's two values stay as they are: `$request` (the graph's request) and `$response` (the
previous step's response). InferGraph adds paths into either, `$request.instances` or
`$response.predictions[0]` (dotted keys, `[n]` indexes, `["key"]` for odd keys), and templates:
a JSON object whose string leaves may be such paths, e.g.
`{"instances": "$response.predictions", "meta": "$request.meta"}`; other leaves are literals.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import orjson

REQUEST, RESPONSE = "$request", "$response"
_SEGMENT = re.compile(r"""\.([A-Za-z_][\w\-]*)|\[(\d+)\]|\[("(?:[^"\\]|\\.)*")\]""")


class MappingError(ValueError):
    """A `data` expression that does not compile."""


class MissingValue(LookupError):
    """A path found nothing in a body; `source` says which body ("$request"/"$response")."""

    def __init__(self, source: str, path: str) -> None:
        super().__init__(f"{path} matched nothing in the {source[1:]}")
        self.source = source
        self.path = path


@dataclass(frozen=True, slots=True)
class Path:
    source: str  # REQUEST or RESPONSE
    text: str
    keys: tuple[str | int, ...]

    def get(self, document: Any) -> Any:
        value = document
        for key in self.keys:
            # JSON semantics: indexes only into arrays, keys only into objects ("ab"[0] is not
            # a match, nor is {"0": x}[0]).
            container = list if isinstance(key, int) else dict
            if not isinstance(value, container):
                raise MissingValue(self.source, self.text)
            try:
                value = value[key]  # type: ignore[index]
            except (KeyError, IndexError):
                raise MissingValue(self.source, self.text) from None
        return value


@dataclass(frozen=True, slots=True)
class DataMapping:
    """How to build a step's body. `whole` is set for plain $request / $response."""

    whole: str | None
    build: Callable[[Any, Any], Any] | None  # (request_json, response_json) -> body
    uses: frozenset[str]  # which bodies the mapping reads


def compile_path(text: str) -> Path:
    for source in (REQUEST, RESPONSE):
        if text == source or text.startswith((source + ".", source + "[")):
            rest = text[len(source) :]
            keys: list[str | int] = []
            position = 0
            while position < len(rest):
                match = _SEGMENT.match(rest, position)
                if match is None:
                    raise MappingError(f"{text!r}: cannot read the path at {rest[position:]!r}")
                name, index, quoted = match.groups()
                if name is not None:
                    keys.append(name)
                elif index is not None:
                    keys.append(int(index))
                else:
                    keys.append(orjson.loads(quoted))
                position = match.end()
            return Path(source, text, tuple(keys))
    raise MappingError(f"{text!r} must start with $request or $response")


def is_path(value: object) -> bool:
    return isinstance(value, str) and value.startswith(("$request", "$response"))


def compile_data(data: str | dict[str, Any] | None) -> DataMapping:
    """The mapping for a step's `data`; None means KServe's default ($request)."""
    if data is None or data == REQUEST:
        return DataMapping(REQUEST, None, frozenset({REQUEST}))
    if data == RESPONSE:
        return DataMapping(RESPONSE, None, frozenset({RESPONSE}))
    if isinstance(data, str):
        path = compile_path(data)
        return DataMapping(None, _from_path(path), frozenset({path.source}))
    uses: set[str] = set()
    build = _template(data, uses)
    return DataMapping(None, build, frozenset(uses))


def _from_path(path: Path) -> Callable[[Any, Any], Any]:
    if path.source == REQUEST:
        return lambda request, response: path.get(request)
    return lambda request, response: path.get(response)


def _template(node: Any, uses: set[str]) -> Callable[[Any, Any], Any]:
    if is_path(node):
        path = compile_path(node)
        uses.add(path.source)
        return _from_path(path)
    if isinstance(node, dict):
        parts = [(key, _template(value, uses)) for key, value in node.items()]
        return lambda request, response: {k: f(request, response) for k, f in parts}
    if isinstance(node, list):
        items = [_template(value, uses) for value in node]
        return lambda request, response: [f(request, response) for f in items]
    return lambda request, response: node
