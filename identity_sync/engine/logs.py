"""Provisioning logs (provisioning-engine.md §4.4): one event per object per cycle, shaped like
Microsoft Graph's ``provisioningObjectSummary`` — action, status, Entra's error code, source and
target identities, the steps (import, scoping, matching, processing, referenceResolution,
export) and the modified properties old → new (redacted values stay ``[Redact]``).

Kept in the database for ``IDSYNC_ENGINE_LOG_RETENTION_DAYS`` (30 by default, as Entra's premium
tier); ``job logs`` shows and exports them.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from identity_sync.clock import ago_text, now_text
from identity_sync.engine.model import ObjectType
from identity_sync.engine.tables import engine_events
from identity_sync.ids import new_id
from identity_sync.storage.db import Database

ACTIONS = ("create", "update", "disable", "delete", "stageddelete", "other")
STATUSES = ("success", "failure", "skipped", "warning")


@dataclass
class ProvisioningEvent:
    object_type: ObjectType
    source_id: str
    source_name: str
    action: str = "other"
    status: str = "success"
    target_id: str | None = None
    error_code: str | None = None
    reason: str | None = None
    steps: list[dict[str, Any]] = field(default_factory=list)
    modified: list[dict[str, Any]] = field(default_factory=list)
    duration_ms: int = 0
    change_id: str = field(default_factory=new_id)
    at: str = field(default_factory=now_text)

    def step(self, step_type: str, status: str, description: str, **details: Any) -> None:
        """One entry of the Steps tab: ``import``, ``scoping``, ``matching``, ``processing``,
        ``referenceResolution`` or ``export``."""
        entry: dict[str, Any] = {"provisioningStepType": step_type, "status": status, "description": description}
        if details:
            entry["details"] = {k: v for k, v in details.items() if v is not None}
        self.steps.append(entry)

    def fail(self, error_code: str, reason: str) -> None:
        self.status, self.error_code, self.reason = "failure", error_code, reason


def write_events(conn: Connection, job_id: str, cycle_id: str, events: Iterable[ProvisioningEvent]) -> None:
    rows = [{"job_id": job_id, "cycle_id": cycle_id, "change_id": e.change_id, "at": e.at,
             "object_type": e.object_type, "source_id": e.source_id, "source_name": e.source_name,
             "target_id": e.target_id, "action": e.action, "status": e.status, "error_code": e.error_code,
             "reason": e.reason, "steps": e.steps, "modified": e.modified, "duration_ms": e.duration_ms}
            for e in events]
    for start in range(0, len(rows), 200):
        conn.execute(sa.insert(engine_events), rows[start:start + 200])


@dataclass(frozen=True, slots=True)
class LogFilter:
    """What ``job logs`` and the console's logs page narrow the events by; every field optional.
    ``since``/``until`` are stored-form timestamps (clock.format_timestamp), compared as text."""

    cycle: str | None = None
    status: str | None = None
    action: str | None = None
    object_id: str | None = None  # the source anchor or the target id
    since: str | None = None
    until: str | None = None

    def check(self) -> None:
        """One-line errors for values no event can have (the CLI and the console say the same)."""
        if self.status and self.status not in STATUSES:
            raise ValueError(f"status must be one of {', '.join(STATUSES)}")
        if self.action and self.action not in ACTIONS:
            raise ValueError(f"action must be one of {', '.join(ACTIONS)}")

    def where(self, query: sa.Select[Any]) -> sa.Select[Any]:
        t = engine_events.c
        if self.cycle:
            query = query.where(t.cycle_id == self.cycle)
        if self.status:
            query = query.where(t.status == self.status)
        if self.action:
            query = query.where(t.action == self.action)
        if self.object_id:
            query = query.where(sa.or_(t.source_id == self.object_id, t.target_id == self.object_id))
        if self.since:
            query = query.where(t.at >= self.since)
        if self.until:
            query = query.where(t.at < self.until)
        return query


def query_events(db: Database, job_id: str, *, cycle: str | None = None, status: str | None = None,
                 action: str | None = None, object_id: str | None = None, limit: int = 1_000,
                 after: int | None = None, since: str | None = None) -> list[dict[str, Any]]:
    t = engine_events.c
    query = LogFilter(cycle, status, action, object_id, since).where(
        sa.select(engine_events).where(t.job_id == job_id))
    if after is not None:
        # Paging forward through an export: the next events after the last one seen, oldest first.
        query = query.where(t.id > after).order_by(t.id).limit(limit)
        with db.read() as conn:
            return [summary(row._mapping) for row in conn.execute(query)]
    # Otherwise the newest `limit` events (the last cycle is what an operator looks for), shown oldest first.
    query = query.order_by(t.id.desc()).limit(limit)
    with db.read() as conn:
        return [summary(row._mapping) for row in reversed(conn.execute(query).all())]


def page_events(db: Database, job_id: str, log_filter: LogFilter, *, before: int | None = None,
                limit: int = 50) -> tuple[list[dict[str, Any]], int | None]:
    """One page of events, newest first, and the ``before`` of the next (older) page (``None``:
    this is the last). Keyset paging on the id: a page costs the same deep in a long log."""
    t = engine_events.c
    query = log_filter.where(sa.select(engine_events).where(t.job_id == job_id))
    if before is not None:
        query = query.where(t.id < before)
    with db.read() as conn:
        rows = conn.execute(query.order_by(t.id.desc()).limit(limit + 1)).all()
    events = [summary(row._mapping) for row in rows[:limit]]
    return events, (events[-1]["id"] if len(rows) > limit else None)


def get_event(db: Database, job_id: str, event_id: int) -> dict[str, Any] | None:
    """One event of the job (``None``: no such event, or another job's)."""
    t = engine_events.c
    with db.read() as conn:
        row = conn.execute(sa.select(engine_events).where(t.job_id == job_id, t.id == event_id)).first()
    return None if row is None else summary(row._mapping)


def summary(row: Any) -> dict[str, Any]:
    """An event as Graph's ``provisioningObjectSummary`` (the fields of §4.4 that apply here)."""
    error = None
    if row["error_code"] or row["reason"]:
        error = {"errorCode": row["error_code"], "reason": row["reason"]}
    return {
        "id": row["id"], "activityDateTime": row["at"], "cycleId": row["cycle_id"], "changeId": row["change_id"],
        "provisioningAction": row["action"],
        "provisioningStatusInfo": {"status": row["status"], "errorInformation": error},
        "sourceIdentity": {"id": row["source_id"], "displayName": row["source_name"],
                           "identityType": row["object_type"]},
        "targetIdentity": {"id": row["target_id"], "identityType": row["object_type"]},
        "provisioningSteps": row["steps"], "modifiedProperties": row["modified"],
        "durationInMilliseconds": row["duration_ms"],
    }


def event_summary(event: ProvisioningEvent) -> dict[str, Any]:
    """An event not stored (on-demand provisioning, preview) in the shape of :func:`summary`."""
    return summary({"id": None, "at": event.at, "cycle_id": None, "change_id": event.change_id,
                    "action": event.action, "status": event.status, "error_code": event.error_code,
                    "reason": event.reason, "source_id": event.source_id, "source_name": event.source_name,
                    "object_type": event.object_type, "target_id": event.target_id, "steps": event.steps,
                    "modified": event.modified, "duration_ms": event.duration_ms})


def preview_action(event: ProvisioningEvent) -> dict[str, Any]:
    """One line of ``job preview``: what a cycle would do to one object, with its changes."""
    return {"action": event.action, "status": event.status, "type": event.object_type, "source_id": event.source_id,
            "name": event.source_name, "target_id": event.target_id, "reason": event.reason,
            "error_code": event.error_code, "changes": event.modified}


CSV_COLUMNS = ("id", "activityDateTime", "cycleId", "changeId", "identityType", "sourceId", "displayName",
               "targetId", "action", "status", "errorCode", "reason", "modifiedProperties")


def to_csv(events: list[dict[str, Any]]) -> str:
    """One row per event (modified properties as ``name: old -> new`` lines), for spreadsheets."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    for e in events:
        error = e["provisioningStatusInfo"]["errorInformation"] or {}
        modified = "\n".join(f"{m['displayName']}: {_cell(m.get('oldValue'))} -> {_cell(m.get('newValue'))}"
                             for m in e["modifiedProperties"])
        writer.writerow([e["id"], e["activityDateTime"], e["cycleId"], e["changeId"],
                         e["sourceIdentity"]["identityType"], e["sourceIdentity"]["id"],
                         e["sourceIdentity"]["displayName"], e["targetIdentity"]["id"] or "", e["provisioningAction"],
                         e["provisioningStatusInfo"]["status"], error.get("errorCode") or "",
                         error.get("reason") or "", modified])
    return out.getvalue()


def _cell(value: Any) -> str:
    if value is None:
        return ""
    return ";".join(map(str, value)) if isinstance(value, list) else str(value)


def prune_events(db: Database, retention_days: int) -> int:
    """Drop events older than the retention period; returns how many."""
    if retention_days <= 0:
        return 0
    cutoff = ago_text(timedelta(days=retention_days))
    with db.write() as conn:
        return conn.execute(sa.delete(engine_events).where(engine_events.c.at < cutoff)).rowcount or 0
