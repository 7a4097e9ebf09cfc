"""Functions whose value does not come from the object: DefaultDomain, Guid, RandomString and
SelectUniqueValue (§2.3). They read the ``EvaluationContext``.
"""

from __future__ import annotations

import string
import uuid
from collections.abc import Mapping
from typing import Any

from identity_sync.engine.mapping.expressions.errors import EvaluationProblem
from identity_sync.engine.mapping.expressions.functions.registry import (
    CallSite,
    Evaluator,
    FunctionSpec,
    with_context,
)
from identity_sync.engine.mapping.expressions.values import EvaluationContext, to_int, to_text

#: Windows' password-complexity special characters (the set Entra's RandomString draws from).
SPECIAL_CHARACTERS = "~!@#$%^&*_-+=`|\\(){}[]:;\"'<>,.?/"
MAX_RANDOM_LENGTH = 256


def default_domain(context: EvaluationContext) -> str:
    """``DefaultDomain()``: the tenant's default domain from the context."""
    if not context.default_domain:
        raise EvaluationProblem("no default domain is configured for this job")
    return context.default_domain


def guid(context: EvaluationContext) -> str:
    """``Guid()``: a new random (version 4) GUID such as ``00aa00aa-bb11-4c22-8d33-44ee44ee44ee``."""
    return str(uuid.UUID(int=context.rng.getrandbits(128), version=4))


def random_string(context: EvaluationContext, length: Any, minimum_numbers: Any, minimum_special: Any,
                  minimum_capital: Any, minimum_lower: Any, avoid: Any) -> str:
    """``RandomString(length, minNumbers, minSpecial, minCapital, minLower, [charactersToAvoid])``:
    ``length`` characters (at most 256) with at least the given numbers of each kind, none of the
    characters to avoid; the rest are drawn from every allowed character."""
    total = to_int(length, "length to be a number")
    minimums = [
        (to_int(minimum_numbers, "MinimumNumbers to be a number"), string.digits, "numbers"),
        (to_int(minimum_special, "MinimumSpecialCharacters to be a number"), SPECIAL_CHARACTERS, "special characters"),
        (to_int(minimum_capital, "MinimumCapital to be a number"), string.ascii_uppercase, "capital letters"),
        (to_int(minimum_lower, "MinimumLowerCase to be a number"), string.ascii_lowercase, "lower-case letters"),
    ]
    if not 1 <= total <= MAX_RANDOM_LENGTH:
        raise EvaluationProblem(f"length must be 1 to {MAX_RANDOM_LENGTH}, got {total}")
    if any(count < 0 for count, _, _ in minimums):
        raise EvaluationProblem("the minimums must not be negative")
    if sum(count for count, _, _ in minimums) > total:
        raise EvaluationProblem(f"the minimums add up to more than length {total}")
    excluded = set(to_text(avoid) or "")
    rng = context.rng
    chosen: list[str] = []
    pool: list[str] = []
    for count, alphabet, kind in minimums:
        allowed = [character for character in alphabet if character not in excluded]
        if count and not allowed:
            raise EvaluationProblem(f"charactersToAvoid leaves no {kind}")
        chosen.extend(rng.choice(allowed) for _ in range(count))
        pool.extend(allowed)
    if len(chosen) < total and not pool:
        raise EvaluationProblem("charactersToAvoid leaves no characters at all")
    chosen.extend(rng.choice(pool) for _ in range(total - len(chosen)))
    rng.shuffle(chosen)
    return "".join(chosen)


def build_select_unique_value(site: CallSite, arguments: list[Evaluator]) -> Evaluator:
    """``SelectUniqueValue(rule1, rule2, ...)``: the first candidate the target does not hold yet,
    evaluated one by one; empty candidates are skipped. If every candidate is taken the object fails
    (Entra escrows it). Needs ``EvaluationContext.is_unique``."""

    def evaluate(attributes: Mapping[str, Any], context: EvaluationContext) -> Any:
        is_unique = context.is_unique
        if is_unique is None:
            raise site.evaluation_error(EvaluationProblem(
                "needs a uniqueness check of the target, which this job's target does not offer "
                "(Entra supports SelectUniqueValue only for Active Directory targets)"
            ))
        tried = 0
        for argument in arguments:
            try:
                candidate = to_text(argument(attributes, context))
            except EvaluationProblem as problem:
                raise site.evaluation_error(problem) from None
            if not candidate:
                continue
            tried += 1
            if is_unique(candidate):
                return candidate
        raise site.evaluation_error(EvaluationProblem(f"all {tried} non-empty candidates are taken in the target"))

    return evaluate


FUNCTIONS = (
    FunctionSpec("DefaultDomain", (), with_context(default_domain), "the tenant's default domain", uses_context=True),
    FunctionSpec("Guid", (), with_context(guid), "a new random GUID", uses_context=True),
    FunctionSpec("RandomString", ("length", "minimumNumbers", "minimumSpecialCharacters", "minimumCapital",
                                  "minimumLowerCase", "charactersToAvoid?"),
                 with_context(random_string), "a random string with minimums of each kind", uses_context=True),
    FunctionSpec("SelectUniqueValue", ("uniqueValueRule1", "uniqueValueRule2..."), build_select_unique_value,
                 "the first candidate not yet taken in the target", uses_context=True),
)
