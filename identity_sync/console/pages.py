"""What the console's pages show, read from the database (never written here: the console's
only changes go through the services, in routes.py). Each function returns plain data for one
template; the charts are computed here as bars with coordinates, drawn as SVG by the template."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import sqlalchemy as sa

from identity_sync.clock import format_timestamp
from identity_sync.config import Settings
from identity_sync.engine.jobs import Job, JobService
from identity_sync.engine.operations import STATES, JobOperations
from identity_sync.engine.tables import engine_cycles, engine_events
from identity_sync.observability.history import ERROR_CLASSES
from identity_sync.observability.history import NO_TENANT as HISTORY_NO_TENANT
from identity_sync.scim.registry import GROUP, USER
from identity_sync.service.operators import NO_TENANT
from identity_sync.storage import counts
from identity_sync.storage import tenants as tenant_store
from identity_sync.storage.db import Database
from identity_sync.storage.tables import audit_events, request_counts

HOURS = 24


@dataclass(frozen=True, slots=True)
class Bar:
    label: str  # the hour, "14:00"
    value: int
    failed: int
    x: float
    height: float  # of the whole bar, in the chart's units
    failed_height: float


@dataclass(frozen=True, slots=True)
class Chart:
    title: str
    caption: str
    bars: list[Bar]
    peak: int
    width: int = 480
    height: int = 120
    failed_word: str = "failed"  # what the red part of a bar is called

    @property
    def bar_width(self) -> float:
        return self.width / max(len(self.bars), 1) - 2

    @property
    def total(self) -> int:
        return sum(bar.value for bar in self.bars)

    @property
    def total_failed(self) -> int:
        return sum(bar.failed for bar in self.bars)


def hourly_chart(title: str, caption: str, values: dict[str, int], failed: dict[str, int], now: datetime,
                 failed_word: str = "failed") -> Chart:
    """Bars for the last 24 hours (the current one last) from counts keyed ``YYYY-MM-DDTHH``."""
    hours = [(now - timedelta(hours=HOURS - 1 - i)).strftime("%Y-%m-%dT%H") for i in range(HOURS)]
    peak = max([values.get(h, 0) for h in hours] + [1])
    chart = Chart(title, caption, [], peak, failed_word=failed_word)
    step = chart.width / HOURS
    for i, hour in enumerate(hours):
        value, bad = values.get(hour, 0), min(failed.get(hour, 0), values.get(hour, 0))
        chart.bars.append(Bar(f"{hour[-2:]}:00", value, bad, round(i * step + 1, 2),
                              round(value / peak * chart.height, 2), round(bad / peak * chart.height, 2)))
    return chart


def _per_hour(conn: sa.Connection, column: sa.ColumnElement[Any], since: str,
               *where: sa.ColumnElement[bool]) -> dict[str, int]:
    hour = sa.func.substr(column, 1, 13)  # "YYYY-MM-DDTHH" of the stored UTC timestamp
    query = sa.select(hour, sa.func.count()).where(column >= since, *where).group_by(hour)
    return {row[0]: row[1] for row in conn.execute(query)}


def request_totals(conn: sa.Connection, now: datetime) -> tuple[dict[str, tuple[int, int]], dict[str, int],
                                                                dict[str, int]]:
    """From the request history (observability/history.py), the last 24 hours: (requests, errors)
    per tenant name (``-``: not authenticated), and requests and errors of the tenants per hour."""
    t = request_counts.c
    since = int(now.timestamp()) // 60 - HOURS * 60
    is_error = t.status_class.in_(ERROR_CLASSES)
    errors = sa.func.sum(sa.case((is_error, t.count), else_=0))
    per_tenant = {row[0]: (int(row[1]), int(row[2] or 0)) for row in conn.execute(
        sa.select(t.tenant, sa.func.sum(t.count), errors).where(t.minute > since).group_by(t.tenant))}
    hour = t.minute - t.minute % 60  # the first minute of the hour: integer arithmetic in both databases
    requests_per_hour: dict[str, int] = {}
    errors_per_hour: dict[str, int] = {}
    for row in conn.execute(sa.select(hour, sa.func.sum(t.count), errors)
                            .where(t.minute > since, t.tenant != HISTORY_NO_TENANT).group_by(hour)):
        key = datetime.fromtimestamp(int(row[0]) * 60, UTC).strftime("%Y-%m-%dT%H")
        requests_per_hour[key], errors_per_hour[key] = int(row[1]), int(row[2] or 0)
    return per_tenant, requests_per_hour, errors_per_hour


class ConsoleData:
    def __init__(self, db: Database, settings: Settings) -> None:
        self.db = db
        self.jobs = JobService(db, settings)
        self.operations = JobOperations(self.jobs)

    def overview(self, now: datetime | None = None) -> dict[str, Any]:
        now = now or datetime.now(UTC)
        since = format_timestamp(now - timedelta(hours=HOURS))
        with self.db.read() as conn:
            tenants = tenant_store.list_tenants(conn)
            changes = {row[0]: row[1] for row in conn.execute(
                sa.select(audit_events.c.tenant_id, sa.func.count()).where(audit_events.c.at >= since)
                .group_by(audit_events.c.tenant_id))}
            requests, requests_per_hour, errors_per_hour = request_totals(conn, now)
            rows = [{"name": t["name"], "status": t["status"],
                     "users": counts.read(conn, t["id"], USER.name).live,
                     "groups": counts.read(conn, t["id"], GROUP.name).live,
                     "changes": changes.get(t["id"], 0),
                     "requests": requests.get(t["name"], (0, 0))[0],
                     "errors": requests.get(t["name"], (0, 0))[1]} for t in tenants]
            changes_per_hour = _per_hour(conn, audit_events.c.at, since, audit_events.c.tenant_id != NO_TENANT)
            engine_per_hour = _per_hour(conn, engine_events.c.at, since)
            engine_failed = _per_hour(conn, engine_events.c.at, since, engine_events.c.status == "failure")
        jobs = [self._job_row(job) for job in self.jobs.list()]
        by_state = Counter(job["state"] for job in jobs)
        return {
            "tenants": rows,
            "jobs": jobs,
            "jobs_by_state": [(state, by_state.get(state, 0)) for state in STATES],
            "unauthenticated": requests.get(HISTORY_NO_TENANT, (0, 0)),
            "charts": [
                hourly_chart("SCIM requests per hour", "Requests of every tenant that authenticated; errors "
                             "(status 400 and above) in red (last 24 h, UTC; counted by each process, saved "
                             "every 10 s).", requests_per_hour, errors_per_hour, now, "errors"),
                hourly_chart("SCIM changes per hour", "Creates, updates and deletes of users and groups, from the "
                             "audit trail (last 24 h, UTC).", changes_per_hour, {}, now),
                hourly_chart("Engine: objects provisioned per hour", "Provisioning log entries of every job; "
                             "failures in red (last 24 h, UTC).", engine_per_hour, engine_failed, now),
            ],
        }

    def job(self, name: str) -> dict[str, Any]:
        job = self.jobs.get(name)
        described = job.describe()
        return {"job": described, "row": self._job_row(job), "history": self.operations.history(job, 20),
                "quarantine": job.quarantine_data, "progress": self.progress(job)}

    def progress(self, job: Job) -> dict[str, Any]:
        """The running cycle's progress as the cycle last saved it (engine/cycle.py, every few
        seconds), or ``running: false``."""
        t = engine_cycles.c
        with self.db.read() as conn:
            row = conn.execute(sa.select(engine_cycles).where(t.job_id == job.id, t.state == "running")
                               .order_by(t.started_at.desc()).limit(1)).first()
        if row is None:
            return {"job": job.name, "state": job.state, "running": False}
        progress = dict((row.counts or {}).get("progress") or {})
        done, total = int(progress.get("done", 0)), int(progress.get("total", 0))
        return {"job": job.name, "state": job.state, "running": True, "cycle": row.id, "kind": row.kind,
                "started_at": row.started_at, "phase": progress.get("phase", "read"), "done": done, "total": total,
                "percent": round(100 * done / total) if total else 0}

    def _job_row(self, job: Job) -> dict[str, Any]:
        t = engine_cycles.c
        with self.db.read() as conn:
            last = conn.execute(sa.select(t.state, t.started_at, t.ended_at, t.kind).where(t.job_id == job.id)
                                .order_by(t.started_at.desc()).limit(1)).first()
        return {"name": job.name, "state": job.state, "source": job.source, "target_url": job.target_url,
                "next_run_at": job.next_run_at, "last_cycle": None if last is None else last._asdict()}
