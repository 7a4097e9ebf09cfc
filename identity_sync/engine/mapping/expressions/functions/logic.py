"""Logic: comparisons, IIF, Switch, Coalesce, Not, IsNull, IsNullOrEmpty, IsPresent, IsString,
IgnoreFlowIfNullOrEmpty and Redact (§2.2, §2.3).

``IIF``, ``Switch`` and ``Coalesce`` evaluate only the arguments they need, so a branch that would
fail (``CDate`` of a missing date) is harmless when it is not taken.
"""

from __future__ import annotations

import operator
from collections.abc import Callable, Mapping
from typing import Any

from identity_sync.engine.mapping.expressions.dotnet_dates import parse_date
from identity_sync.engine.mapping.expressions.errors import EvaluationProblem
from identity_sync.engine.mapping.expressions.functions.registry import (
    CallSite,
    Evaluator,
    FunctionSpec,
    eager,
)
from identity_sync.engine.mapping.expressions.syntax import Empty, Literal
from identity_sync.engine.mapping.expressions.values import (
    DateTimeValue,
    EvaluationContext,
    boolean_or_none,
    describe,
    to_bool,
    to_number,
    to_text,
)


class IgnoreFlowSignal(Exception):
    """Raised by ``IgnoreFlowIfNullOrEmpty`` wherever it sits; ``Expression.evaluate`` turns it into
    ``IGNORE_FLOW``: the whole target attribute is left out of the export."""


_OPERATORS: dict[str, Callable[[Any, Any], bool]] = {
    "=": operator.eq, "<>": operator.ne, "<": operator.lt, "<=": operator.le, ">": operator.gt, ">=": operator.ge,
}


def comparison(operator_text: str) -> Callable[[Any, Any], bool]:
    """The comparison ``left <op> right`` as Entra's IIF conditions mean it.

    * a null operand makes the condition false, whatever the operator (Entra: "if the source
      attribute is null or empty, the condition check fails");
    * dates (from CDate/Now/DateAdd …) compare as moments; booleans as booleans ("True" = True);
      a number against a number-like text compares numerically;
    * two texts compare as text, case-sensitively (VB's ``Option Compare Binary``): "10" < "9".
    """
    apply = _OPERATORS[operator_text]

    def compare(left: Any, right: Any) -> bool:
        if type(left) is str and type(right) is str:
            return apply(left, right)  # the common case: two texts
        if left is None or right is None:
            return False
        left, right = _single(left), _single(right)
        if left is None or right is None:
            return False
        if type(left) is DateTimeValue or type(right) is DateTimeValue:
            return apply(_moment(left), _moment(right))
        if isinstance(left, bool) or isinstance(right, bool):
            left_flag, right_flag = boolean_or_none(left), boolean_or_none(right)
            if left_flag is not None and right_flag is not None:
                if operator_text not in ("=", "<>"):
                    raise EvaluationProblem(f"booleans cannot be compared with {operator_text}")
                return apply(left_flag, right_flag)
        elif isinstance(left, int) or isinstance(right, int):
            left_number, right_number = to_number(left), to_number(right)
            if left_number is not None and right_number is not None:
                return apply(left_number, right_number)
        return apply(to_text(left), to_text(right))

    return compare


def _single(value: Any) -> Any:
    if isinstance(value, list):
        if len(value) > 1:
            raise EvaluationProblem(f"cannot compare {describe(value)}")
        return value[0] if value else None
    return value


def _moment(value: Any) -> Any:
    if type(value) is DateTimeValue:
        return value.moment
    text = to_text(value)
    assert text is not None
    return parse_date(text)


def build_iif(site: CallSite, arguments: list[Evaluator]) -> Evaluator:
    """``IIF(condition, valueIfTrue, valueIfFalse)``: only the chosen branch is evaluated; a null
    condition is false."""
    condition, if_true, if_false = arguments

    def evaluate(attributes: Mapping[str, Any], context: EvaluationContext) -> Any:
        value = condition(attributes, context)
        if value is True:
            return if_true(attributes, context)
        if value is False or value is None:
            return if_false(attributes, context)
        try:
            flag = to_bool(value)
        except EvaluationProblem as problem:
            raise site.evaluation_error(EvaluationProblem(f"condition: {problem}")) from None
        return if_true(attributes, context) if flag else if_false(attributes, context)

    return evaluate


def check_switch(site: CallSite) -> None:
    """Switch takes source, defaultValue, then key/value pairs: an even number of arguments."""
    if len(site.arguments) % 2:
        raise site.error(
            f"takes source, defaultValue, then key/value pairs (an even number of arguments), got {len(site.arguments)}"
        )


def build_switch(site: CallSite, arguments: list[Evaluator]) -> Evaluator:
    """``Switch(source, defaultValue, key1, value1, ...)``: the value of the first key equal to the
    source (case-sensitive text comparison); a null source matches the key ``""``; no match → the
    default (null when left out). Constant keys (the usual case) are looked up in a table."""
    source, default = arguments[0], arguments[1]
    key_nodes = site.arguments[2::2]
    values = arguments[3::2]
    keys = arguments[2::2]
    table: dict[str, Evaluator] | None = None
    if all(isinstance(node, Literal | Empty) for node in key_nodes):
        table = {}
        for node, value in zip(key_nodes, values, strict=True):
            # The all(...) above made every node a Literal or Empty; mypy does not narrow through it.
            key = "" if isinstance(node, Empty) else to_text(node.value)  # type: ignore[attr-defined]
            table.setdefault(key or "", value)

    def evaluate(attributes: Mapping[str, Any], context: EvaluationContext) -> Any:
        try:
            chosen_key = to_text(source(attributes, context)) or ""
            if table is not None:
                return table.get(chosen_key, default)(attributes, context)
            for key, value in zip(keys, values, strict=True):
                if (to_text(key(attributes, context)) or "") == chosen_key:
                    return value(attributes, context)
        except EvaluationProblem as problem:
            raise site.evaluation_error(problem) from None
        return default(attributes, context)

    return evaluate


def build_coalesce(site: CallSite, arguments: list[Evaluator]) -> Evaluator:
    """``Coalesce(source1, ..., defaultValue)``: the first value that is not null (an empty
    multi-valued attribute counts as null; an empty string does not)."""

    def evaluate(attributes: Mapping[str, Any], context: EvaluationContext) -> Any:
        for argument in arguments:
            value = argument(attributes, context)
            if value is not None and value != []:
                return value
        return None

    return evaluate


def not_(source: Any) -> bool:
    """``Not(source)``: False when source is true ("True" in any case, a boolean, a non-zero
    number), True otherwise, null included (so ``Not([IsSoftDeleted])`` is True when absent)."""
    if source is True:
        return False
    if source is None or source is False:
        return True
    value = source[0] if isinstance(source, list) and len(source) == 1 else source
    flag = boolean_or_none(value)
    if flag is not None:
        return not flag
    number = to_number(value)
    return number is None or number == 0


def is_null(expression: Any) -> bool:
    """``IsNull(expression)``: True when absent (an empty multi-valued attribute is absent too)."""
    return expression is None or expression == []


def is_null_or_empty(expression: Any) -> bool:
    """``IsNullOrEmpty(expression)``: True when absent or the empty string."""
    return expression is None or expression == "" or expression == []


def is_present(expression: Any) -> bool:
    """``IsPresent(expression)``: the inverse of IsNullOrEmpty."""
    return not is_null_or_empty(expression)


def is_string(expression: Any) -> bool:
    """``IsString(expression)``: True for a (single) text value; null, numbers, booleans and
    multi-valued attributes are not strings."""
    return isinstance(expression, str)


def ignore_flow_if_null_or_empty(expression: Any) -> Any:
    """``IgnoreFlowIfNullOrEmpty(expression)``: the value, or (null/empty) drop the attribute."""
    if expression is None or expression == "" or expression == []:
        raise IgnoreFlowSignal
    return expression


def redact(value: Any) -> Any:
    """``Redact(value)``: the value itself; ``Expression.redacted`` tells logs to show ``[Redact]``."""
    return value


FUNCTIONS = (
    FunctionSpec("Coalesce", ("source...",), build_coalesce, "the first value that is not null"),
    FunctionSpec("IgnoreFlowIfNullOrEmpty", ("expression",), eager(ignore_flow_if_null_or_empty),
                 "drops the attribute from the export when the value is null or empty"),
    FunctionSpec("IIF", ("condition", "valueIfTrue", "valueIfFalse"), build_iif, "one of two values"),
    FunctionSpec("IsNull", ("expression",), eager(is_null), "True when absent"),
    FunctionSpec("IsNullOrEmpty", ("expression",), eager(is_null_or_empty), "True when absent or empty"),
    FunctionSpec("IsPresent", ("expression",), eager(is_present), "True when present and not empty"),
    FunctionSpec("IsString", ("expression",), eager(is_string), "True for a text value"),
    FunctionSpec("Not", ("source",), eager(not_), "flips a boolean"),
    FunctionSpec("Redact", ("value",), eager(redact), "the value, shown as [Redact] in logs"),
    FunctionSpec("Switch", ("source", "defaultValue?", "key", "value", "keysAndValues*"), build_switch,
                 "the value of the key equal to the source", check=check_switch),
)
