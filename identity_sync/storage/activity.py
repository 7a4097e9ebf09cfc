"""What the console's overview counts (console/pages.py): changes from the audit trail and requests
from the request history (observability/history.py writes ``request_counts``), over a recent
window. Reads only, on a connection the caller holds."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from identity_sync.storage.tables import audit_events, request_counts


def per_hour(conn: Connection, column: sa.ColumnElement[Any], since: str,
             *where: sa.ColumnElement[bool]) -> dict[str, int]:
    """Rows per hour (``YYYY-MM-DDTHH``) of a column holding UTC timestamps as text, from ``since``."""
    hour = sa.func.substr(column, 1, 13)  # "YYYY-MM-DDTHH" of the stored UTC timestamp
    query = sa.select(hour, sa.func.count()).where(column >= since, *where).group_by(hour)
    return {row[0]: row[1] for row in conn.execute(query)}


def changes_per_tenant(conn: Connection, since: str) -> dict[str, int]:
    """Audit events per tenant id from ``since``."""
    a = audit_events.c
    return {row[0]: row[1] for row in conn.execute(
        sa.select(a.tenant_id, sa.func.count()).where(a.at >= since).group_by(a.tenant_id))}


def changes_per_hour(conn: Connection, since: str, excluding_tenant: str) -> dict[str, int]:
    """Audit events per hour from ``since``, but those of ``excluding_tenant`` (the operators' own)."""
    return per_hour(conn, audit_events.c.at, since, audit_events.c.tenant_id != excluding_tenant)


def request_totals(conn: Connection, since_minute: int, error_classes: Iterable[str], unauthenticated: str
                   ) -> tuple[dict[str, tuple[int, int]], dict[str, int], dict[str, int]]:
    """From the request history, after minute ``since_minute`` (minutes since the epoch):
    (requests, errors) per tenant name (``unauthenticated`` included), and requests and errors of
    the tenants (``unauthenticated`` excluded) per hour (``YYYY-MM-DDTHH``)."""
    t = request_counts.c
    is_error = t.status_class.in_(list(error_classes))
    errors = sa.func.sum(sa.case((is_error, t.count), else_=0))
    per_tenant = {row[0]: (int(row[1]), int(row[2] or 0)) for row in conn.execute(
        sa.select(t.tenant, sa.func.sum(t.count), errors).where(t.minute > since_minute).group_by(t.tenant))}
    hour = t.minute - t.minute % 60  # the first minute of the hour: integer arithmetic in both databases
    requests_per_hour: dict[str, int] = {}
    errors_per_hour: dict[str, int] = {}
    for row in conn.execute(sa.select(hour, sa.func.sum(t.count), errors)
                            .where(t.minute > since_minute, t.tenant != unauthenticated).group_by(hour)):
        key = datetime.fromtimestamp(int(row[0]) * 60, UTC).strftime("%Y-%m-%dT%H")
        requests_per_hour[key], errors_per_hour[key] = int(row[1]), int(row[2] or 0)
    return per_tenant, requests_per_hour, errors_per_hour
