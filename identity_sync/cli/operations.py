"""``identity-sync engine`` and ``job start|pause|history``: running jobs unattended (issue 13).
Their options and ``--json`` keys are a public interface, like the rest of ``job …``."""

from __future__ import annotations

import json
import signal
import threading
from datetime import UTC, datetime
from typing import Annotated, Any

import typer

from identity_sync.cli._common import JsonFlag, fail
from identity_sync.cli.jobs import _open, _reported
from identity_sync.config import Settings


def register(app: typer.Typer, job_app: typer.Typer) -> None:
    app.command("engine")(engine)
    job_app.command("start")(job_start)
    job_app.command("pause")(job_pause)
    job_app.command("history")(job_history)


def engine(
    workers: Annotated[int, typer.Option(min=1, max=64, help="Jobs whose cycles run at the same time.")] = 4,
    poll: Annotated[float, typer.Option(min=0.1, help="Seconds between looks for due jobs.")] = 5.0,
) -> None:
    """Run every job that is on, each on its own interval, until SIGTERM or Ctrl-C (a running
    cycle then stops at an object boundary and resumes next time)."""
    from identity_sync.engine.scheduler import EngineAlreadyRunning, Scheduler

    service = _open()
    scheduler = Scheduler(service, workers=workers, poll_seconds=poll)

    def stop(signum: int, _frame: Any) -> None:
        typer.echo(f"Stopping ({signal.Signals(signum).name}): running cycles stop at the next object.", err=True)
        scheduler.stop()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    typer.echo(f"Engine running {len(service.jobs.list())} job(s), {workers} at a time.", err=True)
    try:
        scheduler.run_forever()
    except EngineAlreadyRunning as exc:
        fail(str(exc))
    typer.echo(f"Engine stopped after {scheduler.cycles_run} cycle(s).", err=True)


def engine_in_background(settings: Settings) -> None:
    """``serve --engine``: the scheduler in a thread of the service's process, with a database
    pool of its own, stopped gracefully with the service (SIGTERM, Ctrl-C)."""
    from identity_sync.engine.scheduler import EngineAlreadyRunning, Scheduler
    from identity_sync.engine.service import EngineService
    from identity_sync.storage.db import Database

    db = Database(settings.resolved_database_url())
    scheduler = Scheduler(EngineService(db, settings))

    def run() -> None:
        try:
            scheduler.run_forever()
        except EngineAlreadyRunning as exc:
            typer.echo(f"error: {exc}; this service runs no engine", err=True)

    thread = threading.Thread(target=run, name="engine-scheduler", daemon=True)
    thread.start()

    def stop(signum: int, _frame: Any) -> None:
        # uvicorn shuts the server down, then raises the signal again with the handler that was
        # there before it (this one): the engine stops too (cycles at an object boundary, resumed
        # next time), then the process ends by the signal, as uvicorn means it to.
        scheduler.stop()
        thread.join()
        db.dispose()
        typer.echo("Provisioning engine stopped.", err=True)
        signal.signal(signum, signal.SIG_DFL)
        signal.raise_signal(signum)

    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, stop)


def job_start(name: str, as_json: JsonFlag = False) -> None:
    """Turn a job on (again): due at once; a quarantine or a disabled state ends."""
    service = _open()
    with _reported():
        job = service.operations.start(name, datetime.now(UTC))
    _echo(job.describe(), as_json, f"Job '{name}' started; its next cycle runs as soon as an engine is running.")


def job_pause(name: str, as_json: JsonFlag = False) -> None:
    """Stop scheduling a job; a running cycle finishes (job start resumes where it left off)."""
    service = _open()
    with _reported():
        job = service.operations.pause(name)
    _echo(job.describe(), as_json, f"Job '{name}' paused.")


def job_history(name: str, limit: Annotated[int, typer.Option(min=1, max=10_000)] = 20,
                as_json: JsonFlag = False) -> None:
    """Every cycle's record, newest first: kind, began, ended, imported, exported, escrowed, state."""
    service = _open()
    with _reported():
        history = service.operations.history(service.jobs.get(name), limit)
    if as_json:
        typer.echo(json.dumps({"job": name, "cycles": history}))
        return
    if not history:
        typer.echo(f"Job '{name}' has run no cycle yet.")
    for cycle in history:
        typer.echo(f"{cycle['began']}  {cycle['kind']:<11} {cycle['state']:<9} imported {cycle['imported'] or 0:>7}"
                   f"  exported {cycle['exported']:>6}  escrowed {cycle['escrowed']:>5}"
                   + (f"  {cycle['error']}" if cycle["error"] else ""))


def _echo(data: dict[str, Any], as_json: bool, message: str) -> None:
    if as_json:
        typer.echo(json.dumps(data))
    else:
        typer.echo(f"{message} State: {data['state']}.")
