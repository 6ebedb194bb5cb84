"""Conditions in three languages, chosen per graph, per step, or by a prefix on the condition.

GJSON (KServe's, the default) holds when the path yields a value; JMESPath and JSONPath hold
when the result is truthy in JMESPath's sense (not null, false, or an empty string, list or
object) and when at least one node matches, respectively. A prefix (`jmespath:`, `jsonpath:`,
`gjson:`) overrides the step's and the graph's `conditionLanguage`. Everything is compiled here
once; `holds` never raises on any JSON document.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import jmespath
from jsonpath_ng.ext.parser import parse as jsonpath_parse

from schemas.conditions import ConditionError, compile_condition
from schemas.graph import ConditionLanguage

PREFIXES = {f"{language.value}:": language for language in ConditionLanguage}


@dataclass(frozen=True, slots=True)
class Expression:
    source: str
    language: ConditionLanguage
    _holds: Callable[[Any], bool]

    def holds(self, document: object) -> bool:
        return self._holds(document)


def split_prefix(
    text: str, default: ConditionLanguage = ConditionLanguage.GJSON
) -> tuple[ConditionLanguage, str]:
    for prefix, language in PREFIXES.items():
        if text.startswith(prefix):
            return language, text[len(prefix) :].strip()
    return default, text


def compile_expression(
    text: str, default: ConditionLanguage = ConditionLanguage.GJSON
) -> Expression:
    """Raises ConditionError naming the language and the expression when it does not compile."""
    language, body = split_prefix(text, default)
    if language is ConditionLanguage.GJSON:
        return Expression(text, language, compile_condition(body).holds)
    if language is ConditionLanguage.JMESPATH:
        try:
            parsed = jmespath.compile(body)
        except jmespath.exceptions.JMESPathError as error:
            raise ConditionError(f"JMESPath condition {body!r}: {error}") from None
        return Expression(text, language, _jmespath_holds(parsed))
    try:
        path = jsonpath_parse(body)
    except Exception as error:
        # jsonpath-ng's lexer raises bare Exceptions for some malformed input.
        raise ConditionError(f"JSONPath condition {body!r}: {error}") from None
    return Expression(text, language, _jsonpath_holds(path))


def _jmespath_holds(parsed: Any) -> Callable[[Any], bool]:
    def holds(document: Any) -> bool:
        try:
            result = parsed.search(document)
        except jmespath.exceptions.JMESPathError:
            return False
        return result not in (None, False, "", [], {})

    return holds


def _jsonpath_holds(path: Any) -> Callable[[Any], bool]:
    def holds(document: Any) -> bool:
        try:
            return bool(path.find(document))
        except Exception:  # a query error on odd data is "no match", never a 500
            return False

    return holds
