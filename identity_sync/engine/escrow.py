"""Escrows (provisioning-engine.md §1.7): an object that failed is tried again in later cycles,
less and less often, without holding up the rest of the job.

The first retry is the next cycle; then one hour, six hours, twelve hours after the failure, then
daily. Unlike Entra, which drops an escrow after 28 days, an object is never given up silently:
it keeps its daily retry, and its provisioning log keeps saying why (nothing accepted is ever
lost). A success ends the escrow; ``job restart`` (``--reset escrows``) forgets them all, so that
every object is tried at once. Each attempt is an ordinary provisioning event in the logs.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa

from identity_sync.clock import format_timestamp, parse_timestamp
from identity_sync.engine.tables import engine_escrows
from identity_sync.storage.db import Database

#: Wait before attempt n+1 after n failures (index n-1); the last one repeats.
BACKOFF = (timedelta(0), timedelta(hours=1), timedelta(hours=6), timedelta(hours=12), timedelta(hours=24))
CHUNK = 2000


def next_attempt(attempts: int, failed_at: datetime) -> datetime:
    return failed_at + BACKOFF[min(attempts, len(BACKOFF)) - 1]


class Escrows:
    def __init__(self, db: Database, job_id: str) -> None:
        self.db = db
        self.job_id = job_id

    def load(self) -> dict[str, tuple[int, str]]:
        """Anchor → (attempts, next attempt) of every escrowed object."""
        t = engine_escrows.c
        with self.db.read() as conn:
            rows = conn.execute(sa.select(t.anchor, t.attempts, t.next_attempt_at).where(t.job_id == self.job_id))
            return {row.anchor: (row.attempts, row.next_attempt_at) for row in rows}

    def record(self, conn: sa.Connection, known: dict[str, tuple[int, str]], failed: Mapping[str, str],
               succeeded: Iterable[str], now: datetime) -> None:
        """In the caller's transaction: failures escrowed (or one attempt more), successes released.
        ``known`` (from :meth:`load`, kept up to date here) spares a statement for objects never escrowed."""
        t = engine_escrows.c
        released = [anchor for anchor in succeeded if anchor in known]
        for start in range(0, len(released), CHUNK):
            conn.execute(sa.delete(engine_escrows).where(t.job_id == self.job_id,
                                                         t.anchor.in_(released[start:start + CHUNK])))
        for anchor in released:
            known.pop(anchor, None)
        if not failed:
            return
        stamp = format_timestamp(now)
        inserts: list[dict[str, Any]] = []
        updates: list[dict[str, Any]] = []
        for anchor, error_code in failed.items():
            attempts = known[anchor][0] + 1 if anchor in known else 1
            due = format_timestamp(next_attempt(attempts, now))
            row = {"anchor_": anchor, "attempts": attempts, "next_attempt_at": due, "error_code": error_code[:64]}
            (updates if anchor in known else inserts).append(row)
            known[anchor] = (attempts, due)
        if updates:
            conn.execute(sa.update(engine_escrows).where(t.job_id == self.job_id, t.anchor == sa.bindparam("anchor_"))
                         .values(attempts=sa.bindparam("attempts"), next_attempt_at=sa.bindparam("next_attempt_at"),
                                 error_code=sa.bindparam("error_code")), updates)
        if inserts:
            conn.execute(sa.insert(engine_escrows), [
                {"job_id": self.job_id, "anchor": r["anchor_"], "attempts": r["attempts"], "first_failed_at": stamp,
                 "next_attempt_at": r["next_attempt_at"], "error_code": r["error_code"]} for r in inserts])

    def clear(self, conn: sa.Connection) -> None:
        conn.execute(sa.delete(engine_escrows).where(engine_escrows.c.job_id == self.job_id))

    def count(self) -> int:
        with self.db.read() as conn:
            return conn.execute(sa.select(sa.func.count()).select_from(engine_escrows)
                                .where(engine_escrows.c.job_id == self.job_id)).scalar_one()


def waiting(known: dict[str, tuple[int, str]], now: datetime) -> set[str]:
    """Escrowed objects whose next attempt is not due yet."""
    return {anchor for anchor, (_, due) in known.items() if parse_timestamp(due) > now}
