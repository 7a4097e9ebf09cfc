"""From text to a compiled ``Expression``: parse, check every call against its signature, and turn
the tree into nested closures that evaluate without looking at the tree again.

Evaluation speed matters (100,000 users x ~50 mappings per cycle), so the work that can be done
once is done here: function lookup, arity checks, constant regexes, ``Switch`` tables, the
case-folded attribute names.
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping
from functools import lru_cache
from typing import Any

from identity_sync.engine.mapping.expressions.errors import (
    EvaluationProblem,
    ExpressionError,
    ExpressionEvaluationError,
)
from identity_sync.engine.mapping.expressions.functions import FUNCTIONS
from identity_sync.engine.mapping.expressions.functions.logic import IgnoreFlowSignal, comparison
from identity_sync.engine.mapping.expressions.functions.registry import (
    CallSite,
    Evaluator,
    FunctionSpec,
    evaluate_null,
)
from identity_sync.engine.mapping.expressions.functions.strings import COMPARE_CONSTANTS
from identity_sync.engine.mapping.expressions.syntax import (
    Attribute,
    Call,
    Comparison,
    Empty,
    Identifier,
    Literal,
    Node,
    parse_tree,
)
from identity_sync.engine.mapping.expressions.values import (
    IGNORE_FLOW,
    CaseInsensitiveAttributes,
    DateTimeValue,
    EvaluationContext,
    plain,
)

#: Functions that must be the whole expression (Entra: "must be at the top-level").
_TOP_LEVEL_ONLY = frozenset({"SelectUniqueValue"})


class Expression:
    """A parsed, checked and compiled mapping expression. Immutable; safe to share between threads
    (evaluation keeps no state)."""

    __slots__ = ("_evaluator", "_uses_context", "attributes", "functions", "redacted", "text", "tree")
    text: str
    tree: Node
    attributes: frozenset[str]
    functions: frozenset[str]
    redacted: bool
    _evaluator: Evaluator
    _uses_context: bool

    def __init__(self, text: str, tree: Node, evaluator: Evaluator, attributes: frozenset[str],
                 functions: frozenset[str]) -> None:
        initialise = object.__setattr__
        initialise(self, "text", text)
        #: The syntax tree (``syntax.Node``), for tools that show or transform expressions.
        initialise(self, "tree", tree)
        #: Names of the source attributes referenced as ``[name]``, as written.
        initialise(self, "attributes", attributes)
        #: Names of the functions called anywhere in the expression.
        initialise(self, "functions", functions)
        #: True when ``Redact(...)`` appears anywhere: logs must show ``[Redact]`` instead of the value.
        initialise(self, "redacted", "Redact" in functions)
        initialise(self, "_evaluator", evaluator)
        initialise(self, "_uses_context", any(FUNCTIONS[name].uses_context for name in functions))

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError(f"Expression is immutable (cannot set {name!r})")

    def evaluate(self, attributes: Mapping[str, Any], context: EvaluationContext | None = None) -> Any:
        """The value of the expression for one object's ``attributes``: ``None``, ``str``, ``bool``,
        ``int``, ``list[str]``, or ``IGNORE_FLOW``. Raises ``ExpressionEvaluationError`` when a
        function fails for this object."""
        if context is None:
            context = EvaluationContext() if self._uses_context else _NO_CONTEXT
        try:
            value = self._evaluator(attributes, context)
        except IgnoreFlowSignal:
            return IGNORE_FLOW
        except ExpressionEvaluationError as problem:
            if not self.redacted:
                raise
            # A message may quote the value that failed; a redacted expression's values stay out of logs.
            where = problem.message.split(":", 1)[0]
            raise ExpressionEvaluationError(f"{where}: failed (details redacted)", problem.column) from None
        if type(value) is DateTimeValue or type(value) is list:
            return plain(value)
        return value

    def __repr__(self) -> str:
        return f"Expression({self.text!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Expression) and other.text == self.text

    def __hash__(self) -> int:
        return hash(self.text)

    def __reduce__(self) -> tuple[Any, tuple[str]]:
        # Closures do not pickle; the text rebuilds the same expression (e.g. in a worker process).
        return (parse_expression, (self.text,))


# Expressions that call no context function never read it; one shared instance spares a clock read.
_NO_CONTEXT = EvaluationContext()


def parse_expression(text: str) -> Expression:
    """Parse, check and compile ``text``; raises ``ExpressionError`` (``"column N: message"``).

    Expressions are immutable, so the same text gives the same object (cached; errors are not)."""
    if not isinstance(text, str):
        raise ExpressionError(f"an expression must be text, got {type(text).__name__}", 1)
    return _parse_expression(text)


@lru_cache(maxsize=4096)
def _parse_expression(text: str) -> Expression:
    tree = parse_tree(text)
    attributes: set[str] = set()
    functions: set[str] = set()
    evaluator = _compile(tree, attributes, functions, top_level=True)
    return Expression(text, tree, evaluator, frozenset(attributes), frozenset(functions))


def _compile(node: Node, attributes: set[str], functions: set[str], *, top_level: bool) -> Evaluator:
    if isinstance(node, Attribute):
        attributes.add(node.name)
        return _attribute_evaluator(node.name)
    if isinstance(node, Literal):
        return _constant_evaluator(node.value)
    if isinstance(node, Empty):
        return evaluate_null
    if isinstance(node, Identifier):
        return _identifier_evaluator(node)
    if isinstance(node, Comparison):
        return _comparison_evaluator(node, attributes, functions)
    assert isinstance(node, Call)
    return _call_evaluator(node, attributes, functions, top_level=top_level)


def _attribute_evaluator(name: str) -> Evaluator:
    folded = name.casefold()
    missing = object()

    def evaluate(attributes: Mapping[str, Any], context: EvaluationContext) -> Any:
        value = attributes.get(name, missing)
        if value is not missing:
            return value
        # Entra matches attribute names without regard to case: a second, slower look.
        if isinstance(attributes, CaseInsensitiveAttributes):
            return attributes.folded(folded)
        for key, candidate in attributes.items():
            if key.casefold() == folded:
                return candidate
        return None

    return evaluate


def _constant_evaluator(value: Any) -> Evaluator:
    def evaluate(attributes: Mapping[str, Any], context: EvaluationContext) -> Any:
        return value

    return evaluate


def _identifier_evaluator(node: Identifier) -> Evaluator:
    if node.name in COMPARE_CONSTANTS:
        return _constant_evaluator(COMPARE_CONSTANTS[node.name])
    if node.name in FUNCTIONS:
        raise ExpressionError(f"{node.name} is a function: call it as {node.name}(...)", node.column)
    known = " or ".join(sorted(COMPARE_CONSTANTS))
    raise ExpressionError(
        f"unknown name {node.name!r}: a value is [attribute], \"text\", a number, {known}, or a call", node.column
    )


def _comparison_evaluator(node: Comparison, attributes: set[str], functions: set[str]) -> Evaluator:
    left = _compile(node.left, attributes, functions, top_level=False)
    right = _compile(node.right, attributes, functions, top_level=False)
    compare = comparison(node.operator)
    operator_text, column = node.operator, node.column

    def evaluate(values: Mapping[str, Any], context: EvaluationContext) -> bool:
        first, second = left(values, context), right(values, context)
        try:
            return compare(first, second)
        except EvaluationProblem as problem:
            raise ExpressionEvaluationError(f"comparison {operator_text}: {problem}", column) from None

    return evaluate


def _call_evaluator(node: Call, attributes: set[str], functions: set[str], *, top_level: bool) -> Evaluator:
    spec = FUNCTIONS.get(node.name)
    if spec is None:
        raise ExpressionError(_unknown_function(node.name), node.column)
    if node.name in _TOP_LEVEL_ONLY and not top_level:
        raise ExpressionError(f"{node.name} must be the whole expression, not inside another call", node.column)
    site = CallSite(node.name, node.column, node.arguments)
    _check_arity(spec, site)
    for index in range(len(node.arguments)):
        if spec.required(index) and not site.given(index):
            raise site.error(f"argument {index + 1} ({spec.parameters[index]}) is required; {spec.signature}", index)
    if spec.check is not None:
        spec.check(site)
    functions.add(node.name)
    compiled = [_compile(argument, attributes, functions, top_level=False) for argument in node.arguments]
    if not spec.variadic:
        compiled.extend(evaluate_null for _ in range(len(spec.parameters) - len(compiled)))
    return spec.build(site, compiled)


def _check_arity(spec: FunctionSpec, site: CallSite) -> None:
    count = len(site.arguments)
    minimum, maximum = spec.minimum, spec.maximum
    if minimum <= count and (maximum is None or count <= maximum):
        return
    if maximum is None:
        wanted = f"at least {minimum}"
    elif minimum == maximum:
        wanted = str(minimum)
    else:
        wanted = f"{minimum} to {maximum}"
    plural = "" if wanted == "1" else "s"
    raise site.error(f"takes {wanted} argument{plural}, got {count}: {spec.signature}")


def _unknown_function(name: str) -> str:
    by_folded = {known.casefold(): known for known in FUNCTIONS}
    if name.casefold() in by_folded:
        return f"unknown function {name!r}: names are case-sensitive, did you mean {by_folded[name.casefold()]!r}?"
    close = difflib.get_close_matches(name, list(FUNCTIONS), n=1, cutoff=0.6)
    if not close:
        folded = difflib.get_close_matches(name.casefold(), list(by_folded), n=1, cutoff=0.6)
        close = [by_folded[folded[0]]] if folded else []
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    return f"unknown function {name!r}{hint}"
