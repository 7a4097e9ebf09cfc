"""Properties over generated expressions: every well-formed call of every function, on any kind of
attribute value, either gives a value of the model's types or fails with ExpressionEvaluationError,
never with another exception."""

from __future__ import annotations

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from identity_sync.engine.mapping.expressions import (
    FUNCTIONS,
    IGNORE_FLOW,
    EvaluationContext,
    ExpressionError,
    ExpressionEvaluationError,
    parse_expression,
)

_ATTRIBUTE_VALUES = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**64), max_value=2**64),
    st.text(max_size=12),
    st.sampled_from(["True", "false", "2021-06-30+08:00", "8/25/2021 5:41:18 PM", "129699324000000000",
                     "+91 9998887777", "PINTO-DE'SILVA", "Zoë", "(?<g>x)", "yyyy-MM-dd", "d", "ww", "", " 7 "]),
    st.lists(st.text(max_size=6), max_size=4),
)

_LEAVES = st.one_of(
    st.sampled_from(["[a]", "[b]", "[c]", "[missing]", '""', '"x"', '"2021-06-30"', '"d"', '"yyyy"', "1", "0", "-3",
                     "&HF", "vbTextCompare", '"(?<g>\\\\d+)"', '"g"', '"${g}"']),
    st.integers(min_value=-5, max_value=300).map(str),
)

_CALLABLE = sorted(name for name in FUNCTIONS if name != "SelectUniqueValue")


def _call(arguments: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
    def build(name: str) -> st.SearchStrategy[str]:
        spec = FUNCTIONS[name]
        low = spec.minimum
        high = spec.maximum if spec.maximum is not None else low + 3
        return st.lists(st.one_of(arguments, st.just("")), min_size=low, max_size=high).map(
            lambda parts: f"{name}({', '.join(parts)})"
        )

    return st.sampled_from(_CALLABLE).flatmap(build)


_EXPRESSIONS = st.recursive(
    _LEAVES,
    lambda inner: st.one_of(
        _call(inner),
        st.tuples(inner, st.sampled_from(["=", "<>", "<", ">=", ">", "<="]), inner).map(" ".join),
    ),
    max_leaves=8,
)


def _is_value(value: object) -> bool:
    if value is None or value is IGNORE_FLOW or type(value) in (str, bool, int):
        return True
    return type(value) is list and all(type(item) is str for item in value)  # type: ignore[union-attr]


def _check(text: str, a: object, b: object, c: object, seed: int) -> None:
    try:
        expression = parse_expression(text)
    except ExpressionError as problem:
        assert type(problem) is ExpressionError
        assert 1 <= problem.column <= len(text) + 1
        return
    context = EvaluationContext(default_domain="contoso.com", rng=random.Random(seed))
    try:
        value = expression.evaluate({"a": a, "b": b, "c": c}, context)
    except ExpressionEvaluationError as problem:
        assert 1 <= problem.column <= len(text)
        return
    assert _is_value(value), (text, value)


_CASES = (_EXPRESSIONS, _ATTRIBUTE_VALUES, _ATTRIBUTE_VALUES, _ATTRIBUTE_VALUES, st.integers(0, 2**32))


@settings(max_examples=400, deadline=None)
@given(*_CASES)
def test_evaluation_gives_a_value_or_an_evaluation_error(text: str, a: object, b: object, c: object, seed: int) -> None:
    _check(text, a, b, c, seed)


@pytest.mark.slow
@settings(max_examples=20_000, deadline=None)
@given(*_CASES)
def test_evaluation_gives_a_value_or_an_evaluation_error_long_run(text: str, a: object, b: object, c: object,
                                                                  seed: int) -> None:
    _check(text, a, b, c, seed)
