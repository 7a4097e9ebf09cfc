"""Signing keys encrypted at rest (auth/oauth.py, ``IDSYNC_SIGNING_KEYS_PASSPHRASE_FILE``): keys
written with a passphrase are encrypted PKCS#8 files that sign tokens the service verifies; a key
that cannot be decrypted stops the CLI and ``serve`` with one clear line, never a traceback; keys
written in clear before keep working and are pointed out."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import sqlalchemy as sa
from pydantic import ValidationError

from identity_sync.auth import jwt as jwtv
from identity_sync.auth.oauth import SigningKeyError, SigningKeys, audience_for, issue_access_token, signing_keys_for
from identity_sync.config import Settings
from identity_sync.storage.db import Database
from identity_sync.storage.tables import signing_keys

PASSPHRASE = b"correct horse battery staple"


def _token(keys: SigningKeys) -> str:
    return issue_access_token(keys, issuer="identity-sync", tenant_id="t1", client_id="c", secret_id="s",
                              scopes=frozenset({"scim"}), lifetime=3600)


def _claims(keys: SigningKeys, token: str) -> dict[str, object]:
    return jwtv.verify(token, keyset="ours", key_for_kid=keys.public_key, issuers=["identity-sync"],
                       audience=audience_for("t1"), leeway=0, cache=jwtv.VerifiedCache())


def test_keys_written_with_a_passphrase_are_encrypted_and_sign_verifiable_tokens(tmp_path: Path) -> None:
    keys = SigningKeys(tmp_path, PASSPHRASE)
    kid = keys.rotate()
    path = tmp_path / f"{kid}.pem"
    assert path.read_bytes().startswith(b"-----BEGIN ENCRYPTED PRIVATE KEY-----")
    assert path.stat().st_mode & 0o777 == 0o600
    token = _token(keys)
    other_process = SigningKeys(tmp_path, PASSPHRASE)
    assert _claims(other_process, token)["sub"] == "c"
    assert keys.unencrypted == set()


def test_an_encrypted_key_without_the_passphrase_names_the_setting(tmp_path: Path) -> None:
    SigningKeys(tmp_path, PASSPHRASE).rotate()
    with pytest.raises(SigningKeyError, match="IDSYNC_SIGNING_KEYS_PASSPHRASE_FILE"):
        SigningKeys(tmp_path).kids()


def test_a_wrong_passphrase_is_refused(tmp_path: Path) -> None:
    SigningKeys(tmp_path, PASSPHRASE).rotate()
    with pytest.raises(SigningKeyError, match="wrong passphrase"):
        SigningKeys(tmp_path, b"not it").kids()


def test_keys_in_clear_keep_working_once_a_passphrase_is_set_and_are_pointed_out(tmp_path: Path) -> None:
    old = SigningKeys(tmp_path)
    old_kid = old.rotate()
    token = _token(old)
    keys = SigningKeys(tmp_path, PASSPHRASE)
    assert _claims(keys, token)["sub"] == "c"
    assert keys.unencrypted == {old_kid}
    new_kid = keys.rotate()
    assert keys.current().kid == new_kid and new_kid not in keys.unencrypted


def test_the_passphrase_comes_from_a_file_or_the_environment_never_both(tmp_path: Path) -> None:
    secret_file = tmp_path / "passphrase"
    secret_file.write_bytes(PASSPHRASE + b"\n")
    assert Settings(signing_keys_passphrase_file=secret_file).resolved_signing_keys_passphrase() == PASSPHRASE
    from_env = Settings(signing_keys_passphrase=PASSPHRASE.decode())
    assert from_env.resolved_signing_keys_passphrase() == PASSPHRASE
    assert PASSPHRASE.decode() not in repr(from_env)  # a SecretStr: never printed or logged
    assert Settings().resolved_signing_keys_passphrase() is None
    with pytest.raises(ValidationError, match="not both"):
        Settings(signing_keys_passphrase_file=secret_file, signing_keys_passphrase="x")
    with pytest.raises(ValidationError, match="cannot be read"):
        Settings(signing_keys_passphrase_file=tmp_path / "missing")


def test_the_settings_build_keys_in_the_database_sealed_with_the_passphrase(db_url: str, tmp_path: Path) -> None:
    settings = Settings(database_url=db_url, data_dir=tmp_path, signing_keys_passphrase=PASSPHRASE.decode())
    db = Database(db_url)
    try:
        keys = signing_keys_for(settings, db)
        kid = keys.rotate()
        with db.read() as conn:
            [sealed] = conn.execute(sa.select(signing_keys.c.private_key).where(signing_keys.c.kid == kid)).scalars()
        assert sealed.startswith("v1:passphrase:") and "PRIVATE KEY" not in sealed
        assert not (tmp_path / "signing-keys").exists()  # no file at all: the passphrase is the key
        token = _token(keys)
        assert _claims(signing_keys_for(settings, db), token)["sub"] == "c"
        with pytest.raises(SigningKeyError, match="sealed with a passphrase: set IDSYNC_SIGNING_KEYS_PASSPHRASE_FILE"):
            signing_keys_for(Settings(database_url=db_url, data_dir=tmp_path), db).kids()
        with pytest.raises(SigningKeyError, match=f"signing key {kid} cannot be decrypted: wrong passphrase"):
            signing_keys_for(Settings(database_url=db_url, data_dir=tmp_path, signing_keys_passphrase="not it"),
                             db).kids()
    finally:
        db.dispose()


def _cli(tmp_path: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    environment = {k: v for k, v in os.environ.items() if not k.startswith("IDSYNC_")}
    environment.update(IDSYNC_DATA_DIR=str(tmp_path), IDSYNC_DATABASE_URL=f"sqlite:///{tmp_path}/cli.db", **env)
    if not (tmp_path / "cli.db").exists():  # an installed service: only migrate and serve create a database
        db = Database(environment["IDSYNC_DATABASE_URL"])
        db.migrate()
        db.dispose()
    return subprocess.run([sys.executable, "-m", "identity_sync", *args], env=environment, capture_output=True,
                          text=True, timeout=60)


def test_serve_and_the_key_commands_stop_with_one_line_when_a_key_cannot_be_decrypted(tmp_path: Path) -> None:
    SigningKeys(tmp_path / "signing-keys", PASSPHRASE).rotate()
    for args in (("serve", "--port", "9"), ("keys", "list"), ("keys", "rotate")):
        result = _cli(tmp_path, *args, IDSYNC_SIGNING_KEYS_PASSPHRASE="not it")
        assert result.returncode == 1, args
        assert "error: signing key" in result.stderr and "Traceback" not in result.stderr, result.stderr
        assert "not it" not in result.stderr + result.stdout
    listed = _cli(tmp_path, "keys", "list", "--json", IDSYNC_SIGNING_KEYS_PASSPHRASE=PASSPHRASE.decode())
    assert listed.returncode == 0 and '"unencrypted": []' in listed.stdout


def test_a_bad_setting_is_one_line_naming_the_variable(tmp_path: Path) -> None:
    result = _cli(tmp_path, "tenant", "list", IDSYNC_RATE_LIMIT_PER_SECOND="-1")
    assert result.returncode == 1
    assert "error: invalid configuration: IDSYNC_RATE_LIMIT_PER_SECOND" in result.stderr
    assert "Traceback" not in result.stderr


def test_the_newest_key_signs_also_after_two_rotations_within_one_second(tmp_path: Path) -> None:
    keys = SigningKeys(tmp_path)
    rotated = [keys.rotate() for _ in range(5)]
    assert keys.current().kid == rotated[-1] == max(keys.kids())
