"""The errors of the expression language: one at parse time, one at evaluation time.

Both carry a 1-based column into the expression's text so that a message can point at the place
(``column 14: unknown function 'Lenght' (did you mean 'Left'?)``).
"""

from __future__ import annotations


class ExpressionError(ValueError):
    """An expression that cannot be used: a syntax error, an unknown function, a wrong number of
    arguments, an over-long text or an invalid constant regular expression. ``str(error)`` is
    ``"column N: message"``; ``column`` is 1-based into the text (counting newlines as characters)."""

    def __init__(self, message: str, column: int) -> None:
        super().__init__(f"column {column}: {message}")
        self.message = message
        self.column = column


class ExpressionEvaluationError(ExpressionError):
    """An expression that parsed but failed for one object (``CDate`` of an unreadable date, ``Item``
    with index 0, ...). ``column`` points at the call that failed. The engine turns it into a
    per-object failure: the other objects of the cycle are unaffected."""


class EvaluationProblem(Exception):
    """Raised by a function's implementation, which does not know where it was called from; the
    call site catches it and re-raises it as an ``ExpressionEvaluationError`` with its column."""
