"""Values, the evaluation context and the coercions every function family shares.

An expression's values are those of the engine's model (``identity_sync.engine.model.Value``):
``None`` (absent: never provisioned), ``str``, ``bool``, ``int`` and ``list[str]`` (multi-valued).
Dates are strings in Entra's ``M/d/yyyy h:mm:ss tt`` UTC form (provisioning-engine.md §2.2); inside
an evaluation they are ``DateTimeValue``, a ``str`` that also remembers the exact moment, so that
``DateAdd``/``DateDiff``/comparisons need not read the text back. ``Expression.evaluate`` hands out
plain ``str`` only.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from typing import Any, Final, Protocol

from identity_sync.engine.mapping.expressions.errors import EvaluationProblem


class _IgnoreFlow:
    """The type of ``IGNORE_FLOW``: one instance, falsy-free on purpose (compare with ``is``)."""

    _instance: _IgnoreFlow | None = None

    def __new__(cls) -> _IgnoreFlow:
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __repr__(self) -> str:
        return "IGNORE_FLOW"

    def __reduce__(self) -> str:
        return "IGNORE_FLOW"


#: Returned by ``Expression.evaluate`` when ``IgnoreFlowIfNullOrEmpty`` met a null or empty value:
#: the target attribute is then not exported at all (neither set nor cleared) (§2.3).
IGNORE_FLOW: Final = _IgnoreFlow()


class RandomSource(Protocol):
    """What ``Guid()`` and ``RandomString()`` need from a random source (``random.Random`` and
    ``secrets.SystemRandom`` both qualify; tests pass a seeded ``random.Random``)."""

    def getrandbits(self, k: int, /) -> int: ...

    def choice(self, seq: Any, /) -> Any: ...

    def shuffle(self, x: list[Any], /) -> None: ...


_SYSTEM_RANDOM: Final = secrets.SystemRandom()


def _utc_now() -> datetime:
    return datetime.now(UTC)


def _system_random() -> RandomSource:
    return _SYSTEM_RANDOM


@dataclass(slots=True)
class EvaluationContext:
    """What an expression may know beyond the object's attributes.

    One context per cycle, so that every ``Now()`` of the cycle agrees.
    """

    #: The moment ``Now()`` returns (UTC). Defaults to when the context was made.
    now: datetime = field(default_factory=_utc_now)
    #: The tenant's default domain, returned by ``DefaultDomain()``.
    default_domain: str = ""
    #: Random source of ``Guid()`` and ``RandomString()``; defaults to the operating system's.
    rng: RandomSource = field(default_factory=_system_random)
    #: Tells ``SelectUniqueValue`` whether a candidate is still free in the target. ``None``: the
    #: target cannot say, and ``SelectUniqueValue`` fails (Entra supports it only for AD targets).
    is_unique: Callable[[str], bool] | None = None

    def __post_init__(self) -> None:
        if self.now.tzinfo is None:
            raise ValueError("EvaluationContext.now must be timezone-aware (UTC)")
        self.now = self.now.astimezone(UTC)


class DateTimeValue(str):
    """A date produced by a date function: the text Entra shows (``6/29/2021 4:00:00 PM``) that also
    carries the exact UTC moment."""

    __slots__ = ("moment",)
    moment: datetime

    def __new__(cls, moment: datetime) -> DateTimeValue:
        moment = moment.astimezone(UTC)
        hour12 = moment.hour % 12 or 12
        meridiem = "AM" if moment.hour < 12 else "PM"
        text = f"{moment.month}/{moment.day}/{moment.year} {hour12}:{moment.minute:02d}:{moment.second:02d} {meridiem}"
        value = super().__new__(cls, text)
        value.moment = moment
        return value


def plain(value: Any) -> Any:
    """``value`` with internal string subclasses turned into ``str`` (what callers receive)."""
    if type(value) is DateTimeValue:
        return str(value)
    if type(value) is list:
        return [str(item) if type(item) is DateTimeValue else item for item in value]
    return value


def describe(value: Any) -> str:
    """A short human description of a value for error messages (never the whole of a long value)."""
    if value is None:
        return "null"
    if isinstance(value, list):
        return f"a multi-valued attribute with {len(value)} values"
    text = repr(value) if isinstance(value, str) else str(value)
    return text if len(text) <= 60 else text[:57] + "..."


def to_text(value: Any) -> str | None:
    """A single value as text: ``None`` stays ``None``; booleans are ``True``/``False`` as in .NET;
    a multi-valued attribute with one value is that value; with several it is an error."""
    if value is None or type(value) is str:
        return value
    if isinstance(value, str):
        return str(value)
    if isinstance(value, bool):
        return "True" if value else "False"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, list):
        if not value:
            return None
        if len(value) == 1:
            return to_text(value[0])
        raise EvaluationProblem(f"expects a single value, got {describe(value)}")
    raise EvaluationProblem(f"cannot use {type(value).__name__} value {describe(value)} as text")


_INTEGER = re.compile(r"\s*[+-]?\d+\s*")


def to_int(value: Any, what: str = "a number") -> int:
    """An integer argument: ints, or text that is an integer (``"7"``, ``" -3 "``). Null is an error
    (say what the argument is for in ``what``)."""
    if type(value) is int:
        return value
    if isinstance(value, bool):
        raise EvaluationProblem(f"expected {what}, got {describe(value)}")
    text = to_text(value)
    if text is None:
        raise EvaluationProblem(f"expected {what}, got null")
    if _INTEGER.fullmatch(text):
        return int(text)
    raise EvaluationProblem(f"expected {what}, got {describe(text)}")


def to_number(value: Any) -> int | Decimal | None:
    """A value read as a number for comparisons and ``CBool``, or ``None`` when it is not one."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str):
        if _INTEGER.fullmatch(value):
            return int(value)
        try:
            number = Decimal(value.strip())
        except InvalidOperation:
            return None
        return number if number.is_finite() else None
    return None


def boolean_or_none(value: Any) -> bool | None:
    """``True``/``False`` for booleans and the strings "True"/"False" in any case, else ``None``."""
    if isinstance(value, bool):
        return value
    if isinstance(value, str):
        lowered = value.strip().lower()
        if lowered == "true":
            return True
        if lowered == "false":
            return False
    return None


def to_bool(value: Any) -> bool:
    """A condition (``IIF``, ``CBool``): booleans, "True"/"False" in any case, numbers (non-zero is
    true, as in VB); null is false. Anything else is an error."""
    if value is None:
        return False
    flag = boolean_or_none(value)
    if flag is not None:
        return flag
    number = to_number(value)
    if number is not None:
        return number != 0
    if isinstance(value, list) and len(value) == 1:
        return to_bool(value[0])
    raise EvaluationProblem(f"expected a boolean, got {describe(value)}")


def to_values(value: Any) -> list[Any]:
    """A value as the list of its values: null → [], a single value → [value]."""
    if value is None:
        return []
    if isinstance(value, list):
        return value
    return [value]


class CaseInsensitiveAttributes(Mapping[str, Any]):
    """A read-only view of an object's attributes with a case-insensitive index built once.

    Optional: build one per object when the same object is evaluated by many expressions whose
    attribute names differ in case from the source's, or that name attributes the object lacks
    (otherwise each miss scans the attributes once).
    """

    __slots__ = ("_attributes", "_folded")

    def __init__(self, attributes: Mapping[str, Any]) -> None:
        self._attributes = attributes
        folded: dict[str, Any] = {}
        for key, value in attributes.items():
            folded.setdefault(key.casefold(), value)
        self._folded = folded

    def folded(self, folded_name: str) -> Any:
        """The value whose name case-folds to ``folded_name``, or ``None``."""
        return self._folded.get(folded_name)

    def __getitem__(self, key: str) -> Any:
        return self._attributes[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._attributes)

    def __len__(self) -> int:
        return len(self._attributes)
