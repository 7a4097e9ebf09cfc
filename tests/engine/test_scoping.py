"""Scope: scoping filters (§3) and assignments (§1.5)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from identity_sync.engine.model import SourceSnapshot
from identity_sync.engine.scoping import (
    OPERATORS,
    ScopingClause,
    ScopingError,
    ScopingFilter,
    dotnet_regex,
    effective_assignments,
    evaluate_scope,
    find_operator,
    parse_scoping_filters,
    passes_filters,
)
from identity_sync.engine.sources.csv_source import CsvSource
from tests.engine.directory import group, user, write_directory


def clause(attribute: str, operator: str, value: Any = None) -> ScopingFilter:
    data: dict[str, Any] = {"attribute": attribute, "operator": operator}
    if value is not None:
        data["value"] = value
    return parse_scoping_filters([{"title": "T", "clauses": [data]}])[0]


def holds(operator: str, value: Any, attribute_value: Any) -> bool:
    attributes = {} if attribute_value is None else {"a": attribute_value}
    return clause("a", operator, value).matches(attributes)


# -- every operator: true, false, null ----------------------------------------------------------

OPERATOR_CASES = [
    ("EQUALS", "Sales", "Sales", True),
    ("EQUALS", "Sales", "sales", False),  # case-sensitive
    ("EQUALS", "Sales", None, False),
    ("EQUALS", "10", 10, True),
    ("EQUALS", "TRUE", True, True),  # a bool compares as true/false, the clause in any case
    ("EQUALS", "true", False, False),
    ("NOT EQUALS", "Sales", "Legal", True),
    ("NOT EQUALS", "Sales", "Sales", False),
    ("NOT EQUALS", "Sales", None, False),  # null: every clause is false
    ("NOT EQUALS", "Sales", "", False),
    ("IS TRUE", None, True, True),
    ("IS TRUE", None, "True", True),
    ("IS TRUE", None, False, False),
    ("IS TRUE", None, "yes", False),
    ("IS TRUE", None, None, False),
    ("IS FALSE", None, "false", True),
    ("IS FALSE", None, False, True),
    ("IS FALSE", None, True, False),
    ("IS FALSE", None, None, False),
    ("IS NULL", None, None, True),
    ("IS NULL", None, "", True),
    ("IS NULL", None, [], True),
    ("IS NULL", None, "x", False),
    ("IS NULL", None, ["x"], False),
    ("IS NOT NULL", None, "x", True),
    ("IS NOT NULL", None, False, True),
    ("IS NOT NULL", None, ["x"], True),
    ("IS NOT NULL", None, None, False),
    ("IS NOT NULL", None, "", False),
    ("REGEX MATCH", r".*\@domain.com", "ann@domain.com", True),
    ("REGEX MATCH", r".*\@domain.com", "ann@other.org", False),
    ("REGEX MATCH", r".*\@domain.com", None, False),
    ("REGEX MATCH", "(1[0-9]{6})", "1234567", True),
    ("REGEX MATCH", "(1[0-9]{6})", "0999999", False),
    ("REGEX MATCH", "(1[0-9]{6})", "x12345678", True),  # IsMatch: a match anywhere
    ("REGEX MATCH", "^(1[0-9]{6})$", "12345678", False),
    ("REGEX MATCH", "sales", "Sales", False),  # case-sensitive, as .NET
    ("REGEX MATCH", r"^(?<dept>[A-Z]+)-\k<dept>$", "HR-HR", True),
    ("REGEX MATCH", r"^(?<dept>[A-Z]+)-\k<dept>$", "HR-IT", False),
    ("NOT REGEX MATCH", r".*\@domain.com", "ann@other.org", True),
    ("NOT REGEX MATCH", r".*\@domain.com", "ann@domain.com", False),
    ("NOT REGEX MATCH", r".*\@domain.com", None, False),  # documented: false on null
    ("Greater_Than", "10", "11", True),
    ("Greater_Than", "10", 10, False),
    ("Greater_Than", "10", "ten", False),  # a non-integer attribute: false
    ("Greater_Than", "10", "10.5", False),
    ("Greater_Than", "10", True, False),
    ("Greater_Than", "10", None, False),
    ("Greater_Than_OR_EQUALS", "10", "10", True),
    ("Greater_Than_OR_EQUALS", "10", "9", False),
    ("Greater_Than_OR_EQUALS", "-5", "-5", True),
    ("Greater_Than_OR_EQUALS", "-5", None, False),
    ("Includes", "ale", "Sales", True),
    ("Includes", "ALE", "Sales", False),
    ("Includes", "ale", None, False),
    ("ENDS_WITH", "@contoso.com", "ann@contoso.com", True),
    ("ENDS_WITH", "@contoso.com", "ann@CONTOSO.com", False),
    ("ENDS_WITH", "@contoso.com", None, False),
    ("&", "Sales, Legal", "Legal", True),
    ("&", "Sales,Legal", "Marketing", False),
    ("&", "Sales,Legal", "Sales,Legal", False),  # one of the values, not the whole string
    ("&", "Sales,Legal", None, False),
    ("!&", "Sales,Legal", "Marketing", True),
    ("!&", "Sales,Legal", "Sales", False),
    ("!&", "Sales,Legal", None, False),
    ("LESSTHAN", "10", "9", True),
    ("LESSTHAN", "10", "10", False),
    ("LESSTHAN", "10", None, False),
    ("LESSTHAN_OR_EQUAL", "10", "10", True),
    ("LESSTHAN_OR_EQUAL", "10", "11", False),
    ("LESSTHAN_OR_EQUAL", "10", None, False),
    ("STARTSWITH", "EMP", "EMP-1", True),
    ("STARTSWITH", "EMP", "emp-1", False),
    ("STARTSWITH", "EMP", None, False),
    ("NOTSTARTSWITH", "EMP", "CON-1", True),
    ("NOTSTARTSWITH", "EMP", "EMP-1", False),
    ("NOTSTARTSWITH", "EMP", None, False),
    ("NOTENDSWITH", ".test", "a.example", True),
    ("NOTENDSWITH", ".test", "a.test", False),
    ("NOTENDSWITH", ".test", None, False),
    ("NOTCONTAINS", "temp", "permanent", True),
    ("NOTCONTAINS", "temp", "contemporary", False),
    ("NOTCONTAINS", "temp", None, False),
    ("ISIN", "smtp:a@x.com", ["SMTP:b@x.com", "smtp:a@x.com"], True),
    ("ISIN", "smtp:a@x.com", ["SMTP:b@x.com"], False),
    ("ISIN", "DE", "DE", True),
    ("ISIN", "DE", None, False),
    ("ISIN", "DE", [], False),
    ("ISNOTIN", "smtp:a@x.com", ["SMTP:b@x.com"], True),
    ("ISNOTIN", "smtp:a@x.com", ["SMTP:b@x.com", "smtp:a@x.com"], False),
    ("ISNOTIN", "DE", "FR", True),
    ("ISNOTIN", "DE", None, False),
    ("ISBITSET", "2", "514", True),  # userAccountControl 514 = 512 + ACCOUNTDISABLE (2)
    ("ISBITSET", "2", "512", False),
    ("ISBITSET", "6", "514", False),  # every bit of the mask must be set
    ("ISBITSET", "2", "x", False),
    ("ISBITSET", "2", None, False),
    ("ISNOTBITSET", "2", "512", True),
    ("ISNOTBITSET", "2", "514", False),
    ("ISNOTBITSET", "2", None, False),
]


@pytest.mark.parametrize(("operator", "value", "attribute", "expected"), OPERATOR_CASES)
def test_operator(operator: str, value: str | None, attribute: Any, expected: bool) -> None:
    assert holds(operator, value, attribute) is expected


def test_every_operator_has_a_true_a_false_and_a_null_case() -> None:
    for name in {case[0] for case in OPERATOR_CASES}:
        assert {case[3] for case in OPERATOR_CASES if case[0] == name} == {True, False}, name
        assert any(case[2] is None for case in OPERATOR_CASES if case[0] == name), name
    assert {case[0] for case in OPERATOR_CASES} == {operator.name for operator in OPERATORS}


@pytest.mark.parametrize("operator", [
    "EQUALS", "NOT EQUALS", "REGEX MATCH", "NOT REGEX MATCH", "Greater_Than", "Includes", "ENDS_WITH", "&",
    "!&", "LESSTHAN", "STARTSWITH", "NOTCONTAINS", "IS TRUE", "ISBITSET"])
def test_a_multi_valued_attribute_makes_a_clause_false(operator: str) -> None:
    value = None if operator == "IS TRUE" else ("1" if operator in ("Greater_Than", "LESSTHAN", "ISBITSET") else "a")
    assert holds(operator, value, ["a", "true", "1", "b"]) is False


@pytest.mark.parametrize(("spelling", "canonical"), [
    ("equals", "EQUALS"), ("EQUAL", "EQUALS"), ("NOT_EQUALS", "NOT EQUALS"), ("NOTEQUAL", "NOT EQUALS"),
    ("is null", "IS NULL"), ("ISNULL", "IS NULL"), ("IS_NOT_NULL", "IS NOT NULL"), ("is  true", "IS TRUE"),
    ("regex_match", "REGEX MATCH"), ("GREATER THAN", "Greater_Than"), ("GREATERTHAN", "Greater_Than"),
    ("GREATERTHAN_OR_EQUAL", "Greater_Than_OR_EQUALS"), ("CONTAINS", "Includes"), ("includes", "Includes"),
    ("ENDSWITH", "ENDS_WITH"), ("less_than", "LESSTHAN"), ("LESS_THAN_OR_EQUALS", "LESSTHAN_OR_EQUAL"),
    ("IS IN", "ISIN"), ("is_not_in", "ISNOTIN"), ("starts with", "STARTSWITH"), ("IS_BIT_SET", "ISBITSET"),
])
def test_operator_spellings(spelling: str, canonical: str) -> None:
    assert find_operator(spelling).name == canonical


# -- AND / OR ----------------------------------------------------------------------------------

FILTERS = [
    {"title": "Sales in Germany", "clauses": [
        {"attribute": "department", "operator": "EQUALS", "value": "Sales"},
        {"attribute": "country", "operator": "EQUALS", "value": "DE"}]},
    {"title": "Contractors", "clauses": [
        {"attribute": "employeeType", "operator": "EQUALS", "value": "Contractor"}]},
]


@pytest.mark.parametrize(("attributes", "expected"), [
    ({"department": "Sales", "country": "DE"}, True),
    ({"department": "Sales", "country": "FR"}, False),  # AND inside a filter
    ({"department": "Legal", "country": "FR", "employeeType": "Contractor"}, True),  # OR across filters
    ({}, False),
])
def test_clauses_are_anded_and_filters_ored(attributes: dict[str, str], expected: bool) -> None:
    filters = parse_scoping_filters(FILTERS)
    assert passes_filters(filters, attributes) is expected
    assert evaluate_scope(filters, attributes).in_scope is expected


def test_no_filter_lets_everything_pass() -> None:
    decision = evaluate_scope([], {})
    assert decision.in_scope is True and decision.details == []
    assert passes_filters(parse_scoping_filters(None), {}) is True


def test_details_list_every_clause_as_on_demand_provisioning_shows_them() -> None:
    filters = parse_scoping_filters(FILTERS + [{"title": "Has mail", "clauses": [
        {"attribute": "mail", "operator": "is not null"}]}])
    decision = evaluate_scope(filters, {"department": "Sales", "country": "FR"})
    assert decision.in_scope is False
    assert decision.details == [
        "Sales in Germany: department EQUALS Sales: true",
        "Sales in Germany: country EQUALS DE: false",
        "Contractors: employeeType EQUALS Contractor: false",
        "Has mail: mail IS NOT NULL: false",
    ]


def test_filter_attributes_lists_what_it_reads_once() -> None:
    scoping_filter = parse_scoping_filters([{"title": "t", "clauses": [
        {"attribute": "department", "operator": "EQUALS", "value": "a"},
        {"attribute": "country", "operator": "IS NOT NULL"},
        {"attribute": "department", "operator": "NOT EQUALS", "value": "b"}]}])[0]
    assert scoping_filter.attributes == ("department", "country")


def test_to_json_round_trips_through_parse_in_canonical_spelling() -> None:
    data = [{"title": "All", "clauses": [
        {"attribute": "a", "operator": "equal", "value": "x"},
        {"attribute": "b", "operator": "is_null"},
        {"attribute": "c", "operator": "regex match", "value": r"^(?<n>\d+)$"},
        {"attribute": "d", "operator": "greater than", "value": 3}]}]
    filters = parse_scoping_filters(data)
    exported = json.loads(json.dumps([f.to_json() for f in filters]))
    assert exported == [{"title": "All", "clauses": [
        {"attribute": "a", "operator": "EQUALS", "value": "x"},
        {"attribute": "b", "operator": "IS NULL"},
        {"attribute": "c", "operator": "REGEX MATCH", "value": r"^(?<n>\d+)$"},
        {"attribute": "d", "operator": "Greater_Than", "value": "3"}]}]
    again = parse_scoping_filters(exported)
    assert again == filters
    assert passes_filters(again, {"a": "x", "c": "42", "d": "4"}) is True


# -- configuration errors ----------------------------------------------------------------------

@pytest.mark.parametrize(("data", "message"), [
    ({"title": "x"}, "users.scoping: expected a list of scoping filters, got an object"),
    (["x"], "users.scoping[0]: expected an object, got a string"),
    ([{"title": "t"}], "users.scoping[0]: missing 'clauses'"),
    ([{"clauses": []}], "users.scoping[0]: missing 'title'"),
    ([{"title": "", "clauses": []}], "users.scoping[0].title: expected a non-empty string, got a string ''"),
    ([{"title": "t", "clauses": []}], "users.scoping[0].clauses: expected a non-empty list of clauses"),
    ([{"title": "t", "clauses": [], "name": "x"}], "users.scoping[0]: unknown key 'name' (expected title, clauses)"),
    ([{"title": "t", "clauses": [{"attribute": "a", "operator": "EQUALS", "value": "x"},
                                 {"attribute": "a", "operator": "EQUALZ", "value": "x"}]}],
     "users.scoping[0].clauses[1].operator: unknown operator 'EQUALZ' (did you mean 'EQUALS'?)"),
    ([{"title": "t", "clauses": [{"attribute": "a", "operator": "SOUNDS LIKE", "value": "x"}]}],
     "users.scoping[0].clauses[0].operator: unknown operator 'SOUNDS LIKE'"),
    ([{"title": "t", "clauses": [{"attribute": "a", "operater": "EQUALS"}]}],
     "users.scoping[0].clauses[0]: unknown key 'operater' (expected attribute, operator, value)"),
    ([{"title": "t", "clauses": [{"operator": "EQUALS", "value": "x"}]}],
     "users.scoping[0].clauses[0]: missing 'attribute'"),
    ([{"title": "t", "clauses": [{"attribute": 3, "operator": "EQUALS", "value": "x"}]}],
     "users.scoping[0].clauses[0].attribute: expected a non-empty string, got a number"),
    ([{"title": "t", "clauses": [{"attribute": "a", "operator": "EQUALS"}]}],
     "users.scoping[0].clauses[0]: EQUALS needs a value"),
    ([{"title": "t", "clauses": [{"attribute": "a", "operator": "EQUALS", "value": ""}]}],
     "users.scoping[0].clauses[0].value: EQUALS needs a value"),
    ([{"title": "t", "clauses": [{"attribute": "a", "operator": "IS NULL", "value": "x"}]}],
     "users.scoping[0].clauses[0].value: IS NULL takes no value, got 'x'"),
    ([{"title": "t", "clauses": [{"attribute": "a", "operator": "Greater_Than", "value": "ten"}]}],
     "users.scoping[0].clauses[0].value: Greater_Than needs an integer value, not 'ten'"),
    ([{"title": "t", "clauses": [{"attribute": "a", "operator": "ISBITSET", "value": "0x2"}]}],
     "users.scoping[0].clauses[0].value: ISBITSET needs an integer value, not '0x2'"),
    ([{"title": "t", "clauses": [{"attribute": "a", "operator": "REGEX MATCH", "value": "(unclosed"}]}],
     "users.scoping[0].clauses[0].value: REGEX MATCH invalid regular expression '(unclosed'"),
    ([{"title": "t", "clauses": [{"attribute": "a", "operator": "EQUALS", "value": True}]}],
     "users.scoping[0].clauses[0].value: expected a non-empty string, got a boolean"),
])
def test_configuration_errors_name_their_json_location(data: Any, message: str) -> None:
    with pytest.raises(ScopingError) as raised:
        parse_scoping_filters(data, where="users.scoping")
    assert str(raised.value).startswith(message), str(raised.value)
    assert "\n" not in str(raised.value)


def test_unary_operators_accept_an_empty_value_as_exported_by_some_tools() -> None:
    assert clause("a", "IS NULL", "").matches({}) is True


def test_dotnet_regex_translation() -> None:
    assert dotnet_regex(r"(?<year>\d{4})-\k<year>") == r"(?P<year>\d{4})-(?P=year)"
    assert dotnet_regex(r"(?'a'x)\k'a'") == r"(?P<a>x)(?P=a)"
    assert dotnet_regex(r"(?<=a)b(?<!c)") == r"(?<=a)b(?<!c)"  # look-behinds are not groups
    assert dotnet_regex(r"[(?<x>)]\\z") == r"[(?<x>)]\\z"  # inside a class, after an escaped backslash
    assert dotnet_regex(r"end\z") == r"end\Z"
    assert holds("REGEX MATCH", r"^abc\Z", "abc\n") is True  # .NET \Z: before a final line break
    assert holds("REGEX MATCH", r"^abc\z", "abc\n") is False


# -- assignments -------------------------------------------------------------------------------

def snapshot(tmp_path: Path, assignments: list[str] | None) -> SourceSnapshot:
    write_directory(tmp_path, [user("direct"), user("both"), user("member"), user("nested"), user("outside")],
                    [group("assigned", members=["member", "both", "inner"]), group("inner", members=["nested"]),
                     group("other", members=["outside"])],
                    assignments=assignments)
    return CsvSource(tmp_path).read()


def test_assigned_users_are_direct_assignments_and_direct_members_of_assigned_groups(tmp_path: Path) -> None:
    assignments = effective_assignments(snapshot(tmp_path, ["direct", "both", "assigned"]))
    assert assignments.users == frozenset({"direct", "both", "member"})
    assert assignments.groups == frozenset({"assigned"})
    assert assignments.known is True
    read = CsvSource(tmp_path).read()
    assert assignments.includes(read.users["member"]) and not assignments.includes(read.users["outside"])
    assert assignments.includes(read.groups["assigned"]) and not assignments.includes(read.groups["inner"])


def test_members_of_a_nested_group_are_not_assigned_as_in_entra(tmp_path: Path) -> None:
    assignments = effective_assignments(snapshot(tmp_path, ["assigned"]))
    assert "nested" not in assignments.users
    assert "inner" not in assignments.groups


def test_no_assignments_file_assigns_nobody(tmp_path: Path) -> None:
    assignments = effective_assignments(snapshot(tmp_path, None))
    assert assignments.users == frozenset() and assignments.groups == frozenset() and assignments.known


def test_a_source_without_assignments_is_reported_as_unknown(tmp_path: Path) -> None:
    read = snapshot(tmp_path, None)
    unknown = SourceSnapshot(read.users, read.groups, None, read.watermark)
    assignments = effective_assignments(unknown)
    assert assignments.known is False and assignments.users == frozenset()


def test_a_clause_built_directly_is_resolved_and_compiled() -> None:
    built = ScopingClause("department", "equal", "Sales")
    assert built.operator == "EQUALS" and built.evaluate({"department": "Sales"}) is True
    assert ScopingClause("mail", "is_null", "").value is None
    with pytest.raises(ValueError, match="REGEX MATCH invalid regular expression"):
        ScopingClause("mail", "REGEX MATCH", "(")
    with pytest.raises(KeyError, match="unknown operator"):
        ScopingClause("mail", "LIKE", "x")


clause_data = st.one_of(
    st.builds(lambda attribute, operator: {"attribute": attribute, "operator": operator},
              st.sampled_from(["mail", "department"]), st.sampled_from(["IS NULL", "is not null", "IS_TRUE"])),
    st.builds(lambda attribute, operator, value: {"attribute": attribute, "operator": operator, "value": value},
              st.sampled_from(["mail", "department"]),
              st.sampled_from(["EQUALS", "not equals", "Includes", "&", "STARTSWITH", "ISIN", "REGEX MATCH"]),
              st.text(alphabet="abc,. ", min_size=1, max_size=6).filter(str.strip)),
    st.builds(lambda operator, value: {"attribute": "employeeNumber", "operator": operator, "value": value},
              st.sampled_from(["Greater_Than", "lessthan", "ISBITSET"]), st.integers(-1000, 1000)),
)
filters_data = st.lists(st.fixed_dictionaries({
    "title": st.text(min_size=1, max_size=10).filter(str.strip),
    "clauses": st.lists(clause_data, min_size=1, max_size=4)}), max_size=3)
attributes_data = st.fixed_dictionaries({}, optional={
    "mail": st.sampled_from(["a", "a.b", "abc", "", "b,c"]), "department": st.sampled_from(["a", "c", "ab"]),
    "employeeNumber": st.sampled_from(["5", "-3", "x", "1000"])})


@settings(max_examples=200, deadline=None)
@given(filters_data, attributes_data)
def test_exported_filters_parse_back_equal_and_decide_alike(data: list[dict[str, Any]],
                                                            attributes: dict[str, str]) -> None:
    filters = parse_scoping_filters(data)
    again = parse_scoping_filters(json.loads(json.dumps([f.to_json() for f in filters])))
    assert again == filters
    assert evaluate_scope(again, attributes) == evaluate_scope(filters, attributes)
    assert passes_filters(filters, attributes) is evaluate_scope(filters, attributes).in_scope


def test_filters_read_the_csv_sources_typed_values(tmp_path: Path) -> None:
    write_directory(tmp_path, [
        user("u1", accountEnabled=True, proxyAddresses=["SMTP:a@x.com", "smtp:b@x.com"], employeeId="1000042"),
        user("u2", accountEnabled=False, employeeId="E-7"),
    ])
    read = CsvSource(tmp_path).read()
    filters = parse_scoping_filters([{"title": "Enabled staff with an alias", "clauses": [
        {"attribute": "accountEnabled", "operator": "IS TRUE"},
        {"attribute": "proxyAddresses", "operator": "ISIN", "value": "smtp:b@x.com"},
        {"attribute": "employeeId", "operator": "REGEX MATCH", "value": "^(1[0-9]{6})$"}]}])
    assert evaluate_scope(filters, read.users["u1"].attributes).details == [
        "Enabled staff with an alias: accountEnabled IS TRUE: true",
        "Enabled staff with an alias: proxyAddresses ISIN smtp:b@x.com: true",
        "Enabled staff with an alias: employeeId REGEX MATCH ^(1[0-9]{6})$: true",
    ]
    decision = evaluate_scope(filters, read.users["u2"].attributes)
    assert decision.in_scope is False
    assert decision.details[1] == "Enabled staff with an alias: proxyAddresses ISIN smtp:b@x.com: false"
