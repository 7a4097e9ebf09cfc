"""Multi-valued attributes: Count, Item, Join, RemoveDuplicates, Split, and the app-role functions
(§2.3). A single value counts as a list of one; null as an empty list.

``[appRoleAssignments]`` is expected as the list of the object's role values (``["Admin",
"Reader"]``). The role functions return those values; how they travel (``roles`` as SCIM objects,
PATCH add for ``AppRoleAssignmentsComplex``, replace for ``AssertiveAppRoleAssignmentsComplex``) is
the export's business, which can see the function used in ``Expression.functions``.
"""

from __future__ import annotations

from typing import Any

from identity_sync.engine.mapping.expressions.errors import EvaluationProblem
from identity_sync.engine.mapping.expressions.functions.registry import (
    CallSite,
    FunctionSpec,
    eager,
    eager_variadic,
)
from identity_sync.engine.mapping.expressions.values import to_int, to_text, to_values


def count(attribute: Any) -> int:
    """``Count(attribute)``: the number of values (null → 0, a single value → 1)."""
    return len(to_values(attribute))


def item(attribute: Any, index: Any) -> Any:
    """``Item(attribute, index)``: the index-th value, 1-based; past the end → null. Index 0 or less
    is an error (Entra: "index 0 shouldn't be used")."""
    position = to_int(index, "index to be a number")
    if position < 1:
        raise EvaluationProblem(f"index is 1-based, got {position}")
    values = to_values(attribute)
    return values[position - 1] if position <= len(values) else None


def join(values: list[Any]) -> str:
    """``Join(separator, source1, ..., sourceN)``: the non-empty values joined by separator; a
    multi-valued source contributes each of its values; null and "" sources are skipped (so
    ``Join(", ", "", [surname], [givenName])`` is ``Doe, John``)."""
    separator = values[0]
    if type(separator) is not str:
        separator = to_text(separator) or ""
    parts: list[str] = []
    for index in range(1, len(values)):
        source = values[index]
        if type(source) is str:  # the common case, kept free of calls
            if source:
                parts.append(source)
        elif source is None:
            continue
        elif isinstance(source, list):
            parts.extend(text for value in source if (text := to_text(value)))
        elif text := to_text(source):
            parts.append(text)
    return separator.join(parts)


def remove_duplicates(attribute: Any) -> Any:
    """``RemoveDuplicates(attribute)``: the values without repeats, first occurrences kept in order
    (case-sensitive)."""
    if not isinstance(attribute, list):
        return attribute
    return list(dict.fromkeys(attribute))


def split(source: Any, delimiter: Any) -> list[str] | None:
    """``Split(source, delimiter)``: text → multi-valued. Each value is trimmed and empty values are
    dropped, as Entra's example shows (``"PermissionSetOne, PermissionSetTwo"`` split on ``","`` is
    ``["PermissionSetOne", "PermissionSetTwo"]``)."""
    text = to_text(source)
    if text is None:
        return None
    separator = to_text(delimiter) or ""
    pieces = text.split(separator) if separator else [text]
    return [piece.strip() for piece in pieces if piece.strip()]


def app_role_assignments(assignments: Any) -> list[str] | None:
    """``AppRoleAssignments(source)``: the role values, multi-valued (null when none)."""
    roles = [text for value in to_values(assignments) if (text := to_text(value))]
    return roles or None


def assertive_app_role_assignments(assignments: Any) -> list[str]:
    """``AssertiveAppRoleAssignmentsComplex([appRoleAssignments])``: every role value; an empty list
    (not null) when there are none, because the target's roles are then replaced by nothing."""
    return [text for value in to_values(assignments) if (text := to_text(value))]


def single_app_role_assignment(assignments: Any) -> str | None:
    """``SingleAppRoleAssignment([appRoleAssignments])``: the first role value (Entra: unpredictable
    when several are assigned; here, the first as the source lists them)."""
    roles = app_role_assignments(assignments)
    return roles[0] if roles else None


def _check_item(site: CallSite) -> None:
    constant = site.constant(1)
    if isinstance(constant, int) and constant < 1:
        raise site.error(f"index is 1-based, got {constant}", 1)


FUNCTIONS = (
    FunctionSpec("AppRoleAssignments", ("source",), eager(app_role_assignments), "the assigned role values"),
    FunctionSpec("AppRoleAssignmentsComplex", ("appRoleAssignments",), eager(app_role_assignments),
                 "every assigned role (exported as roles, PATCH add)"),
    FunctionSpec("AssertiveAppRoleAssignmentsComplex", ("appRoleAssignments",),
                 eager(assertive_app_role_assignments), "every assigned role (exported as roles, PATCH replace)"),
    FunctionSpec("Count", ("attribute",), eager(count), "the number of values"),
    FunctionSpec("Item", ("attribute", "index"), eager(item), "one value, 1-based", check=_check_item),
    FunctionSpec("Join", ("separator", "source..."), eager_variadic(join), "values joined by a separator"),
    FunctionSpec("RemoveDuplicates", ("attribute",), eager(remove_duplicates), "the values without repeats"),
    FunctionSpec("SingleAppRoleAssignment", ("appRoleAssignments",), eager(single_app_role_assignment),
                 "one assigned role"),
    FunctionSpec("Split", ("source", "delimiter"), eager(split), "text split into values"),
)
