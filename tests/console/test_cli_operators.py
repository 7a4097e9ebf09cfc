"""``identity-sync operator create|list|disable|password``, run as real subprocesses (tests/test_cli.py's
Cli) on the test's migrated database."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import sqlalchemy as sa

from identity_sync.service.operators import OperatorService
from identity_sync.storage.db import Database
from identity_sync.storage.tables import console_sessions, operators
from tests.test_cli import Cli, _env, assert_fails

PASSWORD = "a long enough passphrase"


@pytest.fixture
def cli(db_url: str, tmp_path: Path) -> Cli:
    return Cli(db_url, tmp_path)


@pytest.fixture
def password_file(tmp_path: Path) -> Path:
    path = tmp_path / "password"
    path.write_text(PASSWORD + "\n")  # as `echo … > file` writes it: the newline is not the password's
    return path


def test_create_with_a_password_file_stores_an_argon2id_hash_and_the_password_works(
        cli: Cli, password_file: Path, db: Database) -> None:
    out = cli.json("operator", "create", "alice", "--role", "admin", "--password-file", str(password_file), "--json")

    assert out == {"operator": "alice", "role": "admin", "created_at": out["created_at"], "disabled": False}
    with db.read() as conn:
        stored = conn.execute(sa.select(operators.c.password_hash)).scalar_one()
    assert stored.startswith("$argon2id$") and PASSWORD not in stored
    service = OperatorService(db)
    assert service.verify("alice", PASSWORD) is not None
    assert service.verify("alice", PASSWORD + "\n") is None


def test_the_role_defaults_to_viewer_and_list_shows_operators_without_their_hashes(
        cli: Cli, password_file: Path) -> None:
    results = cli.all([("operator", "create", "victor", "--password-file", str(password_file)),
                       ("operator", "create", "walter", "--password-file", str(password_file))])
    assert all(r.returncode == 0 for r in results), [r.stderr for r in results]

    listed = cli.json("operator", "list", "--json")
    text = cli("operator", "list")

    assert [(o["operator"], o["role"], o["disabled"]) for o in listed["operators"]] == [
        ("victor", "viewer", False), ("walter", "viewer", False)]
    assert "argon2" not in text.stdout and "victor" in text.stdout and "viewer" in text.stdout


def test_create_refuses_a_short_password_a_bad_role_a_bad_name_and_a_duplicate(
        cli: Cli, password_file: Path, tmp_path: Path) -> None:
    short = tmp_path / "short"
    short.write_text("elevenchars")
    assert_fails(cli("operator", "create", "alice", "--password-file", str(short)), "at least 12")
    assert_fails(cli("operator", "create", "alice", "--role", "root", "--password-file", str(password_file)),
                 "--role")
    assert_fails(cli("operator", "create", "al ice", "--password-file", str(password_file)), "operator name")
    assert cli("operator", "create", "alice", "--password-file", str(password_file)).returncode == 0
    assert_fails(cli("operator", "create", "alice", "--password-file", str(password_file)), "already exists")


def test_without_a_file_the_password_is_asked_twice_and_must_match(cli: Cli, db_url: str, tmp_path: Path,
                                                                   db: Database) -> None:
    def create(name: str, typed: str) -> subprocess.CompletedProcess[str]:
        # No terminal here: getpass reads the standard input (a terminal would hide what is typed).
        return subprocess.run([sys.executable, "-m", "identity_sync", "operator", "create", name],
                              env=_env(db_url, tmp_path, **cli.env), input=typed, capture_output=True, text=True,
                              timeout=60)

    differ = create("alice", f"{PASSWORD}\n{PASSWORD}x\n")
    same = create("bob", f"{PASSWORD}\n{PASSWORD}\n")

    assert_fails(differ, "differ")
    assert same.returncode == 0, same.stderr
    assert PASSWORD not in same.stdout + same.stderr
    assert [o.name for o in OperatorService(db).list()] == ["bob"]


def test_disable_stops_logins_and_is_audited(cli: Cli, password_file: Path, db: Database) -> None:
    assert cli("operator", "create", "alice", "--password-file", str(password_file)).returncode == 0

    result = cli("operator", "disable", "alice")

    assert result.returncode == 0 and "disabled" in result.stdout
    assert OperatorService(db).verify("alice", PASSWORD) is None
    assert cli.json("operator", "list", "--json")["operators"][0]["disabled"] is True
    events = cli.json("audit", "list", "--json")["events"]
    assert [(e["tenant"], e["actor"], e["action"], e["type"]) for e in events] == [
        (None, "operator:cli", "create", "Operator"), (None, "operator:cli", "disable", "Operator")]
    assert_fails(cli("operator", "disable", "nobody"), "no operator")


def test_password_sets_a_new_password_and_ends_the_operators_sessions(cli: Cli, password_file: Path, db: Database,
                                                                      tmp_path: Path) -> None:
    assert cli("operator", "create", "alice", "--password-file", str(password_file)).returncode == 0
    with db.write() as conn:  # an open console session of alice's
        conn.execute(sa.insert(console_sessions).values(
            id="0" * 64, operator_id=OperatorService(db).get("alice").id, csrf_digest="1" * 64,
            password_fingerprint="2" * 16, created_at=0.0, seen_at=0.0, client="127.0.0.1", user_agent="",
            via="password"))
    new = tmp_path / "new-password"
    new.write_text("another long passphrase\n")

    result = cli("operator", "password", "alice", "--password-file", str(new))

    assert result.returncode == 0 and "sessions have ended" in result.stdout
    service = OperatorService(db)
    assert service.verify("alice", PASSWORD) is None and service.verify("alice", "another long passphrase")
    with db.read() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(console_sessions)).scalar() == 0
    assert cli.json("audit", "list", "--json")["events"][-1]["action"] == "update"
    new.write_text("short\n")
    assert_fails(cli("operator", "password", "alice", "--password-file", str(new)), "at least 12")
    assert_fails(cli("operator", "password", "nobody", "--password-file", str(password_file)), "no operator")


def test_operator_commands_refuse_to_run_without_a_database(tmp_path: Path, password_file: Path) -> None:
    missing = Cli(f"sqlite:///{tmp_path / 'none' / 'db.sqlite'}", tmp_path)

    assert_fails(missing("operator", "create", "alice", "--password-file", str(password_file)), "no identity-sync")


def test_a_tenant_admin_is_created_for_one_existing_tenant(cli: Cli, password_file: Path, db: Database) -> None:
    from identity_sync.service.tenants import TenantService

    TenantService(db).create_tenant("acme")

    out = cli.json("operator", "create", "tim", "--role", "tenant-admin", "--tenant", "acme",
                   "--password-file", str(password_file), "--json")

    assert out == {"operator": "tim", "role": "tenant-admin", "created_at": out["created_at"], "disabled": False,
                   "tenant": "acme"}
    assert cli.json("operator", "list", "--json")["operators"][0]["tenant"] == "acme"
    assert "acme" in cli("operator", "list").stdout
    assert_fails(cli("operator", "create", "tom", "--role", "tenant-admin", "--password-file", str(password_file)),
                 "--tenant")
    assert_fails(cli("operator", "create", "tom", "--role", "admin", "--tenant", "acme",
                     "--password-file", str(password_file)), "--tenant")
    assert_fails(cli("operator", "create", "tom", "--role", "tenant-admin", "--tenant", "nope",
                     "--password-file", str(password_file)), "no tenant")
    assert [o.name for o in OperatorService(db).list()] == ["tim"]
