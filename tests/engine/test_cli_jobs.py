"""``identity-sync job …`` as real subprocesses (the public contract of issue 10), against our own
service started by the tests. Target credentials never appear in any output or in the database."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import sqlalchemy as sa

from identity_sync.engine.tables import engine_jobs
from identity_sync.storage.db import Database
from tests.engine.conftest import unique
from tests.engine.directory import group, user, write_directory
from tests.engine.readback import Readback
from tests.engine.targets import Target
from tests.pg import free_port
from tests.test_cli import Cli

RUN_KEYS = {"job", "cycle", "kind", "created", "updated", "disabled", "deleted", "skipped", "failed", "seconds"}


@pytest.fixture
def cli(db_url: str, tmp_path: Path) -> Cli:
    return Cli(db_url, tmp_path / "engine-data")


@pytest.fixture
def export(tmp_path: Path) -> tuple[Path, str]:
    prefix = unique("cli")
    path = write_directory(tmp_path / "export",
                           [user("u1", userPrincipalName=f"{prefix}-u1@example.com", department="Sales"),
                            user("u2", userPrincipalName=f"{prefix}-u2@example.com", manager="u1"),
                            user("outside", userPrincipalName=f"{prefix}-outside@example.com")],
                           [group("g1", ["u1", "u2"], displayName=f"{prefix} g1")], assignments=["g1"])
    return path, prefix


def _token_file(tmp_path: Path, token: str) -> Path:
    path = tmp_path / "target-token"
    path.write_text(token + "\n")
    return path


def _stored_job(db_url: str) -> str:
    """The job's database row, every column as text."""
    database = Database(db_url)
    with database.read() as conn:
        row = conn.execute(sa.select(engine_jobs)).one()
    database.dispose()
    return json.dumps([str(v) for v in row])


def _create(cli: Cli, tmp_path: Path, target: Target, source: Path, *extra: str) -> dict[str, object]:
    return cli.json("job", "create", "hr", "--source", f"csv:{source}", "--target-url", target.base_url,
                    "--target-token-file", str(_token_file(tmp_path, target.token)), *extra, "--json")


def test_create_run_show_and_logs_without_ever_showing_the_token(cli: Cli, db_url: str, tmp_path: Path,
                                                                  our_target: Target, readback: Readback,
                                                                  export: tuple[Path, str]) -> None:
    source, prefix = export
    created = _create(cli, tmp_path, our_target, source)
    assert created["job"] == "hr" and created["next_cycle"] == "initial"

    first = cli.json("job", "run", "hr", "--json")
    assert RUN_KEYS <= set(first)
    assert (first["kind"], first["created"], first["failed"]) == ("initial", 3, 0)
    assert set(readback.users(prefix)) == {f"{prefix}-u1@example.com", f"{prefix}-u2@example.com"}
    second = cli.json("job", "run", "hr", "--json")
    assert (second["kind"], second["created"], second["updated"]) == ("incremental", 0, 0)

    outputs = [cli("job", "show", "hr", "--json"), cli("job", "show", "hr"), cli("job", "list", "--json"),
               cli("job", "logs", "hr", "--json"), cli("job", "logs", "hr", "--csv"), cli("job", "export", "hr")]
    for result in outputs:
        assert result.returncode == 0, result.stderr
        assert our_target.token not in result.stdout + result.stderr
    shown = json.loads(outputs[0].stdout)
    assert shown["linked"] == {"users": 2, "groups": 1}
    assert [c["kind"] for c in shown["cycles"]] == ["incremental", "initial"]
    events = json.loads(outputs[3].stdout)["events"]
    assert sorted(e["provisioningAction"] for e in events if e["cycleId"] == first["cycle"]) == \
        ["create", "create", "create", "update"]  # two users, the group, then its members
    assert outputs[4].stdout.splitlines()[0].startswith("id,activityDateTime,cycleId,changeId")

    # Stored sealed: the token is nowhere in the job's row.
    assert our_target.token not in _stored_job(db_url)


def test_preview_lists_every_action_and_writes_nothing(cli: Cli, tmp_path: Path, our_target: Target,
                                                       readback: Readback, export: tuple[Path, str]) -> None:
    source, prefix = export
    _create(cli, tmp_path, our_target, source)
    preview = cli.json("job", "preview", "hr", "--json")
    assert preview["preview"] is True and preview["created"] == 3
    actions = {(a["type"], a["source_id"]): a for a in preview["actions"]}
    assert actions[("user", "u1")]["action"] == "create"
    assert {"displayName": "userName", "oldValue": None, "newValue": f"{prefix}-u1@example.com"} in \
        actions[("user", "u1")]["changes"]
    assert readback.users(prefix) == {}
    assert cli.json("job", "show", "hr", "--json")["cycles"] == []
    assert cli.json("job", "run", "hr", "--json")["created"] == 3  # the preview changed nothing


def test_provision_on_demand_reports_entras_steps(cli: Cli, tmp_path: Path, our_target: Target, readback: Readback,
                                                  export: tuple[Path, str]) -> None:
    source, prefix = export
    _create(cli, tmp_path, our_target, source)
    out = cli.json("job", "provision", "hr", "--object", "u1", "--json")
    [event] = out["events"]
    assert event["provisioningAction"] == "create"
    assert [s["provisioningStepType"] for s in event["provisioningSteps"]] == ["import", "scoping", "matching",
                                                                              "export"]
    scoping = event["provisioningSteps"][1]["details"]["conditions"]
    assert "Assigned to the application: true" in scoping
    assert set(readback.users(prefix)) == {f"{prefix}-u1@example.com"}  # one object, not the directory
    outside = cli.json("job", "provision", "hr", "--object", "outside", "--json")
    [event] = outside["events"]  # out of scope: nothing done, and the steps say why
    assert event["provisioningStatusInfo"]["status"] == "skipped"
    assert "Assigned to the application: false" in event["provisioningSteps"][1]["details"]["conditions"]
    missing = cli("job", "provision", "hr", "--object", "nobody")
    assert missing.returncode == 1 and "no user or group with id 'nobody'" in missing.stderr


def test_test_connection_says_why_it_fails(cli: Cli, tmp_path: Path, our_target: Target,
                                           export: tuple[Path, str]) -> None:
    source, _ = export
    _create(cli, tmp_path, our_target, source)
    assert cli("job", "test-connection", "hr").returncode == 0
    bad = tmp_path / "bad-token"
    bad.write_text("idsync_" + "A" * 43)
    assert cli("job", "set", "hr", "--target-token-file", str(bad)).returncode == 0
    failed = cli("job", "test-connection", "hr")
    assert failed.returncode == 1 and "unauthorized" in failed.stderr.lower()
    assert "A" * 43 not in failed.stderr
    run = cli("job", "run", "hr", "--json")
    assert run.returncode == 1 and "unauthorized" in run.stderr.lower()
    failed_run = json.loads(run.stdout)
    assert (failed_run["state"], failed_run["error_code"]) == ("failed", "Unauthorized")
    unreachable = f"http://127.0.0.1:{free_port()}/scim/v2/none"
    assert cli("job", "set", "hr", "--target-url", unreachable).returncode == 0
    failed = cli("job", "test-connection", "hr")
    assert failed.returncode == 1 and "unreachable" in failed.stderr.lower()


def test_a_mapping_file_error_names_file_line_and_column(cli: Cli, tmp_path: Path, our_target: Target,
                                                         export: tuple[Path, str]) -> None:
    source, _ = export
    mapping = tmp_path / "mapping.json"
    mapping.write_text('{"users": {"mappings": [\n  {"target": "userName", "source": "userPrincipalName", '
                       '"matching": 1},\n  {"target": "title", "expression": "Frobnicate([jobTitle])"}]}}\n')
    result = cli("job", "create", "hr", "--source", f"csv:{source}", "--target-url", our_target.base_url,
                 "--target-token-file", str(_token_file(tmp_path, our_target.token)), "--mapping", str(mapping))
    assert result.returncode == 1
    assert f"{mapping}:3:" in result.stderr and "Frobnicate" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert cli.json("job", "list", "--json") == {"jobs": []}  # nothing stored


def test_export_and_import_round_trip_and_make_the_next_cycle_initial(cli: Cli, tmp_path: Path, our_target: Target,
                                                                     export: tuple[Path, str]) -> None:
    source, _ = export
    _create(cli, tmp_path, our_target, source)
    cli.json("job", "run", "hr", "--json")
    exported = cli("job", "export", "hr")
    document = json.loads(exported.stdout)
    document["users"]["scoping"] = [{"title": "Sales", "clauses": [
        {"attribute": "department", "operator": "EQUALS", "value": "Sales"}]}]
    (tmp_path / "m.json").write_text(json.dumps(document))
    assert cli("job", "import", "hr", str(tmp_path / "m.json")).returncode == 0
    assert json.loads(cli("job", "export", "hr").stdout)["users"]["scoping"] == document["users"]["scoping"]
    run = cli.json("job", "run", "hr", "--json")
    assert run["kind"] == "initial" and run["disabled"] == 1  # u2 is not in Sales
    restart = cli.json("job", "restart", "hr", "--reset", "full", "--json")
    assert restart["next_cycle"] == "initial" and "connector-data-store" in restart["reset"]
    assert cli.json("job", "show", "hr", "--json")["linked"] == {"users": 0, "groups": 0}
    assert cli("job", "delete", "hr").returncode == 0
    assert cli.json("job", "list", "--json") == {"jobs": []}


def test_source_options_and_nesting_from_the_command_line(cli: Cli, db_url: str, tmp_path: Path,
                                                          our_target: Target, export: tuple[Path, str]) -> None:
    """Source secrets come from files, are sealed, and never shown; ``job set`` changes one source
    option and keeps the others; nesting options are shown and make the next cycle initial."""
    source, _ = export
    password = tmp_path / "bind-password"
    password.write_text("ldap-bind-secret\n")
    created = _create(cli, tmp_path, our_target, source, "--source-bind-dn", "cn=reader,dc=example,dc=com",
                      "--source-password-file", str(password), "--nested-groups", "flatten")
    assert created["source_options"] == {"bind_dn": "cn=reader,dc=example,dc=com"}
    assert (created["nested_groups"], created["nested_scope"]) == ("flatten", False)
    cli.json("job", "run", "hr", "--json")
    changed = cli.json("job", "set", "hr", "--source-preset", "openldap", "--nested-scope", "on", "--json")
    assert changed["source_options"] == {"bind_dn": "cn=reader,dc=example,dc=com", "preset": "openldap"}
    assert changed["nested_scope"] is True and changed["next_cycle"] == "initial"
    shown = cli("job", "show", "hr", "--json").stdout + cli("job", "list", "--json").stdout
    assert "ldap-bind-secret" not in shown
    assert "ldap-bind-secret" not in _stored_job(db_url)
    refused = cli("job", "set", "hr", "--nested-groups", "deep")
    assert refused.returncode != 0 and "--nested-groups must be one of direct, flatten" in refused.stderr


def test_operations_from_the_command_line(cli: Cli, tmp_path: Path, our_target: Target,
                                          export: tuple[Path, str]) -> None:
    """The contract of issue 13: ``job set --interval --deletion-threshold --notify --notify-on-failure``,
    ``job show --json`` with ``state``, ``quarantine``, ``last_cycle`` and ``progress``, ``job pause``,
    ``job start`` and ``job history``."""
    source, _ = export
    _create(cli, tmp_path, our_target, source)
    changed = cli.json("job", "set", "hr", "--interval", "15", "--deletion-threshold", "500", "--notify",
                       "it@example.com", "--notify-on-failure", "off", "--json")
    assert (changed["interval"], changed["deletion_threshold"], changed["notify"], changed["notify_on_failure"]) == \
        (15, 500, "it@example.com", False)
    assert cli.json("job", "set", "hr", "--deletion-threshold", "off", "--json")["deletion_threshold"] is None
    before = cli.json("job", "show", "hr", "--json")
    assert (before["state"], before["quarantine"], before["last_cycle"], before["progress"]) == \
        ("active", None, None, None)
    cli.json("job", "run", "hr", "--json")
    shown = cli.json("job", "show", "hr", "--json")
    assert shown["last_cycle"]["state"] == "completed" and shown["last_cycle"]["created"] == 3
    assert cli.json("job", "pause", "hr", "--json")["state"] == "paused"
    assert cli.json("job", "start", "hr", "--json")["state"] == "active"
    history = cli.json("job", "history", "hr", "--json")
    [cycle] = history["cycles"]
    assert (cycle["kind"], cycle["state"], cycle["imported"], cycle["exported"], cycle["escrowed"]) == \
        ("initial", "completed", 4, 4, 0)  # 2 users and a group created, its members added
    assert {"began", "ended", "counts"} <= set(cycle)
    refused = cli("job", "set", "hr", "--deletion-threshold", "many")
    assert refused.returncode != 0 and "--deletion-threshold must be a number of objects, or off" in refused.stderr
