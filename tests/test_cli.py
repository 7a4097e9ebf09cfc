"""The ``identity-sync`` command line, run as real subprocesses against a temporary SQLite file.

State a test merely needs is set up in-process (``tenants`` fixture, same database file); only
the command under test runs as a subprocess. The app the tokens are tried against is one
instance (``http``) on the same database, running across the CLI calls: what the CLI changes
must take effect at once, without a restart."""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from starlette.testclient import TestClient

from identity_sync.auth.tokens import TOKEN_PREFIX, digest
from identity_sync.clock import parse_timestamp
from identity_sync.service.tenants import TenantService
from identity_sync.service.tombstones import TombstoneService
from identity_sync.storage.db import Database

USER_SCHEMA = "urn:ietf:params:scim:schemas:core:2.0:User"
DEFAULT_BASE = "http://127.0.0.1:8000"


def _env(db_url: str, data_dir: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("IDSYNC_")}
    env.update(IDSYNC_DATABASE_URL=db_url, IDSYNC_DATA_DIR=str(data_dir), XDG_DATA_HOME=str(data_dir / "xdg"),
               PYTHONUNBUFFERED="1", **extra)
    return env


class Cli:
    """Runs ``python -m identity_sync …`` on one database."""

    def __init__(self, db_url: str, data_dir: Path) -> None:
        self.db_url = db_url
        self.data_dir = data_dir
        # A PostgreSQL deployment is not a loopback one: its Tenant URLs must be configured
        # (test_cli_node.py tests the refusal); here they are the loopback default, explicitly.
        self.env = {} if db_url.startswith("sqlite") else {"IDSYNC_PUBLIC_URL": DEFAULT_BASE}

    def start(self, *args: str, **env: str) -> subprocess.Popen[str]:
        return subprocess.Popen([sys.executable, "-m", "identity_sync", *args], env=_env(self.db_url, self.data_dir,
                                **{**self.env, **env}), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

    def __call__(self, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
        return self.all([args], **env)[0]

    def all(self, commands: list[tuple[str, ...]], **env: str) -> list[subprocess.CompletedProcess[str]]:
        """Run independent commands concurrently (each costs ~0.5 s of interpreter start-up)."""
        started = [(args, self.start(*args, **env)) for args in commands]
        results = []
        for args, process in started:
            out, err = process.communicate(timeout=60)
            results.append(subprocess.CompletedProcess(list(args), process.returncode, out, err))
        return results

    def json(self, *args: str) -> Any:
        result = self(*args)
        assert result.returncode == 0, result.stderr
        return json.loads(result.stdout)


@pytest.fixture
def cli(db_url: str, tmp_path: Path) -> Cli:
    """The CLI on the same (already migrated) database as the ``http`` app and ``tenants``."""
    return Cli(db_url, tmp_path)


def users(http: TestClient, tenant: str, token: str) -> Any:
    return http.get(f"/scim/v2/{tenant}/Users", headers={"Authorization": f"Bearer {token}"})


def create_and_delete_user(http: TestClient, tenant: str, token: str, user_name: str) -> str:
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/scim+json"}
    created = http.post(f"/scim/v2/{tenant}/Users", headers=headers,
                        content=json.dumps({"schemas": [USER_SCHEMA], "userName": user_name}))
    assert created.status_code == 201, created.text
    user_id = created.json()["id"]
    assert http.delete(f"/scim/v2/{tenant}/Users/{user_id}", headers=headers).status_code == 204
    return user_id


def assert_fails(result: subprocess.CompletedProcess[str], *words: str) -> None:
    assert result.returncode != 0, result.stdout
    assert result.stderr.strip(), "the reason goes to stderr"
    assert TOKEN_PREFIX not in result.stdout + result.stderr
    for word in words:
        assert word in result.stderr.lower(), result.stderr


# -- tenant --------------------------------------------------------------------------------------


def test_tenant_create_json_gives_the_tenant_url_and_a_token_that_works_at_once(cli: Cli, http: TestClient) -> None:
    assert users(http, "acme", "idsync_" + "A" * 43).status_code == 401  # the app is already running

    out = cli.json("tenant", "create", "acme", "--json")

    assert {"tenant", "tenant_url", "token"} <= set(out)
    assert out["tenant"] == "acme"
    assert out["tenant_url"] == f"{DEFAULT_BASE}/scim/v2/acme"
    assert out["token"].startswith(TOKEN_PREFIX)
    assert len(out["token"]) - len(TOKEN_PREFIX) >= 43
    assert users(http, "acme", out["token"]).status_code == 200
    assert users(http, "acme", out["token"] + "x").status_code == 401


def test_tenant_create_in_text_mode_shows_the_token_exactly_once(cli: Cli, http: TestClient) -> None:
    result = cli("tenant", "create", "globex", IDSYNC_PUBLIC_URL="https://scim.example.org/")

    assert result.returncode == 0, result.stderr
    tokens = re.findall(rf"{TOKEN_PREFIX}[A-Za-z0-9_-]+", result.stdout)
    assert len(tokens) == 1
    assert len(tokens[0]) - len(TOKEN_PREFIX) >= 43
    assert "https://scim.example.org/scim/v2/globex" in result.stdout
    assert "once" in result.stdout.lower()
    assert users(http, "globex", tokens[0]).status_code == 200


def test_tenant_create_refuses_a_duplicate_or_an_invalid_name(cli: Cli, tenants: TenantService) -> None:
    tenants.create_tenant("acme")

    duplicate, invalid = cli.all([("tenant", "create", "acme"), ("tenant", "create", "Bad Name")])

    assert_fails(duplicate, "acme", "exists")
    assert_fails(invalid, "tenant names")
    assert [t["name"] for t in tenants.list_tenants()] == ["acme"]
    assert len(tenants.list_tokens("acme")) == 1


def test_tenant_create_refuses_a_name_with_a_trailing_newline(cli: Cli, tenants: TenantService) -> None:
    result = cli("tenant", "create", "acme\n")
    assert result.returncode != 0
    assert tenants.list_tenants() == []


def test_tenant_list_shows_every_tenant_with_status_and_url_in_json_and_text(cli: Cli,
                                                                              tenants: TenantService) -> None:
    acme = tenants.create_tenant("acme")
    tenants.create_tenant("globex")
    tenants.set_status("globex", "disabled")

    as_json, as_text = cli.all([("tenant", "list", "--json"), ("tenant", "list")])

    assert as_json.returncode == as_text.returncode == 0
    rows = json.loads(as_json.stdout)["tenants"]
    assert [(r["tenant"], r["status"], r["tenant_url"]) for r in rows] == [
        ("acme", "active", f"{DEFAULT_BASE}/scim/v2/acme"), ("globex", "disabled", f"{DEFAULT_BASE}/scim/v2/globex")]
    assert all(r["created_at"] for r in rows)
    lines = as_text.stdout.splitlines()
    assert "tenant" in lines[0] and "status" in lines[0]
    assert any("acme" in line and "active" in line for line in lines[1:])
    assert any("globex" in line and "disabled" in line for line in lines[1:])
    for output in (as_json.stdout, as_text.stdout):
        assert acme.token not in output and TOKEN_PREFIX not in output and digest(acme.token) not in output


def test_tenant_retention_and_hold_commands(cli: Cli, tenants: TenantService) -> None:
    tenants.create_tenant("acme")
    retention, hold = cli("tenant", "retention", "acme", "--days", "30"), cli("tenant", "hold", "acme", "--on")
    assert (retention.returncode, hold.returncode) == (0, 0), retention.stderr + hold.stderr
    assert "30 day(s)" in retention.stdout and "legal hold on" in hold.stdout
    [row] = json.loads(cli("tenant", "list", "--json").stdout)["tenants"]
    assert (row["retention_days"], row["legal_hold"]) == (30, True)
    refused = cli("tombstones", "purge", "--older-than-days", "0", "--tenant", "acme", "--yes")
    assert refused.returncode == 1 and "legal hold" in refused.stderr
    assert cli("tenant", "hold", "acme", "--off").returncode == 0
    assert cli("tenant", "retention", "acme", "--days", "0").returncode == 0
    [row] = json.loads(cli("tenant", "list", "--json").stdout)["tenants"]
    assert (row["retention_days"], row["legal_hold"]) == (None, False)
    unknown = cli("tenant", "hold", "nobody", "--on")
    assert unknown.returncode == 1 and "error:" in unknown.stderr and "Traceback" not in unknown.stderr
    actions = [e["action"] for e in json.loads(cli("audit", "list", "--json").stdout)["events"]]
    assert actions == ["retention", "hold", "release", "retention"]


def test_tenant_disable_makes_its_tokens_fail_at_once_and_leaves_other_tenants_alone(
        cli: Cli, http: TestClient, tenants: TenantService) -> None:
    acme = tenants.create_tenant("acme")
    globex = tenants.create_tenant("globex")
    assert users(http, "acme", acme.token).status_code == 200

    result = cli("tenant", "disable", "acme")

    assert result.returncode == 0, result.stderr
    assert "acme" in result.stdout
    response = users(http, "acme", acme.token)
    assert response.status_code == 401
    assert response.json()["status"] == "401"
    assert users(http, "globex", globex.token).status_code == 200
    assert [(t["name"], t["status"]) for t in tenants.list_tenants()] == [("acme", "disabled"), ("globex", "active")]


# -- token ---------------------------------------------------------------------------------------


def test_token_create_issues_another_token_with_an_expiry_and_both_tokens_work(
        cli: Cli, http: TestClient, tenants: TenantService) -> None:
    first = tenants.create_tenant("acme")

    out = cli.json("token", "create", "--tenant", "acme", "--json", "--expires-in-days", "30")

    assert out["tenant"] == "acme" and out["tenant_url"] == f"{DEFAULT_BASE}/scim/v2/acme"
    assert out["token"] != first.token and len(out["token"]) - len(TOKEN_PREFIX) >= 43
    assert abs(parse_timestamp(out["expires_at"]) - (datetime.now(UTC) + timedelta(days=30))) < timedelta(minutes=5)
    assert users(http, "acme", first.token).status_code == 200
    assert users(http, "acme", out["token"]).status_code == 200
    listed = {r["id"]: r for r in tenants.list_tokens("acme")}
    assert set(listed) == {first.credential_id, out["token_id"]}
    assert listed[out["token_id"]]["expires_at"] == out["expires_at"]


def test_token_create_with_zero_days_does_not_issue_an_everlasting_token(cli: Cli, http: TestClient,
                                                                         tenants: TenantService) -> None:
    tenants.create_tenant("acme")
    result = cli("token", "create", "--tenant", "acme", "--json", "--expires-in-days", "0")
    if result.returncode == 0:
        out = json.loads(result.stdout)
        assert out["expires_at"] is not None
        assert users(http, "acme", out["token"]).status_code == 401


def test_token_list_shows_ids_and_dates_but_never_a_token_or_its_hash(cli: Cli, http: TestClient,
                                                                      tenants: TenantService) -> None:
    first = tenants.create_tenant("acme")
    second = tenants.create_token("acme", expires_in_days=7)
    tenants.revoke_token("acme", second.credential_id)
    assert users(http, "acme", first.token).status_code == 200  # sets last_used_at, in the background
    assert http.app.state.handlers.auth.uses.flush()  # type: ignore[attr-defined]

    as_json, as_text = cli.all([("token", "list", "--tenant", "acme", "--json"), ("token", "list", "--tenant", "acme")])

    assert as_json.returncode == as_text.returncode == 0
    rows = {r["token_id"]: r for r in json.loads(as_json.stdout)["tokens"]}
    assert set(rows) == {first.credential_id, second.credential_id}
    assert set(rows[first.credential_id]) == {"token_id", "created_at", "expires_at", "last_used_at", "revoked_at"}
    assert rows[first.credential_id]["revoked_at"] is None and rows[first.credential_id]["last_used_at"]
    assert rows[second.credential_id]["revoked_at"] and rows[second.credential_id]["expires_at"]
    assert first.credential_id in as_text.stdout and second.credential_id in as_text.stdout
    for output in (as_json.stdout, as_text.stdout):
        for issued in (first, second):
            assert issued.token not in output
            assert issued.token[len(TOKEN_PREFIX):][:12] not in output
            assert digest(issued.token) not in output and digest(issued.token)[:16] not in output
        assert TOKEN_PREFIX not in output


def test_token_revoke_makes_that_token_fail_at_once_while_the_other_keeps_working(
        cli: Cli, http: TestClient, tenants: TenantService) -> None:
    keep = tenants.create_tenant("acme")
    drop = tenants.create_token("acme")
    other = tenants.create_tenant("globex")
    assert users(http, "acme", drop.token).status_code == 200

    revoked, foreign = cli.all([
        ("token", "revoke", drop.credential_id, "--tenant", "acme"),
        ("token", "revoke", other.credential_id, "--tenant", "acme"),  # globex's token id, via acme
    ])

    assert revoked.returncode == 0, revoked.stderr
    assert drop.credential_id in revoked.stdout
    assert users(http, "acme", drop.token).status_code == 401
    assert users(http, "acme", keep.token).status_code == 200
    assert_fails(foreign, other.credential_id)
    assert users(http, "globex", other.token).status_code == 200


# -- tombstones ----------------------------------------------------------------------------------


def test_tombstones_list_shows_a_deleted_user(cli: Cli, http: TestClient, tenants: TenantService) -> None:
    acme = tenants.create_tenant("acme")
    user_id = create_and_delete_user(http, "acme", acme.token, "gone@example.com")

    rows = cli.json("tombstones", "list", "--json")["tombstones"]

    assert [(r["tenant"], r["type"], r["id"], r["name"]) for r in rows] == [
        ("acme", "User", user_id, "gone@example.com")]
    assert rows[0]["deleted_at"]


def test_tombstones_purge_needs_yes_and_respects_the_retention(cli: Cli, http: TestClient,
                                                               tenants: TenantService, db: Database) -> None:
    acme = tenants.create_tenant("acme")
    user_id = create_and_delete_user(http, "acme", acme.token, "gone@example.com")
    tombstones = TombstoneService(db)

    refused, too_young = cli.all([("tombstones", "purge", "--older-than-days", "0"),
                                  ("tombstones", "purge", "--older-than-days", "30", "--yes")])

    assert_fails(refused, "--yes")
    assert "1 tombstone" in refused.stderr
    assert too_young.returncode == 0, too_young.stderr
    assert "Purged 0 " in too_young.stdout
    assert [r["id"] for r in tombstones.list(None, None)] == [user_id]

    purged = cli("tombstones", "purge", "--older-than-days", "0", "--yes")

    assert purged.returncode == 0, purged.stderr
    assert "Purged 1 " in purged.stdout
    assert tombstones.list(None, None) == []


def test_tombstones_purge_json_prints_one_json_object(cli: Cli) -> None:
    result = cli("tombstones", "purge", "--older-than-days", "30", "--yes", "--json")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["purged"] == 0


# -- migrate and serve ---------------------------------------------------------------------------


def test_migrate_recount_repairs_counts_that_rows_written_elsewhere_left_behind(
        cli: Cli, http: TestClient, tenants: TenantService, db: Database) -> None:
    issued = tenants.create_tenant("acme")
    for i in range(3):
        http.post("/scim/v2/acme/Users", json={"schemas": [USER_SCHEMA], "userName": f"u{i}@x.com"},
                  headers={"Authorization": f"Bearer {issued.token}"})
    with db.write() as conn:  # what a node of an older release, which keeps no counts, leaves
        conn.exec_driver_sql("UPDATE resource_counts SET live = live - 2")

    def total() -> int:  # one user per page: the total is the kept count, not the page's length
        return http.get("/scim/v2/acme/Users?count=1", headers={"Authorization": f"Bearer {issued.token}"}
                        ).json()["totalResults"]

    assert total() == 1
    result = cli("migrate", "--recount")
    assert result.returncode == 0, result.stderr
    assert "Recounted the live resources (1 tenant/type counts)" in result.stdout
    assert total() == 3


def test_migrate_creates_a_fresh_database(tmp_path: Path) -> None:
    path = tmp_path / "fresh" / "new.db"
    result = Cli(f"sqlite:///{path}", tmp_path)("migrate")

    assert result.returncode == 0, result.stderr
    assert "up to date" in result.stdout.lower()
    assert path.exists()
    db = Database(f"sqlite:///{path}")
    try:
        assert TenantService(db).list_tenants() == []
    finally:
        db.dispose()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_for_port(port: int, process: subprocess.Popen[Any], timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"serve exited with {process.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    pytest.fail(f"serve did not listen on port {port} within {timeout} s")


def _get(url: str, token: str) -> tuple[int, str]:
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()


def _serve(port: int, tmp_path: Path, stdout: Any) -> subprocess.Popen[Any]:
    return subprocess.Popen([sys.executable, "-m", "identity_sync", "serve", "--port", str(port)],
                            env=_env(f"sqlite:///{tmp_path / 'serve' / 'db.sqlite'}", tmp_path), stdout=stdout,
                            stderr=subprocess.DEVNULL)


def _stop(process: subprocess.Popen[Any]) -> None:
    process.terminate()
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[int, Path]]:
    """``identity-sync serve`` on an empty database; its stdout goes to a file (as under systemd
    or in a container: not a terminal)."""
    port = _free_port()
    stdout = tmp_path / "serve.out"
    with stdout.open("w") as out:
        process = _serve(port, tmp_path, out)
        try:
            _wait_for_port(port, process)
            yield port, stdout
        finally:
            _stop(process)


def _read_terminal(fd: int, until: str, timeout: float = 30) -> str:
    """What a program wrote to the pseudo-terminal ``fd`` up to ``until`` (bounded in time)."""
    import select

    seen = b""
    deadline = time.monotonic() + timeout
    while until.encode() not in seen and time.monotonic() < deadline:
        ready, _, _ = select.select([fd], [], [], 0.2)
        if ready:
            try:
                chunk = os.read(fd, 4096)
            except OSError:  # the terminal closed: the program exited
                break
            seen += chunk
    return seen.decode(errors="replace")


def test_serve_on_an_empty_database_shows_the_default_tenant_token_on_a_terminal_and_it_works(
        tmp_path: Path) -> None:
    import pty

    port = _free_port()
    main, terminal = pty.openpty()
    process = _serve(port, tmp_path, terminal)
    os.close(terminal)
    try:
        printed = _read_terminal(main, until="Serving SCIM")
        _wait_for_port(port, process)
    finally:
        _stop(process)
        os.close(main)

    url = re.search(r"Tenant URL:\s*(\S+)", printed)
    token = re.search(rf"Token:\s*({TOKEN_PREFIX}\S+)", printed)
    assert url and token, printed
    assert url.group(1) == f"http://127.0.0.1:{port}/scim/v2/default"
    assert len(token.group(1)) - len(TOKEN_PREFIX) >= 43
    # The server is gone; the token is checked against the same database in-process.
    db = Database(f"sqlite:///{tmp_path / 'serve' / 'db.sqlite'}")
    try:
        assert TenantService(db).authenticate(f"Bearer {token.group(1)}", "default").tenant_name == "default"
    finally:
        db.dispose()


def test_serve_writes_no_token_into_a_pipe_or_log_and_says_which_command_issues_one(
        served: tuple[int, Path], tmp_path: Path) -> None:
    port, stdout = served
    printed = stdout.read_text()

    assert TOKEN_PREFIX not in printed and "Token:" not in printed
    assert "identity-sync token create --tenant default" in printed
    db_url = f"sqlite:///{tmp_path / 'serve' / 'db.sqlite'}"
    db = Database(db_url)
    try:
        assert TenantService(db).list_tokens("default") == []  # a token nobody saw is not made either
    finally:
        db.dispose()

    issued = Cli(db_url, tmp_path).json("token", "create", "--tenant", "default", "--json")
    url = f"http://127.0.0.1:{port}/scim/v2/default"
    status, body = _get(url + "/Users", issued["token"])
    assert status == 200, body
    assert json.loads(body)["totalResults"] == 0
    status, body = _get(url + "/Users", "idsync_" + "A" * 43)
    assert status == 401
    assert json.loads(body)["status"] == "401"


def test_serve_creates_the_data_directory_and_database_owner_only(served: tuple[int, Path], tmp_path: Path) -> None:
    database = tmp_path / "serve" / "db.sqlite"

    assert database.stat().st_mode & 0o777 == 0o600
    assert database.parent.stat().st_mode & 0o777 == 0o700
    for companion in (database.with_name("db.sqlite-wal"), database.with_name("db.sqlite-shm")):
        if companion.exists():  # SQLite gives them the database file's mode
            assert companion.stat().st_mode & 0o077 == 0, companion
