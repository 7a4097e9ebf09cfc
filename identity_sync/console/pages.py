"""What the console's pages show, read from the database (never written here: the console's
only changes go through the services, in routes.py). Each function returns plain data for one
template; the charts are computed here as bars with coordinates, drawn as SVG by the template."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from identity_sync.clock import format_timestamp
from identity_sync.config import Settings
from identity_sync.engine import activity as engine_activity
from identity_sync.engine.jobs import Job, JobService
from identity_sync.engine.operations import STATES, JobOperations
from identity_sync.observability.history import ERROR_CLASSES
from identity_sync.observability.history import NO_TENANT as HISTORY_NO_TENANT
from identity_sync.scim.registry import GROUP, USER
from identity_sync.service.operators import NO_TENANT
from identity_sync.storage import activity, counts
from identity_sync.storage import tenants as tenant_store
from identity_sync.storage.db import Database

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


def request_totals(conn: Any, now: datetime) -> tuple[dict[str, tuple[int, int]], dict[str, int], dict[str, int]]:
    """From the request history (observability/history.py), the last 24 hours: (requests, errors)
    per tenant name (``-``: not authenticated), and requests and errors of the tenants per hour."""
    since = int(now.timestamp()) // 60 - HOURS * 60
    return activity.request_totals(conn, since, ERROR_CLASSES, HISTORY_NO_TENANT)


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
            changes = activity.changes_per_tenant(conn, since)
            requests, requests_per_hour, errors_per_hour = request_totals(conn, now)
            rows = [{"name": t["name"], "status": t["status"],
                     "users": counts.read(conn, t["id"], USER.name).live,
                     "groups": counts.read(conn, t["id"], GROUP.name).live,
                     "changes": changes.get(t["id"], 0),
                     "requests": requests.get(t["name"], (0, 0))[0],
                     "errors": requests.get(t["name"], (0, 0))[1]} for t in tenants]
            changes_per_hour = activity.changes_per_hour(conn, since, excluding_tenant=NO_TENANT)
            engine_per_hour = engine_activity.events_per_hour(conn, since)
            engine_failed = engine_activity.events_per_hour(conn, since, failed_only=True)
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
        with self.db.read() as conn:
            row = engine_activity.running_cycle(conn, job.id)
        if row is None:
            return {"job": job.name, "state": job.state, "running": False}
        progress = dict((row.counts or {}).get("progress") or {})
        done, total = int(progress.get("done", 0)), int(progress.get("total", 0))
        return {"job": job.name, "state": job.state, "running": True, "cycle": row.id, "kind": row.kind,
                "started_at": row.started_at, "phase": progress.get("phase", "read"), "done": done, "total": total,
                "percent": round(100 * done / total) if total else 0}

    def _job_row(self, job: Job) -> dict[str, Any]:
        with self.db.read() as conn:
            last = engine_activity.last_cycle(conn, job.id)
        return {"name": job.name, "state": job.state, "source": job.source, "target_url": job.target_url,
                "next_run_at": job.next_run_at, "last_cycle": last}
