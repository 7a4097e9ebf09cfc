"""Quarantine rules (engine/quarantine.py) with an explicit clock: reasons, Entra's thresholds,
the 6 h / 12 h / 24 h / daily back-off, and the 28 days after which a job is turned off."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from identity_sync.clock import parse_timestamp
from identity_sync.engine import quarantine as rules
from identity_sync.engine.quarantine import Quarantine, Thresholds

T0 = datetime(2026, 12, 1, 8, 0, tzinfo=UTC)


def _next(q: Quarantine) -> datetime:
    return parse_timestamp(q.next_attempt)


def test_refused_credentials_quarantine_at_once() -> None:
    q = rules.after_failed_cycle(None, "Unauthorized", "target: 401", 1, T0)
    assert q is not None and q.reason == rules.CREDENTIALS and q.since == q.current_began
    assert _next(q) - T0 == timedelta(hours=6)


def test_an_unreachable_target_is_retried_before_quarantine() -> None:
    assert rules.after_failed_cycle(None, "TargetUnreachable", "down", 1, T0) is None
    assert rules.after_failed_cycle(None, "SourceUnreadable", "down", 2, T0) is None
    q = rules.after_failed_cycle(None, "TargetUnreachable", "down", 3, T0)
    assert q is not None and q.reason == rules.CREDENTIALS
    assert rules.after_failed_cycle(None, "TargetUnreachable", "down", 2, T0, Thresholds(transient_failures=2))


def test_back_off_is_6_12_24_hours_from_the_series_then_daily() -> None:
    q = rules.enter(None, rules.CREDENTIALS, "401", T0)
    waits = [_next(q) - T0]
    now = _next(q)
    for _ in range(4):
        q = rules.enter(q, rules.CREDENTIALS, "401", now)
        waits.append(_next(q) - T0)
        now = _next(q)
    assert waits == [timedelta(hours=6), timedelta(hours=12), timedelta(hours=24), timedelta(hours=48),
                     timedelta(hours=72)]
    assert q.series_count == 4 and q.since == rules.enter(None, rules.CREDENTIALS, "401", T0).since


def test_a_new_reason_keeps_the_series_but_not_the_reason_start() -> None:
    first = rules.enter(None, rules.CREDENTIALS, "401", T0)
    later = T0 + timedelta(hours=6)
    second = rules.enter(first, rules.TOO_MANY_DELETES, "612 removals", later)
    assert second.since == first.since and second.current_began != first.current_began
    assert rules.enter(second, rules.TOO_MANY_DELETES, "again", later + timedelta(hours=6)).current_began == \
        second.current_began


def test_failure_proportions_follow_entras_examples() -> None:
    def q(failed: int, ok: int) -> Quarantine | None:
        return rules.after_completed_cycle(None, {"failed": failed, "updated": ok}, T0)

    assert q(45_000, 0) is not None and q(45_000, 0).reason == rules.PROPORTION  # type: ignore[union-attr]
    assert q(30_000, 5_000) is not None
    assert q(20_000, 100_000) is None
    assert q(4_999, 0) is None  # fewer than 5,000 failures are never judged
    assert rules.after_completed_cycle(None, {"failed": 3, "created": 1}, T0,
                                       Thresholds(min_failures=2, failure_ratio=0.5)) is not None


def test_a_completed_cycle_ends_the_quarantine() -> None:
    current = rules.enter(None, rules.CREDENTIALS, "401", T0)
    assert rules.after_completed_cycle(current, {"updated": 10}, T0 + timedelta(hours=6)) is None


def test_the_deletion_threshold_quarantines_with_its_own_reason() -> None:
    q = rules.after_failed_cycle(None, "TooManyDeletes", "612 removals", 1, T0)
    assert q is not None and q.reason == rules.TOO_MANY_DELETES


def test_four_weeks_in_quarantine_turn_the_job_off() -> None:
    q = rules.enter(None, rules.CREDENTIALS, "401", T0)
    assert not rules.expired(q, T0 + timedelta(days=27, hours=23))
    assert rules.expired(q, T0 + timedelta(days=28))
    assert not rules.expired(None, T0 + timedelta(days=100))


def test_a_quarantine_survives_a_round_trip_through_json() -> None:
    q = rules.enter(None, rules.CREDENTIALS, "401", T0)
    assert Quarantine.from_dict(q.as_dict()) == q
    assert Quarantine.from_dict(None) is None
