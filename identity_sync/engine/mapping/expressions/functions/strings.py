"""String functions: Append, InStr, Left, Mid, StripSpaces, ToLower, ToUpper, Word (§2.3).

A null source stays null (the attribute then does not flow), except where Entra documents
otherwise: ``Left`` and ``Word`` of null are ``""``.
"""

from __future__ import annotations

import re
from typing import Any

from identity_sync.engine.mapping.expressions.errors import EvaluationProblem
from identity_sync.engine.mapping.expressions.functions.registry import CallSite, FunctionSpec, eager
from identity_sync.engine.mapping.expressions.values import to_int, to_text

#: Bare identifiers of the language (VB's compare constants), usable wherever a value is.
COMPARE_CONSTANTS = {"vbBinaryCompare": 0, "vbTextCompare": 1}


def append(source: Any, suffix: Any) -> str | None:
    """``Append(source, suffix)``: source followed by suffix; null source → null."""
    text = to_text(source)
    if text is None:
        return None
    return text + (to_text(suffix) or "")


def left(source: Any, count: Any) -> str:
    """``Left(string, numChars)``: the first numChars characters; 0 → ""; negative → everything;
    null → "" (all as documented)."""
    text = to_text(source)
    number = to_int(count, "numChars to be a number")
    if text is None or number == 0:
        return ""
    if number < 0:
        return text
    return text[:number]


def mid(source: Any, start: Any, length: Any) -> str | None:
    """``Mid(source, start, length)``: 1-based substring that stops at the end of the source.
    A start below 1 counts from 1 and a negative length gives "" (VB would throw; a mapping should
    not fail for a short name)."""
    text = to_text(source)
    first = to_int(start, "start to be a number")
    count = to_int(length, "length to be a number")
    if text is None:
        return None
    if count <= 0:
        return ""
    begin = max(first, 1) - 1
    return text[begin : begin + count]


def word(source: Any, number: Any, delimiters: Any) -> str:
    """``Word(string, wordNumber, delimiters)``: the Nth word, words being the non-empty runs between
    any of the delimiter characters; out of range, number < 1 or null string → ""."""
    text = to_text(source)
    index = to_int(number, "wordNumber to be a number")
    separators = to_text(delimiters) or ""
    if text is None or index < 1:
        return ""
    if separators:
        words = [part for part in re.split("[" + re.escape(separators) + "]", text) if part]
    else:
        words = [text] if text else []
    return words[index - 1] if index <= len(words) else ""


def in_str(value1: Any, value2: Any, start: Any, compare: Any) -> int:
    """``InStr(value1, value2, [start], [compareType])``: 1-based position of value2 in value1 from
    start, 0 when absent (VB). ``vbTextCompare`` (1) ignores case; ``vbBinaryCompare`` (0, default)
    does not. An empty value2 is found at start; a null value1 gives 0."""
    haystack = to_text(value1)
    needle = to_text(value2) or ""
    first = 1 if start is None else to_int(start, "start to be a number")
    if first < 1:
        raise EvaluationProblem(f"start must be 1 or more, got {first}")
    mode = _compare_mode(compare)
    if haystack is None or first > len(haystack) + (1 if not needle else 0):
        return 0
    if not needle:
        return first
    if mode == 1:
        haystack, needle = haystack.casefold(), needle.casefold()
    return haystack.find(needle, first - 1) + 1


def _compare_mode(compare: Any) -> int:
    if compare is None:
        return 0
    if isinstance(compare, str) and compare.strip() in COMPARE_CONSTANTS:
        return COMPARE_CONSTANTS[compare.strip()]
    mode = to_int(compare, "compareType to be vbBinaryCompare or vbTextCompare")
    if mode not in (0, 1):
        raise EvaluationProblem(f"compareType must be vbBinaryCompare (0) or vbTextCompare (1), got {mode}")
    return mode


def strip_spaces(source: Any) -> str | None:
    """``StripSpaces(source)``: removes every space character (U+0020) and only those."""
    text = to_text(source)
    return None if text is None else text.replace(" ", "")


_CULTURE = re.compile(r"[A-Za-z]{2,3}(?:[-_][A-Za-z0-9]{2,8})*")
_TURKIC = ("tr", "az")


def _turkic(culture: Any) -> bool:
    name = to_text(culture)
    if not name or not name.strip():
        return False
    name = name.strip()
    if not _CULTURE.fullmatch(name):
        raise EvaluationProblem(f"culture must be an RFC 4646 name such as en-US, got {name!r}")
    return name[:2].lower() in _TURKIC and (len(name) == 2 or name[2] in "-_")


def to_lower(source: Any, culture: Any) -> str | None:
    """``ToLower(source, [culture])``: lower case, invariant unless a Turkic culture (tr, az) asks for
    dotted/dotless i. Characters whose lower case would change length keep their form, as .NET."""
    text = to_text(source)
    if text is None:
        return None
    if _turkic(culture):
        text = text.replace("I", "ı").replace("İ", "i")
    if text.isascii():
        return text.lower()
    return "".join(lowered if len(lowered := character.lower()) == 1 else character for character in text)


def to_upper(source: Any, culture: Any) -> str | None:
    """``ToUpper(source, [culture])``: upper case, invariant unless Turkic (i → İ). ``ß`` stays ``ß``
    (.NET maps one character to one character; Python would write SS)."""
    text = to_text(source)
    if text is None:
        return None
    if _turkic(culture):
        text = text.replace("i", "İ").replace("ı", "I")
    if text.isascii():
        return text.upper()
    return "".join(uppered if len(uppered := character.upper()) == 1 else character for character in text)


def _check_in_str(site: CallSite) -> None:
    constant = site.constant(3)
    if isinstance(constant, int) and constant not in (0, 1):
        raise site.error("compareType must be vbBinaryCompare or vbTextCompare", 3)


FUNCTIONS = (
    FunctionSpec("Append", ("source", "suffix"), eager(append), "source followed by suffix"),
    FunctionSpec("InStr", ("value1", "value2", "start?", "compareType?"), eager(in_str),
                 "1-based position of value2 in value1 (0: not found)", check=_check_in_str),
    FunctionSpec("Left", ("string", "numChars"), eager(left), "the first numChars characters"),
    FunctionSpec("Mid", ("source", "start", "length"), eager(mid), "substring from a 1-based start"),
    FunctionSpec("StripSpaces", ("source",), eager(strip_spaces), "removes all spaces"),
    FunctionSpec("ToLower", ("source", "culture?"), eager(to_lower), "lower case"),
    FunctionSpec("ToUpper", ("source", "culture?"), eager(to_upper), "upper case"),
    FunctionSpec("Word", ("string", "wordNumber", "delimiters"), eager(word), "the Nth word"),
)
