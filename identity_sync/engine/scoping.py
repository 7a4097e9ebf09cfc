"""Scope: who is assigned to the application (§1.5) and which objects pass the scoping filters (§3).

Scoping filters (§3.1). A *clause* is one source attribute, one operator and (except for unary
operators) one value. The clauses of a *filter* are AND-ed; several filters are OR-ed; no filter at
all lets everything pass. Their JSON shape is part of the job's mapping file::

    [{"title": "Sales in EU",
      "clauses": [{"attribute": "department", "operator": "EQUALS", "value": "Sales"},
                  {"attribute": "usageLocation", "operator": "ISIN", "value": "DE"},
                  {"attribute": "mail", "operator": "IS NOT NULL"}]}]

Operators (§3.2) are Entra's application-provisioning set plus Entra Connect sync's; names are
matched case-insensitively, with spaces and underscores optional (``NOT EQUALS`` = ``not_equals``
= ``NOTEQUAL``). Semantics follow Entra:

* a clause on a null or empty attribute is false, whatever the operator (so ``NOT EQUALS`` and
  ``NOT REGEX MATCH`` are false on null), except ``IS NULL`` (true) and ``IS NOT NULL`` (false);
* a multi-valued attribute (a list) makes a clause false, except ``ISIN``/``ISNOTIN`` (true when
  any / no value equals the clause's value) and the presence tests ``IS NULL``/``IS NOT NULL``
  (an empty list is null, a non-empty one is not: they test presence, whatever the shape);
* ``EQUALS``, ``Includes`` (substring), ``ENDS_WITH`` and the other string tests are
  case-sensitive, as .NET's ``String.Equals``/``Contains``/``EndsWith``; a boolean attribute is
  compared as ``true``/``false`` (the clause's value in any case);
* ``IS TRUE``/``IS FALSE`` accept a bool or the strings ``true``/``false`` (any case);
* numeric operators (``Greater_Than``, ``LESSTHAN``…, ``ISBITSET``) need an integer on both sides:
  a non-integer attribute makes the clause false, a non-integer clause value is a configuration
  error. ``ISBITSET`` is true when every bit of the value is set in the attribute;
* ``REGEX MATCH`` is .NET's ``Regex.IsMatch``: a match *anywhere* in the value (Python's
  ``re.search``, not ``fullmatch``), so ``(1[0-9]{6})`` also matches ``"x12345678"``; anchor with
  ``^…$`` to match the whole value. .NET's named groups ``(?<name>…)``/``(?'name'…)``,
  back-references ``\\k<name>`` and anchors ``\\z``/``\\Z`` are translated. Regexes are compiled when
  the filters are parsed, so a bad one is a configuration error, never a surprise in a cycle;
* ``&`` / ``!&``: Entra documents them as "attribute exists / does not exist in the input string
  value". We read that as *the attribute's value is one of / none of the clause's comma-separated
  values* (parts stripped of spaces, compared case-sensitively), e.g. ``department & Sales,Legal``.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from identity_sync.engine.model import ScopeDecision, SourceObject, SourceSnapshot, Value
from identity_sync.engine.nesting import transitive_members


class ScopingError(ValueError):
    """A scoping filter that cannot be used; the message is one line naming the JSON location,
    e.g. ``users.scoping[0].clauses[1].operator: unknown operator 'EQUALZ' (did you mean 'EQUALS'?)``."""


# -- values ---------------------------------------------------------------------------------------

def _is_null(value: Value) -> bool:
    return value is None or value == "" or (isinstance(value, (list, tuple)) and not value)


def _as_text(value: Value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


_INTEGER = re.compile(r"[+-]?[0-9]+")


def _as_integer(value: Value) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and _INTEGER.fullmatch(value.strip()):
        return int(value)
    return None


def _as_boolean(value: Value) -> bool | None:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in ("true", "false"):
        return value.lower() == "true"
    return None


# -- operators ------------------------------------------------------------------------------------

#: Compiles a clause's value (already checked present/absent) into a test of one scalar attribute
#: value that is not null; raises ValueError with the reason when the value cannot be used.
Compiler = Callable[[str | None], Callable[[Value], bool]]


def _text_test(predicate: Callable[[str, str], bool]) -> Compiler:
    def compile_(operand: str | None) -> Callable[[Value], bool]:
        assert operand is not None

        def test(value: Value) -> bool:
            if isinstance(value, bool):  # booleans compare as true/false whatever the clause's case
                return predicate(_as_text(value), operand.lower())
            return predicate(_as_text(value), operand)
        return test
    return compile_


def _integer_test(predicate: Callable[[int, int], bool]) -> Compiler:
    def compile_(operand: str | None) -> Callable[[Value], bool]:
        number = _as_integer(operand)
        if number is None:
            raise ValueError(f"needs an integer value, not {operand!r}")

        def test(value: Value) -> bool:
            attribute = _as_integer(value)
            return attribute is not None and predicate(attribute, number)
        return test
    return compile_


def _boolean_test(expected: bool) -> Compiler:
    return lambda _operand: lambda value: _as_boolean(value) is expected


def _regex_test(matches: bool) -> Compiler:
    def compile_(operand: str | None) -> Callable[[Value], bool]:
        assert operand is not None
        try:
            pattern = re.compile(dotnet_regex(operand))
        except re.error as error:
            raise ValueError(f"invalid regular expression {operand!r}: {error}") from None
        return lambda value: (pattern.search(_as_text(value)) is not None) is matches
    return compile_


def _one_of_test(inside: bool) -> Compiler:
    def compile_(operand: str | None) -> Callable[[Value], bool]:
        assert operand is not None
        choices = frozenset(part.strip() for part in operand.split(","))
        return lambda value: (_as_text(value) in choices) is inside
    return compile_


@dataclass(frozen=True)
class Operator:
    """One operator: its canonical name (as exported), whether it takes a value, how it compiles."""

    name: str
    unary: bool
    compile: Compiler
    #: ISIN/ISNOTIN read every value of a multi-valued attribute; the others refuse lists.
    multi_valued: bool = False


def _bit_set(attribute: int, mask: int) -> bool:
    return attribute & mask == mask


OPERATORS: tuple[Operator, ...] = (
    # Entra application provisioning (§3.2).
    Operator("EQUALS", False, _text_test(lambda value, operand: value == operand)),
    Operator("NOT EQUALS", False, _text_test(lambda value, operand: value != operand)),
    Operator("IS TRUE", True, _boolean_test(True)),
    Operator("IS FALSE", True, _boolean_test(False)),
    Operator("IS NULL", True, lambda _operand: lambda _value: False),  # null is decided before
    Operator("IS NOT NULL", True, lambda _operand: lambda _value: True),
    Operator("REGEX MATCH", False, _regex_test(True)),
    Operator("NOT REGEX MATCH", False, _regex_test(False)),
    Operator("Greater_Than", False, _integer_test(lambda value, operand: value > operand)),
    Operator("Greater_Than_OR_EQUALS", False, _integer_test(lambda value, operand: value >= operand)),
    Operator("Includes", False, _text_test(lambda value, operand: operand in value)),
    Operator("ENDS_WITH", False, _text_test(lambda value, operand: value.endswith(operand))),
    Operator("&", False, _one_of_test(True)),
    Operator("!&", False, _one_of_test(False)),
    # Entra Connect sync's declarative provisioning, for what the set above lacks.
    Operator("LESSTHAN", False, _integer_test(lambda value, operand: value < operand)),
    Operator("LESSTHAN_OR_EQUAL", False, _integer_test(lambda value, operand: value <= operand)),
    Operator("STARTSWITH", False, _text_test(lambda value, operand: value.startswith(operand))),
    Operator("NOTSTARTSWITH", False, _text_test(lambda value, operand: not value.startswith(operand))),
    Operator("NOTENDSWITH", False, _text_test(lambda value, operand: not value.endswith(operand))),
    Operator("NOTCONTAINS", False, _text_test(lambda value, operand: operand not in value)),
    Operator("ISIN", False, _text_test(lambda value, operand: value == operand), multi_valued=True),
    Operator("ISNOTIN", False, _text_test(lambda value, operand: value != operand), multi_valued=True),
    Operator("ISBITSET", False, _integer_test(_bit_set)),
    Operator("ISNOTBITSET", False, _integer_test(lambda value, operand: not _bit_set(value, operand))),
)


def _operator_key(name: str) -> str:
    return re.sub(r"[\s_]+", "", name).upper()


#: Other spellings of the same operators: Connect sync's names for what Entra names differently,
#: and the spellings people write by analogy (``LESS_THAN``, ``CONTAINS``, ``IS IN``).
_ALIASES = {
    "EQUAL": "EQUALS", "NOTEQUAL": "NOT EQUALS", "ISNULL": "IS NULL", "ISNOTNULL": "IS NOT NULL",
    "GREATERTHANOREQUAL": "Greater_Than_OR_EQUALS", "CONTAINS": "Includes", "LESSTHANOREQUALS": "LESSTHAN_OR_EQUAL",
}
_BY_KEY: dict[str, Operator] = {_operator_key(operator.name): operator for operator in OPERATORS}
_BY_KEY.update({alias: _BY_KEY[_operator_key(name)] for alias, name in _ALIASES.items()})


def find_operator(name: str) -> Operator:
    """The operator called ``name`` in any accepted spelling; ``KeyError`` with a suggestion."""
    operator = _BY_KEY.get(_operator_key(name))
    if operator is not None:
        return operator
    close = difflib.get_close_matches(_operator_key(name), list(_BY_KEY), n=1, cutoff=0.6)
    hint = f" (did you mean {_BY_KEY[close[0]].name!r}?)" if close else ""
    raise KeyError(f"unknown operator {name!r}{hint}")


# -- .NET regular expressions ---------------------------------------------------------------------

_DOTNET_SYNTAX = re.compile(r"""
    \\k<(?P<kangle>\w+)>             # \k<name>  back-reference
  | \\k'(?P<kquote>\w+)'             # \k'name'  back-reference
  | \\.                              # any other escape, kept unless it is \z or \Z
  | \(\?<(?![=!])(?P<angle>\w+)>     # (?<name>  named group (not a look-behind)
  | \(\?'(?P<quote>\w+)'             # (?'name'  named group
  | \[(?:\\.|[^\]\\])*\]             # a character class, copied as it is
""", re.VERBOSE)


def dotnet_regex(pattern: str) -> str:
    """A .NET regular expression in Python's syntax: named groups ``(?<n>``/``(?'n'`` become
    ``(?P<n>``, back-references ``\\k<n>``/``\\k'n'`` become ``(?P=n)``, ``\\z`` (end) becomes
    ``\\Z`` and .NET's ``\\Z`` (end or before a final line break) becomes ``(?=\\n?\\Z)``."""
    def translate(match: re.Match[str]) -> str:
        groups = match.groupdict()
        if groups["kangle"] or groups["kquote"]:
            return f"(?P={groups['kangle'] or groups['kquote']})"
        if groups["angle"] or groups["quote"]:
            return f"(?P<{groups['angle'] or groups['quote']}>"
        return {"\\z": "\\Z", "\\Z": "(?=\\n?\\Z)"}.get(match.group(), match.group())

    return _DOTNET_SYNTAX.sub(translate, pattern)


# -- filters --------------------------------------------------------------------------------------

@dataclass(frozen=True)
class ScopingClause:
    """``attribute operator value``; ``value`` is ``None`` for unary operators."""

    attribute: str
    #: Any accepted spelling; stored in the canonical one (``equal`` → ``EQUALS``).
    operator: str
    value: str | None = None
    _test: Callable[[Value], bool] = field(init=False, repr=False, compare=False)
    _multi_valued: bool = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        """Resolve the operator and compile the value now: ``KeyError`` for an unknown operator,
        ``ValueError`` for a value it cannot use (:func:`parse_scoping_filters` adds the place)."""
        operator = find_operator(self.operator)
        if operator.unary and self.value not in (None, ""):
            raise ValueError(f"{operator.name} takes no value, got {self.value!r}")
        if not operator.unary and not self.value:
            raise ValueError(f"{operator.name} needs a value")
        value = None if operator.unary else self.value
        try:
            test = operator.compile(value)
        except ValueError as error:
            raise ValueError(f"{operator.name} {error}") from None
        # frozen: the derived fields are set once, here.
        object.__setattr__(self, "operator", operator.name)
        object.__setattr__(self, "value", value)
        object.__setattr__(self, "_test", test)
        object.__setattr__(self, "_multi_valued", operator.multi_valued)

    def evaluate(self, attributes: Mapping[str, Value]) -> bool:
        """Whether the clause holds for an object with these source attributes (see the module)."""
        value = attributes.get(self.attribute)
        if _is_null(value):
            return self.operator == "IS NULL"
        if isinstance(value, (list, tuple)):
            if self.operator in ("IS NULL", "IS NOT NULL"):
                return self.operator == "IS NOT NULL"
            if not self._multi_valued:
                return False  # Entra: no filtering on multi-valued attributes
            return any(self._test(part) for part in value) if self.operator == "ISIN" \
                else all(self._test(part) for part in value)
        return self._test(value)

    def describe(self) -> str:
        """``department EQUALS Sales`` (``mail IS NOT NULL`` for unary operators)."""
        return " ".join(part for part in (self.attribute, self.operator, self.value) if part is not None)

    def to_json(self) -> dict[str, str]:
        """The clause as in the mapping file (operator in its canonical spelling)."""
        data = {"attribute": self.attribute, "operator": self.operator}
        if self.value is not None:
            data["value"] = self.value
        return data


@dataclass(frozen=True)
class ScopingFilter:
    """A titled AND of clauses."""

    title: str
    clauses: tuple[ScopingClause, ...]

    @property
    def attributes(self) -> tuple[str, ...]:
        """The source attributes the filter reads, in clause order, each once."""
        return tuple(dict.fromkeys(clause.attribute for clause in self.clauses))

    def matches(self, attributes: Mapping[str, Value]) -> bool:
        """Whether every clause holds."""
        return all(clause.evaluate(attributes) for clause in self.clauses)

    def to_json(self) -> dict[str, Any]:
        """The filter as in the mapping file; :func:`parse_scoping_filters` reads it back equal."""
        return {"title": self.title, "clauses": [clause.to_json() for clause in self.clauses]}


def _object(data: Any, where: str, required: tuple[str, ...], optional: tuple[str, ...]) -> dict[str, Any]:
    if not isinstance(data, dict):
        raise ScopingError(f"{where}: expected an object, got {_json_type(data)}")
    for key in data:
        if key not in required and key not in optional:
            expected = ", ".join((*required, *optional))
            raise ScopingError(f"{where}: unknown key {key!r} (expected {expected})")
    for key in required:
        if key not in data:
            raise ScopingError(f"{where}: missing {key!r}")
    return data


def _json_type(data: Any) -> str:
    names = {dict: "an object", list: "a list", str: "a string", bool: "a boolean", int: "a number",
             float: "a number", type(None): "null"}
    return names.get(type(data), type(data).__name__)


def _text(data: Any, where: str) -> str:
    if not isinstance(data, str) or not data.strip():
        raise ScopingError(f"{where}: expected a non-empty string, got {_json_type(data)}"
                           + (" ''" if data == "" else ""))
    return data


def _parse_clause(data: Any, where: str) -> ScopingClause:
    data = _object(data, where, ("attribute", "operator"), ("value",))
    attribute = _text(data["attribute"], f"{where}.attribute")
    operator_name = _text(data["operator"], f"{where}.operator")
    value = data.get("value")
    if isinstance(value, int) and not isinstance(value, bool):
        value = str(value)  # Greater_Than 10 written as a JSON number
    if value is not None and value != "":
        value = _text(value, f"{where}.value")
    try:
        return ScopingClause(attribute, operator_name, value)
    except KeyError as error:
        raise ScopingError(f"{where}.operator: {error.args[0]}") from None
    except ValueError as error:
        place = f"{where}.value" if "value" in data else where
        raise ScopingError(f"{place}: {error}") from None


def parse_scoping_filters(data: Any, where: str = "scoping") -> list[ScopingFilter]:
    """Scoping filters from their JSON shape (``None`` = no filter), checked and compiled now:
    anything unusable raises :class:`ScopingError` naming its place under ``where``."""
    if data is None:
        return []
    if not isinstance(data, list):
        raise ScopingError(f"{where}: expected a list of scoping filters, got {_json_type(data)}")
    filters = []
    for number, item in enumerate(data):
        here = f"{where}[{number}]"
        item = _object(item, here, ("title", "clauses"), ())
        title = _text(item["title"], f"{here}.title")
        clauses = item["clauses"]
        if not isinstance(clauses, list) or not clauses:
            raise ScopingError(f"{here}.clauses: expected a non-empty list of clauses (a filter without "
                               f"clauses would let everything pass), got {_json_type(clauses)}"
                               + (" []" if clauses == [] else ""))
        parsed = tuple(_parse_clause(clause, f"{here}.clauses[{index}]") for index, clause in enumerate(clauses))
        filters.append(ScopingFilter(title, parsed))
    return filters


def passes_filters(filters: Iterable[ScopingFilter], attributes: Mapping[str, Value]) -> bool:
    """Whether an object passes: no filter, or any filter whose clauses all hold (the cycle's fast path)."""
    filters = list(filters)
    return not filters or any(scoping_filter.matches(attributes) for scoping_filter in filters)


def evaluate_scope(filters: Iterable[ScopingFilter], attributes: Mapping[str, Value]) -> ScopeDecision:
    """Whether an object passes, with one detail line per clause as on-demand provisioning shows
    them: ``"Sales in EU: department EQUALS Sales: true"``. No filter: in scope, no lines."""
    filters = list(filters)
    details: list[str] = []
    passing = not filters
    for scoping_filter in filters:
        results = [clause.evaluate(attributes) for clause in scoping_filter.clauses]
        details.extend(f"{scoping_filter.title}: {clause.describe()}: {str(result).lower()}"
                       for clause, result in zip(scoping_filter.clauses, results, strict=True))
        passing = passing or all(results)
    return ScopeDecision(passing, details)


# -- assignments ----------------------------------------------------------------------------------

@dataclass(frozen=True)
class Assignments:
    """Who the "assigned users and groups" scope lets in."""

    #: Users assigned directly, and the *direct* members of assigned groups.
    users: frozenset[str]
    #: Groups assigned to the application.
    groups: frozenset[str]
    #: False when the source has no notion of assignment (``SourceSnapshot.assigned is None``):
    #: then nobody is assigned, and the cycle should say why.
    known: bool = True

    def includes(self, obj: SourceObject) -> bool:
        """Whether the object is in the "assigned users and groups" scope."""
        return obj.anchor in (self.users if obj.object_type == "user" else self.groups)


def effective_assignments(snapshot: SourceSnapshot, *, nested: bool = False) -> Assignments:
    """The users and groups in the "assigned" scope (§1.5).

    Assigning a group brings its *direct* members into scope. Members of a nested group are not
    (the nested group itself is neither): Entra does not read nested groups, which is the most
    complained-about limitation of its provisioning (§1.5: MicrosoftDocs/azure-docs #13819, #18016,
    #46480, #65060). That is the default, so that a job behaves as it would there; ``nested``
    (the job's ``--nested-scope on``) brings the users and groups of nested groups, at any depth,
    into scope too (engine/nesting.py). Principals that name no object of the snapshot are ignored.
    """
    if snapshot.assigned is None:
        return Assignments(frozenset(), frozenset(), known=False)
    users = {principal for principal in snapshot.assigned if principal in snapshot.users}
    groups = {principal for principal in snapshot.assigned if principal in snapshot.groups}
    if nested and groups:
        user_sets, group_sets = transitive_members(snapshot.groups, snapshot.users)
        for anchor in list(groups):
            users |= user_sets[anchor]
            groups |= group_sets[anchor]
        return Assignments(frozenset(users), frozenset(groups))
    for anchor in groups:
        members = snapshot.groups[anchor].attributes.get("members") or ()
        users.update(member for member in members if member in snapshot.users)
    return Assignments(frozenset(users), frozenset(groups))
