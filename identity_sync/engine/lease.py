"""One cycle of a job at a time: a lease in the job's row.

A process that runs a cycle (``job run``, ``job provision``) first takes the job's lease — an
atomic UPDATE that succeeds only when nobody holds it or it has expired — and renews it in the
same transaction as every batch of links it writes. A second process finds the job busy; a
process whose lease was taken over (it stalled past expiry, another took the job) finds out at
its next write and stops *before* writing: its transaction is rolled back (fencing), so two
processes never both record links for one job. A dead process's lease expires by itself.
The scheduler of the operations issue builds on this.
"""

from __future__ import annotations

import os
import socket
import uuid
from datetime import UTC, datetime, timedelta

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from identity_sync.clock import format_timestamp, now_text
from identity_sync.engine.errors import CycleAborted
from identity_sync.engine.tables import engine_jobs
from identity_sync.storage.db import Database

#: How long a lease lasts without renewal; a batch renews it (a batch takes seconds).
LEASE_SECONDS = 300.0


def new_owner() -> str:
    """Who holds a lease: host, process and a random part (a process may run several cycles)."""
    return f"{socket.gethostname()[:64]}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


class Lease:
    def __init__(self, db: Database, job_id: str, job_name: str, owner: str | None = None,
                 seconds: float = LEASE_SECONDS) -> None:
        self.db = db
        self.job_id = job_id
        self.job_name = job_name
        self.owner = owner or new_owner()
        self.seconds = seconds

    def acquire(self) -> None:
        """Take the lease, or raise ``CycleAborted`` (``JobBusy``) naming who holds it."""
        with self.db.write() as conn:
            taken = conn.execute(sa.update(engine_jobs).where(
                engine_jobs.c.id == self.job_id,
                sa.or_(engine_jobs.c.lease_owner.is_(None), engine_jobs.c.lease_expires_at < now_text(),
                       engine_jobs.c.lease_owner == self.owner),
            ).values(lease_owner=self.owner, lease_expires_at=self._until())).rowcount
            if taken != 1:
                row = conn.execute(sa.select(engine_jobs.c.lease_owner, engine_jobs.c.lease_expires_at).where(
                    engine_jobs.c.id == self.job_id)).first()
        if taken != 1:
            holder, until = (row.lease_owner, row.lease_expires_at) if row is not None else ("?", "?")
            raise CycleAborted(f"job '{self.job_name}' is running in another process ({holder}, lease until {until})",
                               "JobBusy")

    def renew(self, conn: Connection) -> None:
        """In the caller's transaction: extend the lease, or raise ``CycleAborted`` (``LeaseLost``)
        so that the transaction — the batch's links — is rolled back."""
        kept = conn.execute(sa.update(engine_jobs).where(
            engine_jobs.c.id == self.job_id, engine_jobs.c.lease_owner == self.owner,
        ).values(lease_expires_at=self._until())).rowcount
        if kept != 1:
            raise CycleAborted(f"job '{self.job_name}': another process took over the job; this cycle stops",
                               "LeaseLost")

    def release(self) -> None:
        with self.db.write() as conn:
            conn.execute(sa.update(engine_jobs).where(
                engine_jobs.c.id == self.job_id, engine_jobs.c.lease_owner == self.owner,
            ).values(lease_owner=None, lease_expires_at=None))

    def _until(self) -> str:
        return format_timestamp(datetime.now(UTC) + timedelta(seconds=self.seconds))
