"""Replace (§2.3) in each of its modes, and .NET regular expressions read into Python's."""

from __future__ import annotations

import re

import pytest

from identity_sync.engine.mapping.expressions import ExpressionError, ExpressionEvaluationError, parse_expression
from identity_sync.engine.mapping.expressions.dotnet_regex import (
    RegexTranslationError,
    compile_dotnet,
    parse_replacement,
    translate_pattern,
)


def evaluate(text: str, **attributes: object) -> object:
    return parse_expression(text).evaluate(attributes)


class TestDocumentedExamples:
    def test_old_value_and_replacement_value(self) -> None:
        text = 'Replace([BusinessTitle],"Product Developer", , , "Software Engineer", , )'
        assert evaluate(text, BusinessTitle="Product Developer") == "Software Engineer"

    def test_old_value_and_template(self) -> None:
        assert evaluate('Replace([UserID],"<username>", , , , , "<username>@contoso.com")', UserID="jsmith") == (
            "jsmith@contoso.com"
        )

    def test_regex_with_named_groups_in_the_replacement(self) -> None:
        text = r'Replace([telephoneNumber], , "\\+(?<isdCode>\\d* )(?<phoneNumber>\\d{10})", , "${phoneNumber}", , )'
        assert evaluate(text, telephoneNumber="+91 9998887777") == "9998887777"

    def test_regex_collapsing_a_phone_number(self) -> None:
        text = r'Replace([mobile], , "[()\\s-]+", , "", , )'
        assert evaluate(text, mobile="1 (999) 888-7777") == "19998887777"
        # Microsoft's page shows "+1 (999) 888-7777" → "19998887777", but its own pattern does not
        # match "+"; .NET (and we) keep it.
        assert evaluate(text, mobile="+1 (999) 888-7777") == "+19998887777"
        assert evaluate(r'Replace([mobile], , "[()\\s+-]+", , "", , )', mobile="+1 (999) 888-7777") == "19998887777"

    def test_regex_group_and_replacement_value_replace_only_the_group(self) -> None:
        text = r'Replace([AddressLineData], ,"(?<streetNumber>^\\d*)","streetNumber", "888", , )'
        assert evaluate(text, AddressLineData="545 Tremont Street") == "888 Tremont Street"
        text = r'Replace([userPrincipalName], , "(?<Suffix>@(.)*)", "Suffix", "", , )'
        assert evaluate(text, userPrincipalName="jsmith@contoso.com") == "jsmith"

    def test_regex_group_and_replacement_attribute_when_the_source_is_empty(self) -> None:
        text = (r'Replace([telephoneNumber], , "\\+(?<isdCode>\\d* )(?<phoneNumber>\\d{10})", "phoneNumber" , , '
                r'[mobile], )')
        assert evaluate(text, telephoneNumber="", mobile="+91 8887779999") == "8887779999"
        assert evaluate(text, mobile="+91 8887779999") == "8887779999"
        assert evaluate(text, telephoneNumber="+1 5550001111", mobile="+91 8887779999") == "+1 5550001111"
        assert evaluate(text, telephoneNumber="", mobile="no digits") == ""
        assert evaluate(text) is None

    def test_removing_matches(self) -> None:
        assert evaluate('Replace([mailNickname], , "[a-zA-Z_]*", , "", , )', mailNickname="john_doe72") == "72"

    def test_strip_known_domain(self) -> None:
        assert evaluate('Replace([mail], "@contoso.com", , ,"", ,)', mail="john.doe@contoso.com") == "john.doe"


class TestLiteralModes:
    def test_every_occurrence_case_sensitive(self) -> None:
        assert evaluate('Replace([s], "a", , , "o", , )', s="banana BANANA") == "bonono BANANA"

    def test_regex_characters_in_old_value_are_plain_text(self) -> None:
        assert evaluate('Replace([s], ".", , , "-", , )', s="a.b.c") == "a-b-c"

    def test_template_wins_over_replacement_value(self) -> None:
        assert evaluate('Replace([u], "<u>", , , "ignored", , "<u>@x")', u="ann") == "ann@x"

    def test_null_source_stays_null_and_null_arguments_count_as_empty(self) -> None:
        assert evaluate('Replace([missing], "a", , , "b", , )') is None
        assert evaluate('Replace([missing], "<u>", , , , , "<u>@x")') is None
        assert evaluate('Replace([s], [old], , , "b", , )', s="abc") == "abc"
        assert evaluate('Replace([s], "b", , , [new], , )', s="abc") == "ac"


class TestRegexModes:
    def test_numbered_whole_match_and_dollar_references(self) -> None:
        assert evaluate(r'Replace([s], , "(\\w+)@(\\w+)", , "$2 at $1 ($0) $$1 $& ${2}", , )', s="ann@contoso") == (
            "contoso at ann (ann@contoso) $1 ann@contoso contoso"
        )

    def test_references_to_groups_that_do_not_exist_stay_literal(self) -> None:
        assert evaluate(r'Replace([s], , "(?<a>x)", , "${b}$9-${a}", , )', s="x") == "${b}$9-x"

    def test_a_group_that_did_not_take_part_is_empty(self) -> None:
        assert evaluate(r'Replace([s], , "(?<a>x)|(?<b>y)", , "[${a}${b}]", , )', s="xy") == "[x][y]"

    def test_back_references_and_lookbehind(self) -> None:
        assert evaluate(r'Replace([s], , "(?<c>\\w)\\k<c>", , "${c}", , )', s="aabbc") == "abc"
        assert evaluate(r'Replace([s], , "(?<=@)\\w+", , "x", , )', s="a@b") == "a@x"

    def test_group_mode_leaves_the_rest_of_each_match(self) -> None:
        assert evaluate(r'Replace([s], , "(?<n>\\d+)(px)", "n", "0", , )', s="10px 20px") == "0px 0px"

    def test_group_mode_with_a_group_that_did_not_take_part(self) -> None:
        assert evaluate(r'Replace([s], , "a(?<g>z)?", "g", "Y", , )', s="aaz") == "aaY"

    def test_a_pattern_from_an_attribute(self) -> None:
        assert evaluate('Replace([s], , [p], , "#", , )', s="a1b22", p=r"\d+") == "a#b#"
        with pytest.raises(ExpressionEvaluationError, match="Replace: invalid regular expression"):
            evaluate('Replace([s], , [p], , "#", , )', s="a", p="(")

    def test_a_group_name_from_an_attribute_must_exist(self) -> None:
        with pytest.raises(ExpressionEvaluationError, match="regexGroupName 'nope' is not a group"):
            evaluate(r'Replace([s], , "(?<a>x)", [g], "y", , )', s="x", g="nope")


class TestParseTimeChecks:
    @pytest.mark.parametrize(
        ("arguments", "message"),
        [
            ('[s], "a", "b", , "c", , ', "give oldValue or regexPattern, not both"),
            ('[s], "a", , , , , ', "with oldValue, give replacementValue (argument 5) or template (argument 7)"),
            ('[s], , "a", , , , ', "with regexPattern, give replacementValue (argument 5)"),
            ("[s], , , , , , ", "give oldValue (argument 2) or regexPattern (argument 3)"),
            ("[s]", "give oldValue (argument 2) or regexPattern (argument 3)"),
            ('[s], , "(?<a>x)", "b", "c", , ', "regexGroupName 'b' is not a group of the pattern"),
        ],
    )
    def test_modes_that_cannot_work(self, arguments: str, message: str) -> None:
        with pytest.raises(ExpressionError, match=re.escape(message)):
            parse_expression(f"Replace({arguments})")

    def test_an_invalid_constant_regex_points_into_the_pattern(self) -> None:
        with pytest.raises(ExpressionError) as caught:
            parse_expression('Replace([s], , "ab(", , "", , )')
        assert "invalid regular expression" in caught.value.message
        assert 16 <= caught.value.column <= 20

    def test_unsupported_dotnet_constructs_are_named(self) -> None:
        with pytest.raises(ExpressionError, match="Unicode categories"):
            parse_expression(r'Replace([s], , "\\p{L}+", , "", , )')
        with pytest.raises(ExpressionError, match="balancing groups"):
            parse_expression(r'Replace([s], , "(?<a-b>x)", , "", , )')


class TestTranslation:
    @pytest.mark.parametrize(
        ("dotnet", "python"),
        [
            ("(?<name>a)", "(?P<name>a)"),
            ("(?'name'a)", "(?P<name>a)"),
            (r"\k<name>", "(?P=name)"),
            (r"\k'name'", "(?P=name)"),
            (r"\k<1>", r"\1"),
            ("(?<=a)(?<!b)", "(?<=a)(?<!b)"),
            (r"[(?<x>]", r"[(?<x>]"),
            (r"\(?<x>", r"\(?<x>"),
            ("[]a]", r"[\]a]"),
            ("[^]a]", r"[^\]a]"),
            (r"a\z", r"a\Z"),
            (r"a\Z", r"a(?=\n?\Z)"),
            ("(?i:ab)(?:c)", "(?i:ab)(?:c)"),
            ("[[a&&b~~c||d--e]", r"[\[a\&\&b\~\~c\|\|d\--e]"),
        ],
    )
    def test_translate_pattern(self, dotnet: str, python: str) -> None:
        assert translate_pattern(dotnet) == python

    @pytest.mark.parametrize(
        "pattern",
        ["a\\", r"\k<", r"\k<a", "(?<a", "(?<1>x)", "(?<a b>x)", "(?P<a>x)", r"[\p{L}]", "[a-z-[aeiou]]"],
    )
    def test_malformed_or_unsupported(self, pattern: str) -> None:
        with pytest.raises(RegexTranslationError):
            translate_pattern(pattern)

    def test_literal_brackets_and_set_operators_in_classes_match_as_in_dotnet(self) -> None:
        assert evaluate(r'Replace([s], , "[[&~|]+", , "_", , )', s="a[b&&c~d|e") == "a_b_c_d_e"

    def test_compiled_patterns_are_cached(self) -> None:
        assert compile_dotnet("(?<a>x)") is compile_dotnet("(?<a>x)")

    def test_replacement_longest_numbered_group(self) -> None:
        compiled = re.compile("(a)(b)(c)(d)(e)(f)(g)(h)(i)(j)(k)")
        match = compiled.match("abcdefghijk")
        assert match is not None
        assert parse_replacement("$11|$12|$1x|$", compiled).expand(match) == "k|a2|ax|$"
