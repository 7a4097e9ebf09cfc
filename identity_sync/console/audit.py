"""The console's audit trail page (``/admin/audit``, docs/console.md): every event of the trail,
newest first, filtered by tenant, actor, action, resource type, resource id and time range, 50 a
page; and the filtered trail as CSV or NDJSON, streamed from the database a batch at a time
(service/audit.py ``AuditService.stream``), so that a trail of millions of events is never held
in memory. Reading the trail is open to every operator; an export is itself an audit event.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlencode

import anyio.to_thread
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import BaseRoute, Route

from identity_sync.clock import format_timestamp
from identity_sync.console.auth import Session
from identity_sync.service.audit import AuditService
from identity_sync.service.operators import Operator
from identity_sync.service.tenants import TenantError
from identity_sync.storage.audit import AuditFilter

PAGE_SIZE = 50
#: The filters' query parameters, in the order the form shows them.
FIELDS = ("tenant", "actor", "action", "type", "resource", "since", "until")
CSV_COLUMNS = ("seq", "at", "tenant", "actor", "action", "type", "id", "version", "attributes")


class TimeError(ValueError):
    """A time filter that is not a time; one line."""


def parse_time(text: str | None, label: str) -> str | None:
    """A time typed in a filter (``2026-12-05``, ``2026-12-05T10:00`` as a browser's
    datetime-local field sends it, or a full ``…Z`` timestamp) in the stored form, UTC. A time
    without a zone is UTC: the console shows every time in UTC."""
    if text is None or not text.strip():
        return None
    try:
        moment = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        raise TimeError(f"{label}: {text.strip()[:40]!r} is not a time (e.g. 2026-12-05T10:00, UTC)") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return format_timestamp(moment)


def audit_filter_of(service: AuditService, params: Any) -> AuditFilter:
    """The filter of the page's query string; TimeError or TenantError for a bad value."""
    def text(key: str) -> str | None:
        value = str(params.get(key, "")).strip()
        return value or None
    return AuditFilter(tenant_id=service.tenant_id(text("tenant")), actor=text("actor"), action=text("action"),
                       resource_type=text("type"), resource_id=text("resource"),
                       since=parse_time(text("since"), "since"), until=parse_time(text("until"), "until"))


class AuditPages:
    def __init__(self, console: Any) -> None:
        self.c = console
        self.service = AuditService(console.db)

    async def page(self, request: Request, session: Session, operator: Operator) -> Response:
        params = request.query_params
        before = params.get("before", "")

        def read() -> tuple[list[dict[str, Any]], int | None]:
            audit_filter = audit_filter_of(self.service, params)
            return self.service.newest(audit_filter, before=int(before) if before.isdigit() else None,
                                       limit=PAGE_SIZE)
        events: list[dict[str, Any]] = []
        error, older = None, None
        try:
            events, older = await anyio.to_thread.run_sync(read)
        except (TimeError, TenantError) as exc:
            error = str(exc)
        values = {key: params.get(key, "") for key in FIELDS}
        query = {k: v for k, v in values.items() if v}
        return self.c.render(request, "audit.html", {
            "events": events, "values": values, "error": error,
            "older": "?" + urlencode({**query, "before": older}) if older is not None else None,
            "newest": "?" + urlencode(query) if before else None,
            "export": "?" + urlencode(query) if query else ""}, 400 if error else 200, session, operator)

    async def export(self, request: Request, session: Session, operator: Operator) -> Response:
        kind = request.path_params["kind"]
        if kind not in ("csv", "ndjson"):
            return self.c.not_found(request, session, operator)
        try:
            audit_filter = await anyio.to_thread.run_sync(audit_filter_of, self.service, request.query_params)
        except (TimeError, TenantError) as exc:
            return self.c.render(request, "error.html", {"title": "Bad filter", "message": str(exc)}, 400,
                                 session, operator)
        # What the trail holds now, without the event of this very export (recorded next).
        upto = await anyio.to_thread.run_sync(self.service.newest_seq)
        await self.c.audit(f"console:{operator.name}", "export", "AuditTrail", kind)
        events = self.service.stream(audit_filter, upto=upto)
        lines = to_csv(events) if kind == "csv" else to_ndjson(events)
        media = "text/csv; charset=utf-8" if kind == "csv" else "application/x-ndjson"
        # A sync iterator: Starlette reads it in a worker thread, one database batch at a time.
        return StreamingResponse(lines, media_type=media, headers={
            "Content-Disposition": f'attachment; filename="audit-trail.{kind}"'})


def to_ndjson(events: Iterator[dict[str, Any]]) -> Iterator[str]:
    """One JSON object per line, the keys of ``audit list --json``."""
    for event in events:
        yield json.dumps(event, ensure_ascii=False) + "\n"


def to_csv(events: Iterator[dict[str, Any]]) -> Iterator[str]:
    """A header, then one row per event; ``attributes`` joined with ``;`` and ``tenant`` empty
    for the service's own events (as in ``audit list``, ``-``)."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    for event in events:
        writer.writerow([event["seq"], event["at"], event["tenant"] or "", event["actor"], event["action"],
                         event["type"], event["id"], "" if event["version"] is None else event["version"],
                         ";".join(event["attributes"])])
        if buffer.tell() > 65_536:
            yield buffer.getvalue()
            buffer.seek(0)
            buffer.truncate()
    yield buffer.getvalue()


def routes(console: Any) -> list[BaseRoute]:
    pages = AuditPages(console)
    return [
        Route("/audit", console.page(pages.page), methods=["GET"]),
        Route("/audit/export.{kind:str}", console.page(pages.export), methods=["GET"]),
    ]
