"""A job's life between cycles (issue 13): its state, when it runs next, its quarantine, and what
each cycle's end changes about them. The scheduler (engine/scheduler.py), ``job run`` and the
console all go through here, so a cycle behaves the same whoever started it.

States (``job show`` → ``state``): ``active`` (runs on its interval), ``paused`` (``job pause``:
the running cycle finishes, no other starts), ``quarantined`` (runs at the quarantine's next
attempt, engine/quarantine.py), ``disabled`` (28 days in quarantine; ``job start`` turns it on).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa

from identity_sync.clock import format_timestamp, parse_timestamp
from identity_sync.engine import quarantine as rules
from identity_sync.engine.jobs import Job, JobService
from identity_sync.engine.lease import Lease
from identity_sync.engine.quarantine import Quarantine, Thresholds
from identity_sync.engine.tables import engine_jobs

STATES = ("active", "paused", "quarantined", "disabled")
#: Error codes that say nothing about the job's health: the cycle resumes as soon as it can.
NOT_A_FAILURE = frozenset({"Interrupted", "JobBusy", "LeaseLost"})


@dataclass(frozen=True, slots=True)
class Transition:
    """What one cycle's end did to the job's quarantine: ``before`` and ``after`` (for the e-mail)."""

    before: Quarantine | None
    after: Quarantine | None

    @property
    def entered(self) -> bool:
        return self.before is None and self.after is not None

    @property
    def reason_changed(self) -> bool:
        return self.before is not None and self.after is not None and self.before.reason != self.after.reason


class JobOperations:
    def __init__(self, jobs: JobService) -> None:
        self.jobs = jobs
        self.db = jobs.db
        settings = jobs.settings
        self.thresholds = Thresholds(settings.engine_quarantine_min_failures, settings.engine_quarantine_failure_ratio,
                                     settings.engine_quarantine_max_failures,
                                     settings.engine_quarantine_after_failed_cycles)

    # -- what an operator does ---------------------------------------------------------------------

    def start(self, name: str, now: datetime) -> Job:
        """``job start``: on again, at once; a quarantine ends (as Graph's ``start``)."""
        job = self.jobs.get(name)
        self._set(job, state="active", quarantine=None, failures_in_a_row=0, next_run_at=format_timestamp(now))
        return self.jobs.get(name)

    def pause(self, name: str) -> Job:
        """``job pause``: a running cycle finishes; no other starts until ``job start``."""
        job = self.jobs.get(name)
        self._set(job, state="paused")
        return self.jobs.get(name)

    def end_quarantine(self, conn: sa.Connection, job: Job, now: datetime) -> None:
        """``job restart`` (its ``quarantine`` reset): healthy again, due now."""
        state = job.state if job.state == "paused" else "active"
        conn.execute(sa.update(engine_jobs).where(engine_jobs.c.id == job.id).values(
            state=state, quarantine=None, failures_in_a_row=0, next_run_at=format_timestamp(now)))

    # -- what a cycle's end does -----------------------------------------------------------------

    def completed(self, job: Job, watermark: str | None, counts: dict[str, int], now: datetime,
                  lease: Lease | None = None, *, kind: str = "incremental") -> Transition:
        """Keep the source position; a one-time "allow deletes" is used up; quarantine for too many
        failed objects, or out of it. Under the cycle's lease: a cycle whose job was taken over
        records nothing. After an initial cycle the job still has work — what changed in the source
        while it ran, maybe for hours — so its first incremental cycle is due at once."""
        before = job.quarantine
        after = rules.after_completed_cycle(before, counts, now, self.thresholds)
        settings = {k: v for k, v in job.settings.items() if k != "force_deletes"}
        wait = timedelta(0) if kind == "initial" else timedelta(minutes=job.interval)
        next_run = now + wait if after is None else parse_timestamp(after.next_attempt)
        values: dict[str, Any] = {"watermark": watermark, "settings": settings, "failures_in_a_row": 0,
                                  "quarantine": None if after is None else after.as_dict(),
                                  "next_run_at": format_timestamp(next_run), "state": self._state(job, after, now)}
        with self.db.write() as conn:
            if lease is not None:
                lease.renew(conn)
            conn.execute(sa.update(engine_jobs).where(engine_jobs.c.id == job.id).values(**values))
        return Transition(before, after)

    def failed(self, job: Job, error_code: str, error: str, now: datetime) -> Transition:
        """A cycle could not run: retry at the interval, or quarantine (engine/quarantine.py)."""
        before = job.quarantine
        if error_code in NOT_A_FAILURE:
            self._set(job, next_run_at=format_timestamp(now))
            return Transition(before, before)
        failures = job.failures_in_a_row + 1
        after = rules.after_failed_cycle(before, error_code, error, failures, now, self.thresholds)
        next_run = parse_timestamp(after.next_attempt) if after is not None else now + timedelta(minutes=job.interval)
        self._set(job, failures_in_a_row=failures, quarantine=None if after is None else after.as_dict(),
                  next_run_at=format_timestamp(next_run), state=self._state(job, after, now))
        return Transition(before, after)

    def history(self, job: Job, limit: int = 50) -> list[dict[str, Any]]:
        """Graph's ``synchronizationTaskExecution`` per cycle, newest first (``job history``)."""
        history = []
        for row in self.jobs.cycle_rows(job, limit):
            counts = dict(row.counts or {})
            exported = sum(int(counts.get(k, 0)) for k in ("created", "updated", "disabled", "deleted"))
            history.append({"cycle": row.id, "kind": row.kind, "state": row.state, "began": row.started_at,
                            "ended": row.ended_at, "imported": counts.get("imported"), "exported": exported,
                            "escrowed": counts.get("failed", 0) + counts.get("escrowed", 0), "counts": counts,
                            "error": row.error})
        return history

    # -- internals -------------------------------------------------------------------------------

    @staticmethod
    def _state(job: Job, quarantine: Quarantine | None, now: datetime) -> str:
        if job.state == "paused":
            return "paused"  # a pause outlives the cycle that was running when it was asked for
        if rules.expired(quarantine, now):
            return "disabled"
        return "quarantined" if quarantine is not None else "active"

    def _set(self, job: Job, **values: Any) -> None:
        with self.db.write() as conn:
            conn.execute(sa.update(engine_jobs).where(engine_jobs.c.id == job.id).values(**values))
