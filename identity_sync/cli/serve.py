"""The ``identity-sync`` command. Its commands, options, ``--json`` keys and environment
variables are a public interface that scripts rely on: extend it, don't change it.

Every command reads the database from ``IDSYNC_DATABASE_URL`` or the config file (see ``config.py``)
and applies pending migrations first. Only ``migrate`` and ``serve`` create a database: the others
refuse to run on none (``_open``).
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path
from typing import Annotated, Any

import typer
from sqlalchemy.exc import SQLAlchemyError

from identity_sync import cli_auth, cli_engine, cli_operators
from identity_sync.auth.oauth import SigningKeyError, signing_keys_for
from identity_sync.clock import ago_text, format_timestamp, parse_timestamp
from identity_sync.config import ConfigFileError, Settings, config_file_path
from identity_sync.service.audit import AuditService
from identity_sync.service.tenants import IssuedToken, TenantError, TenantService
from identity_sync.service.tombstones import TombstoneService
from identity_sync.storage.db import Database, sqlite_file

app = typer.Typer(help="identity-sync: a SCIM 2.0 provisioning target for Microsoft Entra ID and Okta.",
                  no_args_is_help=True, add_completion=False)
tenant_app = typer.Typer(help="Create, list and disable tenants.", no_args_is_help=True)
token_app = typer.Typer(help="Issue, list and revoke a tenant's bearer tokens.", no_args_is_help=True)
tombstone_app = typer.Typer(help="List and purge deleted users kept as tombstones.", no_args_is_help=True)
audit_app = typer.Typer(help="The audit trail of every change.", no_args_is_help=True)
app.add_typer(tenant_app, name="tenant")
app.add_typer(token_app, name="token")
app.add_typer(tombstone_app, name="tombstones")
app.add_typer(audit_app, name="audit")
cli_auth.register(app)  # client, keys, entra (docs/security.md)
cli_engine.register(app)  # job: the provisioning engine (docs/engine.md)
cli_operators.register(app)  # operator: who may log in to the web console (docs/console.md)

JsonFlag = Annotated[bool, typer.Option("--json", help="Print one JSON object instead of text.")]
TenantOption = Annotated[str, typer.Option("--tenant", help="The tenant's name.")]


def _open(settings: Settings | None = None, *, create: bool = False) -> tuple[Settings, Database]:
    """The configured database, migrated to the newest schema. Only ``migrate`` and ``serve``
    (``create=True``) may create it: any other command that finds no database (no SQLite file, or
    a database without our schema) stops, since it was most likely run with another configuration
    than the service's (another shell, another user) and would otherwise work on a new empty one."""
    from identity_sync import logs

    settings = settings or _settings()
    logs.configure(settings.log_level)  # JSON on stderr: stdout stays clean for --json
    url = settings.resolved_database_url()
    if not create:
        file = sqlite_file(url)
        if file is not None and not file.exists():
            _no_database(url)
    db = Database(url)
    if not create:
        try:
            migrated = db.has_schema()
        except SQLAlchemyError as exc:
            reason = str(getattr(exc, "orig", None) or exc).strip().splitlines()
            _fail(f"cannot open the database {_safe_url(url)}: {reason[0] if reason else type(exc).__name__}")
        if not migrated:
            db.dispose()
            _no_database(url)
    db.migrate()
    return settings, db


def _no_database(url: str) -> None:
    source = config_file_path()
    where = f"IDSYNC_DATABASE_URL or database_url in {source}" if source else "IDSYNC_DATABASE_URL (or IDSYNC_CONFIG)"
    _fail(f"no identity-sync database at {_safe_url(url)}: create it with 'identity-sync migrate', "
          f"or check {where}")


def _settings() -> Settings:
    """The configuration (IDSYNC_* variables over the config file); a bad value is one ``error:``
    line naming the variable, and the config file's key when the value came from there."""
    from pydantic import ValidationError

    try:
        return Settings()
    except ConfigFileError as exc:
        _fail(str(exc))
        raise  # not reached: _fail exits
    except ValidationError as exc:
        path = config_file_path()
        problems = "; ".join(_problem(e["loc"], e["msg"], path) for e in exc.errors())
        _fail(f"invalid configuration: {problems}")
        raise  # not reached: _fail exits


def _problem(loc: tuple[int | str, ...], message: str, config_file: Path | None) -> str:
    if not loc:
        return message
    key = "_".join(str(part) for part in loc)
    variable = f"IDSYNC_{key.upper()}"
    if variable not in os.environ and config_file is not None:
        return f"{key} in {config_file}: {message}"
    return f"{variable}: {message}"


ConfirmUrlFlag = Annotated[bool, typer.Option(
    "--confirm-url", help="Print Tenant URLs made of the host and port (http://HOST:PORT) although "
                          "IDSYNC_PUBLIC_URL is unset on a non-loopback deployment.")]


def _tenant_url(settings: Settings, tenant: str, base: str | None = None) -> str:
    base = base or settings.public_url or _default_base(settings)
    return f"{base.rstrip('/')}/scim/v2/{tenant}"


def _default_base(settings: Settings) -> str:
    host = settings.host if settings.host not in ("", "0.0.0.0", "::") else "127.0.0.1"
    return f"http://{f'[{host}]' if ':' in host else host}:{settings.port}"


def loopback_deployment(settings: Settings) -> bool:
    """Whether only this machine can reach the service: it listens on a loopback address and
    keeps its data in SQLite (a PostgreSQL database is there to be shared by several nodes, which
    the customers reach by some other name)."""
    import ipaddress

    if not settings.resolved_database_url().startswith("sqlite"):
        return False
    if settings.host == "localhost":
        return True
    try:
        return ipaddress.ip_address(settings.host).is_loopback
    except ValueError:
        return False


def _require_public_url(settings: Settings, confirmed: bool) -> None:
    """Refuse to print a Tenant URL made up of the host and port when customers reach the service
    by another name: handed to a customer, ``http://127.0.0.1:8000/…`` fails only at their end.
    Called before anything is created, so that a refused command has changed nothing."""
    if settings.public_url or confirmed or loopback_deployment(settings):
        return
    _fail(f"IDSYNC_PUBLIC_URL is not set and this is not a loopback deployment (host {settings.host}, database "
          f"{_safe_url(settings.resolved_database_url())}): set IDSYNC_PUBLIC_URL (public_url in the config file) to "
          f"the URL customers reach, or pass --confirm-url to print {_default_base(settings)}/scim/v2/<tenant>")


def _fail(message: str) -> None:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(code=1)


@contextmanager
def _reported(*errors: type[Exception]) -> Iterator[None]:
    """An operator's mistake (unknown tenant, bad option value, …) becomes one ``error: …`` line on
    stderr and exit code 1, never a traceback."""
    try:
        yield
    except (TenantError, *errors) as exc:
        _fail(str(exc))


def _print_issued(settings: Settings, issued: IssuedToken, as_json: bool, base: str | None = None) -> None:
    url = _tenant_url(settings, issued.tenant, base)
    if as_json:
        typer.echo(json.dumps({"tenant": issued.tenant, "tenant_url": url, "token": issued.token,
                               "token_id": issued.credential_id, "expires_at": issued.expires_at}))
        return
    typer.echo(f"Tenant:     {issued.tenant}")
    typer.echo(f"Tenant URL: {url}")
    typer.echo(f"Token:      {issued.token}")
    typer.echo(f"Token id:   {issued.credential_id}" + (f" (expires {issued.expires_at})" if issued.expires_at else ""))
    typer.echo("The token is shown only this once; store it in your identity provider now.")


@app.command()
def serve(
    host: Annotated[str | None, typer.Option(help="Interface to listen on (default: IDSYNC_HOST, else "
                                                  "127.0.0.1).")] = None,
    port: Annotated[int | None, typer.Option(help="TCP port (default: IDSYNC_PORT, else 8000).")] = None,
    ssl_certfile: Annotated[Path | None, typer.Option(help="Serve HTTPS (TLS 1.2/1.3) with this PEM certificate "
                                                           "(chain).")] = None,
    ssl_keyfile: Annotated[Path | None, typer.Option(help="The certificate's PEM private key.")] = None,
    workers: Annotated[int, typer.Option(min=1, help="Worker processes (use PostgreSQL for more than 1).")] = 1,
    forwarded_allow_ips: Annotated[str | None, typer.Option(
        help="Comma-separated addresses or networks of the reverse proxies whose X-Forwarded-For and "
             "X-Forwarded-Proto are believed (default: IDSYNC_FORWARDED_ALLOW_IPS, else none: the client "
             "address is the TCP peer's).")] = None,
    engine: Annotated[bool, typer.Option("--engine", help="Also run the provisioning engine's scheduler in this "
                                         "process (the single-machine default; see `identity-sync engine`).")]
    = False,
) -> None:
    """Run the SCIM service (migrations are applied first)."""
    settings = _settings()
    # What this serve listens on is what its first start's Tenant URL is made of.
    settings = settings.model_copy(update={"host": host or settings.host, "port": port or settings.port})
    host, port = settings.host, settings.port
    settings, db = _open(settings, create=True)  # the first serve creates the database (README's set-up)
    _share_the_interpreter(settings)
    with _reported(SigningKeyError, OSError):
        signing_keys_for(settings, db).kids()  # a key that cannot be decrypted fails here, not per request
    if (ssl_certfile is None) != (ssl_keyfile is None):
        _fail("--ssl-certfile and --ssl-keyfile go together.")
    # The default tenant's token is a never-expiring, full-scope secret: shown only to a person at
    # a terminal, never written into a pipe that journald or a container runtime keeps.
    interactive = sys.stdout.isatty()
    created, issued = TenantService(db).ensure_default_tenant(issue_token=interactive)
    scheme = "https" if ssl_certfile else "http"
    if issued is not None:
        typer.echo("First start: created the 'default' tenant.")
        if settings.public_url or loopback_deployment(settings):
            _print_issued(settings, issued, False, settings.public_url or f"{scheme}://{host}:{port}")
        else:  # no Tenant URL to hand over made up from a listening address (_require_public_url)
            _print_issued(settings, issued, False, "<IDSYNC_PUBLIC_URL>")
            typer.echo("Set IDSYNC_PUBLIC_URL (public_url in the config file) to the URL customers reach: "
                       "the Tenant URL is <that URL>/scim/v2/default.")
    elif created:
        typer.echo("First start: created the 'default' tenant. Its token is not printed here (not a terminal); "
                   "issue one with: identity-sync token create --tenant default")
    typer.echo(f"Serving SCIM on {scheme}://{host}:{port}/scim/v2/<tenant> (database: {_safe_url(db.url)})")
    # log_config None: uvicorn's loggers reach our JSON handler (logs.configure) instead of its own text ones.
    options: dict[str, Any] = {"host": host, "port": port, "access_log": False, "log_level": "warning",
                               "log_config": None, "backlog": 2048,
                               **proxy_options(forwarded_allow_ips or settings.forwarded_allow_ips)}
    if ssl_certfile:
        options.update(ssl_certfile=str(ssl_certfile), ssl_keyfile=str(ssl_keyfile))
    if engine:
        from identity_sync.cli_operations import engine_in_background

        engine_in_background(settings)
        typer.echo("The provisioning engine runs here too (identity-sync job list).")
    _run_uvicorn(settings, db, workers, options)


def _run_uvicorn(settings: Settings, db: Database, workers: int, options: dict[str, Any]) -> None:
    # The metrics' multiprocess directory is serve's own (_metrics_directory): one process counts in memory.
    os.environ.pop("PROMETHEUS_MULTIPROC_DIR", None)
    import uvicorn

    from identity_sync.web.app import create_app

    if workers > 1:
        # Each worker is a fresh (spawned) process that builds its own app and connection pool
        # from the same IDSYNC_* environment through the factory; migrations and the default
        # tenant were done once, above, before any worker starts.
        db.dispose()
        # The in-process rate limiter gives each worker 1/N of the tenant's rate (auth/ratelimit.py).
        os.environ["IDSYNC_WORKERS"] = str(workers)
        with _metrics_directory():
            uvicorn.run("identity_sync.cli:worker_app", factory=True, workers=workers, **options)
        return
    uvicorn.run(create_app(settings, db), **options)


@contextmanager
def _metrics_directory() -> Iterator[None]:
    """Where the workers keep their metrics (prometheus-client's multiprocess mode, read by the
    worker that answers ``/metrics``: observability/metrics.py): a fresh private directory per
    ``serve``, so that no count of an earlier run (or of another user) is ever added in, removed
    when ``serve`` stops. Set in the environment, which the spawned workers inherit."""
    import shutil
    import tempfile

    directory = tempfile.mkdtemp(prefix="identity-sync-metrics-")  # mode 0700
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = directory
    try:
        yield
    finally:
        os.environ.pop("PROMETHEUS_MULTIPROC_DIR", None)
        shutil.rmtree(directory, ignore_errors=True)


def proxy_options(forwarded_allow_ips: str | None) -> dict[str, Any]:
    """uvicorn's options for the client address. Without trusted proxies, proxy headers are off
    altogether: uvicorn's own default believes ``X-Forwarded-For`` from 127.0.0.1, so behind a
    local proxy every caller looked like one, and a local caller could claim any address (issue 11).
    With them, uvicorn takes the client address from the right of ``X-Forwarded-For``, skipping
    only the listed proxies, so what a client prepends itself is never believed."""
    trusted = ",".join(part.strip() for part in (forwarded_allow_ips or "").split(",") if part.strip())
    if not trusted:
        return {"proxy_headers": False, "forwarded_allow_ips": ""}
    return {"proxy_headers": True, "forwarded_allow_ips": trusted}


def worker_app() -> Any:
    """The app factory each ``serve --workers N`` process calls: Settings, logging, database pool
    and app are all built in the worker itself (nothing is inherited from the parent)."""
    from identity_sync import logs
    from identity_sync.web.app import create_app

    settings = Settings()
    logs.configure(settings.log_level)
    _share_the_interpreter(settings)
    return create_app(settings)


def _share_the_interpreter(settings: Settings) -> None:
    """How long a thread may hold the interpreter lock while another waits for it. Python's 5 ms
    means that a request waiting behind another tenant's costly one waits up to 5 ms at every
    step that needs the lock (a dozen per request); 0.5 ms cut another tenant's median latency
    under attack from 23x to 9x of idle in benchmarks/fairness.py (without the CPU budget). A
    switch happens only when another thread waits, so a lone request is not slowed; 8 concurrent
    single-tenant lookups ran at 1,983 and 1,934 req/s against 2,021 and 2,261 with 5 ms (two
    runs each on a shared 2-CPU machine: a cost of up to ~10 %, within its noise)."""
    sys.setswitchinterval(settings.thread_switch_interval_seconds)


def _safe_url(url: str) -> str:
    """The database URL without its password."""
    from sqlalchemy.engine import make_url

    return make_url(url).render_as_string(hide_password=True)


@app.command()
def migrate(
    recount: Annotated[bool, typer.Option(help="Also rebuild the kept resource counts from the rows: once every "
                                               "node runs this release, after a rolling upgrade from one before "
                                               "them.")] = False,
) -> None:
    """Create the database or apply pending migrations, and exit."""
    _, db = _open(create=True)
    typer.echo(f"Database is up to date ({_safe_url(db.url)}).")
    if recount:
        typer.echo(f"Recounted the live resources ({TenantService(db).recount_resources()} tenant/type counts).")


@tenant_app.command("create")
def tenant_create(name: str, as_json: JsonFlag = False, confirm_url: ConfirmUrlFlag = False) -> None:
    """Create a tenant and its first bearer token."""
    settings, db = _open()
    _require_public_url(settings, confirm_url)
    with _reported():
        issued = TenantService(db).create_tenant(name)
    _print_issued(settings, issued, as_json)


@tenant_app.command("list")
def tenant_list(as_json: JsonFlag = False, confirm_url: ConfirmUrlFlag = False) -> None:
    """List tenants with their Tenant URLs."""
    settings, db = _open()
    _require_public_url(settings, confirm_url)
    rows = [{"tenant": t["name"], "status": t["status"], "created_at": t["created_at"],
             "tenant_url": _tenant_url(settings, t["name"]), "retention_days": t["retention_days"],
             "legal_hold": bool(t["legal_hold"])} for t in TenantService(db).list_tenants()]
    if not as_json:  # the table says what the values mean
        rows = [{**r, "retention_days": r["retention_days"] or "forever", "legal_hold": "on" if r["legal_hold"]
                 else "off"} for r in rows]
    _print_rows(rows, as_json, "tenants", ("tenant", "status", "created_at", "tenant_url", "retention_days",
                                           "legal_hold"))


@tenant_app.command("disable")
def tenant_disable(name: str) -> None:
    """Disable a tenant: its credentials stop working at once; its data is kept."""
    _set_tenant_status(name, "disabled")


@tenant_app.command("enable")
def tenant_enable(name: str) -> None:
    """Re-enable a disabled tenant."""
    _set_tenant_status(name, "active")


@tenant_app.command("retention")
def tenant_retention(
    name: str,
    days: Annotated[int, typer.Option(help="Purge the tenant's tombstones this many days after their "
                                                 "DELETE (the service's hourly job); 0 keeps them forever.")],
) -> None:
    """Set how long a tenant's tombstones are kept (default: forever)."""
    _, db = _open()
    with _reported():
        TenantService(db).set_retention(name, days)
    typer.echo(f"Tenant '{name}': tombstones kept " + (f"{days} day(s)." if days else "forever."))


@tenant_app.command("hold")
def tenant_hold(
    name: str,
    on: Annotated[bool, typer.Option("--on/--off", help="Place or lift the legal hold.")],
) -> None:
    """Legal hold: while on, nothing of the tenant is purged, by the retention job or by hand."""
    _, db = _open()
    with _reported():
        TenantService(db).set_legal_hold(name, on)
    typer.echo(f"Tenant '{name}': legal hold {'on' if on else 'off'}.")


def _set_tenant_status(name: str, status: str) -> None:
    _, db = _open()
    with _reported():
        TenantService(db).set_status(name, status)
    typer.echo(f"Tenant '{name}' {'enabled' if status == 'active' else 'disabled'}.")


@token_app.command("create")
def token_create(
    tenant: TenantOption,
    as_json: JsonFlag = False,
    expires_in_days: Annotated[int | None, typer.Option(help="Expire the token after this many days.")] = None,
    confirm_url: ConfirmUrlFlag = False,
) -> None:
    """Issue a new bearer token (shown once). Old tokens keep working until revoked."""
    settings, db = _open()
    _require_public_url(settings, confirm_url)
    with _reported():
        issued = TenantService(db).create_token(tenant, expires_in_days)
    _print_issued(settings, issued, as_json)


@token_app.command("list")
def token_list(tenant: TenantOption, as_json: JsonFlag = False) -> None:
    """List a tenant's tokens (ids and dates only: tokens are never stored)."""
    _, db = _open()
    with _reported():
        rows = TenantService(db).list_tokens(tenant)
    rows = [{"token_id": r["id"], "created_at": r["created_at"], "expires_at": r["expires_at"],
             "last_used_at": r["last_used_at"], "revoked_at": r["revoked_at"]} for r in rows]
    _print_rows(rows, as_json, "tokens", ("token_id", "created_at", "expires_at", "last_used_at", "revoked_at"))


@token_app.command("revoke")
def token_revoke(token_id: str, tenant: TenantOption) -> None:
    """Revoke a token by its id; requests with it fail from now on."""
    _, db = _open()
    with _reported():
        TenantService(db).revoke_token(tenant, token_id)
    typer.echo(f"Token {token_id} revoked.")


@tombstone_app.command("list")
def tombstones_list(
    tenant: Annotated[str | None, typer.Option(help="Only this tenant.")] = None,
    older_than_days: Annotated[int | None, typer.Option(help="Only those deleted more than N days ago.")] = None,
    as_json: JsonFlag = False,
) -> None:
    """List deleted resources kept as tombstones."""
    _, db = _open()
    cutoff = ago_text(timedelta(days=older_than_days)) if older_than_days is not None else None
    with _reported():
        rows = TombstoneService(db).list(tenant, cutoff)
    _print_rows(rows, as_json, "tombstones", ("tenant", "type", "id", "name", "deleted_at"))


@tombstone_app.command("purge")
def tombstones_purge(
    older_than_days: Annotated[int, typer.Option(help="Retention: purge tombstones deleted more than N days ago.")],
    tenant: Annotated[str | None, typer.Option(help="Only this tenant.")] = None,
    yes: Annotated[bool, typer.Option("--yes", help="Really destroy them (required).")] = False,
    as_json: JsonFlag = False,
) -> None:
    """Destroy tombstones older than the retention period. Irreversible; needs --yes."""
    if older_than_days < 0:
        _fail("--older-than-days must be 0 or more.")
    _, db = _open()
    cutoff = ago_text(timedelta(days=older_than_days))
    service = TombstoneService(db)
    with _reported():
        if not yes:
            count = len(service.list(tenant, cutoff))
            _fail(f"{count} tombstone(s) would be purged; add --yes to purge them.")
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
    _, db = _open()
    with _reported(ValueError):
        # Events carry microseconds: `…T00:00:00Z` must mean the start of that second, not after it.
        cutoff = format_timestamp(parse_timestamp(since)) if since is not None else None
        rows = AuditService(db).list(tenant, cutoff, resource, limit, after)
    if not as_json:
        rows = [{**row, "attributes": ", ".join(row["attributes"])} for row in rows]
    _print_rows(rows, as_json, "events",
                ("seq", "at", "tenant", "actor", "action", "type", "id", "version", "attributes"))


def _print_rows(rows: list[dict[str, Any]], as_json: bool, key: str, columns: tuple[str, ...]) -> None:
    if as_json:
        typer.echo(json.dumps({key: rows}))
        return
    if not rows:
        typer.echo(f"No {key}.")
        return
    widths = {c: max(len(c), *(len(str(r.get(c) or "-")) for r in rows)) for c in columns}
    typer.echo("  ".join(c.ljust(widths[c]) for c in columns))
    for row in rows:
        typer.echo("  ".join(str(row.get(c) or "-").ljust(widths[c]) for c in columns))


def main() -> None:
    app(prog_name="identity-sync")


if __name__ == "__main__":
    sys.exit(main())
