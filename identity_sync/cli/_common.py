"""What every ``identity-sync`` command shares: the configuration and the database (``open_database``),
the ``error:`` line and exit code 1 (``fail``, ``reported``), Tenant URLs, and the text or ``--json``
output. It imports no other module of the CLI, so every command module can import it without a cycle.

Every command reads the database from ``IDSYNC_DATABASE_URL`` or the config file (see ``config.py``)
and applies pending migrations first. Only ``migrate`` and ``serve`` create a database: the others
refuse to run on none (``open_database``).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any

import typer
from sqlalchemy.exc import SQLAlchemyError

from identity_sync.config import ConfigFileError, Settings, config_file_path, set_in_environment
from identity_sync.service.tenants import IssuedToken, TenantError
from identity_sync.storage.db import Database, sqlite_file
from identity_sync.storage.errors import DatabaseUnavailable

JsonFlag = Annotated[bool, typer.Option("--json", help="Print one JSON object instead of text.")]
TenantOption = Annotated[str, typer.Option("--tenant", help="The tenant's name.")]


def open_database(settings: Settings | None = None, *, create: bool = False) -> tuple[Settings, Database]:
    """The configured database, migrated to the newest schema. Only ``migrate`` and ``serve``
    (``create=True``) may create it: any other command that finds no database (no SQLite file, or
    a database without our schema) stops, since it was most likely run with another configuration
    than the service's (another shell, another user) and would otherwise work on a new empty one."""
    from identity_sync import logs

    settings = settings or load_settings()
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
        except (DatabaseUnavailable, SQLAlchemyError) as exc:  # unreachable, or not a database at all
            reason = str(getattr(exc, "orig", None) or exc).strip().splitlines()
            fail(f"cannot open the database {safe_url(url)}: {reason[0] if reason else type(exc).__name__}")
        if not migrated:
            db.dispose()
            _no_database(url)
    db.migrate()
    return settings, db


def _no_database(url: str) -> None:
    source = config_file_path()
    where = f"IDSYNC_DATABASE_URL or database_url in {source}" if source else "IDSYNC_DATABASE_URL (or IDSYNC_CONFIG)"
    fail(f"no identity-sync database at {safe_url(url)}: create it with 'identity-sync migrate', "
          f"or check {where}")


def load_settings() -> Settings:
    """The configuration (IDSYNC_* variables over the config file); a bad value is one ``error:``
    line naming the variable, and the config file's key when the value came from there."""
    from pydantic import ValidationError

    try:
        return Settings()
    except ConfigFileError as exc:
        fail(str(exc))
        raise  # not reached: fail exits
    except ValidationError as exc:
        path = config_file_path()
        problems = "; ".join(_problem(e["loc"], e["msg"], path) for e in exc.errors())
        fail(f"invalid configuration: {problems}")
        raise  # not reached: fail exits


def _problem(loc: tuple[int | str, ...], message: str, config_file: Path | None) -> str:
    if not loc:
        return message
    key = "_".join(str(part) for part in loc)
    variable = f"IDSYNC_{key.upper()}"
    if not set_in_environment(variable) and config_file is not None:
        return f"{key} in {config_file}: {message}"
    return f"{variable}: {message}"


ConfirmUrlFlag = Annotated[bool, typer.Option(
    "--confirm-url", help="Print Tenant URLs made of the host and port (http://HOST:PORT) although "
                          "IDSYNC_PUBLIC_URL is unset on a non-loopback deployment.")]


def tenant_url(settings: Settings, tenant: str, base: str | None = None) -> str:
    base = base or settings.public_url or default_base(settings)
    return f"{base.rstrip('/')}/scim/v2/{tenant}"


def default_base(settings: Settings) -> str:
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


def require_public_url(settings: Settings, confirmed: bool) -> None:
    """Refuse to print a Tenant URL made up of the host and port when customers reach the service
    by another name: handed to a customer, ``http://127.0.0.1:8000/…`` fails only at their end.
    Called before anything is created, so that a refused command has changed nothing."""
    if settings.public_url or confirmed or loopback_deployment(settings):
        return
    fail(f"IDSYNC_PUBLIC_URL is not set and this is not a loopback deployment (host {settings.host}, database "
          f"{safe_url(settings.resolved_database_url())}): set IDSYNC_PUBLIC_URL (public_url in the config file) to "
          f"the URL customers reach, or pass --confirm-url to print {default_base(settings)}/scim/v2/<tenant>")


def fail(message: str) -> None:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(code=1)


@contextmanager
def reported(*errors: type[Exception]) -> Iterator[None]:
    """An operator's mistake (unknown tenant, bad option value, …) becomes one ``error: …`` line on
    stderr and exit code 1, never a traceback."""
    handled: tuple[type[Exception], ...] = (TenantError, *errors)
    try:
        yield
    except handled as exc:
        fail(str(exc))


def print_issued(settings: Settings, issued: IssuedToken, as_json: bool, base: str | None = None) -> None:
    url = tenant_url(settings, issued.tenant, base)
    if as_json:
        typer.echo(json.dumps({"tenant": issued.tenant, "tenant_url": url, "token": issued.token,
                               "token_id": issued.credential_id, "expires_at": issued.expires_at}))
        return
    typer.echo(f"Tenant:     {issued.tenant}")
    typer.echo(f"Tenant URL: {url}")
    typer.echo(f"Token:      {issued.token}")
    typer.echo(f"Token id:   {issued.credential_id}" + (f" (expires {issued.expires_at})" if issued.expires_at else ""))
    typer.echo("The token is shown only this once; store it in your identity provider now.")


def safe_url(url: str) -> str:
    """The database URL without its password."""
    from sqlalchemy.engine import make_url

    return make_url(url).render_as_string(hide_password=True)



def print_rows(rows: list[dict[str, Any]], as_json: bool, key: str, columns: tuple[str, ...]) -> None:
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

