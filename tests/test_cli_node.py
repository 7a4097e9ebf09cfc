"""What keeps a command run with the wrong configuration from doing harm (issue 11): it does not
create a new, empty database, and it does not print a made-up Tenant URL for a customer."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from identity_sync.service.tenants import TenantService
from identity_sync.storage.db import Database
from tests import pg


def run(data_dir: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("IDSYNC_")}
    clean.update({"IDSYNC_DATA_DIR": str(data_dir), "IDSYNC_CONFIG": "", "IDSYNC_LOG_LEVEL": "WARNING", **env})
    return subprocess.run([sys.executable, "-m", "identity_sync", *args], env=clean, capture_output=True, text=True,
                          timeout=60)


def tenants(url: str) -> list[str]:
    db = Database(url)
    try:
        return [t["name"] for t in TenantService(db).list_tenants()]
    finally:
        db.dispose()


def test_commands_other_than_migrate_and_serve_do_not_create_a_sqlite_database(tmp_path: Path) -> None:
    default = tmp_path / "identity-sync.db"
    for args in (("tenant", "list"), ("tenant", "create", "acme"), ("token", "list", "--tenant", "acme"),
                 ("keys", "list"), ("job", "list")):
        result = run(tmp_path, *args)
        assert result.returncode == 1, (args, result.stdout)
        assert result.stderr.splitlines() == [
            f"error: no identity-sync database at sqlite:///{default}: create it with 'identity-sync migrate', "
            "or check IDSYNC_DATABASE_URL (or IDSYNC_CONFIG)"], args
    assert not default.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == []  # no key directory either

    result = run(tmp_path, "migrate")
    assert result.returncode == 0, result.stderr
    created = json.loads(run(tmp_path, "tenant", "create", "acme", "--json").stdout)
    assert created["tenant_url"] == "http://127.0.0.1:8000/scim/v2/acme"  # README's loopback set-up


def test_an_existing_database_without_the_schema_is_refused_too(tmp_path: Path) -> None:
    empty = tmp_path / "empty.db"
    empty.touch(mode=0o600)
    url = f"sqlite:///{empty}"
    result = run(tmp_path, "tenant", "list", IDSYNC_DATABASE_URL=url)
    assert result.returncode == 1
    assert result.stderr.startswith(f"error: no identity-sync database at {url}: ")
    with sqlite3.connect(empty) as conn:  # not migrated behind the operator's back
        assert conn.execute("SELECT name FROM sqlite_master").fetchall() == []


def test_the_config_file_is_named_in_the_refusal(tmp_path: Path) -> None:
    config = tmp_path / "config.toml"
    config.write_text(f'database_url = "sqlite:///{tmp_path}/wrong.db"\n')
    result = run(tmp_path, "tenant", "list", IDSYNC_CONFIG=str(config))
    assert result.returncode == 1
    assert result.stderr.strip().endswith(f"or check IDSYNC_DATABASE_URL or database_url in {config}")


def test_a_postgresql_database_without_schema_is_refused_and_its_password_not_shown(
        request: pytest.FixtureRequest, tmp_path: Path) -> None:
    server: pg.PostgresServer = request.getfixturevalue("pg_server")
    server.admin("CREATE DATABASE idsync_unmigrated")
    try:
        url = server.url("idsync_unmigrated")
        result = run(tmp_path, "tenant", "list", IDSYNC_DATABASE_URL=url)
        assert result.returncode == 1
        assert result.stderr.startswith("error: no identity-sync database at postgresql://"), result.stderr
        assert "idsync_unmigrated" in result.stderr
        # Unreachable (nothing listens on port 1): one line, the password masked.
        result = run(tmp_path, "tenant", "list", IDSYNC_DATABASE_URL="postgresql://idsync:s3cret@127.0.0.1:1/x")
        assert result.returncode == 1
        assert result.stderr.startswith("error: cannot open the database postgresql://idsync:***@127.0.0.1:1/x: ")
        assert "s3cret" not in result.stderr and "Traceback" not in result.stderr
        assert len(result.stderr.strip().splitlines()) == 1
    finally:
        server.admin("DROP DATABASE idsync_unmigrated WITH (FORCE)")


@pytest.fixture
def migrated(tmp_path: Path) -> str:
    url = f"sqlite:///{tmp_path / 'identity-sync.db'}"
    Database(url).migrate()
    return url


def test_no_tenant_url_is_made_up_for_a_deployment_others_reach(tmp_path: Path, migrated: str) -> None:
    env: dict[str, Any] = {"IDSYNC_DATABASE_URL": migrated, "IDSYNC_HOST": "0.0.0.0"}
    for args in (("tenant", "create", "acme"), ("tenant", "list"), ("client", "create", "--tenant", "x")):
        result = run(tmp_path, *args, **env)
        assert result.returncode == 1, args
        assert result.stderr.startswith("error: IDSYNC_PUBLIC_URL is not set and this is not a loopback deployment "
                                        "(host 0.0.0.0, "), result.stderr
        assert "pass --confirm-url to print http://127.0.0.1:8000/scim/v2/<tenant>" in result.stderr
    assert tenants(migrated) == []  # refused before anything was created: no token lost

    confirmed = json.loads(run(tmp_path, "tenant", "create", "acme", "--json", "--confirm-url", **env).stdout)
    assert confirmed["tenant_url"] == "http://127.0.0.1:8000/scim/v2/acme"
    named = run(tmp_path, "token", "create", "--tenant", "acme", "--json", IDSYNC_PUBLIC_URL="https://scim.example.com",
                **env)
    assert json.loads(named.stdout)["tenant_url"] == "https://scim.example.com/scim/v2/acme"
    # A loopback address of another port is still loopback: its URL is printed as it is.
    on_port = run(tmp_path, "tenant", "list", "--json", IDSYNC_DATABASE_URL=migrated, IDSYNC_PORT="8443")
    assert json.loads(on_port.stdout)["tenants"][0]["tenant_url"] == "http://127.0.0.1:8443/scim/v2/acme"


def test_a_postgresql_deployment_needs_its_public_url(request: pytest.FixtureRequest, tmp_path: Path) -> None:
    from tests.conftest import fresh_database_url

    urls = fresh_database_url(request, "postgresql", tmp_path)
    url = next(urls)
    try:
        result = run(tmp_path, "tenant", "create", "acme", "--json", IDSYNC_DATABASE_URL=url)
        assert result.returncode == 1
        assert "IDSYNC_PUBLIC_URL is not set" in result.stderr
        assert tenants(url) == []
        config = tmp_path / "config.toml"
        config.write_text('public_url = "https://scim.example.com"\n')
        made = run(tmp_path, "tenant", "create", "acme", "--json", IDSYNC_DATABASE_URL=url, IDSYNC_CONFIG=str(config))
        assert json.loads(made.stdout)["tenant_url"] == "https://scim.example.com/scim/v2/acme", made.stderr
    finally:
        next(urls, None)


def test_a_first_serve_on_postgresql_shows_the_token_but_no_made_up_url(request: pytest.FixtureRequest,
                                                                         tmp_path: Path) -> None:
    import pty

    from tests.test_cli import _free_port, _read_terminal, _stop

    server: pg.PostgresServer = request.getfixturevalue("pg_server")
    server.admin("CREATE DATABASE idsync_first_serve")  # empty: the first serve creates the schema
    port = _free_port()
    main, terminal = pty.openpty()
    env = {k: v for k, v in os.environ.items() if not k.startswith("IDSYNC_")}
    env.update(IDSYNC_DATABASE_URL=server.url("idsync_first_serve"), IDSYNC_DATA_DIR=str(tmp_path),
               IDSYNC_CONFIG="", IDSYNC_LOG_LEVEL="WARNING")
    process = subprocess.Popen([sys.executable, "-m", "identity_sync", "serve", "--port", str(port)], env=env,
                               stdout=terminal, stderr=subprocess.DEVNULL)
    os.close(terminal)
    try:
        printed = _read_terminal(main, until="Serving SCIM")
    finally:
        _stop(process)
        os.close(main)
        server.admin("DROP DATABASE idsync_first_serve WITH (FORCE)")
    assert "Tenant URL: <IDSYNC_PUBLIC_URL>/scim/v2/default" in printed, printed
    assert "Token:      idsync_" in printed
    assert f"127.0.0.1:{port}/scim/v2/default" not in printed
    assert "Set IDSYNC_PUBLIC_URL (public_url in the config file)" in printed
