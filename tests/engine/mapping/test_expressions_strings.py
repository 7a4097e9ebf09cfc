"""String functions (§2.3): Append, InStr, Left, Mid, StripSpaces, ToLower, ToUpper, Word, PCase,
NormalizeDiacritics. Documented examples first, then nulls and edges."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from identity_sync.engine.mapping.expressions import ExpressionEvaluationError, parse_expression


def evaluate(text: str, **attributes: object) -> object:
    return parse_expression(text).evaluate(attributes)


class TestAppend:
    def test_documented_example(self) -> None:
        assert evaluate('Append([userPrincipalName], ".test")', userPrincipalName="John.Doe@contoso.com") == (
            "John.Doe@contoso.com.test"
        )

    def test_null_source_stays_null_and_null_suffix_appends_nothing(self) -> None:
        assert evaluate('Append([missing], ".test")') is None
        assert evaluate("Append([a], [missing])", a="x") == "x"

    def test_numbers_and_booleans_are_text(self) -> None:
        assert evaluate("Append([n], [b])", n=12, b=True) == "12True"

    def test_a_multi_valued_source_is_an_error_unless_it_has_one_value(self) -> None:
        assert evaluate('Append([one], "!")', one=["only"]) == "only!"
        with pytest.raises(ExpressionEvaluationError, match="expects a single value, got a multi-valued attribute"):
            evaluate('Append([many], "!")', many=["a", "b"])


class TestLeft:
    def test_documented_example_and_rules(self) -> None:
        assert evaluate('Left("John Doe", 3)') == "Joh"
        assert evaluate('Left("John Doe", 0)') == ""
        assert evaluate('Left("John Doe", -2)') == "John Doe"
        assert evaluate('Left("Jo", 5)') == "Jo"
        assert evaluate("Left([missing], 3)") == ""

    def test_a_count_that_is_not_a_number_is_an_error_at_the_call(self) -> None:
        with pytest.raises(ExpressionEvaluationError) as caught:
            evaluate('Append("", Left("abc", [n]))', n="three")
        assert caught.value.column == 12
        assert "Left: expected numChars to be a number, got 'three'" in str(caught.value)

    def test_numeric_text_counts(self) -> None:
        assert evaluate('Left("abcdef", [n])', n=" 2 ") == "ab"


class TestMid:
    def test_documented_alias_example(self) -> None:
        assert evaluate("Append(Mid([givenName], 1, 3), Mid([surname], 1, 5))", givenName="John", surname="Doe") == (
            "JohDoe"
        )

    def test_past_the_end_stops_at_the_end(self) -> None:
        assert evaluate('Mid("abcdef", 4, 100)') == "def"
        assert evaluate('Mid("abc", 10, 2)') == ""

    def test_start_below_one_counts_from_one_and_non_positive_length_is_empty(self) -> None:
        assert evaluate('Mid("abcdef", 0, 2)') == "ab"
        assert evaluate('Mid("abcdef", -5, 2)') == "ab"
        assert evaluate('Mid("abcdef", 2, 0)') == ""
        assert evaluate('Mid("abcdef", 2, -1)') == ""

    def test_null_source(self) -> None:
        assert evaluate("Mid([missing], 1, 2)") is None


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=20), st.integers(min_value=-(2**70), max_value=2**70), st.integers(-(2**70), 2**70))
def test_left_and_mid_never_fail_on_any_integer(text: str, first: int, second: int) -> None:
    attributes = {"s": text, "a": first, "b": second}
    left = parse_expression("Left([s], [a])").evaluate(attributes)
    middle = parse_expression("Mid([s], [a], [b])").evaluate(attributes)
    assert isinstance(left, str) and isinstance(middle, str)
    assert left == ("" if first == 0 else text if first < 0 else text[:first])
    assert middle in text
    assert len(middle) <= max(second, 0)


class TestWord:
    def test_documented_examples(self) -> None:
        assert evaluate('Word("The quick brown fox",3," ")') == "brown"
        assert evaluate('Word("This,string!has&many separators",3,",!&#")') == "has"

    def test_out_of_range_null_and_below_one_are_empty(self) -> None:
        assert evaluate('Word("a b", 3, " ")') == ""
        assert evaluate('Word("a b", 0, " ")') == ""
        assert evaluate('Word([missing], 1, " ")') == ""

    def test_consecutive_delimiters_make_no_empty_words(self) -> None:
        assert evaluate('Word("a,,b", 2, ",")') == "b"

    def test_regex_characters_are_plain_delimiters(self) -> None:
        assert evaluate('Word("a]b^c\\\\d", 3, "]^\\\\")') == "c"

    def test_no_delimiters_make_the_whole_string_one_word(self) -> None:
        assert evaluate('Word("a b", 1, "")') == "a b"


class TestInStr:
    def test_documented_examples(self) -> None:
        assert evaluate('InStr("The quick brown fox","quick")') == 5
        assert evaluate('InStr("repEated","e",3,vbBinaryCompare)') == 7

    def test_text_compare_ignores_case(self) -> None:
        assert evaluate('InStr("repEated","e",3,vbTextCompare)') == 4
        assert evaluate('InStr("repEated","e",3,1)') == 4

    def test_not_found_null_and_start_past_the_end(self) -> None:
        assert evaluate('InStr("abc","z")') == 0
        assert evaluate('InStr([missing],"z")') == 0
        assert evaluate('InStr("abc","a",4)') == 0

    def test_an_empty_search_is_found_at_start(self) -> None:
        assert evaluate('InStr("abc","",2)') == 2

    def test_start_below_one_fails(self) -> None:
        with pytest.raises(ExpressionEvaluationError, match="start must be 1 or more, got 0"):
            evaluate('InStr("abc","a",0)')

    def test_a_constant_compare_type_is_checked_at_parse_time(self) -> None:
        from identity_sync.engine.mapping.expressions import ExpressionError

        with pytest.raises(ExpressionError) as caught:
            parse_expression('InStr("abc","a",1,7)')
        assert caught.value.column == 19 and "compareType" in caught.value.message
        with pytest.raises(ExpressionEvaluationError, match="compareType must be"):
            evaluate('InStr("abc","a",1,[mode])', mode="5")


class TestStripSpaces:
    def test_removes_spaces_only(self) -> None:
        assert evaluate('StripSpaces(" a b\tc ")') == "ab\tc"
        assert evaluate("StripSpaces([missing])") is None


class TestCase:
    def test_documented_upn_example(self) -> None:
        text = ('ToLower(Join("@", NormalizeDiacritics(StripSpaces(Join(".",  [PreferredFirstName], '
                '[PreferredLastName]))), "contoso.com"))')
        assert evaluate(text, PreferredFirstName="John", PreferredLastName="Smith") == "john.smith@contoso.com"

    def test_invariant_upper_keeps_sharp_s_as_dotnet_does(self) -> None:
        assert evaluate('ToUpper("straße")') == "STRAßE"
        assert evaluate('ToLower("ÀÉÎ")') == "àéî"

    def test_turkish_culture_dots_and_undots_i(self) -> None:
        assert evaluate('ToUpper("istanbul", "tr-TR")') == "İSTANBUL"
        assert evaluate('ToLower("ISPARTA", "tr-TR")') == "ısparta"
        assert evaluate('ToUpper("istanbul", "en-US")') == "ISTANBUL"
        assert evaluate('ToUpper("i", "az")') == "İ"

    def test_bad_culture_name_fails_and_nulls_stay_null(self) -> None:
        with pytest.raises(ExpressionEvaluationError, match="RFC 4646"):
            evaluate('ToLower("a", "english please")')
        assert evaluate("ToLower([missing])") is None
        assert evaluate("ToUpper([missing])") is None


class TestPCase:
    @pytest.mark.parametrize(
        ("expression", "attributes", "expected"),
        [
            ("PCase([firstName])", {"firstName": "PABLO GONSALVES (SECOND)"}, "Pablo Gonsalves (Second)"),
            ('PCase([lastName]," \'-")', {"lastName": "PINTO-DE'SILVA"}, "Pinto-De'Silva"),
            ('PCase(Join(" ",[firstName],[lastName]))', {"firstName": "GREGORY", "lastName": "JAMES"}, "Gregory James"),
        ],
    )
    def test_documented_examples(self, expression: str, attributes: dict[str, str], expected: str) -> None:
        assert parse_expression(expression).evaluate(attributes) == expected

    def test_without_separators_an_apostrophe_continues_the_word_as_in_dotnet(self) -> None:
        assert evaluate("PCase(\"O'NEIL-SMITH\")") == "O'neil-Smith"

    def test_default_separators_are_unicode_punctuation_and_symbols(self) -> None:
        assert evaluate('PCase("ann_marie+bob/CLAIRE—DAVE")') == "Ann_Marie+Bob/Claire—Dave"

    def test_with_separators_only_those_split(self) -> None:
        assert evaluate('PCase("ann-marie smith", " ")') == "Ann-marie Smith"

    def test_null(self) -> None:
        assert evaluate("PCase([missing])") is None


class TestNormalizeDiacritics:
    def test_documented_example(self) -> None:
        assert evaluate("NormalizeDiacritics([givenName])", givenName="Zoë") == "Zoe"

    @pytest.mark.parametrize(
        ("source", "expected"),
        [
            ("äàâãåáąăā", "aaaaaaaaa"),
            ("ÄÀÂÃÅÁĄĂĀǞǠ", "AAAAAAAAAAA"),
            ("æǣ Æ", "aeae AE"),
            ("çčć ÇČĆ", "ccc CCC"),
            ("ďḏ", "dd"),
            ("ëèéêęěėēḗḕ", "eeeeeeeeee"),
            ("ğḡ", "gg"),
            ("ïîìíıī İ", "iiiiii I"),
            ("ľłḹḻ ŁĽ", "llll LL"),
            ("ñńňṉ", "nnnn"),
            ("öòőõôóōṓṑȫǭȭȱ", "ooooooooooooo"),
            ("ø Ø", "oe OE"),
            ("řṟṝ", "rrr"),
            ("ß", "ss"),
            ("šśșş ŠŚȘŞ", "ssss SSSS"),
            ("ťțṯ", "ttt"),
            ("üùûúůűūǖṻ", "uuuuuuuuu"),
            ("ÿýȳ", "yyy"),
            ("źžżẕ", "zzzz"),
            ("Łukasz Øster-Ñúñez", "Lukasz OEster-Nunez"),  # the table maps Ø to OE, whatever follows
        ],
    )
    def test_entras_table(self, source: str, expected: str) -> None:
        assert parse_expression("NormalizeDiacritics([s])").evaluate({"s": source}) == expected

    def test_combining_marks_without_precomposed_forms(self) -> None:
        assert evaluate("NormalizeDiacritics([s])", s="a\u0331 A\u0331 e\u0308") == "a A e"

    def test_other_scripts_are_left_alone(self) -> None:
        for text in ("हिन्दी", "Йошкар-Ола", "日本語", "Ελλάδα"):
            assert evaluate("NormalizeDiacritics([s])", s=text) == text

    def test_null_and_ascii(self) -> None:
        assert evaluate("NormalizeDiacritics([missing])") is None
        assert evaluate('NormalizeDiacritics("plain ascii")') == "plain ascii"
