"""Entra's attribute-mapping expression language: parser, evaluator and every function
(provisioning-engine.md §2.2 syntax, §2.3 functions; user reference in docs/expressions.md).

    expr = parse_expression('Join("@", ToLower([mailNickname]), "contoso.com")')
    expr.evaluate({"mailNickname": "JSmith"})   # 'jsmith@contoso.com'

Parsing checks everything that can be checked without an object (syntax, function names and
arities, Replace's modes, constant regexes and date formats) and raises ``ExpressionError``;
evaluation raises ``ExpressionEvaluationError`` only for what depends on the object's values.
"""

from identity_sync.engine.mapping.expressions.compiler import Expression, parse_expression
from identity_sync.engine.mapping.expressions.errors import ExpressionError, ExpressionEvaluationError
from identity_sync.engine.mapping.expressions.functions import FUNCTIONS
from identity_sync.engine.mapping.expressions.syntax import MAX_EXPRESSION_LENGTH
from identity_sync.engine.mapping.expressions.values import (
    IGNORE_FLOW,
    CaseInsensitiveAttributes,
    EvaluationContext,
)

__all__ = [
    "FUNCTIONS",
    "IGNORE_FLOW",
    "MAX_EXPRESSION_LENGTH",
    "CaseInsensitiveAttributes",
    "EvaluationContext",
    "Expression",
    "ExpressionError",
    "ExpressionEvaluationError",
    "parse_expression",
]
