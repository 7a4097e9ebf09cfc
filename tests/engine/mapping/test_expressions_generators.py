"""Functions that read the evaluation context (§2.3): DefaultDomain, Guid, RandomString,
SelectUniqueValue."""

from __future__ import annotations

import random
import re
import string
import uuid

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from identity_sync.engine.mapping.expressions import (
    EvaluationContext,
    ExpressionError,
    ExpressionEvaluationError,
    parse_expression,
)
from identity_sync.engine.mapping.expressions.functions.generators import SPECIAL_CHARACTERS


def evaluate(text: str, context: EvaluationContext | None = None, **attributes: object) -> object:
    return parse_expression(text).evaluate(attributes, context)


class TestDefaultDomain:
    def test_from_the_context(self) -> None:
        context = EvaluationContext(default_domain="contoso.onmicrosoft.com")
        assert evaluate('Join("@", [mailNickname], DefaultDomain())', context, mailNickname="ann") == (
            "ann@contoso.onmicrosoft.com"
        )

    def test_without_one_the_object_fails(self) -> None:
        with pytest.raises(ExpressionEvaluationError, match="DefaultDomain: no default domain is configured"):
            evaluate("DefaultDomain()")


class TestGuid:
    def test_a_version_4_guid_from_the_contexts_random_source(self) -> None:
        first = evaluate("Guid()", EvaluationContext(rng=random.Random(7)))
        again = evaluate("Guid()", EvaluationContext(rng=random.Random(7)))
        assert first == again
        assert uuid.UUID(str(first)).version == 4
        assert re.fullmatch(r"[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}", str(first))

    def test_each_call_is_new(self) -> None:
        assert len({evaluate("Guid()") for _ in range(20)}) == 20


class TestRandomString:
    def test_documented_examples(self) -> None:
        context = EvaluationContext(rng=random.Random(1))
        six = str(evaluate("RandomString(6,3,0,0,3)", context))
        assert len(six) == 6 and sum(c.isdigit() for c in six) >= 3 and sum(c.islower() for c in six) >= 3
        ten = str(evaluate('RandomString(10,2,2,2,1,"?,")', context))
        assert len(ten) == 10 and "?" not in ten and "," not in ten
        assert sum(c.isdigit() for c in ten) >= 2
        assert sum(c in SPECIAL_CHARACTERS for c in ten) >= 2
        assert sum(c.isupper() for c in ten) >= 2 and sum(c.islower() for c in ten) >= 1

    def test_the_longest_is_256(self) -> None:
        assert len(str(evaluate("RandomString(256,0,0,0,0)"))) == 256
        with pytest.raises(ExpressionEvaluationError, match="length must be 1 to 256, got 257"):
            evaluate("RandomString(257,0,0,0,0)")

    @pytest.mark.parametrize(
        ("arguments", "message"),
        [
            ("4,2,2,1,0", "the minimums add up to more than length 4"),
            ("4,-1,0,0,0", "must not be negative"),
            ('4,1,0,0,0,"0123456789"', "charactersToAvoid leaves no numbers"),
            ("0,0,0,0,0", "length must be 1 to 256, got 0"),
        ],
    )
    def test_impossible_requests_fail(self, arguments: str, message: str) -> None:
        with pytest.raises(ExpressionEvaluationError, match=message):
            evaluate(f"RandomString({arguments})")

    def test_avoiding_everything_fails(self) -> None:
        everything = string.digits + string.ascii_letters + SPECIAL_CHARACTERS
        everything = everything.replace("\\", "\\\\").replace('"', '\\"')
        with pytest.raises(ExpressionEvaluationError, match="no characters at all"):
            evaluate(f'RandomString(3,0,0,0,0,"{everything}")')


@settings(max_examples=150, deadline=None)
@given(
    st.integers(min_value=0, max_value=5), st.integers(0, 5), st.integers(0, 5), st.integers(0, 5),
    st.integers(0, 20), st.text(alphabet="abcXYZ019!@#", max_size=6), st.integers(0, 2**32),
)
def test_random_strings_meet_their_minimums(numbers: int, special: int, capital: int, lower: int, extra: int,
                                            avoid: str, seed: int) -> None:
    length = max(1, numbers + special + capital + lower + extra)
    text = f'RandomString({length},{numbers},{special},{capital},{lower},"{avoid}")'
    value = str(parse_expression(text).evaluate({}, EvaluationContext(rng=random.Random(seed))))
    assert len(value) == length
    assert not set(value) & set(avoid)
    assert sum(c.isdigit() for c in value) >= numbers
    assert sum(c in SPECIAL_CHARACTERS for c in value) >= special
    assert sum(c.isupper() for c in value) >= capital
    assert sum(c.islower() for c in value) >= lower


class TestSelectUniqueValue:
    UPN = """SelectUniqueValue(
        Join("@", NormalizeDiacritics(StripSpaces(Join(".",  [PreferredFirstName], [PreferredLastName]))),
             "contoso.com"),
        Join("@", NormalizeDiacritics(StripSpaces(Join(".",  Mid([PreferredFirstName], 1, 1), [PreferredLastName]))),
             "contoso.com"),
        Join("@", NormalizeDiacritics(StripSpaces(Join(".",  Mid([PreferredFirstName], 1, 2), [PreferredLastName]))),
             "contoso.com")
    )"""
    JOHN = {"PreferredFirstName": "John", "PreferredLastName": "Smith"}

    def _with_taken(self, *taken: str) -> tuple[EvaluationContext, list[str]]:
        asked: list[str] = []

        def is_unique(candidate: str) -> bool:
            asked.append(candidate)
            return candidate not in taken

        return EvaluationContext(is_unique=is_unique), asked

    def test_documented_example(self) -> None:
        expression = parse_expression(self.UPN)
        context, asked = self._with_taken()
        assert expression.evaluate(self.JOHN, context) == "John.Smith@contoso.com"
        assert asked == ["John.Smith@contoso.com"]
        context, _ = self._with_taken("John.Smith@contoso.com")
        assert expression.evaluate(self.JOHN, context) == "J.Smith@contoso.com"
        context, asked = self._with_taken("John.Smith@contoso.com", "J.Smith@contoso.com")
        assert expression.evaluate(self.JOHN, context) == "Jo.Smith@contoso.com"
        assert len(asked) == 3

    def test_all_taken_fails_the_object(self) -> None:
        context, _ = self._with_taken("John.Smith@contoso.com", "J.Smith@contoso.com", "Jo.Smith@contoso.com")
        with pytest.raises(ExpressionEvaluationError) as caught:
            parse_expression(self.UPN).evaluate(self.JOHN, context)
        assert caught.value.column == 1 and "all 3 non-empty candidates are taken" in caught.value.message

    def test_empty_candidates_are_skipped(self) -> None:
        context, asked = self._with_taken()
        assert evaluate('SelectUniqueValue([missing], "", "b")', context) == "b"
        assert asked == ["b"]

    def test_without_a_uniqueness_check_it_fails_and_says_why(self) -> None:
        with pytest.raises(ExpressionEvaluationError, match="needs a uniqueness check of the target"):
            evaluate('SelectUniqueValue("a", "b")')

    def test_needs_two_rules_at_least(self) -> None:
        with pytest.raises(ExpressionError, match="takes at least 2 arguments, got 1"):
            parse_expression('SelectUniqueValue("a")')
