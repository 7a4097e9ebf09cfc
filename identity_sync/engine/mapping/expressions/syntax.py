"""The syntax tree of an expression and its construction from lark's parse tree.

Parse errors become ``ExpressionError`` with the column of the offending character and a message a
person can act on ("unterminated string", "expected ',' or ')'"), never lark's internals.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from lark import Token, Tree
from lark.exceptions import UnexpectedCharacters, UnexpectedEOF, UnexpectedInput, UnexpectedToken

from identity_sync.engine.mapping.expressions.errors import ExpressionError
from identity_sync.engine.mapping.expressions.grammar import parser

#: Entra's limit on the length of an expression (provisioning-engine.md §2.1).
MAX_EXPRESSION_LENGTH = 10_000
#: How deeply calls and comparisons may nest. Entra documents no limit; real expressions nest a
#: handful of levels, and the compiled evaluator recurses once per level.
MAX_NESTING = 100


@dataclass(frozen=True, slots=True)
class Node:
    """Any part of an expression; ``column`` is 1-based into the text."""

    column: int


@dataclass(frozen=True, slots=True)
class Attribute(Node):
    """``[name]``: a source attribute."""

    name: str


@dataclass(frozen=True, slots=True)
class Literal(Node):
    """A string or integer constant (hex literals are integers)."""

    value: str | int


@dataclass(frozen=True, slots=True)
class Identifier(Node):
    """A bare name such as ``vbTextCompare``."""

    name: str


@dataclass(frozen=True, slots=True)
class Empty(Node):
    """An argument left out: ``Replace([x], , "a", , "b", , )``."""


@dataclass(frozen=True, slots=True)
class Comparison(Node):
    """``left operator right`` with ``=``, ``<>``, ``<``, ``<=``, ``>``, ``>=``."""

    operator: str
    left: Node
    right: Node


@dataclass(frozen=True, slots=True)
class Call(Node):
    """``Name(arguments)``; ``column`` is where the name starts."""

    name: str
    arguments: tuple[Node, ...]


_TERMINAL_NAMES = {
    "LPAR": "'('",
    "RPAR": "')'",
    "COMMA": "','",
    "NAME": "a function name",
    "ATTRIBUTE": "an attribute such as [mail]",
    "STRING": "a string",
    "INTEGER": "a number",
    "HEX": "a number",
    "COMPARISON": "a comparison operator",
    "$END": "the end of the expression",
}


def parse_tree(text: str) -> Node:
    """The syntax tree of ``text``; raises ``ExpressionError`` pointing at the first problem."""
    if not isinstance(text, str):
        raise ExpressionError(f"an expression must be text, got {type(text).__name__}", 1)
    if len(text) > MAX_EXPRESSION_LENGTH:
        raise ExpressionError(
            f"expression is {len(text)} characters long; the limit is {MAX_EXPRESSION_LENGTH}",
            MAX_EXPRESSION_LENGTH + 1,
        )
    if not text.strip():
        raise ExpressionError("expression is empty", 1)
    try:
        tree = parser().parse(text)
    except UnexpectedInput as problem:
        raise _syntax_error(text, problem) from None
    return _build(tree.children[0], 1)


def _syntax_error(text: str, problem: UnexpectedInput) -> ExpressionError:
    if isinstance(problem, UnexpectedCharacters):
        position = problem.pos_in_stream
        assert position is not None  # lark sets it for the character it could not read
        character = text[position]
        if character == '"':
            return ExpressionError('unterminated string: no closing "', position + 1)
        if character == "[":
            return ExpressionError("unterminated attribute name: no closing ]", position + 1)
        if character in "\u201c\u201d\u201e\u2018\u2019'":
            return ExpressionError(f'unexpected {character!r}: strings are written between straight quotes "..."',
                                   position + 1)
        return ExpressionError(f"unexpected character {character!r}", position + 1)
    if isinstance(problem, UnexpectedToken):
        token = problem.token
        expected = _expected(problem.expected)
        if token.type == "$END":
            return ExpressionError(f"unexpected end of the expression; expected {expected}", len(text) + 1)
        position = token.start_pos if token.start_pos is not None else len(text)
        return ExpressionError(f"unexpected {token.value!r}; expected {expected}", position + 1)
    if isinstance(problem, UnexpectedEOF):
        expected = _expected(problem.expected)
        return ExpressionError(f"unexpected end of the expression; expected {expected}", len(text) + 1)
    return ExpressionError(str(problem).splitlines()[0], 1)  # pragma: no cover - lark has no other kinds


def _expected(terminals: Iterable[str]) -> str:
    names = sorted({_TERMINAL_NAMES.get(name, name) for name in terminals})
    if len(names) == 1:
        return names[0]
    return ", ".join(names[:-1]) + " or " + names[-1]


def _build(tree: Tree | Token, depth: int) -> Node:
    # The grammar's aliases (attribute, string, ...) each wrap exactly one token.
    assert isinstance(tree, Tree)
    kind = tree.data
    if kind in ("call", "comparison") and depth > MAX_NESTING:
        first = tree.children[0] if kind == "call" else tree.children[1]
        assert isinstance(first, Token)
        raise ExpressionError(f"calls nest more than {MAX_NESTING} levels deep", _column(first))
    if kind == "call":
        name, arguments = tree.children
        assert isinstance(name, Token) and isinstance(arguments, Tree)
        built = tuple(_build_argument(argument, name, depth + 1) for argument in arguments.children)
        if len(built) == 1 and isinstance(built[0], Empty):
            built = ()  # Guid(): one empty argument is no argument
        return Call(_column(name), str(name), built)
    if kind == "comparison":
        left, operator, right = tree.children
        assert isinstance(operator, Token)
        return Comparison(_column(operator), str(operator), _build(left, depth + 1), _build(right, depth + 1))
    token = tree.children[0]
    assert isinstance(token, Token)
    column = _column(token)
    if kind == "attribute":
        name = token[1:-1].strip()
        if not name:
            raise ExpressionError("empty attribute name []", column)
        return Attribute(column, name)
    if kind == "string":
        return Literal(column, unescape(token[1:-1]))
    if kind == "integer":
        return Literal(column, int(token))
    if kind == "hex":
        return Literal(column, int(token[2:], 16))
    if kind == "identifier":
        return Identifier(column, str(token))
    raise AssertionError(f"grammar rule without a node: {kind}")  # pragma: no cover


def _build_argument(argument: Tree | Token, call_name: Token, depth: int) -> Node:
    assert isinstance(argument, Tree)
    if not argument.children:
        return Empty(_column(call_name))
    return _build(argument.children[0], depth)


def _column(token: Token) -> int:
    return (token.start_pos or 0) + 1


def unescape(body: str) -> str:
    r"""The value of a string constant's body: ``\"`` is ``"`` and ``\\`` is ``\``. Any other
    backslash stays as written, so ``"\d"`` and ``"\\d"`` both mean the regex ``\d``."""
    if "\\" not in body:
        return body
    out: list[str] = []
    index = 0
    while index < len(body):
        character = body[index]
        if character == "\\" and index + 1 < len(body) and body[index + 1] in '"\\':
            out.append(body[index + 1])
            index += 2
        else:
            out.append(character)
            index += 1
    return "".join(out)
