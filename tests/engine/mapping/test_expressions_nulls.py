"""What every function does with a null (absent) attribute, in one table: adding a function to the
language without deciding this makes the last test fail."""

from __future__ import annotations

import random

import pytest

from identity_sync.engine.mapping.expressions import (
    FUNCTIONS,
    IGNORE_FLOW,
    EvaluationContext,
    ExpressionEvaluationError,
    parse_expression,
)

FAILS = object()  # the object fails with ExpressionEvaluationError

#: function → (expression with the null attribute [n], its value)
NULL_BEHAVIOUR: dict[str, tuple[str, object]] = {
    "Append": ('Append([n], "x")', None),
    "AppRoleAssignments": ("AppRoleAssignments([n])", None),
    "AppRoleAssignmentsComplex": ("AppRoleAssignmentsComplex([n])", None),
    "AssertiveAppRoleAssignmentsComplex": ("AssertiveAppRoleAssignmentsComplex([n])", []),
    "BitAnd": ("BitAnd([n], 1)", FAILS),
    "CBool": ("CBool([n])", False),
    "CDate": ("CDate([n])", None),
    "Coalesce": ("Coalesce([n], [n])", None),
    "ConvertToBase64": ("ConvertToBase64([n])", None),
    "ConvertToUTF8Hex": ("ConvertToUTF8Hex([n])", None),
    "Count": ("Count([n])", 0),
    "CStr": ("CStr([n])", None),
    "DateAdd": ('DateAdd("d", 1, [n])', None),
    "DateDiff": ('DateDiff("d", [n], "2021-01-01")', None),
    "DateFromNum": ("DateFromNum([n])", None),
    "DefaultDomain": ("DefaultDomain()", "contoso.com"),
    "FormatDateTime": ('FormatDateTime([n], , "yyyy", "yyyy")', None),
    "Guid": ("IsString(Guid())", True),
    "IgnoreFlowIfNullOrEmpty": ("IgnoreFlowIfNullOrEmpty([n])", IGNORE_FLOW),
    "IIF": ('IIF([n], "t", "f")', "f"),
    "InStr": ('InStr([n], "a")', 0),
    "IsNull": ("IsNull([n])", True),
    "IsNullOrEmpty": ("IsNullOrEmpty([n])", True),
    "IsPresent": ("IsPresent([n])", False),
    "IsString": ("IsString([n])", False),
    "Item": ("Item([n], 1)", None),
    "Join": ('Join(",", [n], [n])', ""),
    "Left": ("Left([n], 2)", ""),
    "Mid": ("Mid([n], 1, 2)", None),
    "NormalizeDiacritics": ("NormalizeDiacritics([n])", None),
    "Not": ("Not([n])", True),
    "Now": ("IsString(Now())", True),
    "NumFromDate": ("NumFromDate([n])", None),
    "PCase": ("PCase([n])", None),
    "RandomString": ("RandomString([n], 0, 0, 0, 0)", FAILS),
    "Redact": ("Redact([n])", None),
    "RemoveDuplicates": ("RemoveDuplicates([n])", None),
    "Replace": ('Replace([n], "a", , , "b", , )', None),
    "SelectUniqueValue": ('SelectUniqueValue([n], "fallback")', "fallback"),
    "SingleAppRoleAssignment": ("SingleAppRoleAssignment([n])", None),
    "Split": ('Split([n], ",")', None),
    "StripSpaces": ("StripSpaces([n])", None),
    "Switch": ('Switch([n], "default", "", "empty key", "a", "A")', "empty key"),
    "ToLower": ("ToLower([n])", None),
    "ToUpper": ("ToUpper([n])", None),
    "Word": ('Word([n], 1, " ")', ""),
}


@pytest.mark.parametrize(("name", "case"), sorted(NULL_BEHAVIOUR.items()))
def test_null_behaviour(name: str, case: tuple[str, object]) -> None:
    text, expected = case
    context = EvaluationContext(default_domain="contoso.com", rng=random.Random(3), is_unique=lambda _: True)
    expression = parse_expression(text)
    assert name in expression.functions
    if expected is FAILS:
        with pytest.raises(ExpressionEvaluationError, match=f"^column \\d+: {name}: .*null"):
            expression.evaluate({}, context)
    else:
        value = expression.evaluate({}, context)
        assert value == expected and type(value) is type(expected), (text, value)


def test_every_function_has_a_decided_null_behaviour() -> None:
    assert set(NULL_BEHAVIOUR) == set(FUNCTIONS)
