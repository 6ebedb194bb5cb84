"""Conditions in three languages, chosen per graph, per step, or by a prefix on the condition.

GJSON (KServe's, the default) holds when the path yields a value; JMESPath and JSONPath hold
when the result is truthy in JMESPath's sense (not null, false, or an empty string, list or
object) and when at least one node matches, respectively. A prefix (`jmespath:`, `jsonpath:`,
`gjson:`) overrides the step's and the graph's `conditionLanguage`. Everything is compiled here
once. `holds` never raises on any JSON document: a condition whose evaluation fails (JMESPath
comparing a number with a string, a function given the wrong type) does not hold, as a GJSON
path that finds nothing does not. `evaluate` says why instead, for `infergraph check`, which
reports such a condition as a finding.
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


class ConditionEvaluationError(ValueError):
    """A condition's evaluation failed on a document; the message quotes the condition."""


@dataclass(frozen=True, slots=True)
class Expression:
    source: str
    language: ConditionLanguage
    _evaluate: Callable[[Any], bool]  # raises ConditionEvaluationError

    def holds(self, document: object) -> bool:
        """Whether the condition holds; False when its evaluation fails."""
        try:
            return self._evaluate(document)
        except ConditionEvaluationError:
            return False

    def evaluate(self, document: object) -> bool:
        """Whether the condition holds; raises ConditionEvaluationError naming the condition
        and the failure when its evaluation fails."""
        return self._evaluate(document)


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
        return Expression(text, language, _jmespath_holds(parsed, body))
    try:
        path = jsonpath_parse(body)
    except Exception as error:
        # jsonpath-ng's lexer raises bare Exceptions for some malformed input.
        raise ConditionError(f"JSONPath condition {body!r}: {error}") from None
    return Expression(text, language, _jsonpath_holds(path, body))


def _jmespath_holds(parsed: Any, text: str) -> Callable[[Any], bool]:
    def holds(document: Any) -> bool:
        try:
            result = parsed.search(document)
        except (jmespath.exceptions.JMESPathError, TypeError) as error:
            # jmespath lets Python's TypeError out of comparisons and sorts of mixed types
            # (`a > \`"x"\`` on a number, max_by over numbers and strings).
            raise ConditionEvaluationError(f"JMESPath condition {text!r}: {error}") from None
        return result not in (None, False, "", [], {})

    return holds


def _jsonpath_holds(path: Any, text: str) -> Callable[[Any], bool]:
    def holds(document: Any) -> bool:
        try:
            return bool(path.find(document))
        except Exception as error:
            # jsonpath-ng raises whatever its filters' Python operations raise on odd data
            # (TypeError, KeyError, AttributeError...): all of them mean "cannot evaluate".
            raise ConditionEvaluationError(f"JSONPath condition {text!r}: {error}") from None

    return holds
