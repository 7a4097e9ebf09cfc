""".NET regular expressions and replacement patterns, read into Python's ``re`` (§2.2).

Entra's ``Replace`` takes .NET regexes: named groups are ``(?<name>...)`` or ``(?'name'...)``,
back-references ``\\k<name>``, and replacements refer to groups as ``${name}``, ``$1``, ``$0``/``$&``
with ``$$`` for a dollar. Python spells groups ``(?P<name>...)`` and ``(?P=name)``. The translation
walks the pattern once, copying escapes and character classes verbatim, so a ``(?<`` inside ``[...]``
or after a backslash is left alone. Constructs Python cannot express (balancing groups, ``\\p{..}``
categories, ``(?<`` names Python rejects) are reported instead of silently meaning something else.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache

_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*|[0-9]+")


class RegexTranslationError(ValueError):
    """A .NET pattern or replacement that cannot be used; ``offset`` is 0-based into it."""

    def __init__(self, message: str, offset: int) -> None:
        super().__init__(message)
        self.offset = offset


def translate_pattern(pattern: str) -> str:
    """The Python equivalent of the .NET ``pattern``; raises ``RegexTranslationError``."""
    out: list[str] = []
    index = 0
    length = len(pattern)
    in_class = False
    while index < length:
        character = pattern[index]
        if character == "\\":
            if index + 1 >= length:
                raise RegexTranslationError("pattern ends with a lone backslash", index)
            escaped = pattern[index + 1]
            if escaped in "pP":
                raise RegexTranslationError(
                    f"Unicode categories (\\{escaped}{{...}}) are not supported; use a character class", index
                )
            if escaped == "k" and not in_class and index + 2 < length and pattern[index + 2] in "<'":
                closing = ">" if pattern[index + 2] == "<" else "'"
                end = pattern.find(closing, index + 3)
                name = pattern[index + 3 : end] if end != -1 else ""
                if end == -1 or not _NAME.fullmatch(name):
                    raise RegexTranslationError("malformed back-reference \\k<name>", index)
                out.append(f"(?P={name})" if not name.isdigit() else f"\\{name}")
                index = end + 1
                continue
            if escaped == "z" and not in_class:
                out.append(r"\Z")  # .NET \z: the very end (Python's \Z)
            elif escaped == "Z" and not in_class:
                out.append(r"(?=\n?\Z)")  # .NET \Z: the end or before a final newline
            else:
                out.append(pattern[index : index + 2])
            index += 2
            continue
        if in_class:
            if character == "]":
                in_class = False
            elif character == "-" and pattern.startswith("[", index + 1):
                raise RegexTranslationError("character class subtraction [a-z-[aeiou]] is not supported", index)
            elif character in "[&~|" or character == "-" and pattern.startswith("-", index + 1):
                # Literal in a .NET class; Python reserves these (nested sets, set operations).
                out.append("\\" + character)
                index += 1
                continue
            out.append(character)
            index += 1
            continue
        if character == "[":
            in_class = True
            out.append(character)
            index += 1
            # A ']' right after '[' or '[^' is a literal member, not the end of the class.
            if pattern.startswith("^", index):
                out.append("^")
                index += 1
            if pattern.startswith("]", index):
                out.append(r"\]")
                index += 1
            continue
        if character == "(" and pattern.startswith("(?", index):
            index = _translate_group_opening(pattern, index, out)
            continue
        out.append(character)
        index += 1
    return "".join(out)


def _translate_group_opening(pattern: str, index: int, out: list[str]) -> int:
    """Translate the ``(?...`` at ``index``; return where to continue."""
    rest = pattern[index + 2 : index + 4]
    if rest.startswith(("<=", "<!")):  # look-behind: the same in Python
        out.append(pattern[index : index + 4])
        return index + 4
    if rest[:1] in ("<", "'"):
        closing = ">" if rest[0] == "<" else "'"
        end = pattern.find(closing, index + 3)
        name = pattern[index + 3 : end] if end != -1 else ""
        if end == -1:
            raise RegexTranslationError("unterminated group name", index)
        if "-" in name:
            raise RegexTranslationError(f"balancing groups (?<{name}>...) are not supported", index)
        if not _NAME.fullmatch(name) or name.isdigit():
            raise RegexTranslationError(f"group name {name!r} must be a letter or _ then letters, digits or _", index)
        out.append(f"(?P<{name}>")
        return end + 1
    if rest.startswith("P"):  # Python syntax is not .NET syntax: refuse rather than guess
        raise RegexTranslationError("(?P...) is not .NET syntax; name a group with (?<name>...)", index)
    out.append("(?")
    return index + 2


@dataclass(frozen=True, slots=True)
class Replacement:
    """A parsed .NET replacement: literal text and group references, in order."""

    parts: tuple[str | int, ...]  # str: literal text; int: group number; names resolved to numbers

    def expand(self, match: re.Match[str]) -> str:
        """The replacement for one match (a group that did not take part is empty, as in .NET)."""
        return "".join(part if type(part) is str else (match.group(part) or "") for part in self.parts)


def parse_replacement(replacement: str, compiled: re.Pattern[str]) -> Replacement:
    """Read .NET's ``$`` syntax against ``compiled``'s groups. A reference to a group that does not
    exist stays literal text, as .NET does (``${nope}`` is written out as is)."""
    parts: list[str | int] = []
    literal: list[str] = []
    index = 0
    length = len(replacement)

    def flush() -> None:
        if literal:
            parts.append("".join(literal))
            literal.clear()

    while index < length:
        character = replacement[index]
        if character != "$" or index + 1 >= length:
            literal.append(character)
            index += 1
            continue
        following = replacement[index + 1]
        if following == "$":
            literal.append("$")
            index += 2
            continue
        if following == "&":
            flush()
            parts.append(0)
            index += 2
            continue
        if following == "{":
            end = replacement.find("}", index + 2)
            name = replacement[index + 2 : end] if end != -1 else ""
            group = _group_number(compiled, name)
            if end != -1 and group is not None:
                flush()
                parts.append(group)
                index = end + 1
                continue
        elif following.isdigit():
            digits = re.match(r"[0-9]+", replacement[index + 1 :])
            assert digits is not None
            number = digits.group()
            # .NET takes the longest run of digits that names a group.
            while number and _group_number(compiled, number) is None:
                number = number[:-1]
            if number:
                flush()
                parts.append(int(number))
                index += 1 + len(number)
                continue
        literal.append(character)
        index += 1
    flush()
    return Replacement(tuple(parts))


def _group_number(compiled: re.Pattern[str], name: str) -> int | None:
    if name.isdigit():
        number = int(name)
        return number if number <= compiled.groups else None
    return compiled.groupindex.get(name)


@lru_cache(maxsize=256)
def compile_dotnet(pattern: str) -> re.Pattern[str]:
    """The compiled Python regex for a .NET ``pattern`` (cached: patterns built from attributes
    repeat); raises ``RegexTranslationError``."""
    translated = translate_pattern(pattern)
    try:
        return re.compile(translated)
    except re.error as problem:
        offset = problem.pos if problem.pos is not None else 0
        raise RegexTranslationError(f"invalid regular expression: {problem.msg}", min(offset, len(pattern))) from None
