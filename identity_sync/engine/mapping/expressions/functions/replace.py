"""``Replace(source, oldValue, regexPattern, regexGroupName, replacementValue,
replacementAttributeName, template)`` (§2.3), case-sensitive. Which arguments are *written* picks
the mode, at parse time:

* oldValue + template: every oldValue in template becomes the source (``"<username>@contoso.com"``);
* oldValue + replacementValue: every oldValue in the source becomes replacementValue;
* regexPattern + regexGroupName + replacementAttributeName (no replacementValue): the source if it
  has a value, else the group's text in the first match in replacementAttributeName's value;
* regexPattern + regexGroupName + replacementValue: in each match only the group's text is replaced;
* regexPattern + replacementValue: each match is replaced; ``${name}``, ``$1``, ``$0``, ``$$`` refer
  to groups as in .NET.

Any other combination is a parse error that says what is missing. A written argument that evaluates
to null counts as ``""``; a null source stays null (except in the replacementAttributeName mode).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from identity_sync.engine.mapping.expressions.dotnet_regex import (
    RegexTranslationError,
    Replacement,
    compile_dotnet,
    parse_replacement,
)
from identity_sync.engine.mapping.expressions.errors import EvaluationProblem, ExpressionError
from identity_sync.engine.mapping.expressions.functions.registry import CallSite, Evaluator, FunctionSpec
from identity_sync.engine.mapping.expressions.values import EvaluationContext, to_text

SOURCE, OLD_VALUE, PATTERN, GROUP, REPLACEMENT, REPLACEMENT_ATTRIBUTE, TEMPLATE = range(7)


def _mode(site: CallSite) -> str:
    given = site.given
    if given(OLD_VALUE) and given(PATTERN):
        raise site.error("give oldValue or regexPattern, not both", PATTERN)
    if given(OLD_VALUE):
        if given(TEMPLATE):
            return "template"
        if given(REPLACEMENT):
            return "literal"
        raise site.error("with oldValue, give replacementValue (argument 5) or template (argument 7)")
    if given(PATTERN):
        if given(GROUP) and given(REPLACEMENT_ATTRIBUTE) and not given(REPLACEMENT):
            return "extract"
        if given(REPLACEMENT):
            return "group" if given(GROUP) else "regex"
        raise site.error(
            "with regexPattern, give replacementValue (argument 5), or regexGroupName and "
            "replacementAttributeName (arguments 4 and 6)"
        )
    raise site.error("give oldValue (argument 2) or regexPattern (argument 3)")


def _constant_regex(site: CallSite) -> re.Pattern[str] | None:
    pattern = site.constant(PATTERN)
    if not isinstance(pattern, str):
        return None
    try:
        compiled = compile_dotnet(pattern)
    except RegexTranslationError as problem:
        # Point into the pattern: the literal's opening quote, then the offset (escapes aside).
        raise ExpressionError(f"Replace: {problem}", site.argument_column(PATTERN) + 1 + problem.offset) from None
    group = site.constant(GROUP)
    if isinstance(group, str) and site.given(GROUP) and group not in compiled.groupindex:
        raise site.error(f"regexGroupName {group!r} is not a group of the pattern", GROUP)
    return compiled


def check_replace(site: CallSite) -> None:
    """Parse-time rules: a mode the arguments choose, a valid constant regex and group name."""
    _mode(site)
    _constant_regex(site)


def _regex(value: Any) -> re.Pattern[str]:
    try:
        return compile_dotnet(to_text(value) or "")
    except RegexTranslationError as problem:
        raise EvaluationProblem(str(problem)) from None


def _group_index(compiled: re.Pattern[str], name: Any) -> int:
    text = to_text(name) or ""
    index = compiled.groupindex.get(text)
    if index is None:
        raise EvaluationProblem(f"regexGroupName {text!r} is not a group of the pattern")
    return index


def build_replace(site: CallSite, arguments: list[Evaluator]) -> Evaluator:
    """The evaluator of one Replace call, specialised for its mode."""
    mode = _mode(site)
    constant_regex = _constant_regex(site)
    constant_replacement = site.constant(REPLACEMENT)
    prepared: dict[str, Replacement] = {}
    if constant_regex is not None and isinstance(constant_replacement, str | int):
        prepared[str(constant_replacement)] = parse_replacement(str(constant_replacement), constant_regex)

    def replacement_for(compiled: re.Pattern[str], text: str) -> Replacement:
        if compiled is constant_regex and text in prepared:
            return prepared[text]
        return parse_replacement(text, compiled)

    def run(attributes: Mapping[str, Any], context: EvaluationContext) -> Any:
        def argument(index: int) -> Any:
            return arguments[index](attributes, context)

        source = to_text(argument(SOURCE))
        if mode == "template":
            if source is None:
                return None
            return (to_text(argument(TEMPLATE)) or "").replace(to_text(argument(OLD_VALUE)) or "", source)
        if mode == "literal":
            if source is None:
                return None
            old = to_text(argument(OLD_VALUE)) or ""
            return source.replace(old, to_text(argument(REPLACEMENT)) or "") if old else source
        compiled = constant_regex if constant_regex is not None else _regex(argument(PATTERN))
        if mode == "extract":
            if source:
                return source
            other = to_text(argument(REPLACEMENT_ATTRIBUTE))
            group = _group_index(compiled, argument(GROUP))
            match = compiled.search(other) if other is not None else None
            found = match.group(group) if match is not None else None
            return found if found is not None else source
        if source is None:
            return None
        replacement = replacement_for(compiled, to_text(argument(REPLACEMENT)) or "")
        if mode == "regex":
            return compiled.sub(replacement.expand, source)
        group = _group_index(compiled, argument(GROUP))

        def replace_group(match: re.Match[str]) -> str:
            start, end = match.span(group)
            whole = match.group(0)
            if start == -1:
                return whole
            offset = match.start()
            return whole[: start - offset] + replacement.expand(match) + whole[end - offset :]

        return compiled.sub(replace_group, source)

    def evaluate(attributes: Mapping[str, Any], context: EvaluationContext) -> Any:
        try:
            return run(attributes, context)
        except EvaluationProblem as problem:
            raise site.evaluation_error(problem) from None

    return evaluate


FUNCTIONS = (
    FunctionSpec(
        "Replace",
        ("source", "oldValue?", "regexPattern?", "regexGroupName?", "replacementValue?", "replacementAttributeName?",
         "template?"),
        build_replace,
        "replaces text or regular-expression matches",
        check=check_replace,
    ),
)
