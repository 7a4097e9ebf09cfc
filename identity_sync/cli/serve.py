"""``identity-sync serve`` and ``migrate``: run the SCIM service (one process or ``--workers N``)
and create or upgrade the database. Registered on the main command by ``cli/__init__.py``; a
public interface like the rest of the CLI."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any

import typer

from identity_sync.auth.oauth import SigningKeyError, signing_keys_for
from identity_sync.cli._common import (
    fail,
    load_settings,
    loopback_deployment,
    open_database,
    print_issued,
    reported,
    safe_url,
)
from identity_sync.config import Settings
from identity_sync.service.tenants import TenantService
from identity_sync.storage.db import Database


def register(app: typer.Typer) -> None:
    app.command()(serve)
    app.command()(migrate)


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
    settings = load_settings()
    # What this serve listens on is what its first start's Tenant URL is made of.
    settings = settings.model_copy(update={"host": host or settings.host, "port": port or settings.port,
                                           "workers": workers})
    host, port = settings.host, settings.port
    settings, db = open_database(settings, create=True)  # the first serve creates the database (README's set-up)
    _share_the_interpreter(settings)
    with reported(SigningKeyError, OSError):
        signing_keys_for(settings, db).kids()  # a key that cannot be decrypted fails here, not per request
    if (ssl_certfile is None) != (ssl_keyfile is None):
        fail("--ssl-certfile and --ssl-keyfile go together.")
    # The default tenant's token is a never-expiring, full-scope secret: shown only to a person at
    # a terminal, never written into a pipe that journald or a container runtime keeps.
    interactive = sys.stdout.isatty()
    created, issued = TenantService(db).ensure_default_tenant(issue_token=interactive)
    scheme = "https" if ssl_certfile else "http"
    if issued is not None:
        typer.echo("First start: created the 'default' tenant.")
        if settings.public_url or loopback_deployment(settings):
            print_issued(settings, issued, False, settings.public_url or f"{scheme}://{host}:{port}")
        else:  # no Tenant URL to hand over made up from a listening address (require_public_url)
            print_issued(settings, issued, False, "<IDSYNC_PUBLIC_URL>")
            typer.echo("Set IDSYNC_PUBLIC_URL (public_url in the config file) to the URL customers reach: "
                       "the Tenant URL is <that URL>/scim/v2/default.")
    elif created:
        typer.echo("First start: created the 'default' tenant. Its token is not printed here (not a terminal); "
                   "issue one with: identity-sync token create --tenant default")
    typer.echo(f"Serving SCIM on {scheme}://{host}:{port}/scim/v2/<tenant> (database: {safe_url(db.url)})")
    # log_config None: uvicorn's loggers reach our JSON handler (logs.configure) instead of its own text ones.
    options: dict[str, Any] = {"host": host, "port": port, "access_log": False, "log_level": "warning",
                               "log_config": None, "backlog": 2048,
                               **proxy_options(forwarded_allow_ips or settings.forwarded_allow_ips)}
    if ssl_certfile:
        options.update(ssl_certfile=str(ssl_certfile), ssl_keyfile=str(ssl_keyfile))
    if engine:
        from identity_sync.cli.operations import engine_in_background

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
        # The in-process rate limiter gives each worker 1/N of the tenant's rate (Settings.workers,
        # auth/ratelimit.py): the workers read their settings from the environment they inherit.
        os.environ["IDSYNC_WORKERS"] = str(workers)
        with _metrics_directory():
            uvicorn.run("identity_sync.cli.serve:worker_app", factory=True, workers=workers, **options)
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


def migrate(
    recount: Annotated[bool, typer.Option(help="Also rebuild the kept resource counts from the rows: once every "
                                               "node runs this release, after a rolling upgrade from one before "
                                               "them.")] = False,
) -> None:
    """Create the database or apply pending migrations, and exit."""
    _, db = open_database(create=True)
    typer.echo(f"Database is up to date ({safe_url(db.url)}).")
    if recount:
        typer.echo(f"Recounted the live resources ({TenantService(db).recount_resources()} tenant/type counts).")


