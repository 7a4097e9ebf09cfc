"""Parsing of SCIM filters (RFC 7644 §3.4.2.2) and PATCH paths (RFC 7644 §3.5.2).

A hand-written lexer + recursive-descent parser producing the AST of
:mod:`identity_sync.scim.filter_ast`. Filters arrive straight from clients, so the parser
is defensive: the length and nesting limits are enforced by the (iterative) lexer before
the recursive parser runs, and every failure is a :class:`~identity_sync.errors.BadRequest`.

Deliberate leniencies, for clients seen in the wild (mostly Microsoft Entra ID):

* ``emails[type eq "work"].value eq "x"`` is normalized to
  ``emails[type eq "work" and value eq "x"]``;
* a bare word in value position (``externalId eq jyoung``) is a string literal.
"""

from __future__ import annotations

import functools
import json
import math
import re
from dataclasses import dataclass
from typing import NoReturn

from identity_sync.errors import BadRequest
from identity_sync.scim.filter_ast import (
    COMPARISON_OPERATORS,
    And,
    AttrPath,
    Compare,
    Filter,
    Literal,
    Not,
    Or,
    Present,
    ValuePath,
)

__all__ = ["PatchPath", "format_filter", "parse_filter", "parse_patch_path"]

DEFAULT_MAX_LENGTH = 4096
DEFAULT_MAX_DEPTH = 32
DEFAULT_MAX_TERMS = 50

_WORD = "word"
_STRING = "string"
_EOF = "eof"

# A word is any run of characters that cannot start another token. Attribute paths, keywords,
# operators, numbers and bare literals are all words; the parser decides which is which from
# the position, so attribute names that collide with keywords (``not``, ``pr``) still work.
_WORD_RE = re.compile(r'[^ \t()\[\]"\x00-\x1f\x7f]+')
_STRING_RUN_RE = re.compile(r'[^"\\\x00-\x1f]*')
_NAME_RE = re.compile(r"[A-Za-z][A-Za-z0-9_-]*|\$ref", re.IGNORECASE)
# Each URN segment must be non-empty, which also rejects ``urn:x::attr``.
_URN_RE = re.compile(r"urn(?::[A-Za-z0-9._%+~=-]+)+", re.IGNORECASE)
# JSON number syntax. ``[0-9]`` rather than ``\d``: ``int()`` would accept other Unicode digits.
_NUMBER_RE = re.compile(r"-?(?:0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?")
_HEX4_RE = re.compile(r"[0-9A-Fa-f]{4}")
_ESCAPES = {'"': '"', "\\": "\\", "/": "/", "b": "\b", "f": "\f", "n": "\n", "r": "\r", "t": "\t"}
_KEYWORD_LITERALS: dict[str, Literal] = {"true": True, "false": False, "null": None}
_OPERATORS = COMPARISON_OPERATORS | {"pr"}
_SNIPPET_CHARS = 20


@dataclass(frozen=True, slots=True)
class PatchPath:
    """A PATCH ``path``: ``attr`` (possibly ``urn:…:attr`` or ``attr.sub``), optionally
    ``attr[filter]`` and ``attr[filter].sub``. ``sub`` is only set together with ``filter``;
    a plain ``name.familyName`` keeps its sub-attribute inside ``attr``.
    """

    attr: AttrPath
    filter: Filter | None = None
    sub: str | None = None


@dataclass(frozen=True, slots=True)
class _Token:
    kind: str  # _WORD, _STRING, _EOF or one of the punctuation characters "()[]"
    value: str  # the word, or the decoded string
    start: int


class _Parser:
    def __init__(self, text: str, scim_type: str, label: str, max_depth: int, max_terms: int) -> None:
        self.text = text
        self.scim_type = scim_type
        self.label = label
        self.max_terms = max_terms
        self.terms = 0
        self.in_brackets = False
        self.pos = 0
        self.tokens = self._tokenize(max_depth)

    def fail(self, message: str, pos: int) -> NoReturn:
        # Echo at most a short fragment: the detail goes back to the client and into logs.
        if pos >= len(self.text):
            where = "at end of input"
        else:
            fragment = self.text[pos : pos + _SNIPPET_CHARS]
            more = "…" if pos + _SNIPPET_CHARS < len(self.text) else ""
            where = f"at position {pos + 1} (near {json.dumps(fragment, ensure_ascii=False)}{more})"
        raise BadRequest(f"{self.label}: {message} {where}.", self.scim_type)

    def _tokenize(self, max_depth: int) -> list[_Token]:
        # Iterative, so it is also the place where nesting is measured: a ``((((…`` bomb is
        # refused at its (max_depth + 1)-th parenthesis, before any recursion happens.
        text, n = self.text, len(self.text)
        tokens: list[_Token] = []
        depth = 0
        i = 0
        while i < n:
            c = text[i]
            if c in " \t":
                i += 1
            elif c in "([":
                depth += 1
                if depth > max_depth:
                    self.fail(f"nesting deeper than {max_depth} levels", i)
                tokens.append(_Token(c, c, i))
                i += 1
            elif c in ")]":
                depth -= 1
                if depth < 0:
                    self.fail(f"unbalanced '{c}'", i)
                tokens.append(_Token(c, c, i))
                i += 1
            elif c == '"':
                value, end = self._read_string(i)
                tokens.append(_Token(_STRING, value, i))
                i = end
            else:
                m = _WORD_RE.match(text, i)
                if m is None:
                    self.fail("unexpected control character", i)
                tokens.append(_Token(_WORD, m.group(), i))
                i = m.end()
        tokens.append(_Token(_EOF, "", n))
        return tokens

    def _read_string(self, start: int) -> tuple[str, int]:
        """Decode the JSON string starting at ``start``; return it and the index after it."""
        text, n = self.text, len(self.text)
        parts: list[str] = []
        i = start + 1
        while True:
            run = _STRING_RUN_RE.match(text, i)
            assert run is not None  # the pattern matches the empty string
            parts.append(run.group())
            i = run.end()
            if i >= n:
                self.fail("unterminated string", start)
            c = text[i]
            if c == '"':
                return "".join(parts), i + 1
            if c != "\\":
                self.fail("control character in string (escape it)", i)
            escape = text[i + 1 : i + 2]
            if escape in _ESCAPES:
                parts.append(_ESCAPES[escape])
                i += 2
            elif escape == "u":
                code = self._hex4(i)
                i += 6
                if 0xD800 <= code <= 0xDBFF and text[i : i + 2] == "\\u":
                    low = self._hex4(i)
                    if 0xDC00 <= low <= 0xDFFF:
                        code = 0x10000 + ((code - 0xD800) << 10) + (low - 0xDC00)
                        i += 6
                # A lone surrogate would only blow up later, when the value is encoded to UTF-8.
                if 0xD800 <= code <= 0xDFFF:
                    self.fail("unpaired surrogate in \\u escape", i - 6)
                if code == 0:  # no stored value can contain NUL (PostgreSQL text cannot hold it)
                    self.fail("NUL is not allowed in a string", i - 6)
                parts.append(chr(code))
            elif not escape:
                self.fail("unterminated string", start)
            else:
                self.fail("invalid escape in string", i)

    def _hex4(self, backslash: int) -> int:
        # Validate with a regex: int(…, 16) alone would accept "+1_f" or " 1f".
        digits = self.text[backslash + 2 : backslash + 6]
        if not _HEX4_RE.fullmatch(digits):
            self.fail("expected 4 hex digits after \\u", backslash)
        return int(digits, 16)

    def peek(self, ahead: int = 0) -> _Token:
        return self.tokens[min(self.pos + ahead, len(self.tokens) - 1)]

    def advance(self) -> _Token:
        tok = self.tokens[self.pos]
        if tok.kind != _EOF:
            self.pos += 1
        return tok

    def at_keyword(self, keyword: str) -> bool:
        tok = self.tokens[self.pos]
        return tok.kind == _WORD and tok.value.lower() == keyword

    def expect(self, kind: str, what: str) -> None:
        tok = self.peek()
        if tok.kind != kind:
            self.fail(f"expected {what}", tok.start)
        self.advance()

    def parse_or(self) -> Filter:
        # Loops rather than recursion for and/or chains: left-associative, and a long chain
        # costs no stack.
        node = self.parse_and()
        while self.at_keyword("or"):
            self.advance()
            node = Or(node, self.parse_and())
        return node

    def parse_and(self) -> Filter:
        node = self.parse_term()
        while self.at_keyword("and"):
            self.advance()
            node = And(node, self.parse_term())
        return node

    def parse_term(self) -> Filter:
        tok = self.peek()
        if tok.kind == "(":
            self.advance()
            node = self.parse_or()
            self.expect(")", "'and', 'or' or ')'")
            return node
        if tok.kind == _WORD:
            # ``not`` is only the operator when a parenthesis follows; otherwise it is an
            # attribute that happens to be called "not".
            if tok.value.lower() == "not" and self.peek(1).kind == "(":
                self.advance()
                self.advance()
                inner = self.parse_or()
                self.expect(")", "'and', 'or' or ')'")
                return Not(inner)
            self.advance()
            path = self.attr_path(tok)
            if self.peek().kind == "[":
                inner, sub = self.parse_bracket(path)
                if sub is not None:
                    # Entra's ``emails[type eq "work"].value eq "x"``: fold the trailing
                    # comparison into the value filter, where it means the same thing.
                    inner = And(inner, self.parse_operation(AttrPath(None, sub)))
                return ValuePath(path, inner)
            return self.parse_operation(path)
        self.fail("expected an attribute path, 'not' or '('", tok.start)

    def parse_bracket(self, path: AttrPath) -> tuple[Filter, str | None]:
        """Parse ``[valFilter]`` and an optional ``.sub`` after it."""
        bracket = self.advance()
        if self.in_brackets:
            self.fail("value filters cannot be nested", bracket.start)
        if path.sub is not None:
            self.fail("'[' must follow an attribute, not a sub-attribute", bracket.start)
        self.in_brackets = True
        inner = self.parse_or()
        self.expect("]", "'and', 'or' or ']'")
        self.in_brackets = False
        tok = self.peek()
        if tok.kind != _WORD or not tok.value.startswith("."):
            return inner, None
        self.advance()
        sub = tok.value[1:]
        if not _NAME_RE.fullmatch(sub):
            self.fail("expected a sub-attribute name after '].'", tok.start)
        return inner, sub

    def attr_path(self, tok: _Token) -> AttrPath:
        word = tok.value
        urn: str | None = None
        # The URN may itself contain dots ("…:2.0:User"), so split on the last colon first
        # and only then look for the "." of a sub-attribute.
        colon = word.rfind(":")
        if colon >= 0:
            urn, word = word[:colon], word[colon + 1 :]
            if self.in_brackets:
                self.fail("paths inside '[…]' are relative and cannot have a schema URN", tok.start)
            if not _URN_RE.fullmatch(urn):
                self.fail("invalid schema URN in attribute path", tok.start)
        names = word.split(".")
        if len(names) > 2 or not all(_NAME_RE.fullmatch(name) for name in names):
            self.fail("invalid attribute path", tok.start)
        if self.in_brackets and len(names) > 1:
            self.fail("paths inside '[…]' must be plain sub-attribute names", tok.start)
        return AttrPath(urn, names[0], names[1] if len(names) > 1 else None)

    def parse_operation(self, path: AttrPath) -> Filter:
        tok = self.peek()
        op = tok.value.lower() if tok.kind == _WORD else ""
        if op not in _OPERATORS:
            self.fail("expected an operator (eq, ne, co, sw, ew, gt, ge, lt, le or pr)", tok.start)
        self.advance()
        self.terms += 1
        if self.terms > self.max_terms:
            self.fail(f"more than {self.max_terms} comparisons", tok.start)
        if op == "pr":
            return Present(path)
        return Compare(path, op, self.parse_value())

    def parse_value(self) -> Literal:
        tok = self.peek()
        if tok.kind == _STRING:
            self.advance()
            return tok.value
        lowered = tok.value.lower()
        if tok.kind != _WORD or lowered in ("and", "or"):
            self.fail("expected a value (quoted string, number, true, false or null)", tok.start)
        self.advance()
        if lowered in _KEYWORD_LITERALS:
            return _KEYWORD_LITERALS[lowered]
        number = _NUMBER_RE.fullmatch(tok.value)
        if number is None:
            return tok.value  # Entra's historic unquoted string literal
        if number.group(1) is None and number.group(2) is None:
            try:
                return int(tok.value)
            except ValueError:  # more digits than sys.get_int_max_str_digits() allows
                self.fail("number too long", tok.start)
        value = float(tok.value)
        if not math.isfinite(value):  # "1e999" parses to inf, which no JSON can carry back
            self.fail("number out of range", tok.start)
        return value


@functools.lru_cache(maxsize=1024)
def _parse_filter_cached(text: str, max_depth: int, max_terms: int) -> Filter:
    parser = _Parser(text, "invalidFilter", "Invalid filter", max_depth, max_terms)
    if parser.peek().kind == _EOF:
        parser.fail("empty filter", len(text))
    node = parser.parse_or()
    parser.expect(_EOF, "'and', 'or' or end of filter")
    return node


def parse_filter(
    text: str,
    *,
    max_length: int = DEFAULT_MAX_LENGTH,
    max_depth: int = DEFAULT_MAX_DEPTH,
    max_terms: int = DEFAULT_MAX_TERMS,
) -> Filter:
    """Parse a ``filter`` query parameter; raise ``BadRequest(…, "invalidFilter")`` if invalid.

    Results are cached (the AST is immutable), so callers must not rely on getting a fresh
    object.
    """
    _check_input(text, max_length, "Invalid filter", "invalidFilter")
    try:
        return _parse_filter_cached(text, max_depth, max_terms)
    except RecursionError:  # only reachable when a caller raises max_depth far above the default
        raise BadRequest("Invalid filter: nested too deeply.", "invalidFilter") from None


@functools.lru_cache(maxsize=1024)
def _parse_patch_path_cached(text: str) -> PatchPath:
    parser = _Parser(text, "invalidPath", "Invalid path", DEFAULT_MAX_DEPTH, DEFAULT_MAX_TERMS)
    tok = parser.peek()
    if tok.kind != _WORD:
        parser.fail("expected an attribute path", tok.start)
    parser.advance()
    attr = parser.attr_path(tok)
    if parser.peek().kind != "[":
        parser.expect(_EOF, "'[' or end of path")
        return PatchPath(attr, None, None)
    inner, sub = parser.parse_bracket(attr)
    parser.expect(_EOF, "'.' and a sub-attribute, or end of path")
    return PatchPath(attr, inner, sub)


def parse_patch_path(text: str) -> PatchPath:
    """Parse a PATCH operation ``path``; raise ``BadRequest(…, "invalidPath")`` if invalid."""
    _check_input(text, DEFAULT_MAX_LENGTH, "Invalid path", "invalidPath")
    return _parse_patch_path_cached(text)


def _check_input(text: object, max_length: int, label: str, scim_type: str) -> None:
    # Checked before the cache so that huge inputs are neither hashed nor parsed.
    if not isinstance(text, str):
        raise BadRequest(f"{label}: expected a string.", scim_type)
    if len(text) > max_length:
        raise BadRequest(f"{label}: longer than {max_length} characters.", scim_type)


# -- printer ----------------------------------------------------------------------------------

_PRECEDENCE_OR, _PRECEDENCE_AND, _PRECEDENCE_ATOM = 1, 2, 3


def format_filter(node: Filter) -> str:
    """Render ``node`` as filter text that :func:`parse_filter` parses back to an equal AST.

    Only the parentheses that the precedence rules require are emitted.
    """
    return _format(node, _PRECEDENCE_OR)


def _format(node: Filter, min_precedence: int) -> str:
    if isinstance(node, Or):
        # Left-associative: the right operand needs parentheses if it is itself an ``or``.
        text = f"{_format(node.left, _PRECEDENCE_OR)} or {_format(node.right, _PRECEDENCE_AND)}"
        precedence = _PRECEDENCE_OR
    elif isinstance(node, And):
        text = f"{_format(node.left, _PRECEDENCE_AND)} and {_format(node.right, _PRECEDENCE_ATOM)}"
        precedence = _PRECEDENCE_AND
    else:
        return _format_atom(node)
    return f"({text})" if precedence < min_precedence else text


def _format_atom(node: Filter) -> str:
    if isinstance(node, Not):
        return f"not ({_format(node.inner, _PRECEDENCE_OR)})"
    if isinstance(node, ValuePath):
        return f"{_format_path(node.path)}[{_format(node.inner, _PRECEDENCE_OR)}]"
    if isinstance(node, Present):
        return f"{_format_path(node.path)} pr"
    if isinstance(node, Compare):
        return f"{_format_path(node.path)} {node.op} {_format_literal(node.value)}"
    raise TypeError(f"not a filter node: {type(node).__name__}")


def _format_path(path: AttrPath) -> str:
    text = f"{path.urn}:{path.attr}" if path.urn is not None else path.attr
    return f"{text}.{path.sub}" if path.sub is not None else text


def _format_literal(value: Literal) -> str:
    # bool before int: True is an int too.
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "null"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError(f"cannot format non-finite number {value!r}")
        return repr(value)  # shortest round-tripping form, always JSON number syntax when finite
    return json.dumps(value, ensure_ascii=False)
