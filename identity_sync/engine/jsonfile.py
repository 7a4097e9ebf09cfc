"""JSON configuration files that report errors by file, line and column.

The standard library's decoder says where a *syntax* error is, but not where a well-formed value
that fails validation sits (``users.mappings[3].expression`` with an unknown function). Mapping
and job files are small and read once per command, so they are parsed a second time with a lark
JSON grammar that remembers the position of every value; validation errors then name
``FILE:LINE:COLUMN``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

from lark import Lark, Token, Tree

_GRAMMAR = r"""
?value: object | array | STRING | SIGNED_NUMBER -> number | "true" -> true | "false" -> false | "null" -> null
object: "{" [pair ("," pair)*] "}"
pair: STRING ":" value
array: "[" [value ("," value)*] "]"
%import common.ESCAPED_STRING -> STRING
%import common.SIGNED_NUMBER
%import common.WS
%ignore WS
"""


class ConfigError(Exception):
    """A configuration file that cannot be used; the message is one line ``FILE:LINE:COL: …``."""


@dataclass
class LocatedJson:
    """A parsed JSON document and where each of its values starts (by path such as ``users.mappings[3]``)."""

    origin: str
    value: Any
    positions: dict[str, tuple[int, int]] = field(default_factory=dict)

    def error(self, path: str, message: str, column_offset: int | None = None) -> ConfigError:
        """An error about the value at ``path`` (or its nearest located parent). ``column_offset``
        points inside a string value (an expression's own column), counting from its first character."""
        probe = path
        while probe and probe not in self.positions:
            probe = probe.rsplit(".", 1)[0] if "." in probe else probe.rsplit("[", 1)[0] if "[" in probe else ""
        line, column = self.positions.get(probe, (1, 1))
        if column_offset is not None and probe == path:
            column += column_offset  # +1 for the opening quote, -1 for the 1-based offset
        return ConfigError(f"{self.origin}:{line}:{column}: {path}: {message}")


@cache
def _parser() -> Lark:
    return Lark(_GRAMMAR, start="value", parser="lalr", propagate_positions=True)


def load_json_text(text: str, origin: str) -> LocatedJson:
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{origin}:{exc.lineno}:{exc.colno}: invalid JSON: {exc.msg}") from None
    located = LocatedJson(origin, value)
    try:
        _walk(_parser().parse(text), "", located.positions)
    except Exception:
        located.positions.clear()
    return located


def load_json_file(path: Path) -> LocatedJson:
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"{path}: cannot be read: {exc.strerror}") from None
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        column = exc.start - data.rfind(b"\n", 0, exc.start)
        raise ConfigError(f"{path}:{line}:{column}: not UTF-8") from None
    return load_json_text(text, str(path))


def _walk(node: Tree | Token, path: str, positions: dict[str, tuple[int, int]]) -> None:
    if isinstance(node, Token):
        positions[path] = (node.line or 1, node.column or 1)
        return
    if node.meta and not node.meta.empty:
        positions[path] = (node.meta.line, node.meta.column)
    if node.data == "object":
        for pair in node.children:
            if pair is None:
                continue
            key_token, value = pair.children
            key = json.loads(str(key_token))  # the key's JSON string, quotes and escapes included
            _walk(value, f"{path}.{key}" if path else key, positions)
    elif node.data == "array":
        for index, child in enumerate(c for c in node.children if c is not None):
            _walk(child, f"{path}[{index}]", positions)
