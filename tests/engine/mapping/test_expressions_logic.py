"""Logic (§2.3): comparisons, IIF, Switch, Coalesce, Not, IsNull, IsNullOrEmpty, IsPresent,
IsString, IgnoreFlowIfNullOrEmpty, Redact; and the conversions BitAnd, CBool, CStr,
ConvertToBase64, ConvertToUTF8Hex."""

from __future__ import annotations

import pytest

from identity_sync.engine.mapping.expressions import (
    IGNORE_FLOW,
    ExpressionError,
    ExpressionEvaluationError,
    parse_expression,
)


def evaluate(text: str, **attributes: object) -> object:
    return parse_expression(text).evaluate(attributes)


class TestComparisons:
    def test_text_equality_is_case_sensitive(self) -> None:
        assert evaluate('CBool([a] = "USA")', a="USA") is True
        assert evaluate('CBool([a] = "USA")', a="usa") is False
        assert evaluate('CBool([a] <> "USA")', a="usa") is True

    def test_cbool_of_two_attributes(self) -> None:
        assert evaluate("CBool([attribute1] = [attribute2])", attribute1="x", attribute2="x") is True
        assert evaluate("CBool([attribute1] = [attribute2])", attribute1="x", attribute2="y") is False

    def test_a_null_operand_fails_the_check_whatever_the_operator(self) -> None:
        for operator in ("=", "<>", "<", "<=", ">", ">="):
            assert evaluate(f'CBool([missing] {operator} "x")') is False, operator
            assert evaluate(f'CBool("x" {operator} [missing])') is False, operator

    def test_numbers_compare_as_numbers_against_numeric_text(self) -> None:
        assert evaluate("CBool([n] > 5)", n="10") is True
        assert evaluate("CBool([n] = 10)", n="10.0") is True
        assert evaluate("CBool(DateDiff(\"d\", [a], [b]) > 5)", a="2021-08-18", b="2021-08-31") is True

    def test_two_texts_compare_as_text_as_in_vb(self) -> None:
        assert evaluate("CBool([a] < [b])", a="10", b="9") is True

    def test_a_number_against_non_numeric_text_compares_as_text(self) -> None:
        assert evaluate('CBool([n] = "abc")', n=5) is False

    def test_booleans_compare_with_their_text(self) -> None:
        assert evaluate('CBool([IsSoftDeleted] = "true")', IsSoftDeleted=True) is True
        assert evaluate('CBool([IsSoftDeleted] = "False")', IsSoftDeleted=True) is False
        with pytest.raises(ExpressionEvaluationError, match="booleans cannot be compared with <"):
            evaluate('CBool([flag] < "True")', flag=False)

    def test_dates_compare_as_moments(self) -> None:
        assert evaluate('CBool(CDate("2021-06-30+08:00") < CDate("2021-06-29T17:00:00Z"))') is True
        assert evaluate('CBool(CDate("2021-06-30") = "2021-06-30T00:00:00Z")') is True

    def test_multi_valued_operands(self) -> None:
        assert evaluate('CBool([one] = "a")', one=["a"]) is True
        assert evaluate('CBool([none] = "a")', none=[]) is False
        with pytest.raises(ExpressionEvaluationError) as caught:
            evaluate('CBool([many] = "a")', many=["a", "b"])
        assert caught.value.column == 14 and "comparison =: cannot compare a multi-valued" in caught.value.message


class TestIIF:
    def test_documented_example(self) -> None:
        text = 'IIF([country]="USA",[country],[department])'
        assert evaluate(text, country="USA", department="Sales") == "USA"
        assert evaluate(text, country="FR", department="Sales") == "Sales"

    def test_and_and_or_by_nesting(self) -> None:
        conjunction = 'IIF([country]="USA",IIF([state]="CA","True","False"),"False")'
        disjunction = 'IIF([country]="USA","True",IIF([state]="CA","True","False"))'
        assert evaluate(conjunction, country="USA", state="CA") == "True"
        assert evaluate(conjunction, country="USA", state="NY") == "False"
        assert evaluate(disjunction, country="FR", state="CA") == "True"
        assert evaluate(disjunction, country="FR", state="NY") == "False"

    def test_a_null_condition_is_false(self) -> None:
        assert evaluate('IIF([missing], "yes", "no")') == "no"

    def test_boolean_text_and_numbers_as_conditions(self) -> None:
        assert evaluate('IIF([flag], "yes", "no")', flag="TRUE") == "yes"
        assert evaluate('IIF([flag], "yes", "no")', flag="0") == "no"
        assert evaluate('IIF([flag], "yes", "no")', flag=2) == "yes"

    def test_a_condition_that_is_not_boolean_fails(self) -> None:
        with pytest.raises(ExpressionEvaluationError, match="IIF: condition: expected a boolean, got 'maybe'"):
            evaluate('IIF([flag], "yes", "no")', flag="maybe")

    def test_only_the_chosen_branch_is_evaluated(self) -> None:
        assert evaluate('IIF(IsPresent([hired]), CDate([hired]), "never")', hired=None) == "never"


class TestSwitch:
    TIME_ZONES = ('Switch([state], "Australia/Sydney", "NSW", "Australia/Sydney", "QLD", "Australia/Brisbane", '
                  '"SA", "Australia/Adelaide")')

    def test_documented_example(self) -> None:
        assert evaluate(self.TIME_ZONES, state="QLD") == "Australia/Brisbane"
        assert evaluate(self.TIME_ZONES, state="SA") == "Australia/Adelaide"
        assert evaluate(self.TIME_ZONES, state="WA") == "Australia/Sydney"

    def test_keys_are_case_sensitive(self) -> None:
        assert evaluate(self.TIME_ZONES, state="qld") == "Australia/Sydney"

    def test_empty_key_matches_null_and_empty_sources(self) -> None:
        text = 'Switch([statusFlag], "Default Value", "true", "1", "", "0")'
        assert evaluate(text) == "0"
        assert evaluate(text, statusFlag="") == "0"
        assert evaluate(text, statusFlag="true") == "1"
        assert evaluate(text, statusFlag="other") == "Default Value"

    def test_country_workaround_from_the_docs(self) -> None:
        assert evaluate('Switch([country],[country],"","Other")') == "Other"
        assert evaluate('Switch([country],[country],"","Other")', country="NZ") == "NZ"

    def test_left_out_default_is_null(self) -> None:
        assert evaluate('Switch([x], , "1", "one")', x="2") is None

    def test_keys_that_are_expressions(self) -> None:
        text = ('Switch(IsPresent([directManager]),[directManager], IsPresent([skiplevelManager]),[skiplevelManager], '
                'IsPresent([director]),[director])')
        assert evaluate(text, directManager="d1", skiplevelManager="s1", director="x") == "s1"

    def test_the_first_equal_key_wins(self) -> None:
        assert evaluate('Switch("a", "none", "a", "first", "a", "second")') == "first"
        assert evaluate('Switch("a", "none", [k], "first", "a", "second")', k="a") == "first"

    def test_integer_keys_match_their_text(self) -> None:
        assert evaluate('Switch([prefix], "", 3443, "Dr.", 3444, "Prof.")', prefix="3444") == "Prof."

    def test_only_the_chosen_value_is_evaluated(self) -> None:
        assert evaluate('Switch([x], "d", "a", CDate([bad]), "b", "ok")', x="b", bad="nope") == "ok"

    def test_an_odd_number_of_arguments_is_a_parse_error(self) -> None:
        with pytest.raises(ExpressionError, match="an even number of arguments"):
            parse_expression('Switch([x], "d", "a", "1", "b")')
        with pytest.raises(ExpressionError, match="takes at least 4 arguments"):
            parse_expression('Switch([x], "d")')

    def test_active_switch_from_the_datediff_docs(self) -> None:
        from datetime import UTC, datetime

        from identity_sync.engine.mapping.expressions import EvaluationContext

        text = ('Switch([Active], , \n  "1", IIF(DateDiff("d", Now(), CDate([StatusHireDate])) > 5, "False", "True"), '
                '\n  "0", "False")')
        context = EvaluationContext(now=datetime(2021, 8, 25, 12, tzinfo=UTC))
        expression = parse_expression(text)
        assert expression.evaluate({"Active": "1", "StatusHireDate": "2021-08-28"}, context) == "True"
        assert expression.evaluate({"Active": "1", "StatusHireDate": "2021-09-28"}, context) == "False"
        assert expression.evaluate({"Active": "0"}, context) == "False"
        assert expression.evaluate({"Active": "2"}, context) is None


class TestCoalesce:
    def test_documented_example(self) -> None:
        assert evaluate("Coalesce([mail],[userPrincipalName])", userPrincipalName="John.Doe@contoso.com") == (
            "John.Doe@contoso.com"
        )

    def test_default_when_all_null_and_null_without_default(self) -> None:
        assert evaluate('Coalesce([a], [b], "default")') == "default"
        assert evaluate("Coalesce([a], [b])") is None

    def test_empty_text_is_a_value_but_an_empty_list_is_not(self) -> None:
        assert evaluate('Coalesce([a], "x")', a="") == ""
        assert evaluate('Coalesce([a], "x")', a=[]) == "x"

    def test_later_sources_are_not_evaluated(self) -> None:
        assert evaluate("Coalesce([a], CDate([bad]))", a="first", bad="nope") == "first"


class TestNot:
    @pytest.mark.parametrize(
        ("value", "expected"),
        [(True, False), (False, True), ("True", False), ("true", False), ("FALSE", True), (None, True),
         ("anything", True), (1, False), (0, True), (["True"], False)],
    )
    def test_flips_booleans_and_everything_else_is_true(self, value: object, expected: bool) -> None:
        assert parse_expression("Not([IsSoftDeleted])").evaluate({"IsSoftDeleted": value}) is expected


class TestPresence:
    @pytest.mark.parametrize(
        ("value", "is_null", "is_null_or_empty", "is_string"),
        [(None, True, True, False), ("", False, True, True), ("x", False, False, True), ([], True, True, False),
         (["x"], False, False, False), (0, False, False, False), (False, False, False, False)],
    )
    def test_each_check(self, value: object, is_null: bool, is_null_or_empty: bool, is_string: bool) -> None:
        attributes = {"a": value}
        assert parse_expression("IsNull([a])").evaluate(attributes) is is_null
        assert parse_expression("IsNullOrEmpty([a])").evaluate(attributes) is is_null_or_empty
        assert parse_expression("IsPresent([a])").evaluate(attributes) is (not is_null_or_empty)
        assert parse_expression("IsString([a])").evaluate(attributes) is is_string


class TestIgnoreFlowIfNullOrEmpty:
    def test_null_and_empty_drop_the_attribute(self) -> None:
        assert evaluate("IgnoreFlowIfNullOrEmpty([department])") is IGNORE_FLOW
        assert evaluate("IgnoreFlowIfNullOrEmpty([department])", department="") is IGNORE_FLOW
        assert evaluate("IgnoreFlowIfNullOrEmpty([department])", department="Sales") == "Sales"
        assert repr(IGNORE_FLOW) == "IGNORE_FLOW"

    def test_documented_switch_example(self) -> None:
        text = 'IgnoreFlowIfNullOrEmpty(Switch([prefix], "", "3443", "Dr.", "3444", "Prof.", "3445", "Prof. Dr."))'
        assert evaluate(text, prefix="3445") == "Prof. Dr."
        assert evaluate(text, prefix="9999") is IGNORE_FLOW

    def test_nested_anywhere_it_drops_the_whole_attribute(self) -> None:
        assert evaluate('Join(",", "a", IgnoreFlowIfNullOrEmpty([b]))') is IGNORE_FLOW


class TestRedact:
    def test_value_flows_and_the_expression_says_redacted(self) -> None:
        for text in ("Redact([userPrincipalName])", 'Redact("StringToBeRedacted")', "Redact(RandomString(6,3,0,0,3))"):
            expression = parse_expression(text)
            assert expression.redacted is True
        assert parse_expression("Redact([upn])").evaluate({"upn": "a@b"}) == "a@b"


class TestConversions:
    def test_bit_and(self) -> None:
        assert evaluate("BitAnd(&HF, &HF7)") == 7
        assert evaluate("BitAnd([a], 6)", a="3") == 2
        with pytest.raises(ExpressionEvaluationError, match="BitAnd: expected value1 to be a number, got null"):
            evaluate("BitAnd([missing], 1)")

    def test_cbool(self) -> None:
        assert evaluate('CBool("True")') is True
        assert evaluate('CBool("0")') is False
        assert evaluate('CBool("-2.5")') is True
        assert evaluate("CBool([missing])") is False
        with pytest.raises(ExpressionEvaluationError, match="CBool: expected a boolean, got 'abc'"):
            evaluate('CBool("abc")')

    def test_cstr(self) -> None:
        assert evaluate("CStr([dn])", dn="cn=Joe,dc=contoso,dc=com") == "cn=Joe,dc=contoso,dc=com"
        assert evaluate("CStr([n])", n=42) == "42"
        assert evaluate("CStr([b])", b=False) == "False"
        assert evaluate("CStr([missing])") is None

    def test_convert_to_base64_is_utf16le(self) -> None:
        assert evaluate('ConvertToBase64("Hello world!")') == "SABlAGwAbABvACAAdwBvAHIAbABkACEA"
        assert evaluate('ConvertToBase64("é")') == "6QA="
        assert evaluate("ConvertToBase64([missing])") is None

    def test_convert_to_utf8_hex(self) -> None:
        assert evaluate('ConvertToUTF8Hex("Hello world!")') == "48656C6C6F20776F726C6421"
        assert evaluate('ConvertToUTF8Hex("é")') == "C3A9"
        assert evaluate("ConvertToUTF8Hex([missing])") is None

    def test_unpaired_surrogates_fail_cleanly(self) -> None:
        with pytest.raises(ExpressionEvaluationError, match="unpaired surrogate"):
            evaluate("ConvertToUTF8Hex([s])", s="\ud800")
        with pytest.raises(ExpressionEvaluationError, match="unpaired surrogate"):
            evaluate("ConvertToBase64([s])", s="\ud800")
