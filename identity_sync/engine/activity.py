"""What the console shows of the engine's cycles and provisioning logs (console/pages.py): reads
only, the statements kept beside the engine's tables rather than in the HTTP layer."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from identity_sync.engine.tables import engine_cycles, engine_events
from identity_sync.storage import activity


def events_per_hour(conn: Connection, since: str, *, failed_only: bool = False) -> dict[str, int]:
    """Provisioning log entries of every job per hour (``YYYY-MM-DDTHH``) from ``since``."""
    where = [engine_events.c.status == "failure"] if failed_only else []
    return activity.per_hour(conn, engine_events.c.at, since, *where)


def running_cycle(conn: Connection, job_id: str) -> Any:
    """The job's running cycle (its newest, should there be two), or ``None``."""
    t = engine_cycles.c
    return conn.execute(sa.select(engine_cycles).where(t.job_id == job_id, t.state == "running")
                        .order_by(t.started_at.desc()).limit(1)).first()


def last_cycle(conn: Connection, job_id: str) -> dict[str, Any] | None:
    """State, start, end and kind of the job's newest cycle, or ``None``."""
    t = engine_cycles.c
    row = conn.execute(sa.select(t.state, t.started_at, t.ended_at, t.kind).where(t.job_id == job_id)
                       .order_by(t.started_at.desc()).limit(1)).first()
    return None if row is None else row._asdict()
