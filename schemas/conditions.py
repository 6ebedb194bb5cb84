"""Step conditions: GJSON paths with KServe's meaning, compiled once, evaluated per request.

Owned here: `compile_condition` and `Condition`. Called by `schemas.expressions` (which picks the
condition language) and, through it, by `schemas.graph_rules` (validation at load time) and
`router.graph` (one compile per step; `Condition.holds` per request).

KServe's router runs a step when `gjson.GetBytes(body, condition).Exists()` (Go, tidwall/gjson
v1.18.0, the version KServe pins). Go's gjson is not a parse-then-walk evaluator: it scans raw
JSON, and how the rest of a path is read depends on what it meets. The same text is split one way
against an object and another way against an array; a `|` suffix is applied even to a value that
was not found (so `missing.@keys` exists: it is `[]`); a wildcard key backtracks to the next
matching key when the rest of the path fails; `#(...).rest` stops at the first match even when
`rest` is missing there; `#(a==1)` also matches the string `"1"`.

Why not gjson-py (the `gjson` package), feature by feature: against Go on the differential
test's generator, with its exceptions read as "no match", it agrees on plain keys and simple
pipes only, and disagrees on about 1 in 6 queries, 1 in 4 modifier paths, and on indexes
(`a.01`), `#` after a query, literals and wildcards; it cannot evaluate a query whose key is a path
(`#(name.first=="x")`, KServe's documented `[@this].#(predictions.0=="dog")`). It has no
compile-once entry point either (`gjson.get` re-parses the path on every call), so delegating
even the features it gets right would put path parsing back on the request path. This module is
therefore a port of Go's path logic (`parseObjectPath`, `parseArrayPath`, `parseQuery`,
`splitPossiblePipe`, `parseSubSelectors`, `execModifier`, `execStatic`, `queryMatches`,
tidwall/match) onto parsed JSON values, checked against Go itself by
tests/properties/test_gjson_differential.py.

Compile once: `compile_condition` runs every parsing step of the path, for every suffix and both
readings (object, array), and stores the result; `holds` walks the document with no string
parsing. It never raises for any JSON document.

Invalid syntax (ConditionError): an empty expression, a trailing `\\`, an empty component
(`a..b`, `a.`, `.a`; a leading `..` is Go's JSON-lines prefix and allowed), and a query,
multipath, literal or modifier argument whose brackets or quotes do not close (`#(a=="x"`,
`[a,b`). Go accepts these too and then matches by accident; refusing them at load time is
deliberate.

Known gaps against Go (differences that need the raw request text, which a parsed document no
longer has):
- Duplicate object keys: Go sees the first, the parsed document keeps the last.
- A path applied to a string whose JSON text holds `{` or `[` (the document itself, `s|0`,
  `s.x` after a wildcard, a query key reaching into such a string, anything after `@tostr`): Go
  rescans the string's raw text and may match inside it; we report no match, as Go does for
  every other string.
- `@fromstr` of a string that is not JSON: existence and value agree, but Go keeps the broken
  text as the raw, so a later `@valid` drops it and a multipath around it loses it; here it
  stays a value. `!{...}`/`![...]` literals that are not valid JSON are taken as not existing.
- `@tostr`, `@pretty`, `@ugly` see compact re-encoding, not the client's formatting: `@tostr`'s
  string may differ from Go's, existence never does.
- `@dig`, `@valid` and deep `@flatten` on a document nested deeper than Python's recursion
  limit answer "no match" instead of raising; Go answers.
- Custom modifiers (`gjson.AddModifier`) do not exist in KServe and are not supported.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Final

import orjson

__all__ = ["Condition", "ConditionError", "compile_condition"]


class _Missing:
    """Go's non-existent Result: distinct from JSON null, which exists."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "<missing>"


_MISSING: Final[Any] = _Missing()


class ConditionError(ValueError):
    """A condition that cannot be compiled; the message quotes it and says why."""


@dataclass(frozen=True, slots=True)
class Condition:
    source: str
    _path: _Path = field(repr=False, compare=False)

    def holds(self, document: object) -> bool:
        """KServe's rule: the step runs when the path yields a value (JSON null counts)."""
        return _evaluate(document, self._path) is not _MISSING

    def evaluate(self, document: object) -> tuple[bool, object]:
        """(exists, value); the value is what Go's `Result.Value()` holds, None if absent."""
        value = _evaluate(document, self._path)
        return (False, None) if value is _MISSING else (True, value)


def compile_condition(expression: str) -> Condition:
    """A prepared condition; raises ConditionError for an expression that is not a GJSON path."""
    if not isinstance(expression, str):
        raise ConditionError(f"condition {expression!r}: expected a string")
    problem = _syntax_problem(expression)
    if problem is not None:
        raise ConditionError(f"condition {expression!r}: {problem}")
    try:
        path = _Compiler().path(expression)
    except RecursionError:
        raise ConditionError(f"condition {expression!r}: nested too deeply") from None
    return Condition(expression, path)


def _evaluate(document: object, path: _Path) -> Any:
    try:
        return _get(document, path)
    except RecursionError:
        # Only @dig and deep @flatten recurse with the document's depth; a document deep
        # enough to exhaust the stack answers "no match" rather than failing the request.
        return _MISSING


# --- syntax checks (ours; Go has none) --------------------------------------------------------

_OPENERS: Final = {"(": ")", "[": "]", "{": "}"}


def _syntax_problem(path: str) -> str | None:
    if not path.strip():
        return "empty condition: expected a GJSON path such as 'predictions.0'"
    i, n = 0, len(path)
    component_start = True
    component_first = ""
    if path.startswith(".."):
        i = 2
    while i < n:
        char = path[i]
        if char == "\\":
            if i + 1 >= n:
                return "ends with an unfinished '\\' escape"
            i += 2
            component_start = False
            continue
        if char in ".|":
            if component_start:
                return f"empty path component before {char!r} at position {i}"
            if i == n - 1:
                return f"ends with {char!r}: expected a path component after it"
            component_start, component_first = True, ""
            i += 1
            continue
        if component_start:
            component_first = char
        opens = (
            (char == "#" and i + 1 < n and path[i + 1] in "([")
            or (component_start and char in "[{")
            or (component_start and char == "!" and i + 1 < n and path[i + 1] in '[{"')
            or (component_first == "@" and char == ":" and i + 1 < n and path[i + 1] in '[{"')
        )
        component_start = False
        if opens:
            start = i + 1 if char in "#!:" else i
            end, problem = _skip_balanced(path, start)
            if problem is not None:
                return problem
            i = end
            continue
        i += 1
    return None


def _skip_balanced(path: str, start: int) -> tuple[int, str | None]:
    """Index after the bracket or string opened at `start`, or why it does not close."""
    stack: list[str] = []
    i = start
    while i < len(path):
        char = path[i]
        if char == "\\":
            i += 2
            continue
        if char == '"':
            i += 1
            while i < len(path) and path[i] != '"':
                i += 2 if path[i] == "\\" else 1
            if i >= len(path):
                return i, f"unterminated string starting at position {start}"
            if not stack:
                return i + 1, None
        elif char in _OPENERS:
            stack.append(_OPENERS[char])
        elif char in ")]}":
            if not stack or stack.pop() != char:
                return i, f"unexpected {char!r} at position {i}"
            if not stack:
                return i + 1, None
        i += 1
    return i, f"{path[start]!r} at position {start} is never closed"


# --- compiled paths ---------------------------------------------------------------------------
#
# Go's `Get(json, path)` first tries a modifier (`@name`), a literal (`!...`) or a multipath
# (`[...]`, `{...}`) at the start of the path, then reads the path as an object path or an array
# path depending on the value it meets. `_Path` holds all of that, precomputed.

Modifier = Callable[[Any, "_ModifierArgs"], Any]


@dataclass(slots=True)
class _ModifierArgs:
    text: str  # Go passes the raw argument text
    deep: bool = False  # @flatten
    dig: _Path | None = None  # @dig


@dataclass(slots=True)
class _Head:
    """What Go's Get does before reading a plain path; `rest` is applied to the result."""

    kind: str  # "modifier", "static", "array", "object", "lines", "plain"
    rest: _Path | None = None
    modifier: Modifier | None = None
    args: _ModifierArgs | None = None
    static: Any = None
    selectors: list[tuple[str | None, _Path]] = field(default_factory=list)
    lines: _Path | None = None


@dataclass(slots=True)
class _ObjectStep:
    part: str
    wild: bool
    more: bool
    path: _Path | None  # the rest, when `more`
    pipe: _Path | None  # set when the component ends with `|` (or `.` before @, [, {)


@dataclass(slots=True)
class _ArrayStep:
    part: str
    index: int  # -1: not an index
    arrch: bool
    more: bool
    path: _Path | None
    pipe: _Path | None
    alog: _Path | None = None  # `#.rest`: rest mapped over elements
    alog_pipe: _Path | None = None
    query: bool = False
    query_all: bool = False
    query_path: _Path | None = None
    query_path_empty: bool = True
    query_op: str = ""
    query_value: str = ""
    tilde: str | None = None  # "*", "null", "true", "false", or "" for an unknown ~ token
    query_number: float = 0.0
    rest_left: _Path | None = None  # rest split at its first top-level `|`, as Go does
    rest_pipe: _Path | None = None


@dataclass(slots=True)
class _Path:
    text: str
    head: _Head | None = None
    object: _ObjectStep | None = None
    array: _ArrayStep | None = None


class _Compiler:
    """Compiles a path and every sub-path it can reach; shared sub-paths are compiled once."""

    def __init__(self) -> None:
        self._done: dict[str, _Path] = {}
        self._plain: dict[str, _Path] = {}

    def path(self, text: str) -> _Path:
        known = self._done.get(text)
        if known is not None:
            return known
        compiled = _Path(text)
        # Register before compiling the parts: sub-paths are strictly shorter, so this only
        # shares work, it never closes a loop.
        self._done[text] = compiled
        compiled.head = self._head(text)
        if compiled.head is not None and compiled.head.kind == "lines":
            return compiled
        compiled.object = self._object_step(text)
        compiled.array = self._array_step(text)
        return compiled

    def plain(self, text: str) -> _Path:
        """`text` read as Go's Get reads it once the head checks are behind it: JSON lines or a
        plain object/array path, never a modifier, literal or multipath."""
        known = self._plain.get(text)
        if known is not None:
            return known
        compiled = _Path(text)
        self._plain[text] = compiled
        if text.startswith(".."):
            compiled.head = _Head("lines", lines=self.path(text[2:]))
            return compiled
        compiled.object = self._object_step(text)
        compiled.array = self._array_step(text)
        return compiled

    def _optional(self, text: str | None) -> _Path | None:
        return None if text is None else self.path(text)

    def _rest(self, rest: str) -> _Path | None:
        # Go: after a head, `.x` and `|x` both continue with `x`; anything else is dropped.
        if rest and rest[0] in ".|":
            return self.path(rest[1:])
        return None

    def _head(self, path: str) -> _Head | None:
        if len(path) > 1:
            if path[0] == "@":
                found = _exec_modifier(path)
                if found is not None:
                    name, args_text, rest = found
                    args = _ModifierArgs(args_text)
                    if name == "flatten":
                        args.deep = _bool_option(args_text, "deep")
                    elif name == "dig":
                        args.dig = self.path(args_text)
                    return _Head("modifier", self._rest(rest), _MODIFIERS[name], args)
            if path[0] == "!":
                static = _exec_static(path)
                if static is not None:
                    raw, rest = static
                    return _Head("static", self._rest(rest), static=_go_parse(raw))
            if path[0] in "[{":
                parsed = _parse_sub_selectors(path)
                # Go's Get overwrites its path with what parseSubSelectors leaves over ("" when
                # it fails), so a multipath followed by anything but `.` or `|` (`[@this]#.a`)
                # drops the multipath and reads only the leftover, as a plain path.
                if parsed is None:
                    return _Head("plain", self.plain(""))
                selectors, rest = parsed
                if rest and rest[0] not in ".|":
                    return _Head("plain", self.plain(rest))
                head = _Head("array" if path[0] == "[" else "object", self._rest(rest))
                for key, sub in selectors:
                    head.selectors.append((key, self.path(sub)))
                return head
        if path.startswith(".."):
            return _Head("lines", lines=self.path(path[2:]))
        return None

    def _object_step(self, path: str) -> _ObjectStep:
        part, rest, pipe, wild = _parse_object_path(path)
        return _ObjectStep(part, wild, rest is not None, self._optional(rest), self._optional(pipe))

    def _array_step(self, path: str) -> _ArrayStep:
        r = _parse_array_path(path)
        step = _ArrayStep(
            part=r.part,
            index=-1 if r.arrch else _go_index(r.part),
            arrch=r.arrch,
            more=r.path is not None,
            path=self._optional(r.path),
            pipe=self._optional(r.pipe),
        )
        if r.alogok:
            left, right = _split_possible_pipe(r.alogkey)
            step.alog = self.path(left)
            step.alog_pipe = self._optional(right)
        if r.query:
            step.query = True
            step.query_all = r.query_all
            step.query_path = self.path(r.query_path)
            step.query_path_empty = r.query_path == ""
            step.query_op = r.query_op
            value = r.query_value
            if value.startswith("~"):
                token = value[1:]
                step.tilde = token if token in ("*", "null", "true", "false") else ""
            step.query_value = value
            step.query_number = _go_parse_float(value)
        if r.query and r.path is not None:
            left, right = _split_possible_pipe(r.path)
            step.rest_left = self.path(left)
            step.rest_pipe = self._optional(right)
        return step


# --- Go's path parsers, ported (compile time only) --------------------------------------------


def _is_dot_piper(s: str) -> bool:
    """Go's isDotPiperChar: after `.`, a modifier, `[` or `{` starts a piped component."""
    c = s[0]
    if c == "@":
        i = 1
        while i < len(s) and s[i] not in ".|:":
            i += 1
        return s[1:i] in _MODIFIERS
    return c in "[{"


def _parse_object_path(path: str) -> tuple[str, str | None, str | None, bool]:
    """(part, rest after `.`, rest after `|`, wild); Go's parseObjectPath."""
    wild = False
    n = len(path)
    i = 0
    while i < n:
        c = path[i]
        if c == "|":
            return path[:i], None, path[i + 1 :], wild
        if c == ".":
            if i < n - 1 and _is_dot_piper(path[i + 1 :]):
                return path[:i], None, path[i + 1 :], wild
            return path[:i], path[i + 1 :], None, wild
        if c in "*?":
            wild = True
        elif c == "\\":
            # Go drops each `\` and keeps the character after it, so `\*` reaches the matcher as
            # a plain `*`; the port keeps that.
            part = list(path[:i])
            i += 1
            if i < n:
                part.append(path[i])
                i += 1
                while i < n:
                    c = path[i]
                    if c == "\\":
                        i += 1
                        if i < n:
                            part.append(path[i])
                        i += 1
                        continue
                    if c == ".":
                        if i < n - 1 and _is_dot_piper(path[i + 1 :]):
                            return "".join(part), None, path[i + 1 :], wild
                        return "".join(part), path[i + 1 :], None, wild
                    if c == "|":
                        return "".join(part), None, path[i + 1 :], wild
                    if c in "*?":
                        wild = True
                    part.append(c)
                    i += 1
            return "".join(part), None, None, wild
        i += 1
    return path, None, None, wild


@dataclass(slots=True)
class _ArrayPath:
    part: str = ""
    path: str | None = None
    pipe: str | None = None
    arrch: bool = False
    alogok: bool = False
    alogkey: str = ""
    query: bool = False
    query_all: bool = False
    query_path: str = ""
    query_op: str = ""
    query_value: str = ""


def _parse_array_path(path: str) -> _ArrayPath:
    """Go's parseArrayPath."""
    r = _ArrayPath()
    n = len(path)
    i = 0
    while i < n:
        c = path[i]
        if c == "|":
            r.part, r.pipe = path[:i], path[i + 1 :]
            return r
        if c == ".":
            r.part = path[:i]
            if not r.arrch and i < n - 1 and _is_dot_piper(path[i + 1 :]):
                r.pipe = path[i + 1 :]
            else:
                r.path = path[i + 1 :]
            return r
        if c == "#":
            r.arrch = True
            if i == 0 and n > 1:
                if path[1] == ".":
                    r.alogok = True
                    r.alogkey = path[2:]
                elif path[1] in "[(":
                    r.query = True
                    parsed = _parse_query(path)
                    if parsed is None:
                        break  # Go: "bad query, end now" -- an empty query over the rest
                    qpath, op, value, end, vesc = parsed
                    if len(value) >= 2 and value[0] == '"' and value[-1] == '"':
                        value = value[1:-1]
                        if vesc:
                            value = _go_unescape(value)
                    r.query_path, r.query_op, r.query_value = qpath, op, value
                    i = end - 1
                    if i + 1 < n and path[i + 1] == "#":
                        r.query_all = True
        i += 1
    r.part = path
    r.path = None
    return r


def _parse_query(query: str) -> tuple[str, str, str, int, bool] | None:
    """Go's parseQuery: (path, op, value, index after the closing bracket, value escaped)."""
    n = len(query)
    i, j, depth, vesc = 2, 0, 1, False
    while i < n:
        c = query[i]
        if depth == 1 and j == 0 and c in "!=<>%":
            j = i
            i += 1
            continue
        if c == "\\":
            i += 1
        elif c in "[(":
            depth += 1
        elif c in "])":
            depth -= 1
            if depth == 0:
                break
        elif c == '"':
            i += 1
            while i < n:
                if query[i] == "\\":
                    vesc = True
                    i += 1
                elif query[i] == '"':
                    break
                i += 1
        i += 1
    if depth > 0:
        return None
    if j > 0:
        path = _go_trim(query[2:j])
        value = _go_trim(query[j:i])
        if len(value) == 1:
            size = 1
        elif value[:2] in ("!=", "!%", "<=", ">="):
            size = 2
        elif value[:2] == "==":
            value, size = value[1:], 1
        elif value[0] in "<>=%":
            size = 1
        else:
            size = 0
        return path, value[:size], _go_trim(value[size:]), i + 1, vesc
    return _go_trim(query[2:i]), "", "", i + 1, vesc


def _go_trim(s: str) -> str:
    start, end = 0, len(s)
    while start < end and s[start] <= " ":
        start += 1
    while end > start and s[end - 1] <= " ":
        end -= 1
    return s[start:end]


def _split_possible_pipe(path: str) -> tuple[str, str | None]:
    """Go's splitPossiblePipe: the rest of a path, split at its first top-level `|`."""
    if "|" not in path:
        return path, None
    if path[0] == "{":
        squashed = _squash(path[1:])
        if len(squashed) < len(path) - 1:
            squashed = path[: len(squashed) + 1]
            remain = path[len(squashed) :]
            if remain[0] == "|":
                return squashed, remain[1:]
        return path, None
    n = len(path)
    i = 0
    while i < n:
        c = path[i]
        if c == "\\":
            i += 1
        elif c == ".":
            if i == n - 1:
                return path, None
            if path[i + 1] == "#":
                i += 2
                if i == n:
                    return path, None
                if path[i] in "[(":
                    start, end = (path[i], "]" if path[i] == "[" else ")")
                    i += 1
                    depth = 1
                    while i < n:
                        if path[i] == "\\":
                            i += 1
                        elif path[i] == start:
                            depth += 1
                        elif path[i] == end:
                            depth -= 1
                            if depth == 0:
                                break
                        elif path[i] == '"':
                            i += 1
                            while i < n:
                                if path[i] == "\\":
                                    i += 1
                                elif path[i] == '"':
                                    break
                                i += 1
                        i += 1
        elif c == "|":
            return path[:i], path[i + 1 :]
        i += 1
    return path, None


def _squash(json: str) -> str:
    """Go's squash: the leading bracketed value or string of `json`, or all of it."""
    i, depth = (0, 0) if json[:1] == '"' else (1, 1)
    n = len(json)
    while i < n:
        c = json[i]
        if '"' <= c <= "}":
            if c == '"':
                i += 1
                s2 = i
                while i < n:
                    if json[i] > "\\":
                        i += 1
                        continue
                    if json[i] == '"':
                        if json[i - 1] == "\\":
                            backslashes = 0
                            j = i - 2
                            while j > s2 - 1 and json[j] == "\\":
                                backslashes += 1
                                j -= 1
                            if backslashes % 2 == 0:
                                i += 1
                                continue
                        break
                    i += 1
                if depth == 0:
                    return json if i >= n else json[: i + 1]
            elif c in "{[(":
                depth += 1
            elif c in "}])":
                depth -= 1
                if depth == 0:
                    return json[: i + 1]
        i += 1
    return json


def _parse_squash(json: str) -> str:
    """Go's parseSquash from index 0: the first character counts as an opening bracket."""
    depth, i, n = 1, 1, len(json)
    while i < n:
        c = json[i]
        if c == '"':
            i += 1
            s2 = i
            while i < n:
                if json[i] != '"':
                    i += 1
                    continue
                if json[i - 1] == "\\":
                    backslashes = 0
                    j = i - 2
                    while j > s2 - 1 and json[j] == "\\":
                        backslashes += 1
                        j -= 1
                    if backslashes % 2 == 0:
                        i += 1
                        continue
                break
        elif c in "{[(":
            depth += 1
        elif c in "}])":
            depth -= 1
            if depth == 0:
                return json[: i + 1]
        i += 1
    return json


def _parse_sub_selectors(path: str) -> tuple[list[tuple[str | None, str]], str] | None:
    """Go's parseSubSelectors: ([(name, path)], rest after the closing bracket)."""
    selectors: list[tuple[str | None, str]] = []
    modifier = colon = 0
    depth, start, i, n = 1, 1, 1, len(path)

    def push() -> None:
        nonlocal colon, modifier, start
        if colon == 0:
            selectors.append((None, path[start:i]))
        else:
            selectors.append((path[start:colon], path[colon + 1 : i]))
        colon = modifier = 0
        start = i + 1

    while i < n:
        c = path[i]
        if c == "\\":
            i += 1
        elif c == "@":
            if modifier == 0 and i > 0 and path[i - 1] in ".|":
                modifier = i
        elif c == ":":
            if modifier == 0 and colon == 0 and depth == 1:
                colon = i
        elif c == ",":
            if depth == 1:
                push()
        elif c == '"':
            i += 1
            while i < n:
                if path[i] == "\\":
                    i += 1
                elif path[i] == '"':
                    break
                i += 1
        elif c in "[({":
            depth += 1
        elif c in "])}":
            depth -= 1
            if depth == 0:
                push()
                return selectors, path[i + 1 :]
        i += 1
    return None


def _name_of_last(path: str) -> str:
    for i in range(len(path) - 1, -1, -1):
        if path[i] in "|.":
            if i > 0 and path[i - 1] == "\\":
                continue
            return path[i + 1 :]
    return path


def _is_simple_name(component: str) -> bool:
    return not any(c < " " or c in "[]{}()#|!" for c in component)


def _exec_modifier(path: str) -> tuple[str, str, str] | None:
    """Go's execModifier, parsing only: (name, argument text, rest of the path)."""
    name, rest, has_args = path[1:], "", False
    for i in range(1, len(path)):
        if path[i] == ":":
            rest, name = path[i + 1 :], path[1:i]
            has_args = len(rest) > 0
            break
        if path[i] in "|.":
            rest, name = path[i:], path[1:i]
            break
    if name not in _MODIFIERS:
        return None
    args = ""
    if has_args:
        if rest[0] in '{["':
            # Go's `Parse(rest).Exists()` holds for any text starting with these.
            args = _squash(rest)
            rest = rest[len(args) :]
        else:
            i = 0
            while i < len(rest):
                if rest[i] == "|":
                    break
                if rest[i] in '{["(':
                    i += len(_squash(rest[i:])) - 1
                i += 1
            args, rest = rest[:i], rest[i:]
    return name, args, rest


def _exec_static(path: str) -> tuple[str, str] | None:
    """Go's execStatic: (raw literal, rest of the path) for `!true`, `!"x"`, `!{...}`, ..."""
    name = path[1:]
    if name and name[0] in '{["+-0123456789':
        raw = _parse_squash(name)
        return raw, name[len(raw) :]
    rest = ""
    for i in range(1, len(path)):
        if path[i] in "|.":
            rest, name = path[i:], path[1:i]
            break
    if name.lower() in ("true", "false", "null", "nan", "inf"):
        return name, rest
    return None


# --- Go's scalar readers ----------------------------------------------------------------------

_DECIMAL = re.compile(r"[+-]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")
_HEX = re.compile(r"[+-]?0[xX](?:[0-9a-fA-F]+\.?[0-9a-fA-F]*|\.[0-9a-fA-F]+)[pP][+-]?[0-9]+")


def _go_parse_float(s: str) -> float:
    """strconv.ParseFloat(s, 64) as gjson uses it: the error is ignored, so bad input is 0."""
    if _DECIMAL.fullmatch(s):
        return float(s)  # overflow gives ±inf, as Go's range error does
    lowered = s.lower()
    body = lowered[1:] if lowered[:1] in "+-" else lowered
    if body in ("inf", "infinity"):
        return -math.inf if lowered[0] == "-" else math.inf
    if lowered == "nan":
        return math.nan
    if _HEX.fullmatch(s):
        try:
            return float.fromhex(s)
        except (ValueError, OverflowError):
            return 0.0
    return 0.0


def _go_index(part: str) -> int:
    """parseUint as parseArray uses it: digits only, uint64 wrap-around, then int conversion."""
    if not part or not all("0" <= c <= "9" for c in part):
        return -1
    n = int(part) % (1 << 64)
    return n - (1 << 64) if n >= 1 << 63 else n


def _go_unescape(s: str) -> str:
    """Go's unescape for JSON string contents: stops at a control character or bad escape."""
    out: list[str] = []
    i, n = 0, len(s)
    simple = {"\\": "\\", "/": "/", "b": "\b", "f": "\f", "n": "\n", "r": "\r", "t": "\t"}
    simple['"'] = '"'
    while i < n:
        c = s[i]
        if c < " ":
            break
        if c != "\\":
            out.append(c)
            i += 1
            continue
        i += 1
        if i >= n:
            break
        e = s[i]
        if e in simple:
            out.append(simple[e])
            i += 1
            continue
        if e != "u" or i + 5 > n:
            break
        r = _hex4(s[i + 1 : i + 5])
        i += 5
        if 0xD800 <= r < 0xE000 and s[i : i + 2] == "\\u" and len(s) - i >= 6:
            low = _hex4(s[i + 2 : i + 6])
            i += 6
            r = (
                0x10000 + ((r - 0xD800) << 10) + (low - 0xDC00)
                if r < 0xDC00 and 0xDC00 <= low < 0xE000
                else 0xFFFD
            )
        out.append("\ufffd" if 0xD800 <= r < 0xE000 else chr(r))
    return "".join(out)


def _hex4(s: str) -> int:
    try:
        return int(s, 16) if len(s) == 4 and s.isascii() and s.isalnum() else 0
    except ValueError:
        return 0


def _go_parse(json: str) -> Any:
    """Go's Parse: the first value in `json`, read leniently; _MISSING if there is none."""
    for i, c in enumerate(json):
        if c in "{[":
            try:
                return orjson.loads(json[i:])
            except orjson.JSONDecodeError:
                return _MISSING  # Go keeps the raw text; see the module's known gaps
        if c <= " ":
            continue
        rest = json[i:]
        if c in "+-0123456789iIN" or (c == "n" and rest[1:2] not in ("u", "")):
            return _go_parse_float(_tonum(rest))
        if c == "n":
            return None
        if c == "t":
            return True
        if c == "f":
            return False
        if c == '"':
            return _tostr(rest)
        return _MISSING
    return _MISSING


def _tonum(json: str) -> str:
    for i in range(1, len(json)):
        c = json[i]
        if (c <= "-" and (c <= " " or c == ",")) or c in "]}":
            return json[:i]
    return json


def _tostr(json: str) -> str:
    i, n = 1, len(json)
    while i < n:
        c = json[i]
        if c == '"':
            return json[1:i]
        if c == "\\":
            i += 1
            while i < n:
                if json[i] == '"' and json[i - 1] != "\\":
                    return _go_unescape(json[1:i])
                if json[i] == '"':
                    backslashes = 0
                    j = i - 2
                    while j > 0 and json[j] == "\\":
                        backslashes += 1
                        j -= 1
                    if backslashes % 2 == 1:
                        return _go_unescape(json[1:i])
                i += 1
            return _go_unescape(json[1:i])
        i += 1
    return json[1:]


def _bool_option(args: str, name: str) -> bool:
    """`Parse(arg).ForEach(...)` then `value.Bool()`, for @flatten's {"deep": true}."""
    try:
        options = orjson.loads(args) if args else None
    except orjson.JSONDecodeError:
        return False
    if not isinstance(options, dict) or name not in options:
        return False
    value = options[name]
    if isinstance(value, bool):
        return value
    if isinstance(value, str):
        return value.lower() in ("1", "t", "true")
    if isinstance(value, int | float):
        return value != 0
    return False


# --- tidwall/match -----------------------------------------------------------------------------


def _match(text: str, pattern: str) -> bool:
    """match.MatchLimit(text, pattern, 10000): `*`, `?` and `\\` escapes, with a work limit."""
    if pattern == "*":
        return True
    budget = [len(text) * 10000]
    return _match_from(text, pattern, budget) == 1


def _match_from(s: str, p: str, budget: list[int]) -> int:
    """1 match, 0 no match, 2 gave up (counts as no match), as tidwall/match's result codes."""
    if budget[0] < 0:
        return 2
    budget[0] -= 1
    while p:
        wild = False
        pc = p[0]
        has_s = bool(s)
        if pc == "?":
            if not has_s:
                return 0
        elif pc == "*":
            while len(p) > 1 and p[1] == "*":
                p = p[1:]
            if len(p) == 1:
                return 1
            trimmed = _match_trim_suffix(s, p)
            if trimmed is None:
                return 0
            s, p = trimmed
            if len(p) == 1:
                return 1
            result = _match_from(s, p[1:], budget)
            if result != 0:
                return result
            if not s:
                return 0
            wild = True
        else:
            if not has_s:
                return 0
            if pc == "\\":
                p = p[1:]
                if not p:
                    return 0
                pc = p[0]
            if s[0] != pc:
                return 0
        s = s[1:]
        if not wild:
            p = p[1:]
    return 1 if not s else 0


def _match_trim_suffix(s: str, p: str) -> tuple[str, str] | None:
    while s and len(p) > 1:
        pc = p[-1]
        size = 1
        backslashes = 0
        while len(p) - size - backslashes - 1 >= 0 and p[len(p) - size - backslashes - 1] == "\\":
            backslashes += 1
        escaped = backslashes % 2 == 1
        if escaped:
            size += 1
        if pc == "*" and not escaped:
            break
        if not ((pc == "?" and not escaped) or pc == s[-1]):
            return None
        s = s[:-1]
        p = p[: len(p) - size]
    return s, p


# --- evaluation (per request) -----------------------------------------------------------------


class _Context:
    """Go's parseContext: the value found so far and the pipe to apply to it."""

    __slots__ = ("pipe", "value")

    def __init__(self) -> None:
        self.value: Any = _MISSING
        self.pipe: _Path | None = None


def _get(value: Any, path: _Path) -> Any:
    """Go's `Get(raw(value), path)`; `value` may be _MISSING (Go's empty text)."""
    head = path.head
    if head is not None:
        if head.kind == "lines":
            # JSON lines (`..`): the body is one document, so the stream is a one-element array.
            context = _Context()
            if head.lines is not None:
                _parse_array(context, [] if value is _MISSING else [value], head.lines)
            return context.value if context.pipe is None else _get(context.value, context.pipe)
        if head.kind == "plain":
            return _MISSING if head.rest is None else _get(value, head.rest)
        if head.kind == "modifier":
            if head.modifier is None or head.args is None:
                return _MISSING
            result = head.modifier(value, head.args)
        elif head.kind == "static":
            result = head.static
        else:
            result = _select(value, head)
        return result if head.rest is None else _get(result, head.rest)
    context = _Context()
    if isinstance(value, dict):
        _parse_object(context, value, path)
    elif isinstance(value, list):
        _parse_array(context, value, path)
    # A scalar has no members; Go would rescan a string's raw text (see known gaps).
    if context.pipe is not None:
        return _get(context.value, context.pipe)
    return context.value


def _select(value: Any, head: _Head) -> Any:
    if head.kind == "array":
        return [r for _, sub in head.selectors if (r := _get(value, sub)) is not _MISSING]
    built: dict[str, Any] = {}
    for name, sub in head.selectors:
        result = _get(value, sub)
        if result is _MISSING:
            continue
        built[_selector_key(name, sub.text)] = result
    return built


def _selector_key(name: str | None, sub: str) -> str:
    if name:
        if name[0] == '"':
            try:
                decoded = orjson.loads(name)
            except orjson.JSONDecodeError:
                return name
            if isinstance(decoded, str):
                return decoded
        return name
    last = _name_of_last(sub)
    return last if _is_simple_name(last) else "_"


def _parse_object(context: _Context, obj: dict[str, Any], path: _Path) -> bool:
    step = path.object
    if step is None:
        return False
    if step.pipe is not None:
        context.pipe = step.pipe
    if not step.wild:
        found = obj.get(step.part, _MISSING)
        if found is _MISSING:
            return False
        return _descend(context, found, step.more, step.path)
    for key, found in obj.items():
        if _match(key, step.part) and _descend(context, found, step.more, step.path):
            return True
    return False


def _descend(context: _Context, found: Any, more: bool, rest: _Path | None) -> bool:
    if not more:
        context.value = found
        return True
    if rest is None:
        return False
    if isinstance(found, dict):
        return _parse_object(context, found, rest)
    if isinstance(found, list):
        return _parse_array(context, found, rest)
    return False


def _parse_array(context: _Context, array: list[Any], path: _Path) -> bool:
    step = path.array
    if step is None:
        return False
    if step.pipe is not None:
        context.pipe = step.pipe
    if step.query:
        matches: list[Any] = []
        for element in array:
            if _query_element(context, step, element, matches):
                return True
        if context.value is _MISSING and step.query_all:
            context.value = matches
        return False
    if step.arrch:
        if step.part != "#":
            return False
        if step.alog is not None:
            if step.alog_pipe is not None:
                context.pipe = step.alog_pipe
            alog = step.alog
            context.value = [r for e in array if (r := _get(e, alog)) is not _MISSING]
            return True
        context.value = len(array)
        return True
    if not 0 <= step.index < len(array):
        return False
    return _descend(context, array[step.index], step.more, step.path)


def _query_element(context: _Context, step: _ArrayStep, element: Any, matches: list[Any]) -> bool:
    if isinstance(element, dict | list):
        subject = _MISSING if step.query_path is None else _get(element, step.query_path)
    elif not step.query_path_empty:
        return False
    else:
        subject = element
    if not _query_matches(step, subject):
        return False
    result = element
    if step.more:
        if step.rest_pipe is not None:
            context.pipe = step.rest_pipe
        result = _MISSING if step.rest_left is None else _get(element, step.rest_left)
    if step.query_all:
        if result is not _MISSING:
            matches.append(result)
        return False
    context.value = result
    return True


def _query_matches(step: _ArrayStep, value: Any) -> bool:
    literal = step.query_value
    number = step.query_number
    if step.tilde is not None:
        if step.tilde == "":
            return False  # Go compares an unknown ~token against a non-existent value
        ish = _tilde(step.tilde, value)
        value, literal = ish, "true"
    if value is _MISSING:
        return False
    op = step.query_op
    if op == "":
        return True
    if value is True:
        return {"=": literal == "true", "!=": literal != "true", ">": literal == "false"}.get(
            op, op == ">="
        )
    if value is False:
        return {"=": literal == "false", "!=": literal != "false", "<": literal == "true"}.get(
            op, op == "<="
        )
    if isinstance(value, str):
        return _compare_strings(value, literal, op)
    if isinstance(value, int | float):
        return _compare_numbers(_as_float(value), number, op)
    return False


def _tilde(kind: str, value: Any) -> bool:
    if kind == "*":
        return value is not _MISSING
    if kind == "null":
        return value is None or value is _MISSING
    truth = _go_parse_bool(value) if isinstance(value, str) else None
    if kind == "true":
        if value is True:
            return True
        if isinstance(value, str):
            return truth is True
        return isinstance(value, int | float) and not isinstance(value, bool) and value != 0
    if value is None or value is _MISSING or value is False:
        return True
    if isinstance(value, str):
        return truth is False
    return isinstance(value, int | float) and not isinstance(value, bool) and value == 0


def _go_parse_bool(text: str) -> bool | None:
    lowered = text.lower()
    if lowered in ("1", "t", "true"):
        return True
    if lowered in ("0", "f", "false"):
        return False
    return None


def _compare_strings(value: str, literal: str, op: str) -> bool:
    if op == "=":
        return value == literal
    if op == "!=":
        return value != literal
    if op == "<":
        return value < literal
    if op == "<=":
        return value <= literal
    if op == ">":
        return value > literal
    if op == ">=":
        return value >= literal
    if op == "%":
        return _match(value, literal)
    if op == "!%":
        return not _match(value, literal)
    return False


def _compare_numbers(value: float, literal: float, op: str) -> bool:
    if op == "=":
        return value == literal
    if op == "!=":
        return value != literal
    if op == "<":
        return value < literal
    if op == "<=":
        return value <= literal
    if op == ">":
        return value > literal
    if op == ">=":
        return value >= literal
    return False


def _as_float(value: int | float) -> float:
    try:
        return float(value)
    except OverflowError:
        return math.inf if value > 0 else -math.inf


# --- modifiers --------------------------------------------------------------------------------


def _mod_this(value: Any, args: _ModifierArgs) -> Any:
    return value


def _mod_reverse(value: Any, args: _ModifierArgs) -> Any:
    if isinstance(value, list):
        return value[::-1]
    if isinstance(value, dict):
        return dict(reversed(value.items()))
    return value


def _mod_flatten(value: Any, args: _ModifierArgs) -> Any:
    if not isinstance(value, list):
        return value
    flat: list[Any] = []
    for item in value:
        if isinstance(item, list):
            flat.extend(_mod_flatten(item, args) if args.deep else item)
        else:
            flat.append(item)
    return flat


def _mod_join(value: Any, args: _ModifierArgs) -> Any:
    if not isinstance(value, list):
        return value
    joined: dict[str, Any] = {}
    for item in value:
        if isinstance(item, dict):
            joined.update(item)
    return joined


def _mod_valid(value: Any, args: _ModifierArgs) -> Any:
    return _MISSING if _has_non_finite(value) else value


def _has_non_finite(value: Any) -> bool:
    if isinstance(value, float):
        return not math.isfinite(value)
    if isinstance(value, list):
        return any(_has_non_finite(v) for v in value)
    if isinstance(value, dict):
        return any(_has_non_finite(v) for v in value.values())
    return False


def _mod_keys(value: Any, args: _ModifierArgs) -> Any:
    if value is _MISSING:
        return []
    if isinstance(value, dict):
        return list(value)
    if isinstance(value, list):
        return [None] * len(value)
    return [None]


def _mod_values(value: Any, args: _ModifierArgs) -> Any:
    if value is _MISSING:
        return []
    if isinstance(value, dict):
        return list(value.values())
    if isinstance(value, list):
        return value
    return [value]


def _raw(value: Any) -> str:
    if value is _MISSING:
        return ""
    try:
        return orjson.dumps(value).decode()
    except (TypeError, orjson.JSONEncodeError):
        return ""


def _mod_tostr(value: Any, args: _ModifierArgs) -> Any:
    return _raw(value)


def _mod_fromstr(value: Any, args: _ModifierArgs) -> Any:
    if value is _MISSING or value is None or _has_non_finite(value):
        return _MISSING
    if isinstance(value, str):
        return _go_parse(value)
    return value


def _mod_group(value: Any, args: _ModifierArgs) -> Any:
    if not isinstance(value, dict):
        return _MISSING
    rows: list[dict[str, Any]] = []
    for key, column in value.items():
        if not isinstance(column, list):
            continue
        for index, item in enumerate(column):
            if index == len(rows):
                rows.append({})
            rows[index][key] = item
    return rows


def _mod_dig(value: Any, args: _ModifierArgs) -> Any:
    found: list[Any] = []
    if args.dig is not None:
        _dig(value, args.dig, found)
    return found


def _dig(value: Any, path: _Path, found: list[Any]) -> None:
    result = _get(value, path)
    if result is not _MISSING:
        found.append(result)
    if isinstance(value, dict):
        for child in value.values():
            _dig(child, path, found)
    elif isinstance(value, list):
        for child in value:
            _dig(child, path, found)


_MODIFIERS: Final[dict[str, Modifier]] = {
    "pretty": _mod_this,
    "ugly": _mod_this,
    "reverse": _mod_reverse,
    "this": _mod_this,
    "flatten": _mod_flatten,
    "join": _mod_join,
    "valid": _mod_valid,
    "keys": _mod_keys,
    "values": _mod_values,
    "tostr": _mod_tostr,
    "fromstr": _mod_fromstr,
    "group": _mod_group,
    "dig": _mod_dig,
}
