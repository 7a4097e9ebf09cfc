"""Conversions: BitAnd, CBool, ConvertToBase64, ConvertToUTF8Hex, CStr (§2.3)."""

from __future__ import annotations

import base64
from typing import Any

from identity_sync.engine.mapping.expressions.errors import EvaluationProblem
from identity_sync.engine.mapping.expressions.functions.registry import FunctionSpec, eager
from identity_sync.engine.mapping.expressions.values import to_bool, to_int, to_text


def bit_and(value1: Any, value2: Any) -> int:
    """``BitAnd(value1, value2)``: bitwise AND; ``BitAnd(&HF, &HF7)`` = 7."""
    return to_int(value1, "value1 to be a number") & to_int(value2, "value2 to be a number")


def c_bool(expression: Any) -> bool:
    """``CBool(expression)``: True for true/non-zero, False for false/zero/null; other text is an
    error (VB's CBool("abc") throws too)."""
    return to_bool(expression)


def c_str(value: Any) -> str | None:
    """``CStr(value)``: numbers and booleans as text (``True``/``False``), text unchanged."""
    return to_text(value)


def convert_to_base64(source: Any) -> str | None:
    """``ConvertToBase64(source)``: Base64 of the UTF-16LE bytes (.NET's "Unicode")."""
    text = to_text(source)
    if text is None:
        return None
    try:
        encoded = text.encode("utf-16-le")
    except UnicodeEncodeError:
        raise EvaluationProblem("the text holds an unpaired surrogate") from None
    return base64.b64encode(encoded).decode("ascii")


def convert_to_utf8_hex(source: Any) -> str | None:
    """``ConvertToUTF8Hex(source)``: upper-case hex of the UTF-8 bytes."""
    text = to_text(source)
    if text is None:
        return None
    try:
        return text.encode("utf-8").hex().upper()
    except UnicodeEncodeError:
        raise EvaluationProblem("the text holds an unpaired surrogate") from None


FUNCTIONS = (
    FunctionSpec("BitAnd", ("value1", "value2"), eager(bit_and), "bitwise AND of two numbers"),
    FunctionSpec("CBool", ("expression",), eager(c_bool), "a value as a boolean"),
    FunctionSpec("ConvertToBase64", ("source",), eager(convert_to_base64), "Base64 of the UTF-16LE bytes"),
    FunctionSpec("ConvertToUTF8Hex", ("source",), eager(convert_to_utf8_hex), "upper-case hex of the UTF-8 bytes"),
    FunctionSpec("CStr", ("value",), eager(c_str), "a value as text"),
)
