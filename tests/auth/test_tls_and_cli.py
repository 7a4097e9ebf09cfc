"""``serve --ssl-certfile/--ssl-keyfile`` terminates TLS 1.2 and 1.3 (a self-signed certificate
made here, on a loopback port), and the ``client`` / ``keys`` / ``entra`` commands."""

from __future__ import annotations

import json
import logging
import os
import socket
import ssl
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import structlog
from typer.testing import CliRunner

from identity_sync.cli import app
from tests.auth import jwt_helpers as jh
from tests.auth.tls_helpers import self_signed as _self_signed


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _context(cert: Path, version: ssl.TLSVersion) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=str(cert))
    context.minimum_version = context.maximum_version = version
    return context


def test_serve_terminates_tls_1_2_and_1_3(tmp_path: Path) -> None:
    cert, key = _self_signed(tmp_path)
    port = _free_port()
    env = {**os.environ, "IDSYNC_DATA_DIR": str(tmp_path), "IDSYNC_DATABASE_URL": f"sqlite:///{tmp_path}/t.db"}
    server = subprocess.Popen([sys.executable, "-m", "identity_sync", "serve", "--port", str(port),
                               "--ssl-certfile", str(cert), "--ssl-keyfile", str(key)],
                              env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 30
        versions = {}
        for version in (ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_3):
            while True:
                try:
                    with urllib.request.urlopen(f"https://127.0.0.1:{port}/healthz", timeout=5,
                                                context=_context(cert, version)) as response:
                        versions[version] = (response.status, json.loads(response.read()))
                    break
                except (ConnectionError, urllib.error.URLError):
                    if time.monotonic() > deadline or server.poll() is not None:
                        raise
                    time.sleep(0.2)
        assert versions == {v: (200, {"status": "ok"}) for v in versions} and len(versions) == 2
        # Plain HTTP on the TLS port gets no SCIM answer.
        with pytest.raises((urllib.error.URLError, ConnectionError, OSError)):
            urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=5).read()
        # TLS 1.1 and older are refused.
        if ssl.TLSVersion.TLSv1_1 >= ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT).minimum_version:
            old = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
            old.check_hostname, old.verify_mode = False, ssl.CERT_NONE
            try:
                old.minimum_version = old.maximum_version = ssl.TLSVersion.TLSv1_1
            except (ValueError, ssl.SSLError):
                pass
            else:
                with pytest.raises((ssl.SSLError, ConnectionError, OSError)):
                    with socket.create_connection(("127.0.0.1", port), timeout=5) as raw:
                        with old.wrap_socket(raw):
                            pass
    finally:
        server.terminate()
        output = server.communicate(timeout=10)[0]
    assert f"https://127.0.0.1:{port}" in output


# -- CLI -----------------------------------------------------------------------------------------


@pytest.fixture
def cli(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """Runs commands in-process; the CLI configures logging onto the runner's stderr, so the
    previous structlog and logging configuration is restored afterwards."""
    previous = structlog.get_config()
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    monkeypatch.setenv("IDSYNC_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("IDSYNC_DATABASE_URL", f"sqlite:///{tmp_path}/cli.db")
    monkeypatch.setenv("IDSYNC_PUBLIC_URL", "https://scim.example.test")
    runner = CliRunner()

    def run(*args: str, ok: bool = True) -> Any:
        result = runner.invoke(app, list(args))
        assert (result.exit_code == 0) == ok, result.output
        return result

    run("migrate")  # only migrate and serve create a database
    run("tenant", "create", "acme")
    try:
        yield run
    finally:
        structlog.configure(**previous)
        root.handlers[:], root.level = handlers, level


def test_client_create_list_rotate_revoke(cli: Any) -> None:
    created = json.loads(cli("client", "create", "--tenant", "acme", "--json").stdout)
    assert created["tenant_url"] == "https://scim.example.test/scim/v2/acme"
    assert created["token_endpoint"] == "https://scim.example.test/scim/v2/acme/oauth/token"
    assert created["client_id"].startswith("idsc_") and created["client_secret"].startswith("idsyncs_")
    assert created["scope"] == "scim:read scim:write" and created["secret_expires_at"]

    rotated = json.loads(cli("client", "rotate", created["client_id"], "--tenant", "acme", "--json",
                             "--secret-days", "30").stdout)
    assert rotated["client_id"] == created["client_id"] and rotated["client_secret"] != created["client_secret"]
    listed = cli("client", "list", "--tenant", "acme", "--json").stdout
    assert created["client_secret"] not in listed and rotated["client_secret"] not in listed
    secrets = json.loads(listed)["clients"][0]["secrets"]
    assert [s["secret_id"] for s in secrets] == [created["secret_id"], rotated["secret_id"]]
    assert all(s["expires_at"] and s["revoked_at"] is None for s in secrets)

    cli("client", "revoke", created["client_id"], "--tenant", "acme", "--secret", created["secret_id"])
    cli("client", "revoke", created["client_id"], "--tenant", "acme")
    cli("client", "revoke", created["client_id"], "--tenant", "acme", ok=False)
    text = cli("client", "list", "--tenant", "acme").stdout
    assert "REVOKED" in text and "revoked" in text
    readonly = json.loads(cli("client", "create", "--tenant", "acme", "--scope", "scim:read", "--json").stdout)
    assert readonly["scope"] == "scim:read"
    assert "Unknown scope" in cli("client", "create", "--tenant", "acme", "--scope", "root", ok=False).output
    assert "No tenant" in cli("client", "create", "--tenant", "nope", ok=False).output
    human = cli("client", "create", "--tenant", "acme").stdout
    assert "OAuth2 Client Credentials Grant" in human and "Token endpoint:" in human


def test_keys_and_entra_commands(cli: Any, tmp_path: Path) -> None:
    assert "No keys yet" in cli("keys", "list").stdout
    first = cli("keys", "rotate").stdout.split()[3].rstrip(".")
    assert json.loads(cli("keys", "list", "--json").stdout) == {"keys": [first], "unencrypted": []}
    assert "Removed 0" in cli("keys", "prune").stdout
    for path in (tmp_path / "signing-keys").iterdir():
        assert path.stat().st_mode & 0o077 == 0  # private keys readable by the owner only

    jwks_file = tmp_path / "entra-jwks.json"
    jwks_file.write_text(json.dumps(jh.jwks()))
    cli("entra", "set", "--tenant", "acme", "--entra-tenant-id", jh.ENTRA_TID, "--jwks-file", str(jwks_file))
    shown = json.loads(cli("entra", "show", "--tenant", "acme").stdout)
    assert shown["entra_tenant_id"] == jh.ENTRA_TID and shown["audience"] == jh.ENTRA_AUD
    cli("entra", "set", "--tenant", "acme", "--entra-tenant-id", jh.ENTRA_TID, "--jwks-url", "http://x", ok=False)
    empty = tmp_path / "empty.json"
    empty.write_text('{"keys": [{"kty": "oct", "k": "c2VjcmV0", "kid": "h"}]}')
    cli("entra", "set", "--tenant", "acme", "--entra-tenant-id", jh.ENTRA_TID, "--jwks-file", str(empty), ok=False)
    assert "removed" in cli("entra", "clear", "--tenant", "acme").stdout


def test_serve_refuses_half_a_tls_configuration(cli: Any, tmp_path: Path) -> None:
    cert, _ = _self_signed(tmp_path)
    result = cli("serve", "--ssl-certfile", str(cert), ok=False)
    assert "go together" in result.output


def test_the_cli_refuses_a_jwks_file_with_private_members_with_one_error_line(cli: Any, tmp_path: Path) -> None:
    from tests.auth import jwt_helpers as jh
    from tests.auth.test_jwks_at_rest import with_private_key

    keys = tmp_path / "keys.json"
    keys.write_text(json.dumps({"keys": [with_private_key()]}))

    result = cli("entra", "set", "--tenant", "acme", "--entra-tenant-id", jh.ENTRA_TID, "--jwks-file", str(keys),
                 ok=False)

    assert "error: The JWKS holds private key material (leaked: d, dp, dq, p, q, qi)" in result.output
    assert with_private_key()["d"] not in result.output and "Traceback" not in result.output
    assert cli("entra", "show", "--tenant", "acme").stdout.strip() == "{}"  # nothing was stored
