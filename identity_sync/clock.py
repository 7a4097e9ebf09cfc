"""Timestamps. Stored as text in one fixed form (UTC, microseconds, ``Z``) so that they sort
correctly as strings on every database and appear in ``meta`` exactly as stored."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta


def format_timestamp(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def now_text() -> str:
    return format_timestamp(datetime.now(UTC))


def ago_text(delta: timedelta) -> str:
    return format_timestamp(datetime.now(UTC) - delta)


def parse_timestamp(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))
