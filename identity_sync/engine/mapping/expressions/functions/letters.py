"""Functions about letters: NormalizeDiacritics and PCase (§2.3).

``NormalizeDiacritics`` follows Entra's table (ä→a, ß→ss, æ→ae, ø→oe, Ł→L …): Latin letters lose
their combining marks (Unicode decomposition), and the letters that do not decompose are mapped by
hand. Letters of other scripts are left alone (Entra's table is Latin only, and stripping marks from,
say, Devanagari would change the text, not its accents).
"""

from __future__ import annotations

import re
import unicodedata
from functools import lru_cache
from typing import Any

from identity_sync.engine.mapping.expressions.functions.registry import FunctionSpec, eager
from identity_sync.engine.mapping.expressions.values import to_text

#: Letters without a decomposition, as Entra's table maps them (plus Đ/đ and Œ/œ, the obvious kin).
_SPECIAL_LETTERS = {
    "æ": "ae", "Æ": "AE", "ø": "oe", "Ø": "OE", "œ": "oe", "Œ": "OE", "ß": "ss", "ẞ": "SS",
    "ł": "l", "Ł": "L", "ı": "i", "đ": "d", "Đ": "D",
}


@lru_cache(maxsize=4096)
def _normalize_character(character: str) -> str:
    special = _SPECIAL_LETTERS.get(character)
    if special is not None:
        return special
    decomposed = unicodedata.normalize("NFD", character)
    base = decomposed[0]
    if len(decomposed) == 1 or not unicodedata.name(base, "").startswith("LATIN"):
        return character
    stripped = "".join(mark for mark in decomposed[1:] if not unicodedata.combining(mark))
    return _SPECIAL_LETTERS.get(base, base) + stripped


class _TranslationTable(dict[int, str]):
    """``str.translate`` table filled on first sight of each character (hits stay in C)."""

    def __missing__(self, code_point: int) -> str:
        normalized = _normalize_character(chr(code_point))
        self[code_point] = normalized
        return normalized


_TABLE = _TranslationTable()
# Combining marks that survive NFC (no precomposed letter exists) need the slow path.
_COMBINING = re.compile("[\u0300-\u036f\u1ab0-\u1aff\u1dc0-\u1dff\u20d0-\u20ff\ufe20-\ufe2f]")


def normalize_diacritics(source: Any) -> str | None:
    """``NormalizeDiacritics(source)``: ``Zoë`` → ``Zoe``; ``Łukasz Øster`` → ``Lukasz OEster`` (the
    table maps Ø to OE)."""
    text = to_text(source)
    if text is None or text.isascii():
        return text
    # Compose first so that "e" + combining diaeresis is treated like "ë"; then drop any combining
    # mark left directly after a Latin letter (e.g. a̱, which has no precomposed form).
    composed = unicodedata.normalize("NFC", text)
    if _COMBINING.search(composed) is None:
        return composed.translate(_TABLE)
    out: list[str] = []
    previous_latin = False
    for character in composed:
        if unicodedata.combining(character):
            if not previous_latin:
                out.append(character)
            continue
        normalized = _normalize_character(character)
        out.append(normalized)
        previous_latin = normalized != character or unicodedata.name(character, "").startswith("LATIN")
    return "".join(out)


#: Unicode categories .NET's ToTitleCase treats as word separators (§2.3 PCase).
_SEPARATOR_CATEGORIES = frozenset({
    "Zs", "Zl", "Zp", "Cc", "Cf", "Pc", "Pd", "Ps", "Pe", "Pi", "Pf", "Po", "Sm", "Sc", "Sk", "So",
})


def p_case(source: Any, separators: Any) -> str | None:
    """``PCase(source, [wordSeparators])``: Title Case.

    Without separators it follows .NET ``TextInfo.ToTitleCase`` on the lower-cased text (so
    ``PABLO GONSALVES (SECOND)`` → ``Pablo Gonsalves (Second)``): a word starts at a letter after a
    separator character; an apostrophe and digits continue a word (``O'NEIL`` → ``O'neil``). With
    separators, only those characters split words and each word's first character is upper-cased
    (``PCase("PINTO-DE'SILVA", " '-")`` → ``Pinto-De'Silva``).
    """
    text = to_text(source)
    if text is None:
        return None
    chosen = to_text(separators)
    lowered = text.lower()
    if chosen:
        out = []
        at_word_start = True
        for character in lowered:
            if character in chosen:
                out.append(character)
                at_word_start = True
            elif at_word_start:
                out.append(_title(character))
                at_word_start = False
            else:
                out.append(character)
        return "".join(out)
    return _to_title_case(lowered)


def _title(character: str) -> str:
    titled = character.title()
    return titled if len(titled) == 1 else character


def _to_title_case(text: str) -> str:
    out: list[str] = []
    index = 0
    length = len(text)
    while index < length:
        character = text[index]
        if not character.isalpha():
            out.append(character)
            index += 1
            continue
        out.append(_title(character))
        index += 1
        while index < length:
            following = text[index]
            if following.isalpha() or following == "'":
                out.append(following)
            elif unicodedata.category(following) in _SEPARATOR_CATEGORIES:
                break
            else:
                out.append(following)  # digits and marks continue the word
            index += 1
    return "".join(out)


FUNCTIONS = (
    FunctionSpec("NormalizeDiacritics", ("source",), eager(normalize_diacritics),
                 "replaces accented Latin letters by their base letters"),
    FunctionSpec("PCase", ("source", "wordSeparators?"), eager(p_case), "Title Case"),
)
