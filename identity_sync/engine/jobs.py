"""Provisioning jobs: their configuration and its changes (what ``job create|set|show|delete|
restart|export|import`` touch). A job is one source, one SCIM target with its credentials, one
mapping document and a few settings; its state (watermark, links, cycles, logs) lives beside it.

Credentials are sealed before they reach the database (``engine/secrets.py``) and never come back
out of this module except to build the job's SCIM client.
"""

from __future__ import annotations

import builtins
import dataclasses
import json
import re
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import sqlalchemy as sa

from identity_sync.clock import now_text
from identity_sync.config import Settings
from identity_sync.engine import secrets
from identity_sync.engine.client import DIALECTS
from identity_sync.engine.escrow import Escrows
from identity_sync.engine.mapping.model import MappingConfig, default_mapping_document, load_mapping_document
from identity_sync.engine.mirror import SourceMirror, SourceView
from identity_sync.engine.nesting import NESTED_GROUPS
from identity_sync.engine.quarantine import Quarantine
from identity_sync.engine.sources import SourceSpecError, open_source
from identity_sync.engine.sources.base import SourceOptions
from identity_sync.engine.state import ConnectorStore
from identity_sync.engine.tables import (
    engine_cycles,
    engine_escrows,
    engine_events,
    engine_jobs,
    engine_links,
    engine_memberships,
    engine_source_objects,
)
from identity_sync.ids import new_id
from identity_sync.storage.db import Database

SCOPES = ("assigned", "all")
DEFAULT_INTERVAL = 40
#: ``deletion_threshold=OFF`` turns the guard off again.
OFF = -1
#: What ``job restart --reset`` accepts (provisioning-engine.md §1.3, Graph ``resetScope``).
RESETS = ("watermark", "escrows", "quarantine", "connector-data-store", "force-deletes")
#: Entra's "Restart provisioning" button: QuarantineState + Watermark + Escrows (§1.3).
DEFAULT_RESETS = frozenset({"watermark", "escrows", "quarantine"})
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
_EMAIL = re.compile(r"[^@\s]+@[^@\s]+\.[^@\s]+")


class JobError(Exception):
    """An operator's mistake about a job (unknown name, bad option); one line."""


def parse_resets(text: str | None) -> frozenset[str]:
    """``job restart --reset``: comma-separated names of :data:`RESETS`, or ``full`` (all of
    them); nothing is Entra's "Restart provisioning" (:data:`DEFAULT_RESETS`). Unknown names are
    refused by :meth:`JobService.restart`."""
    if text is None or not text.strip():
        return DEFAULT_RESETS
    if text.strip() == "full":
        return frozenset(RESETS)
    return frozenset(part.strip() for part in text.split(",") if part.strip())


@dataclass(frozen=True)
class Credentials:
    """The Entra "Admin Credentials": a Secret Token, or OAuth 2.0 client credentials."""

    token: str | None = field(default=None, repr=False)  # secrets never in a repr, a log or a traceback
    client_id: str | None = None
    client_secret: str | None = field(default=None, repr=False)
    token_endpoint: str | None = None

    def __post_init__(self) -> None:
        for label, secret in (("target token", self.token), ("client secret", self.client_secret),
                              ("client id", self.client_id)):
            if secret is not None and (not secret.strip() or any(c in secret for c in "\r\n\x00")):
                # Never quote it: the message may reach a terminal or a log.
                raise JobError(f"the {label} must be one non-empty line (is there a second line in its file?)")
        if self.token is not None:
            if any((self.client_id, self.client_secret, self.token_endpoint)):
                raise JobError("give a target token, or OAuth client credentials, not both")
            return
        if not (self.client_id and self.client_secret and self.token_endpoint):
            raise JobError("target credentials: --target-token(-file), or --client-id with --client-secret(-file) "
                           "and --token-endpoint")
        _check_url(self.token_endpoint, "--token-endpoint")

    @property
    def kind(self) -> str:
        return "token" if self.token is not None else "oauth"


@dataclass(frozen=True)
class Job:
    id: str
    name: str
    source: str
    target_url: str
    sealed_credentials: str
    settings: dict[str, Any]
    mapping_document: dict[str, Any]
    state: str
    watermark: str | None
    created_at: str
    updated_at: str
    lease_owner: str | None = None
    lease_expires_at: str | None = None
    next_run_at: str | None = None
    quarantine_data: dict[str, Any] | None = None
    failures_in_a_row: int = 0

    @property
    def running_by(self) -> str | None:
        """The process that runs a cycle of this job now (its lease has not expired), if any."""
        if self.lease_owner and self.lease_expires_at and self.lease_expires_at > now_text():
            return self.lease_owner
        return None

    @property
    def scope(self) -> str:
        return self.settings.get("scope", "assigned")

    @property
    def dialect(self) -> str:
        return self.settings.get("dialect", "entra")

    @property
    def notify(self) -> str | None:
        return self.settings.get("notify")

    @property
    def concurrency(self) -> int:
        return int(self.settings.get("concurrency", 8))

    @property
    def interval(self) -> int:
        """Minutes between cycles (Entra: about 40, not configurable; here per job)."""
        return int(self.settings.get("interval", DEFAULT_INTERVAL))

    @property
    def deletion_threshold(self) -> int | None:
        """Accidental-deletion prevention (§4.1): off (``None``) unless set, as in Entra."""
        value = self.settings.get("deletion_threshold")
        return None if value is None else int(value)

    @property
    def notify_on_failure(self) -> bool:
        return bool(self.settings.get("notify_on_failure", True))

    @property
    def quarantine(self) -> Quarantine | None:
        return Quarantine.from_dict(self.quarantine_data)

    @property
    def view(self) -> SourceView:
        """How the job looks at nested groups (engine/nesting.py)."""
        return _view(self.settings)

    def mapping(self) -> MappingConfig:
        return load_mapping_document(self.mapping_document, f"job {self.name} mapping")

    def export_text(self) -> str:
        """``job export``: the mapping document as JSON (what ``job import`` and ``--mapping`` read).
        Only the mapping: credentials and source secrets are not part of it."""
        return json.dumps(self.mapping_document, indent=2, ensure_ascii=False)

    def describe(self) -> dict[str, Any]:
        """What ``job show`` prints: everything but secrets."""
        return {"job": self.name, "id": self.id, "source": self.source, "target_url": self.target_url,
                "auth": self.settings.get("auth"), "client_id": self.settings.get("client_id"),
                "token_endpoint": self.settings.get("token_endpoint"),
                "credentials_sealed_with": secrets.sealed_with(self.sealed_credentials),
                "scope": self.scope, "dialect": self.dialect, "notify": self.notify,
                "concurrency": self.concurrency, "nested_groups": self.settings.get("nested_groups", "direct"),
                "nested_scope": bool(self.settings.get("nested_scope")),
                "source_options": dict(self.settings.get("source") or {}), "state": self.state,
                "quarantine": self.quarantine_data, "next_run_at": self.next_run_at, "interval": self.interval,
                "deletion_threshold": self.deletion_threshold, "notify_on_failure": self.notify_on_failure,
                "next_cycle": "incremental" if self.watermark else "initial", "running_by": self.running_by,
                "created_at": self.created_at, "updated_at": self.updated_at}


class JobService:
    def __init__(self, db: Database, settings: Settings) -> None:
        self.db = db
        self.settings = settings

    def create(self, name: str, *, source: str, target_url: str, credentials: Credentials,
               mapping: dict[str, Any] | None = None, scope: str = "assigned", dialect: str = "entra",
               notify: str | None = None, concurrency: int = 8, source_options: SourceOptions | None = None,
               nested_groups: str | None = None, nested_scope: bool | None = None, interval: int | None = None,
               deletion_threshold: int | None = None, notify_on_failure: bool | None = None) -> Job:
        if not _NAME.fullmatch(name):
            raise JobError(f"job name {name!r}: 1-64 letters, digits, '.', '_' or '-', starting with a letter or digit")
        if self._find(name) is not None:
            raise JobError(f"job '{name}' already exists")
        options = self._options(source=source, target_url=target_url, scope=scope, dialect=dialect, notify=notify,
                                concurrency=concurrency, source_options=source_options or SourceOptions(),
                                nested_groups=nested_groups, nested_scope=nested_scope, interval=interval,
                                deletion_threshold=deletion_threshold, notify_on_failure=notify_on_failure)
        document = mapping if mapping is not None else default_mapping_document()
        load_mapping_document(document)  # validated before anything is stored
        job_id, now = new_id(), now_text()
        settings = {**options["settings"], **_credential_settings(credentials)}
        sealed = {**_secret_part(credentials), **_source_secrets(source_options or SourceOptions())}
        with self.db.write() as conn:
            conn.execute(sa.insert(engine_jobs).values(
                id=job_id, name=name, source=source, target_url=target_url,
                credentials=secrets.seal(self.settings, job_id, sealed), settings=settings,
                mapping=document, state="active", watermark=None, created_at=now, updated_at=now))
        return self.get(name)

    def update(self, name: str, *, source: str | None = None, target_url: str | None = None,
               credentials: Credentials | None = None, mapping: dict[str, Any] | None = None,
               scope: str | None = None, dialect: str | None = None, notify: str | None = None,
               concurrency: int | None = None, source_options: SourceOptions | None = None,
               nested_groups: str | None = None, nested_scope: bool | None = None, interval: int | None = None,
               deletion_threshold: int | None = None, notify_on_failure: bool | None = None) -> Job:
        """``job set``: changes what is given. A new mapping, scope or source makes the next cycle
        an initial one (§1.2: configuration changes re-evaluate every object)."""
        job = self.get(name)
        settings = dict(job.settings)
        options = self._options(source=source if source is not None or source_options is None else job.source,
                                target_url=target_url, scope=scope, dialect=dialect, notify=notify,
                                concurrency=concurrency, source_options=source_options,
                                nested_groups=nested_groups, nested_scope=nested_scope, interval=interval,
                                deletion_threshold=deletion_threshold, notify_on_failure=notify_on_failure,
                                stored=self.source_options(job) if source is not None and source_options is None
                                else None)
        view = job.view
        settings.update(options["settings"])
        values: dict[str, Any] = {"updated_at": now_text()}
        if source is not None:
            values["source"] = source
        if target_url is not None:
            values["target_url"] = target_url
        if credentials is not None or source_options is not None:
            sealed = secrets.unseal(self.settings, job.id, job.sealed_credentials)
            if credentials is not None:
                for key in ("auth", "client_id", "token_endpoint"):
                    settings.pop(key, None)
                settings.update(_credential_settings(credentials))
                sealed = {**{k: v for k, v in sealed.items() if k == "source"}, **_secret_part(credentials)}
            if source_options is not None:
                sealed = {**{k: v for k, v in sealed.items() if k != "source"}, **_source_secrets(source_options)}
            values["credentials"] = secrets.seal(self.settings, job.id, sealed)
        if mapping is not None:
            load_mapping_document(mapping)
            values["mapping"] = mapping
        new_target = target_url is not None and target_url != job.target_url
        if (mapping is not None or (scope is not None and scope != job.scope) or (source not in (None, job.source))
                or source_options is not None or new_target or _view(settings) != view):
            values["watermark"] = None
        values["settings"] = settings
        with self.db.write() as conn:
            conn.execute(sa.update(engine_jobs).where(engine_jobs.c.id == job.id).values(**values))
            if new_target:
                # Links name objects of the old target: against a new one, everything is matched again.
                ConnectorStore(self.db, job.id).clear(conn)
            if values.get("watermark", job.watermark) is None:
                # Everything is evaluated again, from a complete read (the attributes a source must
                # fetch may have changed with the mapping).
                SourceMirror(self.db, job.id).clear(conn)
        return self.get(name)

    def get(self, name: str) -> Job:
        job = self._find(name)
        if job is None:
            known = ", ".join(j.name for j in self.list()) or "none"
            raise JobError(f"no job named '{name}' (jobs: {known})")
        return job

    def list(self) -> list[Job]:
        with self.db.read() as conn:
            return [_job(row) for row in conn.execute(sa.select(engine_jobs).order_by(engine_jobs.c.name))]

    def delete(self, name: str) -> None:
        """Stop managing the target: the job and all its state go; the target's objects stay."""
        job = self.get(name)
        with self.db.write() as conn:
            for table in (engine_events, engine_links, engine_memberships, engine_cycles, engine_source_objects,
                          engine_escrows):
                conn.execute(sa.delete(table).where(table.c.job_id == job.id))
            conn.execute(sa.delete(engine_jobs).where(engine_jobs.c.id == job.id))

    def credentials(self, job: Job) -> Credentials:
        data = secrets.unseal(self.settings, job.id, job.sealed_credentials)
        if job.settings.get("auth") == "oauth":
            return Credentials(client_id=job.settings.get("client_id"), client_secret=data["client_secret"],
                               token_endpoint=job.settings.get("token_endpoint"))
        return Credentials(token=data["token"])

    def source_options(self, job: Job) -> SourceOptions:
        """The job's source settings with its secrets unsealed, Graph's URLs from Settings and the
        source attributes the mapping uses (so a source can ask its server for no more)."""
        stored = dict(job.settings.get("source") or {})
        secret: dict[str, Any] = secrets.unseal(self.settings, job.id, job.sealed_credentials).get("source") or {}
        mapping = job.mapping()
        return SourceOptions(**stored, **secret, graph_url=self.settings.graph_url, login_url=self.settings.login_url,
                             user_attributes=mapping.users.source_attributes(),
                             group_attributes=mapping.groups.source_attributes())

    def restart(self, name: str, resets: frozenset[str] = DEFAULT_RESETS) -> dict[str, Any]:
        """``job restart``: forget what ``resets`` names (§1.3); returns what was done."""
        unknown = set(resets) - set(RESETS)
        if unknown:
            raise JobError(f"unknown reset {sorted(unknown)[0]!r} (choose from {', '.join(RESETS)} or full)")
        job = self.get(name)
        done: dict[str, Any] = {"job": name, "reset": sorted(resets)}
        with self.db.write() as conn:
            if "watermark" in resets or "connector-data-store" in resets:
                conn.execute(sa.update(engine_jobs).where(engine_jobs.c.id == job.id).values(
                    watermark=None, updated_at=now_text()))
                SourceMirror(self.db, job.id).clear(conn)  # the next read is a complete one
            if "connector-data-store" in resets:
                ConnectorStore(self.db, job.id).clear(conn)
            if "escrows" in resets:
                Escrows(self.db, job.id).clear(conn)  # every failed object is tried at once
            if "quarantine" in resets:
                conn.execute(sa.update(engine_jobs).where(engine_jobs.c.id == job.id).values(
                    state="paused" if job.state == "paused" else "active", quarantine=None, failures_in_a_row=0,
                    next_run_at=now_text()))
            if "force-deletes" in resets:
                # The next completed cycle may delete past the deletion guard (§4.1 "Allow deletes").
                conn.execute(sa.update(engine_jobs).where(engine_jobs.c.id == job.id).values(
                    settings={**job.settings, "force_deletes": True}))
        done["next_cycle"] = "initial" if resets & {"watermark", "connector-data-store"} else (
            "incremental" if job.watermark else "initial")
        return done

    def import_mapping(self, name: str, document: dict[str, Any]) -> Job:
        """``job import``: replace the job's mappings and scoping filters with a document already
        validated (mapping.model.read_mapping_file / read_mapping_text); the next cycle is initial."""
        return self.update(name, mapping=document)

    def cycles(self, job: Job, limit: int = 20) -> builtins.list[dict[str, Any]]:
        """The last cycles as ``job show`` prints them (counts flattened into each)."""
        return [{"cycle": r.id, "kind": r.kind, "state": r.state, "started_at": r.started_at,
                 "ended_at": r.ended_at, **r.counts, "error": r.error} for r in self.cycle_rows(job, limit)]

    def cycle_rows(self, job: Job, limit: int) -> builtins.list[Any]:  # list: the method of this class
        """The job's newest cycle rows (``engine_cycles``), newest first."""
        t = engine_cycles.c
        query = sa.select(engine_cycles).where(t.job_id == job.id).order_by(t.started_at.desc()).limit(limit)
        with self.db.read() as conn:
            return list(conn.execute(query))

    def _find(self, name: str) -> Job | None:
        with self.db.read() as conn:
            row = conn.execute(sa.select(engine_jobs).where(engine_jobs.c.name == name)).first()
        return None if row is None else _job(row)

    def _options(self, *, source: str | None, target_url: str | None, scope: str | None, dialect: str | None,
                 notify: str | None, concurrency: int | None,
                 source_options: SourceOptions | None = None, nested_groups: str | None = None,
                 nested_scope: bool | None = None, interval: int | None = None,
                 deletion_threshold: int | None = None, notify_on_failure: bool | None = None,
                 stored: SourceOptions | None = None) -> dict[str, Any]:
        settings: dict[str, Any] = {}
        if interval is not None:
            if not 1 <= interval <= 10_080:
                raise JobError("--interval must be between 1 and 10080 minutes (a week)")
            settings["interval"] = interval
        if deletion_threshold is not None:
            if deletion_threshold < 0 and deletion_threshold != OFF:
                raise JobError("--deletion-threshold must be 0 or more (off: --deletion-threshold off)")
            # -1 is how "off" travels from the command line: the guard is opt-in, as in Entra.
            settings["deletion_threshold"] = None if deletion_threshold == OFF else deletion_threshold
        if notify_on_failure is not None:
            settings["notify_on_failure"] = notify_on_failure
        if nested_groups is not None:
            if nested_groups not in NESTED_GROUPS:
                raise JobError(f"--nested-groups must be one of {', '.join(NESTED_GROUPS)}")
            settings["nested_groups"] = nested_groups
        if nested_scope is not None:
            settings["nested_scope"] = nested_scope
        if source is not None:
            try:
                # A bad source specification fails here, not at the first cycle.
                open_source(source, source_options or stored)
            except SourceSpecError as exc:
                raise JobError(str(exc)) from None
        if source_options is not None:
            settings["source"] = _source_settings(source_options)
        if target_url is not None:
            _check_url(target_url, "--target-url")
        if scope is not None:
            if scope not in SCOPES:
                raise JobError(f"--scope must be one of {', '.join(SCOPES)}")
            settings["scope"] = scope
        if dialect is not None:
            if dialect not in DIALECTS:
                raise JobError(f"--dialect must be one of {', '.join(DIALECTS)}")
            settings["dialect"] = dialect
        if notify is not None:
            if notify and not _EMAIL.fullmatch(notify):
                raise JobError(f"--notify {notify!r} is not an e-mail address")
            settings["notify"] = notify or None
        if concurrency is not None:
            if not 1 <= concurrency <= 64:
                raise JobError("--concurrency must be between 1 and 64")
            settings["concurrency"] = concurrency
        return {"settings": settings}


def _check_url(url: str, option: str) -> None:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise JobError(f"{option} must be an http(s) URL, got {url!r}")
    if parts.username or parts.password:
        raise JobError(f"{option} must not carry credentials in the URL")


def _credential_settings(credentials: Credentials) -> dict[str, Any]:
    if credentials.kind == "token":
        return {"auth": "token"}
    return {"auth": "oauth", "client_id": credentials.client_id, "token_endpoint": credentials.token_endpoint}


def _secret_part(credentials: Credentials) -> dict[str, str]:
    if credentials.kind == "token":
        assert credentials.token is not None
        return {"token": credentials.token}
    assert credentials.client_secret is not None
    return {"client_secret": credentials.client_secret}


#: SourceOptions fields sealed with the credentials; the others are plain job settings. Graph's URLs
#: and the attribute lists are not stored: they come from Settings and the mapping at each cycle.
_SOURCE_SECRETS = ("password", "client_secret", "certificate_pem", "token")
_SOURCE_NOT_STORED = ("graph_url", "login_url", "user_attributes", "group_attributes")


def _source_settings(options: SourceOptions) -> dict[str, Any]:
    return {f.name: getattr(options, f.name) for f in dataclasses.fields(options)
            if f.name not in _SOURCE_SECRETS + _SOURCE_NOT_STORED and getattr(options, f.name) not in (None, False)}


def _source_secrets(options: SourceOptions) -> dict[str, Any]:
    secret = {name: getattr(options, name) for name in _SOURCE_SECRETS if getattr(options, name) is not None}
    return {"source": secret} if secret else {}


def _view(settings: dict[str, Any]) -> SourceView:
    return SourceView(flatten_groups=settings.get("nested_groups") == "flatten",
                      nested_scope=bool(settings.get("nested_scope")))


def _job(row: Any) -> Job:
    return Job(id=row.id, name=row.name, source=row.source, target_url=row.target_url,
               sealed_credentials=row.credentials, settings=dict(row.settings), mapping_document=row.mapping,
               state=row.state, watermark=row.watermark, created_at=row.created_at, updated_at=row.updated_at,
               lease_owner=row.lease_owner, lease_expires_at=row.lease_expires_at, next_run_at=row.next_run_at,
               quarantine_data=row.quarantine, failures_in_a_row=row.failures_in_a_row or 0)
