"""Specification of the SCIM filter and PATCH path parser (RFC 7644 §3.4.2.2, §3.5.2)."""

from __future__ import annotations

import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from identity_sync.errors import BadRequest
from identity_sync.scim.filter import PatchPath, format_filter, parse_filter, parse_patch_path
from identity_sync.scim.filter_ast import COMPARISON_OPERATORS, And, AttrPath, Compare, Not, Or, Present, ValuePath

ENTERPRISE = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"
GLOBAL_RELAY = "urn:ietf:params:scim:schemas:extension:GlobalRelay:2.0:User"


def path(attr: str, sub: str | None = None, urn: str | None = None) -> AttrPath:
    return AttrPath(urn, attr, sub)


def eq(attr: str, value: object) -> Compare:
    return Compare(path(attr), "eq", value)  # type: ignore[arg-type]


def eq_urn(attr: str, value: str, urn: str) -> Compare:
    return Compare(path(attr, urn=urn), "eq", value)


def assert_invalid_filter(text: str, **limits: int) -> BadRequest:
    with pytest.raises(BadRequest) as info:
        parse_filter(text, **limits)
    assert info.value.scim_type == "invalidFilter"
    assert info.value.status == 400
    return info.value


def assert_invalid_path(text: str) -> None:
    with pytest.raises(BadRequest) as info:
        parse_patch_path(text)
    assert info.value.scim_type == "invalidPath"


# -- comparisons --------------------------------------------------------------------------


@pytest.mark.parametrize("op", sorted(COMPARISON_OPERATORS))
def test_every_comparison_operator_is_parsed(op: str) -> None:
    assert parse_filter(f'userName {op} "bjensen"') == Compare(path("userName"), op, "bjensen")


@pytest.mark.parametrize("op", ["EQ", "Eq", "sW", "GE"])
def test_operators_are_case_insensitive_and_lower_cased_in_the_ast(op: str) -> None:
    assert parse_filter(f'userName {op} "x"') == Compare(path("userName"), op.lower(), "x")


def test_present_operator() -> None:
    assert parse_filter("title pr") == Present(path("title"))
    assert parse_filter("title PR") == Present(path("title"))


def test_sub_attribute_path() -> None:
    assert parse_filter('meta.lastModified gt "2011-05-13T04:42:34Z"') == Compare(
        path("meta", "lastModified"), "gt", "2011-05-13T04:42:34Z"
    )


def test_ref_is_accepted_as_attribute_and_sub_attribute_name() -> None:
    assert parse_filter("members.$ref pr") == Present(path("members", "$ref"))
    assert parse_filter('$ref eq "x"') == eq("$ref", "x")


# -- logical operators, precedence, parentheses ------------------------------------------


def test_and_binds_tighter_than_or() -> None:
    assert parse_filter("a pr or b pr and c pr") == Or(Present(path("a")), And(Present(path("b")), Present(path("c"))))
    assert parse_filter("a pr and b pr or c pr") == Or(And(Present(path("a")), Present(path("b"))), Present(path("c")))


def test_and_and_or_are_left_associative() -> None:
    a, b, c = Present(path("a")), Present(path("b")), Present(path("c"))
    assert parse_filter("a pr and b pr and c pr") == And(And(a, b), c)
    assert parse_filter("a pr or b pr or c pr") == Or(Or(a, b), c)


def test_parentheses_override_precedence() -> None:
    a, b, c = Present(path("a")), Present(path("b")), Present(path("c"))
    assert parse_filter("(a pr or b pr) and c pr") == And(Or(a, b), c)
    assert parse_filter("a pr and (b pr and c pr)") == And(a, And(b, c))
    assert parse_filter("((a pr))") == a


def test_logical_keywords_are_case_insensitive() -> None:
    a, b = Present(path("a")), Present(path("b"))
    assert parse_filter("a pr AND b pr") == And(a, b)
    assert parse_filter("a pr Or b pr") == Or(a, b)
    assert parse_filter("NOT (a pr)") == Not(a)


def test_not_binds_tighter_than_and() -> None:
    assert parse_filter('userType ne "Employee" and not (emails co "example.com" or emails.value co "x.org")') == And(
        Compare(path("userType"), "ne", "Employee"),
        Not(Or(Compare(path("emails"), "co", "example.com"), Compare(path("emails", "value"), "co", "x.org"))),
    )


def test_not_without_space_before_parenthesis() -> None:
    assert parse_filter("not(a pr)") == Not(Present(path("a")))


def test_attribute_called_not_or_pr_is_still_an_attribute() -> None:
    assert parse_filter("not pr") == Present(path("not"))
    assert parse_filter('pr eq "x"') == eq("pr", "x")


def test_tabs_and_runs_of_spaces_are_whitespace() -> None:
    assert parse_filter('  userName\t\teq    "x"  ') == eq("userName", "x")


# -- literals -----------------------------------------------------------------------------


def test_string_escapes_follow_json() -> None:
    assert parse_filter(r'a eq "say \"hi\""') == eq("a", 'say "hi"')
    assert parse_filter(r'a eq "back\\slash \/ \b\f\n\r\t"') == eq("a", "back\\slash / \b\f\n\r\t")
    assert parse_filter(r'a eq "\u00e9\u00C9"') == eq("a", "éÉ")
    assert parse_filter(r'a eq "\ud83d\ude00"') == eq("a", "😀")


def test_apostrophes_need_no_escaping() -> None:
    assert parse_filter('name.familyName co "O\'Malley"') == Compare(path("name", "familyName"), "co", "O'Malley")


def test_non_ascii_strings_are_kept() -> None:
    assert parse_filter('displayName eq "Zoë 東京"') == eq("displayName", "Zoë 東京")


@pytest.mark.parametrize(
    "literal",
    [r'"\x"', r'"\u12"', r'"\u12g4"', r'"\ud800"', r'"\udc00"', '"tab\tinside"', '"unterminated', '"ends in \\'],
)
def test_invalid_strings_are_rejected(literal: str) -> None:
    assert_invalid_filter(f"a eq {literal}")


@pytest.mark.parametrize(
    ("text", "value"),
    [("true", True), ("False", False), ("NULL", None), ("0", 0), ("-12", -12), ("1.5", 1.5), ("-0.25", -0.25)],
)
def test_keyword_and_number_literals(text: str, value: object) -> None:
    result = parse_filter(f"a eq {text}")
    assert isinstance(result, Compare)
    assert result.value == value and type(result.value) is type(value)


def test_exponent_numbers_are_floats() -> None:
    assert parse_filter("a gt 1e3") == Compare(path("a"), "gt", 1000.0)
    assert parse_filter("a gt 2.5E-1") == Compare(path("a"), "gt", 0.25)


def test_numbers_too_large_are_rejected_not_crashing() -> None:
    assert_invalid_filter("a gt 1e999")
    assert_invalid_filter("a gt " + "9" * 5000, max_length=10_000)


def test_quoted_true_stays_a_string_for_the_schema_to_coerce() -> None:
    assert parse_filter('roles[primary eq "True"]') == ValuePath(path("roles"), eq("primary", "True"))


def test_unquoted_bare_word_is_a_string_literal_for_entra() -> None:
    assert parse_filter("externalId eq jyoung") == eq("externalId", "jyoung")
    assert parse_filter("mail eq j.young@example.com") == eq("mail", "j.young@example.com")
    # Words that are not valid JSON numbers stay strings.
    assert parse_filter("employeeNumber eq 007") == eq("employeeNumber", "007")


# -- URN-qualified paths ------------------------------------------------------------------


def test_enterprise_urn_path() -> None:
    assert parse_filter(f'{ENTERPRISE}:employeeNumber eq "701984"') == eq_urn("employeeNumber", "701984", ENTERPRISE)


def test_urn_path_with_sub_attribute_splits_on_the_last_colon() -> None:
    assert parse_filter(f'{ENTERPRISE}:manager.value eq "26118915"') == Compare(
        path("manager", "value", ENTERPRISE), "eq", "26118915"
    )


def test_custom_extension_urn_path() -> None:
    assert parse_filter(f"{GLOBAL_RELAY}:extensionAttribute7 pr") == Present(
        path("extensionAttribute7", urn=GLOBAL_RELAY)
    )


def test_core_schema_urn_path() -> None:
    core = "urn:ietf:params:scim:schemas:core:2.0:User"
    assert parse_filter(f'{core}:userName sw "J"') == Compare(path("userName", urn=core), "sw", "J")


@pytest.mark.parametrize("text", ["notaurn:attr pr", "urn::attr pr", "urn:x: pr", f"{ENTERPRISE}:1abc pr"])
def test_malformed_urn_paths_are_rejected(text: str) -> None:
    assert_invalid_filter(text)


# -- value filters ------------------------------------------------------------------------


def test_value_filter_paths_are_relative() -> None:
    assert parse_filter('emails[type eq "work"]') == ValuePath(path("emails"), eq("type", "work"))


def test_value_filter_with_logical_expression() -> None:
    assert parse_filter('emails[type eq "work" and value co "@example.com"] or ims[type eq "xmpp"]') == Or(
        ValuePath(path("emails"), And(eq("type", "work"), Compare(path("value"), "co", "@example.com"))),
        ValuePath(path("ims"), eq("type", "xmpp")),
    )


def test_value_filter_on_urn_attribute() -> None:
    assert parse_filter(f'{ENTERPRISE}:manager[value eq "x"]') == ValuePath(
        path("manager", urn=ENTERPRISE), eq("value", "x")
    )


def test_entra_sub_attribute_after_bracket_is_folded_into_the_value_filter() -> None:
    assert parse_filter('emails[type eq "work"].value eq "x@y.com"') == ValuePath(
        path("emails"), And(eq("type", "work"), eq("value", "x@y.com"))
    )
    assert parse_filter('emails[type eq "work"].value pr and active eq true') == And(
        ValuePath(path("emails"), And(eq("type", "work"), Present(path("value")))), eq("active", True)
    )


@pytest.mark.parametrize(
    "text",
    [
        "a[b[c eq 1]]",  # nested value filters
        'emails[urn:x:y:type eq "work"]',  # inner paths are relative
        'emails[type.x eq "work"]',
        'name.x[type eq "work"]',  # '[' after a sub-attribute
        'emails[type eq "work"].value',  # folded sub-attribute needs an operator
        'emails[type eq "work"].value.x eq "a"',
        'emails[type eq "work"]value eq "a"',
        "emails[]",
    ],
)
def test_invalid_value_filters(text: str) -> None:
    assert_invalid_filter(text)


# -- garbage ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text",
    [
        "",
        "   ",
        "userName",
        "userName eq",
        'eq "x"',
        '"x" eq "x"',
        'userName eq "x',
        'userName eq "x" and',
        'userName eq "x" or or',
        'userName foo "x"',
        'userName eq "x" "y"',
        "userName eq and",
        "(a pr",
        "a pr)",
        "a pr]",
        "emails[type pr",
        "(a pr]",
        "not a pr",
        "not (a pr",
        "a..b pr",
        "a.b.c pr",
        "1a pr",
        ".a pr",
        "a\npr",
        "a pr\x00",
        "a eq \x7f",
    ],
)
def test_garbage_is_an_invalid_filter(text: str) -> None:
    assert_invalid_filter(text)


def test_error_detail_names_position_and_expectation() -> None:
    error = assert_invalid_filter('userName xx "bjensen"')
    assert "position 10" in error.detail
    assert "expected an operator" in error.detail


def test_error_detail_echoes_only_a_short_fragment() -> None:
    error = assert_invalid_filter('userName eq "x" ' + "junk " * 200)
    assert len(error.detail) < 160


# -- limits -------------------------------------------------------------------------------


def test_length_limit() -> None:
    text = 'a eq "' + "x" * 4089 + '"'
    assert len(text) == 4096
    parse_filter(text)
    assert_invalid_filter(text + " ")
    assert_invalid_filter("a pr", max_length=3)


def test_depth_limit_allows_32_and_refuses_33() -> None:
    parse_filter("(" * 32 + "a pr" + ")" * 32)
    assert_invalid_filter("(" * 33 + "a pr" + ")" * 33)
    assert_invalid_filter("(" * 31 + 'emails[type eq "x"]' + ")" * 31 + "x", max_depth=31)


def test_parentheses_inside_strings_do_not_count_towards_depth() -> None:
    assert parse_filter('a eq "' + "(" * 100 + '"') == eq("a", "(" * 100)


@pytest.mark.parametrize("opener", ["(", "[", "not ("])
def test_depth_bomb_of_100000_characters_is_refused_fast(opener: str) -> None:
    text = (opener * 100_000)[:100_000]
    started = time.perf_counter()
    assert_invalid_filter(text)  # by the length limit
    assert_invalid_filter(text, max_length=200_000)  # by the depth pre-scan
    assert time.perf_counter() - started < 0.1


def test_raised_depth_limit_still_fails_cleanly_instead_of_recursion_error() -> None:
    depth = 20_000
    assert_invalid_filter("(" * depth + "a pr" + ")" * depth, max_length=10**6, max_depth=10**6)


def test_terms_limit_allows_50_and_refuses_51() -> None:
    parse_filter(" and ".join(["a pr"] * 50))
    assert_invalid_filter(" and ".join(["a pr"] * 51))
    assert_invalid_filter(" or ".join(['emails[type eq "w"].value eq "x"'] * 26))  # Entra's form counts twice
    assert_invalid_filter("a pr and b pr", max_terms=1)


# -- caching ------------------------------------------------------------------------------


def test_repeated_filters_share_the_cached_ast() -> None:
    assert parse_filter('userName eq "cached"') is parse_filter('userName eq "cached"')


def test_limits_are_part_of_the_cache_key() -> None:
    text = " and ".join(["a pr"] * 3)
    parse_filter(text)
    assert_invalid_filter(text, max_terms=2)


# -- PATCH paths --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("userName", PatchPath(path("userName"), None, None)),
        ("name.familyName", PatchPath(path("name", "familyName"), None, None)),
        (f"{ENTERPRISE}:manager", PatchPath(path("manager", urn=ENTERPRISE), None, None)),
        (f"{ENTERPRISE}:manager.value", PatchPath(path("manager", "value", ENTERPRISE), None, None)),
        (f"{GLOBAL_RELAY}:extensionAttribute7", PatchPath(path("extensionAttribute7", urn=GLOBAL_RELAY), None, None)),
        ('emails[type eq "work"].value', PatchPath(path("emails"), eq("type", "work"), "value")),
        ('addresses[type eq "work"].streetAddress', PatchPath(path("addresses"), eq("type", "work"), "streetAddress")),
        ('roles[primary eq "True"].value', PatchPath(path("roles"), eq("primary", "True"), "value")),
        ('members[value eq "2819c223-7f76"]', PatchPath(path("members"), eq("value", "2819c223-7f76"), None)),
        (r'members[value eq "id with \"quote\""]', PatchPath(path("members"), eq("value", 'id with "quote"'), None)),
        ('manager[value eq "x"]', PatchPath(path("manager"), eq("value", "x"), None)),
        (
            'emails[type eq "work" and primary eq true]',
            PatchPath(path("emails"), And(eq("type", "work"), eq("primary", True)), None),
        ),
    ],
)
def test_valid_patch_paths(text: str, expected: PatchPath) -> None:
    assert parse_patch_path(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "",
        "   ",
        'emails[type eq "work"].value.x',
        'emails[type eq "work"]value',
        'emails[type eq "work"].',
        'emails[type eq "work"',
        "emails[]",
        'emails[type eq "work"].value eq "x"',
        'userName eq "x"',
        "a.b.c",
        "urn::x",
        '"userName"',
        "emails[a[b eq 1]]",
        "(userName)",
        "x" * 5000,
    ],
)
def test_invalid_patch_paths(text: str) -> None:
    assert_invalid_path(text)


# -- printer and properties ---------------------------------------------------------------

names = st.sampled_from(["userName", "emails", "type", "value", "$ref", "x-y_1", "not", "pr", "and", "eq", "Or"])
urns = st.sampled_from([None, ENTERPRISE, GLOBAL_RELAY])
literals = st.one_of(
    st.text(st.characters(blacklist_characters="\x00"), max_size=12),  # NUL is refused by design
    st.booleans(),
    st.none(),
    st.integers(),
    st.floats(allow_nan=False, allow_infinity=False),
)
operators = st.sampled_from(sorted(COMPARISON_OPERATORS))


def terms(paths: st.SearchStrategy[AttrPath]) -> st.SearchStrategy:
    return st.one_of(st.builds(Present, paths), st.builds(Compare, paths, operators, literals))


def logical(base: st.SearchStrategy, max_leaves: int) -> st.SearchStrategy:
    return st.recursive(
        base,
        lambda children: st.one_of(
            st.builds(And, children, children), st.builds(Or, children, children), st.builds(Not, children)
        ),
        max_leaves=max_leaves,
    )


absolute_paths = st.builds(AttrPath, urns, names, st.none() | names)
relative_paths = st.builds(AttrPath, st.none(), names)
value_paths = st.builds(ValuePath, st.builds(AttrPath, urns, names), logical(terms(relative_paths), 4))
filters = logical(st.one_of(terms(absolute_paths), value_paths), 12)


@settings(max_examples=200, deadline=None)
@given(filters)
def test_format_then_parse_round_trips(ast: object) -> None:
    assert parse_filter(format_filter(ast), max_depth=1000, max_terms=1000) == ast  # type: ignore[arg-type]


def test_format_filter_emits_only_needed_parentheses() -> None:
    text = 'a pr and (b pr or c pr) or not (d eq "x\\"y")'
    assert format_filter(parse_filter(text)) == text


def test_format_filter_refuses_non_finite_numbers() -> None:
    with pytest.raises(ValueError):
        format_filter(Compare(path("a"), "gt", float("inf")))


filter_fragments = st.sampled_from(
    ["(", ")", "[", "]", '"', "\\", "\\u", "and", "or", "not", "pr", "eq", "gt", "userName", "emails", ".value",
     '"x"', "1", "-1.5e3", "true", "null", f"{ENTERPRISE}:manager", "urn:", ":", ".", "$ref", " ", "\t"]
)  # fmt: skip
grammar_soup = st.lists(filter_fragments, max_size=20).map("".join)


@settings(max_examples=300, deadline=None)
@given(st.one_of(st.text(max_size=60), grammar_soup))
def test_arbitrary_input_only_ever_raises_bad_request(text: str) -> None:
    for parse in (parse_filter, parse_patch_path):
        try:
            parse(text)
        except BadRequest as error:
            assert error.scim_type in ("invalidFilter", "invalidPath")


def test_a_nul_character_is_refused_in_a_string_literal() -> None:
    """No stored value can contain NUL, and PostgreSQL cannot receive one as a parameter."""
    with pytest.raises(BadRequest) as error:
        parse_filter('userName eq "a\\u0000b"')
    assert error.value.scim_type == "invalidFilter"
