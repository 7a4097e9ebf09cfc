""".NET dates as Entra reads and writes them: the lenient parse of ``CDate``, the custom format
strings of ``FormatDateTime`` (both directions) and AD's FILETIME numbers (§2.2, §2.3).

Culture is en-US, the culture of Entra's own ``M/d/yyyy h:mm:ss tt``. The supported custom
specifiers are ``d dd ddd dddd f… F… h hh H HH K m mm M MM MMM MMMM s ss t tt y yy yyy yyyy yyyyy
z zz zzz``, the separators ``/`` and ``:``, quoted literals ``'...'``/``"..."``, ``\\x`` and ``%x``;
the standard formats ``d D f F g G M o O r R s t T u Y``. Anything else (eras ``g``, unknown
standard formats) is an error naming what is not supported, never a silent wrong date.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from email.utils import parsedate_to_datetime
from functools import lru_cache

from identity_sync.engine.mapping.expressions.errors import EvaluationProblem

FILETIME_EPOCH = datetime(1601, 1, 1, tzinfo=UTC)
_MONTHS = ("January", "February", "March", "April", "May", "June", "July", "August", "September", "October",
           "November", "December")
_DAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")

_TIME = r"(?:[T ]\s*(\d{1,2}):(\d{2})(?::(\d{2})(?:[.,](\d+))?)?(?:\s*([AaPp][Mm]))?)?"
_OFFSET = r"\s*(Z|GMT|UTC|[+-]\d{2}(?::?\d{2})?)?"
_ISO_DATE = re.compile(r"\s*(\d{4})-(\d{1,2})-(\d{1,2})" + _TIME + _OFFSET + r"\s*", re.IGNORECASE)
_YEAR_FIRST_SLASH = re.compile(r"\s*(\d{4})/(\d{1,2})/(\d{1,2})" + _TIME + _OFFSET + r"\s*", re.IGNORECASE)
_US_DATE = re.compile(r"\s*(\d{1,2})/(\d{1,2})/(\d{4})" + _TIME + _OFFSET + r"\s*", re.IGNORECASE)


def parse_date(text: str) -> datetime:
    """A date/time string as ``CDate`` reads it, as an aware UTC datetime.

    Accepts ISO 8601 (``2021-06-30``, ``2021-06-30+08:00``, ``2020-03-16-07:00``,
    ``2009-06-15T01:45:30.5-07:00``, ``…Z``), US ``M/d/yyyy [h:mm[:ss] [AM|PM]]`` (what ``Now()``
    writes), ``yyyy/M/d`` and RFC 1123 (``Tue, 15 Jun 2021 10:00:00 GMT``). A date without an
    offset is taken as UTC (the service's zone).
    """
    for pattern, order in ((_ISO_DATE, "ymd"), (_US_DATE, "mdy"), (_YEAR_FIRST_SLASH, "ymd")):
        match = pattern.fullmatch(text)
        if match:
            return _from_match(match, order, text)
    if "," in text or "GMT" in text.upper():
        try:
            parsed = parsedate_to_datetime(text)
        except (TypeError, ValueError, IndexError):
            parsed = None
        if parsed is not None:
            return parsed.replace(tzinfo=parsed.tzinfo or UTC).astimezone(UTC)
    raise EvaluationProblem(f"cannot read {_quote(text)} as a date")


def _from_match(match: re.Match[str], order: str, text: str) -> datetime:
    first, second, third, hour, minute, second_of_minute, fraction, meridiem, offset = match.groups()
    if order == "ymd":
        year, month, day = int(first), int(second), int(third)
    else:
        month, day, year = int(first), int(second), int(third)
    hour_value = int(hour) if hour else 0
    if meridiem:
        if not 1 <= hour_value <= 12:
            raise EvaluationProblem(f"cannot read {_quote(text)} as a date: hour {hour_value} with {meridiem}")
        hour_value = hour_value % 12 + (12 if meridiem.upper() == "PM" else 0)
    microsecond = int((fraction or "0")[:6].ljust(6, "0"))
    try:
        moment = datetime(year, month, day, hour_value, int(minute or 0), int(second_of_minute or 0), microsecond,
                          tzinfo=_zone(offset))
    except ValueError as problem:
        raise EvaluationProblem(f"cannot read {_quote(text)} as a date: {problem}") from None
    return moment.astimezone(UTC)


@lru_cache(maxsize=128)
def _zone(offset: str | None) -> timezone:
    if not offset or offset.upper() in ("Z", "GMT", "UTC"):
        return UTC
    sign = -1 if offset[0] == "-" else 1
    digits = offset[1:].replace(":", "")
    hours, minutes = int(digits[:2]), int(digits[2:4] or 0)
    if hours > 14 or minutes > 59:
        raise EvaluationProblem(f"offset {offset} is out of range")
    return timezone(sign * timedelta(hours=hours, minutes=minutes))


def _quote(text: str) -> str:
    return repr(text) if len(text) <= 60 else repr(text[:57] + "...")


def from_filetime(ticks: int) -> datetime:
    """AD's FILETIME (100-nanosecond ticks since 1601-01-01 UTC) as a UTC datetime."""
    try:
        return FILETIME_EPOCH + timedelta(microseconds=ticks // 10)
    except OverflowError:
        raise EvaluationProblem(f"{ticks} is not a date in AD's format (out of range)") from None


def to_filetime(moment: datetime) -> int:
    """A datetime as AD's FILETIME number (``accountExpires``)."""
    delta = moment.astimezone(UTC) - FILETIME_EPOCH
    return (delta.days * 86_400 + delta.seconds) * 10_000_000 + delta.microseconds * 10


# --- custom format strings ---------------------------------------------------------------------

_SPECIFIERS = frozenset("dfFghHKmMstyz")
_STANDARD_FORMATS = {
    "d": "M/d/yyyy",
    "D": "dddd, MMMM d, yyyy",
    "f": "dddd, MMMM d, yyyy h:mm tt",
    "F": "dddd, MMMM d, yyyy h:mm:ss tt",
    "g": "M/d/yyyy h:mm tt",
    "G": "M/d/yyyy h:mm:ss tt",
    "M": "MMMM d",
    "m": "MMMM d",
    "o": "yyyy'-'MM'-'dd'T'HH':'mm':'ss'.'fffffffK",
    "O": "yyyy'-'MM'-'dd'T'HH':'mm':'ss'.'fffffffK",
    "r": "ddd, dd MMM yyyy HH':'mm':'ss 'GMT'",
    "R": "ddd, dd MMM yyyy HH':'mm':'ss 'GMT'",
    "s": "yyyy'-'MM'-'dd'T'HH':'mm':'ss",
    "t": "h:mm tt",
    "T": "h:mm:ss tt",
    "u": "yyyy'-'MM'-'dd HH':'mm':'ss'Z'",
    "Y": "MMMM yyyy",
    "y": "MMMM yyyy",
}
_UTC_STANDARD_FORMATS = frozenset("rRu")  # these write the UTC time


@dataclass(frozen=True, slots=True)
class Field:
    """A specifier run such as ``yyyy`` (letter ``y``, width 4)."""

    letter: str
    width: int


Token = Field | str  # str: literal text


@lru_cache(maxsize=256)
def tokenize(format_string: str) -> tuple[tuple[Token, ...], bool]:
    """The tokens of a .NET date format and whether it writes UTC (``r``, ``u``); raises
    ``EvaluationProblem`` on what is not supported."""
    if not format_string:
        raise EvaluationProblem("the date format is empty")
    writes_utc = False
    if len(format_string) == 1:
        if format_string not in _STANDARD_FORMATS:
            raise EvaluationProblem(f"standard date format {format_string!r} is not supported")
        writes_utc = format_string in _UTC_STANDARD_FORMATS
        format_string = _STANDARD_FORMATS[format_string]
    tokens: list[Token] = []
    index = 0
    length = len(format_string)
    while index < length:
        character = format_string[index]
        if character in _SPECIFIERS:
            end = index
            while end < length and format_string[end] == character:
                end += 1
            tokens.append(_field(character, end - index))
            index = end
        elif character in "'\"":
            end = index + 1
            literal: list[str] = []
            while end < length and format_string[end] != character:
                if format_string[end] == "\\" and end + 1 < length:
                    end += 1
                literal.append(format_string[end])
                end += 1
            if end >= length:
                raise EvaluationProblem(f"unterminated quoted text in date format {format_string!r}")
            tokens.append("".join(literal))
            index = end + 1
        elif character == "\\":
            if index + 1 >= length:
                raise EvaluationProblem(f"date format {format_string!r} ends with a lone backslash")
            tokens.append(format_string[index + 1])
            index += 2
        elif character == "%":
            if index + 1 >= length or format_string[index + 1] not in _SPECIFIERS:
                raise EvaluationProblem(f"'%' in date format {format_string!r} must precede one specifier")
            tokens.append(_field(format_string[index + 1], 1))
            index += 2
        else:
            tokens.append(character)  # includes '/' and ':' (en-US separators) and any other text
            index += 1
    return tuple(tokens), writes_utc


def _field(letter: str, width: int) -> Field:
    limits = {"d": 4, "f": 7, "F": 7, "h": 2, "H": 2, "K": 1, "m": 2, "M": 4, "s": 2, "t": 2, "y": 5, "z": 3}
    if letter == "g":
        raise EvaluationProblem("the era specifier 'g' is not supported in date formats")
    width = min(width, limits[letter]) if letter in ("d", "M") else width
    if width > limits[letter]:
        raise EvaluationProblem(f"date format specifier {letter * width!r} is not supported")
    return Field(letter, width)


def format_date(moment: datetime, format_string: str) -> str:
    """``moment`` written with a .NET format string. A naive ``moment`` has no zone (``K`` writes
    nothing, ``z`` writes +00:00: the service runs in UTC)."""
    tokens, writes_utc = tokenize(format_string)
    if writes_utc and moment.tzinfo is not None:
        moment = moment.astimezone(UTC)
    out: list[str] = []
    for token in tokens:
        if isinstance(token, str):
            out.append(token)
            continue
        text = _format_field(moment, token)
        if not text and token.letter == "F" and out and out[-1].endswith("."):
            out[-1] = out[-1][:-1]  # .NET drops the point before an all-zero F fraction
        out.append(text)
    return "".join(out)


def _format_field(moment: datetime, token: Field) -> str:
    letter, width = token.letter, token.width
    if letter == "d":
        if width <= 2:
            return f"{moment.day:0{width}d}"
        name = _DAYS[moment.weekday()]
        return name[:3] if width == 3 else name
    if letter == "M":
        if width <= 2:
            return f"{moment.month:0{width}d}"
        name = _MONTHS[moment.month - 1]
        return name[:3] if width == 3 else name
    if letter == "y":
        if width == 1:
            return str(moment.year % 100)
        if width == 2:
            return f"{moment.year % 100:02d}"
        return f"{moment.year:0{width}d}"
    if letter == "h":
        return f"{moment.hour % 12 or 12:0{width}d}"
    if letter == "H":
        return f"{moment.hour:0{width}d}"
    if letter == "m":
        return f"{moment.minute:0{width}d}"
    if letter == "s":
        return f"{moment.second:0{width}d}"
    if letter in "fF":
        digits = f"{moment.microsecond:06d}0"[:width]
        return digits if letter == "f" else digits.rstrip("0")
    if letter == "t":
        meridiem = "AM" if moment.hour < 12 else "PM"
        return meridiem[:width]
    offset = moment.utcoffset()
    if letter == "K":
        if offset is None:
            return ""
        if offset == timedelta(0) and moment.tzinfo is UTC:
            return "Z"
    minutes = int((offset or timedelta(0)).total_seconds() // 60)
    sign = "-" if minutes < 0 else "+"
    hours, minutes = divmod(abs(minutes), 60)
    if letter == "z" and width == 1:
        return f"{sign}{hours}"
    if letter == "z" and width == 2:
        return f"{sign}{hours:02d}"
    return f"{sign}{hours:02d}:{minutes:02d}"


@lru_cache(maxsize=256)
def _parse_pattern(format_string: str) -> tuple[re.Pattern[str], tuple[Field, ...]]:
    tokens, _ = tokenize(format_string)
    parts: list[str] = []
    fields: list[Field] = []
    for token in tokens:
        if isinstance(token, str):
            parts.append(r"\s+" if token.isspace() else re.escape(token))
            continue
        fields.append(token)
        parts.append(f"({_field_pattern(token)})")
    return re.compile("".join(parts), re.IGNORECASE), tuple(fields)


def _field_pattern(token: Field) -> str:
    letter, width = token.letter, token.width
    if letter == "d" and width >= 3 or letter == "M" and width >= 3:
        names = _DAYS if letter == "d" else _MONTHS
        return "|".join(name[:3] if width == 3 else name for name in names)
    if letter in "dhHmsM":
        return r"\d{1,2}" if width == 1 else r"\d{2}"
    if letter == "y":
        return {1: r"\d{1,2}", 2: r"\d{2}", 3: r"\d{3,4}", 4: r"\d{4}", 5: r"\d{5}"}[width]
    if letter == "f":
        return rf"\d{{{width}}}"
    if letter == "F":
        return rf"\d{{0,{width}}}"
    if letter == "t":
        return "[AP]" if width == 1 else "[AP]M"
    if letter == "K":
        return r"Z|[+-]\d{2}:\d{2}|"
    return {1: r"[+-]\d{1,2}", 2: r"[+-]\d{2}", 3: r"[+-]\d{2}:\d{2}"}[width]


def parse_exact(text: str, format_string: str, today: datetime) -> datetime:
    """``text`` read with a .NET format string (ParseExact, leading/trailing white allowed). The
    result is aware when the text carried an offset (or ``Z`` via ``K``), naive otherwise. A format
    with no date part takes the date of ``today``."""
    pattern, fields = _parse_pattern(format_string)
    match = pattern.fullmatch(text.strip())
    if match is None:
        raise EvaluationProblem(f"{_quote(text)} does not match the date format {format_string!r}")
    year, month, day = today.year, today.month, today.day
    has_date = False
    hour = minute = second = microsecond = 0
    meridiem: str | None = None
    zone: timezone | None = None
    for token, value in zip(fields, match.groups(), strict=True):
        letter, width = token.letter, token.width
        if letter == "y":
            has_date = True
            year = int(value)
            if width <= 2:
                year += 2000 if year <= 49 else 1900  # .NET's TwoDigitYearMax is 2049
        elif letter == "M":
            has_date = True
            month = int(value) if width <= 2 else _month_number(value)
        elif letter == "d" and width <= 2:
            has_date = True
            day = int(value)
        elif letter in "hH":
            hour = int(value)
        elif letter == "m":
            minute = int(value)
        elif letter == "s":
            second = int(value)
        elif letter in "fF":
            microsecond = int(value[:6].ljust(6, "0")) if value else 0
        elif letter == "t":
            meridiem = value.upper()
        elif letter in "zK" and value:
            zone = _zone(value)
    if not has_date:
        year, month, day = today.year, today.month, today.day
    if meridiem is not None:
        if not 1 <= hour <= 12:
            raise EvaluationProblem(f"{_quote(text)}: hour {hour} with {meridiem}")
        hour = hour % 12 + (12 if meridiem.startswith("P") else 0)
    try:
        return datetime(year, month, day, hour, minute, second, microsecond, tzinfo=zone)
    except ValueError as problem:
        raise EvaluationProblem(f"{_quote(text)} is not a valid date: {problem}") from None


def _month_number(name: str) -> int:
    lowered = name.lower()
    for number, month in enumerate(_MONTHS, start=1):
        if month.lower().startswith(lowered[:3]):
            return number
    raise EvaluationProblem(f"unknown month {name!r}")  # pragma: no cover - the regex admits only months


#: The DateTimeStyles names FormatDateTime accepts (case-insensitive); only the ones that change
#: the result here act: AdjustToUniversal converts to UTC; Assume* make a zone-less date UTC.
DATE_TIME_STYLES = frozenset({
    "none", "allowleadingwhite", "allowtrailingwhite", "allowinnerwhite", "allowwhitespaces",
    "nocurrentdatedefault", "adjusttouniversal", "assumelocal", "assumeuniversal", "roundtripkind",
})


def parse_styles(styles: str | None) -> frozenset[str]:
    """The set of lower-cased DateTimeStyles names in ``styles`` (``"A, B"`` or ``"A|B"``)."""
    if not styles or not styles.strip():
        return frozenset({"roundtripkind", "allowleadingwhite", "allowtrailingwhite"})
    names = frozenset(part.strip().lower() for part in re.split(r"[,|]", styles) if part.strip())
    unknown = sorted(names - DATE_TIME_STYLES)
    if unknown:
        raise EvaluationProblem(f"unknown DateTimeStyles value {unknown[0]!r}")
    return names
