"""Multi-valued attributes (§2.3): Count, Item, Join, RemoveDuplicates, Split and the app-role
functions."""

from __future__ import annotations

import pytest

from identity_sync.engine.mapping.expressions import ExpressionError, ExpressionEvaluationError, parse_expression

PROXIES = ["SMTP:ann@contoso.com", "smtp:ann@fabrikam.com", "smtp:ann@contoso.com"]


def evaluate(text: str, **attributes: object) -> object:
    return parse_expression(text).evaluate(attributes)


class TestCount:
    def test_values_single_and_null(self) -> None:
        assert evaluate("Count([proxyAddresses])", proxyAddresses=PROXIES) == 3
        assert evaluate("Count([mail])", mail="a@b") == 1
        assert evaluate("Count([missing])") == 0


class TestItem:
    def test_one_based(self) -> None:
        assert evaluate("Item([proxyAddresses], 1)", proxyAddresses=PROXIES) == "SMTP:ann@contoso.com"
        assert evaluate("Item([proxyAddresses], 3)", proxyAddresses=PROXIES) == "smtp:ann@contoso.com"

    def test_past_the_end_or_null_is_null_and_a_single_value_is_item_one(self) -> None:
        assert evaluate("Item([proxyAddresses], 4)", proxyAddresses=PROXIES) is None
        assert evaluate("Item([missing], 1)") is None
        assert evaluate("Item([mail], 1)", mail="a@b") == "a@b"

    def test_index_zero_is_a_parse_error_when_constant_and_an_evaluation_error_otherwise(self) -> None:
        with pytest.raises(ExpressionError) as caught:
            parse_expression("Item([proxyAddresses], 0)")
        assert caught.value.column == 24 and caught.value.message == "Item: index is 1-based, got 0"
        with pytest.raises(ExpressionEvaluationError, match="Item: index is 1-based, got -1"):
            evaluate("Item([proxyAddresses], [i])", proxyAddresses=PROXIES, i=-1)


class TestJoin:
    def test_documented_comma_example_skips_empty_sources(self) -> None:
        assert evaluate('Join(", ", "", [surname], [givenName])', givenName="John", surname="Doe") == "Doe, John"

    def test_multi_valued_sources_contribute_every_value(self) -> None:
        assert evaluate('Join("|", [a], [proxyAddresses])', a="first", proxyAddresses=PROXIES[:2]) == (
            "first|SMTP:ann@contoso.com|smtp:ann@fabrikam.com"
        )

    def test_nulls_are_skipped_numbers_and_booleans_written(self) -> None:
        assert evaluate('Join("-", [missing], 1000, [flag], [none])', flag=True, none=[]) == "1000-True"
        assert evaluate('Join("-", [missing])') == ""

    def test_null_separator_joins_with_nothing(self) -> None:
        assert evaluate("Join([missing], [a], [b])", a="x", b="y") == "xy"


class TestRemoveDuplicates:
    def test_first_occurrences_in_order_case_sensitive(self) -> None:
        values = ["b", "a", "b", "A", "a"]
        assert evaluate("RemoveDuplicates([proxyAddresses])", proxyAddresses=values) == ["b", "a", "A"]

    def test_single_and_null_pass_through(self) -> None:
        assert evaluate("RemoveDuplicates([mail])", mail="x") == "x"
        assert evaluate("RemoveDuplicates([missing])") is None


class TestSplit:
    def test_documented_example(self) -> None:
        value = evaluate('Split([extensionAttribute5], ",")', extensionAttribute5="PermissionSetOne, PermissionSetTwo")
        assert value == ["PermissionSetOne", "PermissionSetTwo"]

    def test_empty_pieces_are_dropped_and_multi_character_delimiters_work(self) -> None:
        assert evaluate('Split("a;;b;", ";")') == ["a", "b"]
        assert evaluate('Split("a::b", "::")') == ["a", "b"]
        assert evaluate('Split("a b", "")') == ["a b"]

    def test_null_and_count_of_a_split(self) -> None:
        assert evaluate('Split([missing], ",")') is None
        assert evaluate('Count(Split("a,b,c", ","))') == 3


class TestAppRoles:
    def test_single_app_role_assignment_is_the_first_role(self) -> None:
        roles = ["Admin", "Reader"]
        assert evaluate("SingleAppRoleAssignment([appRoleAssignments])", appRoleAssignments=roles) == "Admin"
        assert evaluate("SingleAppRoleAssignment([appRoleAssignments])", appRoleAssignments="Admin") == "Admin"
        assert evaluate("SingleAppRoleAssignment([appRoleAssignments])") is None

    def test_complex_forms_return_every_role(self) -> None:
        roles = ["Admin", "Reader"]
        assert evaluate("AppRoleAssignmentsComplex([appRoleAssignments])", appRoleAssignments=roles) == roles
        assert evaluate("AssertiveAppRoleAssignmentsComplex([appRoleAssignments])", appRoleAssignments=roles) == roles
        assert evaluate("AppRoleAssignments([appRoleAssignments])", appRoleAssignments=roles) == roles

    def test_no_roles_is_null_except_for_the_assertive_form_which_replaces_with_nothing(self) -> None:
        assert evaluate("AppRoleAssignmentsComplex([appRoleAssignments])") is None
        assert evaluate("AssertiveAppRoleAssignmentsComplex([appRoleAssignments])") == []

    def test_the_function_used_is_visible_to_the_export(self) -> None:
        expression = parse_expression("AssertiveAppRoleAssignmentsComplex([appRoleAssignments])")
        assert "AssertiveAppRoleAssignmentsComplex" in expression.functions
