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

    source_of, old_of, pattern_of, group_of, replacement_of, other_of, template_of = arguments

    def template(attributes: Mapping[str, Any], context: EvaluationContext) -> Any:
        source = to_text(source_of(attributes, context))
        if source is None:
            return None
        old = to_text(old_of(attributes, context)) or ""
        return (to_text(template_of(attributes, context)) or "").replace(old, source)

    def literal(attributes: Mapping[str, Any], context: EvaluationContext) -> Any:
        source = to_text(source_of(attributes, context))
        if source is None:
            return None
        old = to_text(old_of(attributes, context)) or ""
        return source.replace(old, to_text(replacement_of(attributes, context)) or "") if old else source

    def pattern(attributes: Mapping[str, Any], context: EvaluationContext) -> re.Pattern[str]:
        return constant_regex if constant_regex is not None else _regex(pattern_of(attributes, context))

    def extract(attributes: Mapping[str, Any], context: EvaluationContext) -> Any:
        source = to_text(source_of(attributes, context))
        if source:
            return source
        compiled = pattern(attributes, context)
        other = to_text(other_of(attributes, context))
        group = _group_index(compiled, group_of(attributes, context))
        match = compiled.search(other) if other is not None else None
        found = match.group(group) if match is not None else None
        return found if found is not None else source

    def regex(attributes: Mapping[str, Any], context: EvaluationContext) -> Any:
        source = to_text(source_of(attributes, context))
        if source is None:
            return None
        compiled = pattern(attributes, context)
        replacement = replacement_for(compiled, to_text(replacement_of(attributes, context)) or "")
        return compiled.sub(replacement.expand, source)

    def group(attributes: Mapping[str, Any], context: EvaluationContext) -> Any:
        source = to_text(source_of(attributes, context))
        if source is None:
            return None
        compiled = pattern(attributes, context)
        replacement = replacement_for(compiled, to_text(replacement_of(attributes, context)) or "")
        index = _group_index(compiled, group_of(attributes, context))

        def replace_group(match: re.Match[str]) -> str:
            start, end = match.span(index)
            whole = match.group(0)
            if start == -1:
                return whole
            offset = match.start()
            return whole[: start - offset] + replacement.expand(match) + whole[end - offset :]

        return compiled.sub(replace_group, source)

    run = {"template": template, "literal": literal, "extract": extract, "regex": regex, "group": group}[mode]

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
