"""``identity-sync job …``: provisioning jobs — the engine's CLI. Registered on the main command
by ``cli/__init__.py``; its commands, options and ``--json`` keys are a public interface (issue 10):
extend them, don't change them. Target credentials are never printed."""

from __future__ import annotations

import dataclasses
import json
import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from identity_sync.cli._common import fail, open_database, print_rows, reported
from identity_sync.engine.cycle import CycleResult
from identity_sync.engine.errors import CycleAborted
from identity_sync.engine.jobs import OFF, RESETS, Credentials, JobError, parse_resets
from identity_sync.engine.jsonfile import ConfigError
from identity_sync.engine.logs import ACTIONS, STATUSES, event_summary, preview_action, query_events, to_csv
from identity_sync.engine.secrets import CredentialsError
from identity_sync.engine.sources import SourceSpecError
from identity_sync.engine.sources.base import SourceOptions

job_app = typer.Typer(help="Provisioning jobs: push users and groups from a source into any SCIM 2.0 target.",
                      no_args_is_help=True)

JsonFlag = Annotated[bool, typer.Option("--json", help="Print one JSON object instead of text.")]
Source = Annotated[str | None, typer.Option("--source", help="Where users and groups come from: csv:DIR, "
                                            "ldap://HOST:PORT/BASE_DN, ldaps://…, graph:TENANT_ID or scim:URL.")]
BindDn = Annotated[str | None, typer.Option("--source-bind-dn", help="LDAP: the DN to bind as.")]
PasswordFile = Annotated[Path | None, typer.Option("--source-password-file", help="LDAP: a file holding the bind "
                                                   "password (never on the command line).")]
Preset = Annotated[str | None, typer.Option("--source-preset", help="LDAP: ad or openldap (default: detected).")]
CaFile = Annotated[Path | None, typer.Option("--source-ca-file", help="LDAP or SCIM: CA certificates (PEM) to verify "
                                             "the server with.")]
StartTls = Annotated[bool | None, typer.Option("--source-start-tls/--no-source-start-tls",
                                               help="LDAP: StartTLS on an ldap:// URL.")]
UserFilter = Annotated[str | None, typer.Option("--source-user-filter", help="LDAP: the filter users match.")]
GroupFilter = Annotated[str | None, typer.Option("--source-group-filter", help="LDAP: the filter groups match.")]
SourceClientId = Annotated[str | None, typer.Option("--source-client-id", help="Graph or SCIM: OAuth client id.")]
SourceSecretFile = Annotated[Path | None, typer.Option("--source-client-secret-file",
                                                       help="Graph or SCIM: a file holding the client secret.")]
CertificateFile = Annotated[Path | None, typer.Option("--source-certificate-file", help="Graph: a PEM with the "
                                                      "app registration's certificate and private key.")]
SourceTokenFile = Annotated[Path | None, typer.Option("--source-token-file", help="SCIM: a file holding the "
                                                      "bearer token.")]
SourceTokenUrl = Annotated[str | None, typer.Option("--source-token-url", help="SCIM: the OAuth token endpoint.")]
ServicePrincipal = Annotated[str | None, typer.Option("--source-service-principal", help="Graph: the object id of "
                                                      "the application's service principal (assigned scope).")]
NestedGroups = Annotated[str | None, typer.Option("--nested-groups", help="direct (default, as Entra) or "
                                                  "flatten: a group's members are the users of its nested groups.")]
Interval = Annotated[int | None, typer.Option("--interval", help="Minutes between scheduled cycles (default 40).")]
DeletionThreshold = Annotated[str | None, typer.Option("--deletion-threshold", help="Hold back a cycle that would "
                                                       "disable or delete more than N objects (off by default).")]
NotifyOnFailure = Annotated[str | None, typer.Option("--notify-on-failure", help="on (default) or off: e-mail "
                                                     "--notify when the job enters quarantine.")]
NestedScope = Annotated[str | None, typer.Option("--nested-scope", help="on: members of nested groups of an "
                                                 "assigned group are assigned too (default off, as Entra).")]
TargetUrl = Annotated[str | None, typer.Option("--target-url", help="The SCIM base URL (Entra's Tenant URL).")]
TargetToken = Annotated[str | None, typer.Option("--target-token", help="Secret Token (prefer --target-token-file).")]
TargetTokenFile = Annotated[Path | None, typer.Option("--target-token-file", help="A file holding the Secret Token.")]
ClientId = Annotated[str | None, typer.Option("--client-id", help="OAuth 2.0 client credentials: client id.")]
ClientSecret = Annotated[str | None, typer.Option("--client-secret", help="Client secret (prefer -file).")]
ClientSecretFile = Annotated[Path | None, typer.Option("--client-secret-file", help="A file holding the secret.")]
TokenEndpoint = Annotated[str | None, typer.Option("--token-endpoint", help="The OAuth 2.0 token endpoint.")]
MappingFile = Annotated[Path | None, typer.Option("--mapping", help="Attribute mappings and scoping (JSON); "
                                                  "default: the Global Relay mapping of docs/default-mapping.md.")]
Scope = Annotated[str | None, typer.Option("--scope", help="assigned (default) or all.")]
Dialect = Annotated[str | None, typer.Option("--dialect", help="entra (default), entra-legacy or rfc.")]
Notify = Annotated[str | None, typer.Option("--notify", help="Notification e-mail address.")]
Concurrency = Annotated[int | None, typer.Option("--concurrency", help="Target requests in flight (default 8).")]


def register(app: typer.Typer) -> None:
    app.add_typer(job_app, name="job")  # cli/operations.py adds start, pause and history to it


def _open() -> Any:
    from identity_sync.engine.service import EngineService

    settings, db = open_database()
    return EngineService(db, settings)


def _fail(message: str) -> None:
    fail(message)


def _reported() -> Any:
    return reported(JobError, ConfigError, SourceSpecError, CredentialsError, CycleAborted, OSError)


def _secret_file(path: Path | None, option: str) -> str | None:
    if path is None:
        return None
    try:
        text = path.read_text("utf-8").rstrip("\r\n")
    except (OSError, UnicodeDecodeError) as exc:
        _fail(f"{option} {path}: cannot be read ({getattr(exc, 'strerror', None) or exc})")
        raise
    if not text:
        _fail(f"{option} {path}: the file is empty")
    return text


def _credentials(token: str | None, token_file: Path | None, client_id: str | None, client_secret: str | None,
                 client_secret_file: Path | None, token_endpoint: str | None, *, required: bool) -> Credentials | None:
    if token and token_file:
        _fail("give --target-token or --target-token-file, not both")
    if client_secret and client_secret_file:
        _fail("give --client-secret or --client-secret-file, not both")
    token = token or _secret_file(token_file, "--target-token-file")
    secret = client_secret or _secret_file(client_secret_file, "--client-secret-file")
    if not required and not any((token, client_id, secret, token_endpoint)):
        return None
    with _reported():
        return Credentials(token=token, client_id=client_id, client_secret=secret, token_endpoint=token_endpoint)


def _source_options(current: SourceOptions, bind_dn: str | None, password_file: Path | None, preset: str | None,
                    ca_file: Path | None, start_tls: bool | None, user_filter: str | None,
                    group_filter: str | None, client_id: str | None, secret_file: Path | None,
                    certificate_file: Path | None, token_file: Path | None, token_url: str | None,
                    service_principal: str | None) -> SourceOptions | None:
    """The job's source options with what the command line gives changed; ``None`` when it gives
    nothing. Secrets come from files only, so they never appear in a process list or a history."""
    given: dict[str, Any] = {"bind_dn": bind_dn, "password": _secret_file(password_file, "--source-password-file"),
             "preset": preset, "ca_file": str(ca_file.resolve()) if ca_file else None, "start_tls": start_tls,
             "user_filter": user_filter, "group_filter": group_filter, "client_id": client_id,
             "client_secret": _secret_file(secret_file, "--source-client-secret-file"),
             "certificate_pem": _secret_file(certificate_file, "--source-certificate-file"),
             "token": _secret_file(token_file, "--source-token-file"), "token_url": token_url,
             "service_principal_id": service_principal}
    given = {key: value for key, value in given.items() if value is not None}  # SourceOptions' fields
    if preset is not None and preset not in ("ad", "openldap"):
        _fail("--source-preset must be ad or openldap")
    return dataclasses.replace(current, **given) if given else None


def _on_off(value: str | None, option: str) -> bool | None:
    if value is None:
        return None
    if value not in ("on", "off"):
        _fail(f"{option} must be on or off")
    return value == "on"


def _threshold(value: str | None) -> int | None:
    """``--deletion-threshold N`` or ``off``."""
    if value is None:
        return None
    if value.strip().lower() == "off":
        return OFF
    if not value.strip().isdigit():
        _fail("--deletion-threshold must be a number of objects, or off")
    return int(value)


def _mapping(path: Path | None) -> dict[str, Any] | None:
    if path is None:
        return None
    from identity_sync.engine.mapping.model import read_mapping_file

    with _reported():
        return read_mapping_file(path)  # errors name the file, line and column


@job_app.command("create")
def job_create(name: str, source: Source = None, target_url: TargetUrl = None, target_token: TargetToken = None,
               target_token_file: TargetTokenFile = None, client_id: ClientId = None,
               client_secret: ClientSecret = None, client_secret_file: ClientSecretFile = None,
               token_endpoint: TokenEndpoint = None, mapping: MappingFile = None, scope: Scope = None,
               dialect: Dialect = None, notify: Notify = None, concurrency: Concurrency = None,
               source_bind_dn: BindDn = None, source_password_file: PasswordFile = None, source_preset: Preset = None,
               source_ca_file: CaFile = None, source_start_tls: StartTls = None, source_user_filter: UserFilter = None,
               source_group_filter: GroupFilter = None, source_client_id: SourceClientId = None,
               source_client_secret_file: SourceSecretFile = None, source_certificate_file: CertificateFile = None,
               source_token_file: SourceTokenFile = None, source_token_url: SourceTokenUrl = None,
               source_service_principal: ServicePrincipal = None, nested_groups: NestedGroups = None,
               nested_scope: NestedScope = None, interval: Interval = None,
               deletion_threshold: DeletionThreshold = None, notify_on_failure: NotifyOnFailure = None,
               as_json: JsonFlag = False) -> None:
    """Create a job: a source, a SCIM target with its credentials, mappings and scope."""
    if not source or not target_url:
        _fail("--source and --target-url are required")
    credentials = _credentials(target_token, target_token_file, client_id, client_secret, client_secret_file,
                               token_endpoint, required=True)
    options = _source_options(SourceOptions(), source_bind_dn, source_password_file, source_preset, source_ca_file,
                              source_start_tls, source_user_filter, source_group_filter, source_client_id,
                              source_client_secret_file, source_certificate_file, source_token_file,
                              source_token_url, source_service_principal)
    document = _mapping(mapping)
    engine = _open()
    with _reported():
        job = engine.jobs.create(name, source=source or "", target_url=target_url or "", credentials=credentials,
                                 mapping=document, scope=scope or "assigned", dialect=dialect or "entra",
                                 notify=notify, concurrency=concurrency or 8, source_options=options,
                                 nested_groups=nested_groups, nested_scope=_on_off(nested_scope, "--nested-scope"),
                                 interval=interval, deletion_threshold=_threshold(deletion_threshold),
                                 notify_on_failure=_on_off(notify_on_failure, "--notify-on-failure"))
    _print_job(job.describe(), as_json, f"Job '{name}' created; the next cycle (job run {name}) is an initial one.")


@job_app.command("set")
def job_set(name: str, source: Source = None, target_url: TargetUrl = None, target_token: TargetToken = None,
            target_token_file: TargetTokenFile = None, client_id: ClientId = None,
            client_secret: ClientSecret = None, client_secret_file: ClientSecretFile = None,
            token_endpoint: TokenEndpoint = None, mapping: MappingFile = None, scope: Scope = None,
            dialect: Dialect = None, notify: Notify = None, concurrency: Concurrency = None,
            source_bind_dn: BindDn = None, source_password_file: PasswordFile = None, source_preset: Preset = None,
            source_ca_file: CaFile = None, source_start_tls: StartTls = None, source_user_filter: UserFilter = None,
            source_group_filter: GroupFilter = None, source_client_id: SourceClientId = None,
            source_client_secret_file: SourceSecretFile = None, source_certificate_file: CertificateFile = None,
            source_token_file: SourceTokenFile = None, source_token_url: SourceTokenUrl = None,
            source_service_principal: ServicePrincipal = None, nested_groups: NestedGroups = None,
            nested_scope: NestedScope = None, interval: Interval = None,
            deletion_threshold: DeletionThreshold = None, notify_on_failure: NotifyOnFailure = None,
            as_json: JsonFlag = False) -> None:
    """Change a job. New mappings, scope, source or nesting make the next cycle an initial one."""
    credentials = _credentials(target_token, target_token_file, client_id, client_secret, client_secret_file,
                               token_endpoint, required=False)
    document = _mapping(mapping)
    engine = _open()
    with _reported():
        current = engine.jobs.source_options(engine.jobs.get(name))
        # Only what the job stores: Graph's URLs and the attribute lists are not the job's own.
        current = dataclasses.replace(current, user_attributes=None, group_attributes=None)
        options = _source_options(current, source_bind_dn, source_password_file, source_preset, source_ca_file,
                                  source_start_tls, source_user_filter, source_group_filter, source_client_id,
                                  source_client_secret_file, source_certificate_file, source_token_file,
                                  source_token_url, source_service_principal)
        job = engine.jobs.update(name, source=source, target_url=target_url, credentials=credentials,
                                 mapping=document, scope=scope, dialect=dialect, notify=notify,
                                 concurrency=concurrency, source_options=options, nested_groups=nested_groups,
                                 nested_scope=_on_off(nested_scope, "--nested-scope"), interval=interval,
                                 deletion_threshold=_threshold(deletion_threshold),
                                 notify_on_failure=_on_off(notify_on_failure, "--notify-on-failure"))
    _print_job(job.describe(), as_json, f"Job '{name}' updated.")


@job_app.command("list")
def job_list(as_json: JsonFlag = False) -> None:
    """List jobs."""
    engine = _open()
    print_rows([job.describe() for job in engine.jobs.list()], as_json, "jobs",
                ("job", "source", "target_url", "scope", "dialect", "state", "next_cycle"))


@job_app.command("show")
def job_show(name: str, as_json: JsonFlag = False) -> None:
    """A job's configuration (no secrets), linked objects and recent cycles."""
    from identity_sync.engine.state import ConnectorStore

    engine = _open()
    with _reported():
        job = engine.jobs.get(name)
    data = job.describe()
    data["linked"] = ConnectorStore(engine.db, job.id).counts()
    data["cycles"] = engine.jobs.cycles(job, limit=10)
    # What the console draws: the last cycle, and the running one's progress (units done and total).
    data["last_cycle"] = next((c for c in data["cycles"] if c["state"] != "running"), None)
    data["progress"] = next((c.get("progress") for c in data["cycles"] if c["state"] == "running"), None)
    if as_json:
        typer.echo(json.dumps(data))
        return
    for key, value in data.items():
        if key not in ("cycles", "linked", "last_cycle", "progress"):
            typer.echo(f"{key + ':':24}{'-' if value is None else value}")
    typer.echo(f"{'linked:':24}{data['linked']['users']} users, {data['linked']['groups']} groups")
    for cycle in data["cycles"]:
        if cycle["state"] == "running" and cycle.get("progress"):
            p = cycle["progress"]
            typer.echo(f"  running: {p['phase']} {p['done']}/{p['total']} after {p['seconds']:.0f} s")
        typer.echo(f"  {cycle['started_at']}  {cycle['kind']:<11} {cycle['state']:<9} created {cycle.get('created', 0)}"
                   f" updated {cycle.get('updated', 0)} disabled {cycle.get('disabled', 0)} deleted"
                   f" {cycle.get('deleted', 0)} failed {cycle.get('failed', 0)}"
                   + (f"  ({cycle['error']})" if cycle.get("error") else ""))


@job_app.command("delete")
def job_delete(name: str) -> None:
    """Delete a job and its state (links, cycles, logs). The target's objects are left alone."""
    engine = _open()
    with _reported():
        engine.jobs.delete(name)
    typer.echo(f"Job '{name}' deleted.")


@job_app.command("run")
def job_run(name: str, as_json: JsonFlag = False) -> None:
    """Run one cycle now (initial without a watermark, else incremental)."""
    engine = _open()
    with _reported(), _progress_bar(name) as progress:
        try:
            result = engine.run(name, progress=progress)
        except CycleAborted as exc:
            if as_json:  # scripts read stdout: say it there too (the error line still goes to stderr)
                typer.echo(json.dumps({"job": name, "state": "failed", "error": str(exc),
                                       "error_code": exc.error_code}))
            raise
    _print_result(name, result, as_json)


@job_app.command("preview")
def job_preview(name: str, as_json: JsonFlag = False) -> None:
    """A dry run: every action a cycle would take, object by object. Writes nothing anywhere."""
    engine = _open()
    with _reported(), _progress_bar(name) as progress:
        result = engine.preview(name, progress=progress)
    actions = [preview_action(e) for e in result.events]
    if as_json:
        typer.echo(json.dumps({**result.as_dict(name), "preview": True, "actions": actions}))
        return
    for action in actions:
        typer.echo(f"{action['action']:<7} {action['type']:<5} {action['source_id']}  {action['name']}"
                   + (f"  [{action['status']}: {action['reason']}]" if action["status"] != "success" else ""))
        for change in action["changes"]:
            typer.echo(f"          {change['displayName']}: {_show(change['oldValue'])} -> {_show(change['newValue'])}")
    _print_result(name, result, False, preview=True)


@job_app.command("provision")
def job_provision(
    name: str,
    object_id: Annotated[str, typer.Option("--object", help="The source id of one user or group.")],
    as_json: JsonFlag = False,
) -> None:
    """Provision one user (or one group with its members) now, showing each step (§4.6)."""
    engine = _open()
    with _reported():
        result = engine.provision(name, object_id)
    events = [event_summary(e) for e in result.events]
    if as_json:
        typer.echo(json.dumps({"job": name, "object": object_id, "cycle": result.cycle_id, "events": events}))
        return
    for event in events:
        status = event["provisioningStatusInfo"]
        typer.echo(f"{event['sourceIdentity']['identityType']} {event['sourceIdentity']['displayName']}: "
                   f"{event['provisioningAction']} ({status['status']})")
        for step in event["provisioningSteps"]:
            typer.echo(f"  [{step['status']}] {step['provisioningStepType']}: {step['description']}")
            for key, value in (step.get("details") or {}).items():
                for line in value if isinstance(value, list) else [value]:
                    typer.echo(f"      {key}: {line}")
        for change in event["modifiedProperties"]:
            typer.echo(f"  {change['displayName']}: {_show(change['oldValue'])} -> {_show(change['newValue'])}")
        if status["errorInformation"]:
            typer.echo(f"  error {status['errorInformation']['errorCode']}: {status['errorInformation']['reason']}")


@job_app.command("test-connection")
def job_test_connection(name: str) -> None:
    """Send what Entra's Test Connection sends; exit 0, or 1 with the reason."""
    from identity_sync.engine.client import ConnectionProblem

    engine = _open()
    with _reported():
        try:
            engine.test_connection(name)
        except ConnectionProblem as exc:
            _fail(f"test connection failed: {exc}")
    typer.echo(f"Job '{name}': the target answered like a SCIM service, and the credentials were accepted.")


@job_app.command("logs")
def job_logs(
    name: str,
    cycle: Annotated[str | None, typer.Option(help="Only this cycle's events.")] = None,
    status: Annotated[str | None, typer.Option(help=f"Only {'|'.join(STATUSES)}.")] = None,
    action: Annotated[str | None, typer.Option(help=f"Only {'|'.join(ACTIONS)}.")] = None,
    object_id: Annotated[str | None, typer.Option("--object", help="Only this source or target id.")] = None,
    since: Annotated[str | None, typer.Option(help="Only events at or after this UTC time "
                                                   "(e.g. 2026-11-26T00:00:00Z).")] = None,
    limit: Annotated[int, typer.Option(min=1, max=1_000_000, help="At most this many events.")] = 1_000,
    as_json: JsonFlag = False,
    as_csv: Annotated[bool, typer.Option("--csv", help="Print CSV (one row per event).")] = False,
) -> None:
    """The provisioning logs: one event per object per cycle, oldest first."""
    if status is not None and status not in STATUSES:
        _fail(f"--status must be one of {', '.join(STATUSES)}")
    if action is not None and action not in ACTIONS:
        _fail(f"--action must be one of {', '.join(ACTIONS)}")
    from identity_sync.clock import format_timestamp, parse_timestamp

    engine = _open()
    with _reported():
        job = engine.jobs.get(name)
    try:
        # Events carry microseconds: `…T00:00:00Z` must mean the start of that second, not after it.
        cutoff = format_timestamp(parse_timestamp(since)) if since is not None else None
    except ValueError:
        _fail(f"--since {since!r}: not a time (e.g. 2026-11-26T00:00:00Z)")
        raise
    events = query_events(engine.db, job.id, cycle=cycle, status=status, action=action, object_id=object_id,
                          limit=limit, since=cutoff)
    if as_json:
        typer.echo(json.dumps({"job": name, "events": events}))
    elif as_csv:
        sys.stdout.write(to_csv(events))
    elif not events:
        typer.echo("No events.")
    else:
        for e in events:
            error = e["provisioningStatusInfo"]["errorInformation"] or {}
            status_text = e["provisioningStatusInfo"]["status"]
            typer.echo(f"{e['activityDateTime']}  {e['provisioningAction']:<7} {status_text:<8}"
                       f" {e['sourceIdentity']['identityType']:<5} {e['sourceIdentity']['id']}  "
                       f"{e['sourceIdentity']['displayName']}"
                       + (f"  {error.get('errorCode')}: {error.get('reason')}" if error else ""))


@job_app.command("restart")
def job_restart(
    name: str,
    reset: Annotated[str | None, typer.Option(help=f"Comma-separated: {','.join(RESETS)}; or full. Default: "
                                                   "watermark,escrows,quarantine (Entra's Restart provisioning).")]
    = None,
    as_json: JsonFlag = False,
) -> None:
    """Forget chosen state so that the next cycle starts afresh (provisioning-engine.md §1.3)."""
    resets = parse_resets(reset)
    engine = _open()
    with _reported():
        done = engine.jobs.restart(name, resets)
    if as_json:
        typer.echo(json.dumps(done))
    else:
        typer.echo(f"Job '{name}': reset {', '.join(done['reset'])}; the next cycle is {done['next_cycle']}.")


@job_app.command("export")
def job_export(name: str) -> None:
    """Print the job's mappings and scoping filters as JSON (for `job import` or --mapping)."""
    engine = _open()
    with _reported():
        job = engine.jobs.get(name)
    typer.echo(job.export_text())


@job_app.command("import")
def job_import(name: str, file: Path) -> None:
    """Replace the job's mappings and scoping filters from a file; the next cycle is initial."""
    document = _mapping(file)
    engine = _open()
    with _reported():
        engine.jobs.import_mapping(name, document or {})
    typer.echo(f"Job '{name}': mappings imported from {file}; the next cycle is an initial one.")


# -- output helpers ------------------------------------------------------------------------------

def _show(value: Any) -> str:
    if value is None:
        return "(none)"
    return ";".join(map(str, value)) if isinstance(value, list) else str(value)


def _print_job(data: dict[str, Any], as_json: bool, message: str) -> None:
    if as_json:
        typer.echo(json.dumps(data))
        return
    typer.echo(message)
    for key in ("source", "target_url", "auth", "scope", "dialect", "credentials_sealed_with"):
        typer.echo(f"  {key + ':':26}{data.get(key) or '-'}")


def _print_result(name: str, result: CycleResult, as_json: bool, *, preview: bool = False) -> None:
    data = result.as_dict(name)
    if as_json:
        typer.echo(json.dumps(data))
        return
    verb = "would be" if preview else ""
    typer.echo(f"{'Preview of' if preview else 'Cycle'} {result.cycle_id} ({result.kind}) of job '{name}' "
               f"{'computed' if preview else 'completed'} in {data['seconds']:.1f} s:")
    typer.echo(f"  {verb} created {data['created']}, updated {data['updated']}, disabled {data['disabled']}, "
               f"deleted {data['deleted']}; skipped {data['skipped']}, failed {data['failed']}, "
               f"unchanged {data['unchanged']}; members +{data['members_added']} -{data['members_removed']}")
    for warning in data["warnings"]:
        typer.echo(f"  warning: {warning}")
    if data["failed"] and not preview:
        typer.echo(f"  see: identity-sync job logs {name} --cycle {result.cycle_id} --status failure")


class _progress_bar:
    """A rich progress bar on stderr when it is a terminal (phase, done/total, rate, ETA)."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.bar: Any = None

    def __enter__(self) -> Any:
        from identity_sync.engine.progress import Progress

        progress = Progress()
        if not sys.stderr.isatty():
            return progress
        from rich.console import Console
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            ProgressColumn,
            TaskProgressColumn,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )
        from rich.progress import Progress as Bar
        from rich.text import Text

        class Rate(ProgressColumn):
            def render(self, task: Any) -> Text:
                return Text(f"{task.speed:,.0f}/s" if task.speed else "", justify="right")

        self.bar = Bar(TextColumn("[bold]{task.description:<12}"), BarColumn(), MofNCompleteColumn(),
                       TaskProgressColumn(), Rate(), TimeElapsedColumn(), TimeRemainingColumn(),
                       console=Console(stderr=True))
        self.bar.start()
        tasks: dict[str, Any] = {}

        def redraw(p: Progress) -> None:
            if p.phase not in tasks:
                tasks[p.phase] = self.bar.add_task(p.phase, total=max(p.total, 1))
            # A phase with nothing to do is complete, not "0 of 1".
            self.bar.update(tasks[p.phase], completed=p.done if p.total else 1, total=max(p.total, 1))

        progress.listener = redraw
        return progress

    def __exit__(self, *exc: object) -> None:
        if self.bar is not None:
            self.bar.stop()
