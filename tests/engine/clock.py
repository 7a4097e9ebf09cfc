"""A clock the tests move instead of sleeping (quarantine, escrow and e-mail back-off)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta


class Clock:
    def __init__(self, start: datetime = datetime(2026, 12, 1, 8, 0, tzinfo=UTC)) -> None:
        self.now = start

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **delta: float) -> None:
        self.now += timedelta(**delta)


class Backoffs:
    """The SCIM client's waits between retries, recorded instead of slept (``EngineService(…,
    sleep=Backoffs())``), for a target that never comes back: the retries are still made."""

    def __init__(self) -> None:
        self.waits: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.waits.append(seconds)
