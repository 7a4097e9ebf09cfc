"""Timestamps. Stored as text in one fixed form (UTC, microseconds, ``Z``) so that they sort
correctly as strings on every database and appear in ``meta`` exactly as stored."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta


def format_timestamp(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class _SecondPrefix:
    """The text of the current second, formatted once per second: every request reads the time
    (its credential's check, each write's ``meta``) and ``strftime`` cost more than the rest of
    :func:`now_text` together."""

    def __init__(self) -> None:
        # One tuple, replaced whole: a thread never pairs one second with another's text.
        self._cached: tuple[int, str] = (-1, "")

    def text(self) -> str:
        second, fraction = divmod(time.time_ns() // 1000, 1_000_000)
        cached_second, prefix = self._cached
        if second != cached_second:
            prefix = datetime.fromtimestamp(second, UTC).strftime("%Y-%m-%dT%H:%M:%S")
            self._cached = (second, prefix)
        return f"{prefix}.{fraction:06d}Z"


_now = _SecondPrefix()


def now_text() -> str:
    """The current time in the stored form; equal to ``format_timestamp(datetime.now(UTC))``."""
    return _now.text()


def ago_text(delta: timedelta) -> str:
    return format_timestamp(datetime.now(UTC) - delta)


def parse_timestamp(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))
