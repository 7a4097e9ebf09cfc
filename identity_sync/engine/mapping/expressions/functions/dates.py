"""Date functions: CDate, DateAdd, DateDiff, DateFromNum, FormatDateTime, Now, NumFromDate (§2.3).

Dates come out as Entra writes them, ``M/d/yyyy h:mm:ss tt`` in UTC (``DateTimeValue``). Intervals
are VB's (case-insensitive): ``yyyy`` year, ``q`` quarter, ``m`` month, ``y``/``d``/``w`` day, ``ww``
week, ``h`` hour, ``n`` minute, ``s`` second. ``DateDiff`` counts like VB's: elapsed whole days,
hours, minutes and seconds (truncated toward zero), calendar boundaries for years, quarters and
months, and Sundays crossed for ``ww`` (so 8/25/2021 → 3/16/2012 is -3449 days but -493 weeks).
"""

from __future__ import annotations

import calendar
from datetime import UTC, datetime, timedelta
from typing import Any

from identity_sync.engine.mapping.expressions.dotnet_dates import (
    format_date,
    from_filetime,
    parse_date,
    parse_exact,
    parse_styles,
    to_filetime,
    tokenize,
)
from identity_sync.engine.mapping.expressions.errors import EvaluationProblem
from identity_sync.engine.mapping.expressions.functions.registry import CallSite, FunctionSpec, eager, with_context
from identity_sync.engine.mapping.expressions.values import (
    DateTimeValue,
    EvaluationContext,
    describe,
    to_int,
    to_text,
)

INTERVALS = frozenset({"yyyy", "q", "m", "y", "d", "w", "ww", "h", "n", "s"})


def to_moment(value: Any) -> datetime | None:
    """A date argument as an aware UTC datetime: a date from another date function, or a date string
    read like CDate reads it; null stays null."""
    if value is None:
        return None
    if type(value) is DateTimeValue:
        return value.moment
    if isinstance(value, str | list):
        text = to_text(value)
        return None if text is None else parse_date(text)
    raise EvaluationProblem(f"expected a date, got {describe(value)}")


def _interval(value: Any) -> str:
    text = (to_text(value) or "").strip().lower()
    if text not in INTERVALS:
        raise EvaluationProblem(f"unknown interval {describe(value)}; use one of yyyy, q, m, d, ww, h, n, s")
    return text


def c_date(expression: Any) -> DateTimeValue | None:
    """``CDate(expression)``: a date string as a UTC date: ``"2021-06-30+08:00"`` → 6/29/2021 4:00:00 PM."""
    if type(expression) is DateTimeValue:
        return expression
    moment = to_moment(expression)
    return None if moment is None else DateTimeValue(moment)


def now(context: EvaluationContext) -> DateTimeValue:
    """``Now()``: the context's moment (one per cycle), e.g. 7/2/2021 3:33:38 PM."""
    return DateTimeValue(context.now)


def date_add(interval: Any, value: Any, date_time: Any) -> DateTimeValue | None:
    """``DateAdd(interval, value, dateTime)``: dateTime plus value intervals (value may be negative).
    Adding months clamps the day to the month's end (1/31 + 1 m = 2/28), as .NET's AddMonths."""
    unit = _interval(interval)
    amount = to_int(value, "value to be a number")
    moment = to_moment(date_time)
    if moment is None:
        return None
    try:
        if unit in ("yyyy", "q", "m"):
            months = amount * {"yyyy": 12, "q": 3, "m": 1}[unit]
            moment = _add_months(moment, months)
        else:
            seconds = {"y": 86_400, "d": 86_400, "w": 86_400, "ww": 604_800, "h": 3_600, "n": 60, "s": 1}[unit]
            moment = moment + timedelta(seconds=amount * seconds)
    except (OverflowError, ValueError):
        raise EvaluationProblem(f"the result is outside the years 1 to 9999 (adding {amount} {unit})") from None
    return DateTimeValue(moment)


def _add_months(moment: datetime, months: int) -> datetime:
    index = moment.year * 12 + moment.month - 1 + months
    year, month = divmod(index, 12)
    day = min(moment.day, calendar.monthrange(year, month + 1)[1]) if 1 <= year <= 9999 else moment.day
    return moment.replace(year=year, month=month + 1, day=day)


def date_diff(interval: Any, date1: Any, date2: Any) -> int | None:
    """``DateDiff(interval, date1, date2)``: date2 − date1 in intervals (positive when date2 is later)."""
    unit = _interval(interval)
    first, second = to_moment(date1), to_moment(date2)
    if first is None or second is None:
        return None
    if unit == "yyyy":
        return second.year - first.year
    if unit == "q":
        return (second.year - first.year) * 4 + (second.month - 1) // 3 - (first.month - 1) // 3
    if unit == "m":
        return (second.year - first.year) * 12 + second.month - first.month
    if unit == "ww":
        # Sundays crossed: move both to the Sunday that starts their week, count whole weeks.
        first_sunday = first.date() - timedelta(days=(first.weekday() + 1) % 7)
        second_sunday = second.date() - timedelta(days=(second.weekday() + 1) % 7)
        return (second_sunday - first_sunday).days // 7
    elapsed = (second - first) // timedelta(microseconds=1)
    per_unit = {"y": 86_400, "d": 86_400, "h": 3_600, "n": 60, "s": 1, "w": 604_800}[unit] * 1_000_000
    whole = abs(elapsed) // per_unit  # truncated toward zero, as VB's Fix
    return whole if elapsed >= 0 else -whole


def date_from_num(value: Any) -> DateTimeValue | None:
    """``DateFromNum(value)``: AD's FILETIME number as a date: 129699324000000000 → 1/1/2012 11:00:00 PM."""
    if value is None:
        return None
    ticks = to_int(value, "an AD date number")
    if ticks < 0:
        raise EvaluationProblem(f"{ticks} is not a date in AD's format (negative)")
    return DateTimeValue(from_filetime(ticks))


def num_from_date(value: Any) -> int | None:
    """``NumFromDate(value)``: an ISO 8601 date as AD's FILETIME number (for ``accountExpires``)."""
    moment = to_moment(value)
    return None if moment is None else to_filetime(moment)


def format_date_time(context: EvaluationContext, source: Any, styles: Any, input_format: Any,
                     output_format: Any) -> str | None:
    """``FormatDateTime(source, [dateTimeStyles], inputFormat, outputFormat)``: re-writes a date.

    The source is read with the .NET format ``inputFormat`` and written with ``outputFormat``,
    keeping its own offset (``2020-12-31-08:00`` read with ``yyyy-MM-ddzzz`` writes ``2020-12-31``).
    ``AdjustToUniversal`` converts to UTC first. A date from another date function is used as is.
    """
    if source is None:
        return None
    chosen = parse_styles(to_text(styles))
    written_format = to_text(output_format)
    if not written_format:
        raise EvaluationProblem("outputFormat is empty")
    if type(source) is DateTimeValue:
        moment = source.moment
    else:
        text = to_text(source)
        read_format = to_text(input_format)
        if not read_format:
            raise EvaluationProblem("inputFormat is empty")
        if text is None:
            return None
        moment = parse_exact(text, read_format, today=context.now)
    if moment.tzinfo is None and chosen & {"assumeuniversal", "assumelocal", "adjusttouniversal"}:
        moment = moment.replace(tzinfo=UTC)
    if "adjusttouniversal" in chosen and moment.tzinfo is not None:
        moment = moment.astimezone(UTC)
    return format_date(moment, written_format)


def _constant_problem(site: CallSite, index: int, check: Any) -> None:
    constant = site.constant(index)
    if isinstance(constant, str):
        try:
            check(constant)
        except EvaluationProblem as problem:
            raise site.error(str(problem), index) from None


def _check_interval(site: CallSite) -> None:
    _constant_problem(site, 0, _interval)


def _check_format_date_time(site: CallSite) -> None:
    _constant_problem(site, 1, parse_styles)
    _constant_problem(site, 2, tokenize)
    _constant_problem(site, 3, tokenize)


FUNCTIONS = (
    FunctionSpec("CDate", ("expression",), eager(c_date), "a date string as a UTC date"),
    FunctionSpec("DateAdd", ("interval", "value", "dateTime"), eager(date_add), "a date plus some intervals",
                 check=_check_interval),
    FunctionSpec("DateDiff", ("interval", "date1", "date2"), eager(date_diff), "date2 - date1 in intervals",
                 check=_check_interval),
    FunctionSpec("DateFromNum", ("value",), eager(date_from_num), "AD's date number as a date"),
    FunctionSpec("FormatDateTime", ("source", "dateTimeStyles?", "inputFormat", "outputFormat"),
                 with_context(format_date_time), "re-writes a date in another format",
                 check=_check_format_date_time, uses_context=True),
    FunctionSpec("Now", (), with_context(now), "the current UTC date and time", uses_context=True),
    FunctionSpec("NumFromDate", ("value",), eager(num_from_date), "a date as AD's date number"),
)
