"""The console's engine-job pages (docs/console.md): a job's state and progress, its provisioning
logs and an event's steps, quarantine and the restart options, test connection, on-demand
provisioning, preview, the mappings and scoping filters, export and import.

Every action goes through the engine's service layer, as the CLI's ``job …`` commands do
(engine/service.py, engine/jobs.py, engine/operations.py, engine/logs.py): nothing of the engine
is done again here. Actions are POSTs for admins only, with the session's CSRF token
(``Console.action``), and each is an audit event (type ``Job``, the job's id) with actor
``console:NAME``. Credentials never reach a page: the export is the mapping document only, as
``job export`` prints it.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote, urlencode

import anyio.to_thread
import structlog
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.routing import BaseRoute, Route

from identity_sync.console.audit import TimeError, parse_time
from identity_sync.console.auth import Session
from identity_sync.engine.client import ConnectionProblem
from identity_sync.engine.errors import CycleAborted
from identity_sync.engine.jobs import DEFAULT_RESETS, RESETS, Job, JobError
from identity_sync.engine.jsonfile import ConfigError
from identity_sync.engine.logs import (
    ACTIONS,
    STATUSES,
    LogFilter,
    event_summary,
    get_event,
    page_events,
    preview_action,
)
from identity_sync.engine.mapping.model import MappingConfig, read_mapping_text
from identity_sync.engine.quarantine import EXPLANATIONS
from identity_sync.engine.secrets import CredentialsError
from identity_sync.engine.service import EngineService
from identity_sync.engine.sources import SourceSpecError
from identity_sync.service.operators import Operator

log = structlog.get_logger("identity_sync.console")
PAGE_SIZE = 50
#: What each ``job restart --reset`` choice forgets (provisioning-engine.md §1.3), for the form.
RESET_HELP = {
    "watermark": "the source position: the next cycle is an initial one",
    "escrows": "failed objects' back-off: each is tried again at once",
    "quarantine": "the quarantine: the job is due now",
    "connector-data-store": "every link to a target object (objects are matched again)",
    "force-deletes": "let the next cycle delete past the deletion threshold, once",
}
#: The errors an engine action reports as one line (the CLI's ``_reported`` list).
ENGINE_ERRORS = (JobError, ConfigError, SourceSpecError, CredentialsError, CycleAborted, OSError)
FLOW = {"always": "always", "create": "only on create"}


class JobPages:
    def __init__(self, console: Any) -> None:
        self.c = console
        self.engine = EngineService(console.db, console.settings)

    # -- pages -------------------------------------------------------------------------------

    async def job(self, request: Request, session: Session, operator: Operator) -> Response:
        name = request.path_params["name"]
        params = request.query_params
        log_filter, error = log_filter_of(params)
        before = _int(params.get("before"))

        def read() -> dict[str, Any]:
            data = self.c.data.job(name)
            job = self.engine.jobs.get(name)
            events, older = page_events(self.c.db, job.id, log_filter, before=before, limit=PAGE_SIZE) \
                if error is None else ([], None)
            return {**data, "events": events, "mapping": mapping_view(job.mapping()),
                    "explanation": EXPLANATIONS.get((job.quarantine_data or {}).get("reason", ""), ""),
                    "older": None if older is None else _query(params, before=str(older)),
                    "newest": (_query(params, before=None) or "?") if before is not None else None}
        try:
            data = await anyio.to_thread.run_sync(read)
        except JobError:
            return self.c.not_found(request, session, operator)
        return self.c.render(request, "job.html", {
            **data, "filter": log_filter, "filter_error": error, "filter_values": dict(params),
            "actions": ACTIONS, "statuses": STATUSES, "resets": RESETS, "default_resets": DEFAULT_RESETS,
            "reset_help": RESET_HELP, "flow": FLOW}, 400 if error else 200, session, operator)

    async def event(self, request: Request, session: Session, operator: Operator) -> Response:
        name, event_id = request.path_params["name"], request.path_params["event"]

        def read() -> tuple[Job, dict[str, Any] | None]:
            job = self.engine.jobs.get(name)
            return job, get_event(self.c.db, job.id, event_id)
        try:
            job, event = await anyio.to_thread.run_sync(read)
        except JobError:
            return self.c.not_found(request, session, operator)
        if event is None:
            return self.c.not_found(request, session, operator)
        return self.c.render(request, "job_event.html", {"name": job.name, "event": event}, session=session,
                             operator=operator)

    async def progress(self, request: Request, session: Session, operator: Operator) -> Response:
        name = request.path_params["name"]

        def read() -> dict[str, Any]:
            return self.c.data.progress(self.c.data.jobs.get(name))
        try:
            return JSONResponse(await anyio.to_thread.run_sync(read), headers={"Cache-Control": "no-store"})
        except JobError:
            return JSONResponse({"error": "no such job"}, status_code=404)

    async def export(self, request: Request, session: Session, operator: Operator) -> Response:
        """``job export``: the mapping document, as a download (no credentials are in it)."""
        name = request.path_params["name"]
        try:
            job = await anyio.to_thread.run_sync(self.engine.jobs.get, name)
        except JobError:
            return self.c.not_found(request, session, operator)
        await self._audit(operator, "export", job)
        return Response(job.export_text() + "\n", media_type="application/json", headers={
            "Content-Disposition": f'attachment; filename="{job.name}-mapping.json"'})

    # -- actions (admins) --------------------------------------------------------------------

    async def pause_or_start(self, request: Request, session: Session, operator: Operator) -> Response:
        name, verb = request.path_params["name"], request.path_params["verb"]
        if verb not in ("pause", "start"):
            return self.c.not_found(request, session, operator)

        def act() -> Job:
            if verb == "pause":
                return self.engine.operations.pause(name)
            return self.engine.operations.start(name, datetime.now(UTC))
        try:
            job = await anyio.to_thread.run_sync(act)
        except JobError:
            return self.c.not_found(request, session, operator)
        await self._audit(operator, verb, job)
        return self._back(request, name)

    async def restart(self, request: Request, session: Session, operator: Operator) -> Response:
        """``job restart --reset …``: the checked choices (none checked: refused, nothing done)."""
        name, form = request.path_params["name"], request.state.form
        resets = frozenset(r for r in RESETS if form.get(f"reset-{r}") == "on")
        if not resets:
            return await self._result(request, session, operator, name, "Restart", 400,
                                      error="Choose at least one thing to reset.")
        try:
            done = await anyio.to_thread.run_sync(self.engine.jobs.restart, name, resets)
            job = await anyio.to_thread.run_sync(self.engine.jobs.get, name)
        except JobError:
            return self.c.not_found(request, session, operator)
        await self._audit(operator, "restart", job, list(done["reset"]))
        return self._back(request, name)

    async def test_connection(self, request: Request, session: Session, operator: Operator) -> Response:
        """``job test-connection``: ok, or the reason the target gave (its kind: unauthorized, …)."""
        name = request.path_params["name"]
        job = await self._job(name)
        if job is None:
            return self.c.not_found(request, session, operator)
        try:
            await anyio.to_thread.run_sync(self.engine.test_connection, name)
        except ConnectionProblem as exc:
            await self._audit(operator, "test-connection", job, [exc.kind])
            return await self._result(request, session, operator, name, "Test connection", 200,
                                      error=f"test connection failed: {exc}", kind=exc.kind)
        except ENGINE_ERRORS as exc:
            await self._audit(operator, "test-connection", job, ["error"])
            return await self._result(request, session, operator, name, "Test connection", 200, error=str(exc))
        await self._audit(operator, "test-connection", job, ["ok"])
        return await self._result(request, session, operator, name, "Test connection", 200,
                                  ok="The target answered like a SCIM service, and the credentials were accepted.")

    async def provision(self, request: Request, session: Session, operator: Operator) -> Response:
        """``job provision --object ANCHOR``: one object now, with every step of its events."""
        name, anchor = request.path_params["name"], request.state.form.get("object", "").strip()
        job = await self._job(name)
        if job is None:
            return self.c.not_found(request, session, operator)
        if not anchor:
            return await self._result(request, session, operator, name, "Provision on demand", 400,
                                      error="Give the source id (anchor) of one user or group.")
        try:
            result = await anyio.to_thread.run_sync(self.engine.provision, name, anchor)
        except ENGINE_ERRORS as exc:
            await self._audit(operator, "provision", job, ["error"])
            return await self._result(request, session, operator, name, "Provision on demand", 200, error=str(exc),
                                      anchor=anchor)
        events = [event_summary(e) for e in result.events]
        await self._audit(operator, "provision", job, sorted({e["provisioningStatusInfo"]["status"] for e in events}))
        return await self._result(request, session, operator, name, "Provision on demand", 200, events=events,
                                  anchor=anchor, cycle=result.cycle_id)

    async def preview(self, request: Request, session: Session, operator: Operator) -> Response:
        """``job preview``: every action the next cycle would take; writes nothing anywhere."""
        name = request.path_params["name"]
        job = await self._job(name)
        if job is None:
            return self.c.not_found(request, session, operator)
        try:
            result = await anyio.to_thread.run_sync(lambda: self.engine.preview(name))
        except ENGINE_ERRORS as exc:
            await self._audit(operator, "preview", job, ["error"])
            return await self._result(request, session, operator, name, "Preview", 200, error=str(exc))
        await self._audit(operator, "preview", job)
        return await self._result(request, session, operator, name, "Preview", 200,
                                  actions=[preview_action(e) for e in result.events],
                                  counts=result.as_dict(name))

    async def import_mapping(self, request: Request, session: Session, operator: Operator) -> Response:
        """``job import``: the same document ``job export`` writes, validated the same way; a
        document that does not validate changes nothing and its one-line error is shown."""
        name, text = request.path_params["name"], request.state.form.get("mapping", "")
        job = await self._job(name)
        if job is None:
            return self.c.not_found(request, session, operator)

        def act() -> Job:
            return self.engine.jobs.import_mapping(name, read_mapping_text(text, "import"))
        try:
            job = await anyio.to_thread.run_sync(act)
        except (ConfigError, JobError) as exc:
            await self._audit(operator, "import", job, ["refused"])
            return await self._result(request, session, operator, name, "Import mappings", 400, error=str(exc),
                                      document=text)
        await self._audit(operator, "import", job)
        return self._back(request, name)

    # -- plumbing ----------------------------------------------------------------------------

    async def _job(self, name: str) -> Job | None:
        try:
            return await anyio.to_thread.run_sync(self.engine.jobs.get, name)
        except JobError:
            return None

    async def _result(self, request: Request, session: Session, operator: Operator, name: str, title: str,
                      status: int, **context: Any) -> Response:
        values = {"error": None, "ok": None, "events": None, "actions": None, "counts": None, "anchor": None,
                  "cycle": None, "kind": None, "document": None, **context}
        return self.c.render(request, "job_result.html", {"name": name, "title": title, **values}, status,
                             session, operator)

    async def _audit(self, operator: Operator, action: str, job: Job, attributes: list[str] | None = None) -> None:
        await self.c.audit(f"console:{operator.name}", action, "Job", job.id, attributes)
        log.info("console.job_action", operator=operator.name, job=job.name, action=action)

    def _back(self, request: Request, name: str) -> Response:
        return RedirectResponse(f"{request.scope.get('root_path', '')}/jobs/{quote(name)}", 303)


def log_filter_of(params: Any) -> tuple[LogFilter, str | None]:
    """The logs filter of the job page's query string, or the one-line error of a bad value."""
    def text(key: str) -> str | None:
        value = str(params.get(key, "")).strip()
        return value or None
    try:
        log_filter = LogFilter(cycle=text("cycle"), status=text("status"), action=text("action"),
                               object_id=text("object"), since=parse_time(text("since"), "since"),
                               until=parse_time(text("until"), "until"))
        log_filter.check()
    except (TimeError, ValueError) as exc:
        return LogFilter(), str(exc)
    return log_filter, None


def mapping_view(config: MappingConfig) -> list[dict[str, Any]]:
    """The read-only tables of the job page: per object type, each target attribute with where its
    value comes from, its type, matching precedence and when it applies; the scoping filters."""
    tables = []
    for mapping, label in ((config.users, "Users"), (config.groups, "Groups")):
        rows = [{"target": m.target, "kind": m.kind,
                 "from": m.expression.text if m.expression is not None
                 else repr(m.constant) if m.constant is not None else m.source,
                 "default": m.default, "type": m.type + ("[]" if m.multi_valued else ""),
                 "matching": m.matching, "flow": m.flow} for m in mapping.mappings]
        scoping = [{"title": f.title, "clauses": [c.to_json() for c in f.clauses]} for f in mapping.scoping]
        tables.append({"label": label, "enabled": mapping.enabled, "actions": sorted(mapping.actions),
                       "rows": rows, "scoping": scoping})
    return tables


def _int(value: str | None) -> int | None:
    return int(value) if value and value.isdigit() else None


def _query(params: Any, **changes: str | None) -> str:
    """The page's query string with ``changes`` (``None`` removes a key)."""
    values = {k: v for k, v in params.items() if v}
    for key, value in changes.items():
        if value is None:
            values.pop(key, None)
        else:
            values[key] = value
    return "?" + urlencode(values) if values else ""


def routes(console: Any) -> list[BaseRoute]:
    c, pages = console, JobPages(console)
    action: Callable[..., Any] = c.action
    return [
        Route("/jobs/{name}", c.page(pages.job), methods=["GET"]),
        Route("/jobs/{name}/progress", c.page(pages.progress, touch=False), methods=["GET"]),
        Route("/jobs/{name}/events/{event:int}", c.page(pages.event), methods=["GET"]),
        Route("/jobs/{name}/export", c.page(pages.export), methods=["GET"]),
        Route("/jobs/{name}/restart", action(pages.restart), methods=["POST"]),
        Route("/jobs/{name}/test-connection", action(pages.test_connection), methods=["POST"]),
        Route("/jobs/{name}/provision", action(pages.provision), methods=["POST"]),
        Route("/jobs/{name}/preview", action(pages.preview), methods=["POST"]),
        Route("/jobs/{name}/import", action(pages.import_mapping), methods=["POST"]),
        Route("/jobs/{name}/{verb:str}", action(pages.pause_or_start), methods=["POST"]),
    ]
