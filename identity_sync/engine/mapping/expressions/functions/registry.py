"""How a function is described (its signature) and turned into an evaluator.

An expression is compiled once into nested closures, one per node: ``evaluator(attributes, context)``.
Most functions are *eager* (their arguments are evaluated first, then a plain Python function runs);
the few that must not evaluate every argument (``IIF``, ``Switch``, ``Coalesce``,
``SelectUniqueValue``) build their own closure. An implementation raises ``EvaluationProblem``
without knowing where it was called from; the closure adds the call's column.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from identity_sync.engine.mapping.expressions.errors import (
    EvaluationProblem,
    ExpressionError,
    ExpressionEvaluationError,
)
from identity_sync.engine.mapping.expressions.syntax import Empty, Literal, Node
from identity_sync.engine.mapping.expressions.values import EvaluationContext

Evaluator = Callable[[Mapping[str, Any], EvaluationContext], Any]


@dataclass(frozen=True, slots=True)
class CallSite:
    """One call in an expression: what a builder may inspect at parse time."""

    name: str
    column: int
    arguments: tuple[Node, ...]

    def given(self, index: int) -> bool:
        """Whether argument ``index`` (0-based) was written (not left out, not past the end)."""
        return index < len(self.arguments) and not isinstance(self.arguments[index], Empty)

    def constant(self, index: int) -> str | int | None:
        """The value of argument ``index`` when it is a literal, else ``None``."""
        if index < len(self.arguments):
            argument = self.arguments[index]
            if isinstance(argument, Literal):
                return argument.value
        return None

    def argument_column(self, index: int) -> int:
        """Where argument ``index`` starts (the call's column when it was left out)."""
        if index < len(self.arguments):
            return self.arguments[index].column
        return self.column

    def error(self, message: str, index: int | None = None) -> ExpressionError:
        """A parse-time error about this call (or about one of its arguments)."""
        column = self.column if index is None else self.argument_column(index)
        return ExpressionError(f"{self.name}: {message}", column)

    def evaluation_error(self, problem: EvaluationProblem) -> ExpressionEvaluationError:
        """The per-object error for a problem raised while this call ran."""
        return ExpressionEvaluationError(f"{self.name}: {problem}", self.column)


Builder = Callable[[CallSite, list[Evaluator]], Evaluator]


@dataclass(frozen=True, slots=True)
class FunctionSpec:
    """A function of the language.

    ``parameters`` are Entra's parameter names; ``"name?"`` is optional; a last ``"name..."``
    repeats and is required at least once, a last ``"name*"`` repeats and may be absent. ``build``
    makes the evaluator from the call site and one evaluator per parameter (left-out and missing
    optional arguments evaluate to ``None``).
    ``check`` adds parse-time rules (Switch's pairs, Replace's modes, constant regexes).
    """

    name: str
    parameters: tuple[str, ...]
    build: Builder
    summary: str
    check: Callable[[CallSite], None] | None = None
    uses_context: bool = False

    @property
    def variadic(self) -> bool:
        """Whether the last parameter repeats."""
        return bool(self.parameters) and self.parameters[-1].endswith(("...", "*"))

    @property
    def minimum(self) -> int:
        """The fewest arguments a call may have."""
        required = [i for i, p in enumerate(self.parameters) if not p.endswith(("?", "*"))]
        return required[-1] + 1 if required else 0

    @property
    def maximum(self) -> int | None:
        """The most arguments a call may have (``None``: no limit)."""
        return None if self.variadic else len(self.parameters)

    def required(self, index: int) -> bool:
        """Whether argument ``index`` must be written (variadic repeats may be left out)."""
        if index >= len(self.parameters):
            return False
        parameter = self.parameters[index]
        return not parameter.endswith(("?", "...", "*"))

    @property
    def signature(self) -> str:
        """``Name(a, [b], c...)`` as shown in error messages and the reference."""
        shown = []
        for parameter in self.parameters:
            if parameter.endswith("?"):
                shown.append(f"[{parameter[:-1]}]")
            elif parameter.endswith("..."):
                shown.append(f"{parameter[:-3]}, ...")
            elif parameter.endswith("*"):
                shown.append(f"[{parameter[:-1]}, ...]")
            else:
                shown.append(parameter)
        return f"{self.name}({', '.join(shown)})"


def eager(implementation: Callable[..., Any]) -> Builder:
    """A builder that evaluates every argument, then calls ``implementation(*values)``."""

    def build(site: CallSite, arguments: list[Evaluator]) -> Evaluator:
        count = len(arguments)
        if count == 0:

            def evaluate0(attributes: Mapping[str, Any], context: EvaluationContext) -> Any:
                try:
                    return implementation()
                except EvaluationProblem as problem:
                    raise site.evaluation_error(problem) from None

            return evaluate0
        if count == 1:
            (first,) = arguments

            def evaluate1(attributes: Mapping[str, Any], context: EvaluationContext) -> Any:
                value = first(attributes, context)
                try:
                    return implementation(value)
                except EvaluationProblem as problem:
                    raise site.evaluation_error(problem) from None

            return evaluate1
        if count == 2:
            first, second = arguments

            def evaluate2(attributes: Mapping[str, Any], context: EvaluationContext) -> Any:
                values = (first(attributes, context), second(attributes, context))
                try:
                    return implementation(*values)
                except EvaluationProblem as problem:
                    raise site.evaluation_error(problem) from None

            return evaluate2

        def evaluate(attributes: Mapping[str, Any], context: EvaluationContext) -> Any:
            values = [argument(attributes, context) for argument in arguments]
            try:
                return implementation(*values)
            except EvaluationProblem as problem:
                raise site.evaluation_error(problem) from None

        return evaluate

    return build


def eager_variadic(implementation: Callable[[list[Any]], Any]) -> Builder:
    """Like ``eager``, but ``implementation`` receives the list of all argument values."""

    def build(site: CallSite, arguments: list[Evaluator]) -> Evaluator:
        def evaluate(attributes: Mapping[str, Any], context: EvaluationContext) -> Any:
            values = [argument(attributes, context) for argument in arguments]
            try:
                return implementation(values)
            except EvaluationProblem as problem:
                raise site.evaluation_error(problem) from None

        return evaluate

    return build


def with_context(implementation: Callable[..., Any]) -> Builder:
    """Like ``eager``, but ``implementation(context, *values)`` also receives the context."""

    def build(site: CallSite, arguments: list[Evaluator]) -> Evaluator:
        def evaluate(attributes: Mapping[str, Any], context: EvaluationContext) -> Any:
            values = [argument(attributes, context) for argument in arguments]
            try:
                return implementation(context, *values)
            except EvaluationProblem as problem:
                raise site.evaluation_error(problem) from None

        return evaluate

    return build


def evaluate_null(attributes: Mapping[str, Any], context: EvaluationContext) -> None:
    """The evaluator of a left-out argument."""
    return None
