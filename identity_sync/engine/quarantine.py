"""Quarantine (provisioning-engine.md §4.3): a job that keeps failing as a whole is retried less
and less often, a person is told (engine/notify.py), and after four weeks it is turned off.

Pure rules over plain values and an explicit ``now``, so every threshold and back-off is tested
with an injected clock, never with sleeps.

Reasons (Graph's ``synchronizationQuarantineReason``):

* ``EncounteredQuarantineException`` — the target refuses the credentials (401/403), is not SCIM,
  or the Tenant URL answers 404: at once, since no retry can fix it. A target that cannot be
  reached or a source that cannot be read is retried at the job's interval first, and quarantined
  after ``transient_failures`` cycles in a row failed (Entra quarantines persistent failures only).
* ``EncounteredEscrowProportionThreshold`` — a completed cycle with at least ``min_failures``
  failed objects and more than ``failure_ratio`` of its events failed, or more than
  ``max_failures`` (Entra: 5,000, 40 %, 40,000).
* ``TooManyDeletes`` — the job's deletion guard held the cycle's removals back (§4.1).

In quarantine the next attempt is 6 h, then 12 h, then 24 h after the series began, then daily;
28 days after the series began the job is turned off (``disabled``). A completed cycle without a
reason, ``job start`` or ``job restart`` ends the quarantine.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from datetime import datetime, timedelta
from typing import Any

from identity_sync.clock import format_timestamp, parse_timestamp

CREDENTIALS = "EncounteredQuarantineException"
PROPORTION = "EncounteredEscrowProportionThreshold"
TOO_MANY_DELETES = "TooManyDeletes"

#: Error codes of a failed cycle that no retry can fix (engine/service.py `_problem_code`).
HOPELESS = frozenset({"Unauthorized", "InsufficientRights", "ServiceIncompatible"})
#: Waits between attempts in quarantine, by attempt (§4.3: 6 h, 12 h, 24 h, then daily).
BACKOFF = (timedelta(hours=6), timedelta(hours=12), timedelta(hours=24))
DAILY = timedelta(hours=24)
#: After this long in one series of quarantine, the job is turned off.
GIVE_UP = timedelta(days=28)

EXPLANATIONS = {
    CREDENTIALS: "the target or the source refused the job's credentials, or cannot be reached or used",
    PROPORTION: "too many objects failed in one cycle",
    TOO_MANY_DELETES: "one cycle would have disabled or deleted more objects than the job's deletion threshold",
}


@dataclass(frozen=True, slots=True)
class Thresholds:
    """When failures put a job in quarantine (Settings; Entra's values by default)."""

    min_failures: int = 5000
    failure_ratio: float = 0.4
    max_failures: int = 40000
    transient_failures: int = 3


@dataclass(frozen=True, slots=True)
class Quarantine:
    """Graph's ``synchronizationQuarantine``: why, since when, the next attempt."""

    reason: str
    #: When this series of quarantine began (the 28 days count from here).
    since: str
    #: When the current reason began.
    current_began: str
    next_attempt: str
    #: Attempts made in quarantine so far.
    series_count: int
    error: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None) -> Quarantine | None:
        # The stored dict was written by as_dict: its values have the fields' types, which mypy
        # cannot see through the comprehension over the field names.
        return None if not data else cls(**{k: data.get(k) for k in cls.__dataclass_fields__})  # type: ignore[arg-type]


def enter(current: Quarantine | None, reason: str, error: str | None, now: datetime) -> Quarantine:
    """The quarantine after one more failed attempt: a new series, or the next step of the current one."""
    stamp = format_timestamp(now)
    if current is None:
        return Quarantine(reason, stamp, stamp, format_timestamp(now + BACKOFF[0]), 0, error)
    count = current.series_count + 1
    began = parse_timestamp(current.since)
    # Waits are counted from the start of the series, as Entra's 6 h / 12 h / 24 h "after the first failure".
    step = began + BACKOFF[count] if count < len(BACKOFF) else now + DAILY
    next_attempt = max(step, now + timedelta(minutes=1))
    return replace(current, reason=reason, current_began=stamp if reason != current.reason else current.current_began,
                   next_attempt=format_timestamp(next_attempt), series_count=count, error=error)


def after_failed_cycle(current: Quarantine | None, error_code: str, error: str, failures_in_a_row: int,
                       now: datetime, thresholds: Thresholds = Thresholds()) -> Quarantine | None:
    """A cycle could not run (``CycleAborted``): quarantine, or ``None`` to retry at the interval."""
    if error_code == TOO_MANY_DELETES:
        return enter(current, TOO_MANY_DELETES, error, now)
    if error_code in HOPELESS or current is not None or failures_in_a_row >= thresholds.transient_failures:
        return enter(current, CREDENTIALS, error, now)
    return None


def after_completed_cycle(current: Quarantine | None, counts: dict[str, int], now: datetime,
                          thresholds: Thresholds = Thresholds()) -> Quarantine | None:
    """A cycle completed: quarantine for too many failed objects, else none (it ends here)."""
    failed = counts.get("failed", 0)
    events = failed + sum(counts.get(key, 0) for key in ("created", "updated", "disabled", "deleted", "skipped"))
    if failed >= thresholds.min_failures and (failed > thresholds.max_failures
                                              or failed > thresholds.failure_ratio * max(events, 1)):
        return enter(current, PROPORTION, f"{failed} of {events} objects failed", now)
    return None


def expired(quarantine: Quarantine | None, now: datetime) -> bool:
    """Four weeks in one series: the job is turned off."""
    return quarantine is not None and now - parse_timestamp(quarantine.since) >= GIVE_UP
