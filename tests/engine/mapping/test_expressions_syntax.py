"""The syntax of mapping expressions (provisioning-engine.md §2.2) and the errors of bad ones."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from identity_sync.engine.mapping.expressions import (
    MAX_EXPRESSION_LENGTH,
    Expression,
    ExpressionError,
    ExpressionEvaluationError,
    parse_expression,
)


def evaluate(text: str, **attributes: object) -> object:
    return parse_expression(text).evaluate(attributes)


def error_of(text: str) -> ExpressionError:
    with pytest.raises(ExpressionError) as caught:
        parse_expression(text)
    return caught.value


class TestArgumentForms:
    def test_an_attribute_a_string_and_a_nested_call(self) -> None:
        assert evaluate('Append(ToUpper([givenName]), "!")', givenName="ann") == "ANN!"

    def test_string_escapes_are_backslash_quote_and_backslash_backslash(self) -> None:
        assert evaluate(r'Append("Company name: \"Contoso\"", "\\")') == 'Company name: "Contoso"\\'

    def test_any_other_backslash_is_kept_as_written(self) -> None:
        assert evaluate(r'Append("a\d", "")') == r"a\d"

    def test_unquoted_integers_including_negative_ones(self) -> None:
        assert evaluate("Mid([x], 2, 3)", x="abcdef") == "bcd"
        assert evaluate('Join("", 1000, [x])', x="7") == "10007"
        assert evaluate("Left([x], -1)", x="abc") == "abc"

    def test_vb_hex_literals(self) -> None:
        assert evaluate("BitAnd(&HF, &hF7)") == 7

    def test_bare_compare_constants(self) -> None:
        assert evaluate('InStr("ABC", "b", 1, vbTextCompare)') == 2
        assert evaluate('InStr("ABC", "b", 1, vbBinaryCompare)') == 0

    def test_empty_positional_arguments(self) -> None:
        assert evaluate('Replace([mail], "@contoso.com", , , "", , )', mail="john.doe@contoso.com") == "john.doe"

    def test_zero_argument_calls_with_or_without_spaces(self) -> None:
        assert len(str(evaluate("Guid()"))) == 36
        assert len(str(evaluate("Guid(  )"))) == 36

    def test_comparison_operators_inside_arguments(self) -> None:
        for operator, expected in (("=", False), ("<>", True), ("<", True), ("<=", True), (">", False), (">=", False)):
            assert evaluate(f"CBool(3 {operator} 5)") is expected, operator

    def test_a_whole_expression_may_be_an_attribute_or_a_constant(self) -> None:
        assert evaluate("[mail]", mail="a@b") == "a@b"
        assert evaluate('"constant"') == "constant"

    def test_whitespace_and_newlines_between_tokens(self) -> None:
        text = 'Join(\n  "@",\n\t[a] ,\r\n  "contoso.com"\n)'
        assert evaluate(text, a="x") == "x@contoso.com"


class TestAttributes:
    def test_exact_name_first_then_case_insensitive(self) -> None:
        expression = parse_expression("[Mail]")
        assert expression.evaluate({"mail": "lower", "Mail": "exact"}) == "exact"
        assert expression.evaluate({"MAIL": "only upper"}) == "only upper"

    def test_a_missing_attribute_is_null(self) -> None:
        assert evaluate("[nothing]") is None

    def test_names_may_hold_dots_colons_and_spaces_around(self) -> None:
        assert evaluate("[ extension_abc.department ]", **{"extension_abc.department": "Sales"}) == "Sales"

    def test_attributes_lists_every_referenced_name(self) -> None:
        expression = parse_expression('Coalesce([mail], Join(".", [givenName], [surname]), "x")')
        assert expression.attributes == frozenset({"mail", "givenName", "surname"})

    def test_case_insensitive_view_answers_like_the_plain_mapping(self) -> None:
        from identity_sync.engine.mapping.expressions import CaseInsensitiveAttributes

        view = CaseInsensitiveAttributes({"GivenName": "Ann", "mail": "a@b"})
        assert parse_expression("[givenname]").evaluate(view) == "Ann"
        assert parse_expression("[mail]").evaluate(view) == "a@b"
        assert parse_expression("[absent]").evaluate(view) is None
        assert dict(view) == {"GivenName": "Ann", "mail": "a@b"} and len(view) == 2


class TestExpressionObject:
    def test_text_redacted_functions_and_repr(self) -> None:
        expression = parse_expression('Join("@", Redact([secret]), "x")')
        assert expression.text == 'Join("@", Redact([secret]), "x")'
        assert expression.redacted is True
        assert expression.functions == frozenset({"Join", "Redact"})
        assert parse_expression("[a]").redacted is False
        assert repr(expression) == "Expression('Join(\"@\", Redact([secret]), \"x\")')"

    def test_expressions_are_immutable(self) -> None:
        expression = parse_expression("[a]")
        with pytest.raises(AttributeError, match="immutable"):
            expression.text = "[b]"  # type: ignore[misc]

    def test_equal_texts_are_equal_expressions(self) -> None:
        assert parse_expression("[a]") == parse_expression("[a]")
        assert len({parse_expression("[a]"), parse_expression("[a]"), parse_expression("[b]")}) == 2
        assert isinstance(parse_expression("[a]"), Expression)

    def test_values_handed_out_are_plain_strings(self) -> None:
        value = evaluate('CDate("2021-06-30+08:00")')
        assert type(value) is str
        listed = evaluate('Split(Join(",", CDate("2021-06-30"), "x"), ";")')
        assert listed == ["6/30/2021 12:00:00 AM,x"] and all(type(item) is str for item in listed)  # type: ignore[union-attr]


class TestErrors:
    def test_message_format_is_column_then_message(self) -> None:
        problem = error_of("Lenght([x], 3)")
        assert str(problem) == f"column 1: {problem.message}"
        assert problem.column == 1

    def test_unknown_function_suggests_a_close_name(self) -> None:
        problem = error_of('Append([a], Lenght([x], 3))')
        assert problem.column == 13
        assert "unknown function 'Lenght'" in problem.message and "'Left'" in problem.message

    def test_function_names_are_case_sensitive_and_the_right_case_is_suggested(self) -> None:
        problem = error_of("toupper([x])")
        assert "case-sensitive" in problem.message and "'ToUpper'" in problem.message

    def test_unknown_function_without_any_close_name(self) -> None:
        assert error_of("Zzzzqqq([x])").message == "unknown function 'Zzzzqqq'"

    def test_too_many_arguments(self) -> None:
        problem = error_of('Left([x], 1, 2)')
        assert problem.column == 1
        assert problem.message == "Left: takes 2 arguments, got 3: Left(string, numChars)"

    def test_too_few_arguments_with_optional_ones(self) -> None:
        assert error_of('InStr("a")').message == (
            "InStr: takes 2 to 4 arguments, got 1: InStr(value1, value2, [start], [compareType])"
        )

    def test_too_few_arguments_of_a_variadic_function(self) -> None:
        assert error_of('Join(",")').message == "Join: takes at least 2 arguments, got 1: Join(separator, source, ...)"

    def test_zero_argument_function_given_one(self) -> None:
        assert error_of("Guid([x])").message == "Guid: takes 0 arguments, got 1: Guid()"

    def test_empty_arguments_count_as_positions(self) -> None:
        assert error_of('Replace([m], "a", , , "b", , , )').message.startswith("Replace: takes 1 to 7 arguments, got 8")

    def test_a_required_argument_left_out(self) -> None:
        problem = error_of('FormatDateTime([x], , , "yyyy")')
        assert "argument 3 (inputFormat) is required" in problem.message
        assert problem.column == 1

    def test_syntax_error_points_at_the_offending_character(self) -> None:
        problem = error_of('Append([a], "b"))')
        assert problem.column == 17
        assert problem.message == "unexpected ')'; expected the end of the expression"

    def test_missing_comma(self) -> None:
        problem = error_of('Append([a] "b")')
        assert problem.column == 12
        assert "expected" in problem.message and "','" in problem.message

    def test_unexpected_end(self) -> None:
        problem = error_of('Append([a], "b"')
        assert problem.column == len('Append([a], "b"') + 1
        assert problem.message.startswith("unexpected end of the expression; expected")

    def test_unterminated_string(self) -> None:
        problem = error_of('Append([a], "b)')
        assert (problem.column, problem.message) == (13, 'unterminated string: no closing "')

    def test_unterminated_attribute(self) -> None:
        problem = error_of("Append([a, \"b\")")
        assert (problem.column, problem.message) == (8, "unterminated attribute name: no closing ]")

    def test_typographic_and_single_quotes_get_a_hint(self) -> None:
        problem = error_of("Append([a], \u201cx\u201d)")
        assert problem.column == 13 and "straight quotes" in problem.message
        assert "straight quotes" in error_of("Append([a], 'x')").message

    def test_empty_attribute_name(self) -> None:
        assert error_of("ToLower([ ])").message == "empty attribute name []"

    def test_unexpected_character(self) -> None:
        problem = error_of("ToLower([a]) + 1")
        assert (problem.column, problem.message) == (14, "unexpected character '+'")

    def test_comparisons_do_not_chain(self) -> None:
        assert error_of("CBool(1 = 1 = 1)").column == 13

    def test_unknown_bare_name(self) -> None:
        problem = error_of("InStr([a], [b], 1, vbSomething)")
        assert problem.column == 20 and "unknown name 'vbSomething'" in problem.message

    def test_a_function_name_without_parentheses(self) -> None:
        assert error_of("Append([a], Guid)").message == "Guid is a function: call it as Guid(...)"

    def test_empty_and_blank_text(self) -> None:
        assert error_of("").message == "expression is empty"
        assert error_of("   \n ").message == "expression is empty"

    def test_not_text(self) -> None:
        assert "must be text" in error_of(42).message  # type: ignore[arg-type]
        assert "must be text, got list" in error_of(["[a]"]).message  # type: ignore[arg-type]

    def test_the_length_limit_is_10000_characters(self) -> None:
        at_limit = 'Append("' + "a" * (MAX_EXPRESSION_LENGTH - 14) + '", "")'
        assert len(at_limit) == MAX_EXPRESSION_LENGTH
        assert parse_expression(at_limit).evaluate({}) == "a" * (MAX_EXPRESSION_LENGTH - 14)
        problem = error_of(at_limit + " ")
        assert problem.column == MAX_EXPRESSION_LENGTH + 1
        assert problem.message == "expression is 10001 characters long; the limit is 10000"

    def test_nesting_is_limited_to_100_levels(self) -> None:
        assert evaluate("Not(" * 100 + "[a]" + ")" * 100, a=True) is True
        problem = error_of("Not(" * 101 + "[a]" + ")" * 101)
        assert (problem.column, problem.message) == (401, "calls nest more than 100 levels deep")
        problem = error_of("Not(" * 1900 + "[a]" + ")" * 1900)
        assert problem.message == "calls nest more than 100 levels deep"

    def test_select_unique_value_must_be_the_whole_expression(self) -> None:
        problem = error_of('ToLower(SelectUniqueValue([a], [b]))')
        assert problem.column == 9 and "must be the whole expression" in problem.message

    def test_evaluation_errors_are_expression_errors_with_the_column_of_the_call(self) -> None:
        expression = parse_expression('Append("x", CDate([hired]))')
        with pytest.raises(ExpressionEvaluationError) as caught:
            expression.evaluate({"hired": "not a date"})
        assert caught.value.column == 13
        assert str(caught.value) == "column 13: CDate: cannot read 'not a date' as a date"
        assert isinstance(caught.value, ExpressionError)


_TOKENS = st.sampled_from([
    "Join", "Mid", "IIF", "Switch", "Replace", "Guid", "(", ")", ",", " ", "[a]", "[", "]", '"x"', '"', "\\",
    "1", "-2", "&HF", "=", "<>", ">=", "vbTextCompare", "CDate", "Item", "Left", "foo", "\n", "(?<g>", "${g}",
])


@settings(max_examples=400, deadline=None)
@given(st.lists(_TOKENS, max_size=14).map("".join))
def test_parsing_token_soup_raises_nothing_but_expression_error(text: str) -> None:
    try:
        expression = parse_expression(text)
    except ExpressionError as problem:
        assert 1 <= problem.column <= len(text) + 1
        assert str(problem).startswith(f"column {problem.column}: ")
        return
    try:
        expression.evaluate({"a": "value"})
    except ExpressionEvaluationError as problem:
        assert 1 <= problem.column <= len(text)


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=40))
def test_parsing_arbitrary_text_raises_nothing_but_expression_error(text: str) -> None:
    try:
        parse_expression(text)
    except ExpressionError as problem:
        assert 1 <= problem.column <= len(text) + 1


def test_an_expression_pickles_by_its_text_and_parsing_is_cached() -> None:
    import pickle

    expression = parse_expression('Join("@", [a], "x")')
    copy = pickle.loads(pickle.dumps(expression))
    assert copy == expression and copy.evaluate({"a": "b"}) == "b@x"
    assert parse_expression('Join("@", [a], "x")') is expression


def test_errors_of_redacted_expressions_do_not_quote_values() -> None:
    expression = parse_expression("Redact(CDate([secret]))")
    with pytest.raises(ExpressionEvaluationError) as caught:
        expression.evaluate({"secret": "hunter2-not-a-date"})
    assert "hunter2" not in str(caught.value)
    assert str(caught.value) == "column 8: CDate: failed (details redacted)"
    with pytest.raises(ExpressionEvaluationError, match="hunter2"):
        parse_expression("CDate([secret])").evaluate({"secret": "hunter2-not-a-date"})


def test_columns_count_through_newlines() -> None:
    text = 'Join("@",\n  Lenght([a]),\n  "x")'
    problem = error_of(text)
    assert problem.column == text.index("Lenght") + 1 == 13
