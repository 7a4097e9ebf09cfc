"""``identity-sync tombstones|audit``: what was deleted (kept as tombstones until purged) and the
audit trail of every change. Registered on the main command by ``cli/__init__.py``; a public
interface like the rest of the CLI."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Annotated

import typer

from identity_sync.cli._common import JsonFlag, fail, open_database, print_rows, reported
from identity_sync.clock import ago_text, format_timestamp, parse_timestamp
from identity_sync.service.audit import AuditService
from identity_sync.service.tombstones import TombstoneService

tombstone_app = typer.Typer(help="List and purge deleted users kept as tombstones.", no_args_is_help=True)
audit_app = typer.Typer(help="The audit trail of every change.", no_args_is_help=True)


def register(app: typer.Typer) -> None:
    app.add_typer(tombstone_app, name="tombstones")
    app.add_typer(audit_app, name="audit")


@tombstone_app.command("list")
def tombstones_list(
    tenant: Annotated[str | None, typer.Option(help="Only this tenant.")] = None,
    older_than_days: Annotated[int | None, typer.Option(help="Only those deleted more than N days ago.")] = None,
    as_json: JsonFlag = False,
) -> None:
    """List deleted resources kept as tombstones."""
    _, db = open_database()
    cutoff = ago_text(timedelta(days=older_than_days)) if older_than_days is not None else None
    with reported():
        rows = TombstoneService(db).list(tenant, cutoff)
    print_rows(rows, as_json, "tombstones", ("tenant", "type", "id", "name", "deleted_at"))


@tombstone_app.command("purge")
def tombstones_purge(
    older_than_days: Annotated[int, typer.Option(help="Retention: purge tombstones deleted more than N days ago.")],
    tenant: Annotated[str | None, typer.Option(help="Only this tenant.")] = None,
    yes: Annotated[bool, typer.Option("--yes", help="Really destroy them (required).")] = False,
    as_json: JsonFlag = False,
) -> None:
    """Destroy tombstones older than the retention period. Irreversible; needs --yes."""
    if older_than_days < 0:
        fail("--older-than-days must be 0 or more.")
    _, db = open_database()
    cutoff = ago_text(timedelta(days=older_than_days))
    service = TombstoneService(db)
    with reported():
        if not yes:
            count = len(service.list(tenant, cutoff))
            fail(f"{count} tombstone(s) would be purged; add --yes to purge them.")
        purged = service.purge(tenant, cutoff)
    if as_json:
        typer.echo(json.dumps({"purged": purged, "cutoff": cutoff}))
    else:
        typer.echo(f"Purged {purged} tombstone(s) deleted before {cutoff}.")


@audit_app.command("list")
def audit_list(
    tenant: Annotated[str | None, typer.Option(help="Only this tenant.")] = None,
    since: Annotated[str | None, typer.Option(help="Only events at or after this UTC time "
                                                   "(e.g. 2026-11-26T00:00:00Z).")] = None,
    resource: Annotated[str | None, typer.Option(help="Only the events of this resource id.")] = None,
    limit: Annotated[int, typer.Option(min=1, max=100_000, help="At most this many events.")] = 1_000,
    after: Annotated[int | None, typer.Option(help="Only events after this seq (continue an export).")] = None,
    as_json: JsonFlag = False,
) -> None:
    """List the audit trail, oldest first: every committed change (who, what, when; no values)."""
    _, db = open_database()
    with reported(ValueError):
        # Events carry microseconds: `…T00:00:00Z` must mean the start of that second, not after it.
        cutoff = format_timestamp(parse_timestamp(since)) if since is not None else None
        rows = AuditService(db).list(tenant, cutoff, resource, limit, after)
    if not as_json:
        rows = [{**row, "attributes": ", ".join(row["attributes"])} for row in rows]
    print_rows(rows, as_json, "events",
                ("seq", "at", "tenant", "actor", "action", "type", "id", "version", "attributes"))


