"""Target credentials at rest are sealed (AES-256-GCM) with the signing keys' passphrase, or with a
key file beside the signing keys; they never open with the wrong key or on another job's row."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest
from pydantic import SecretStr

from identity_sync.config import Settings
from identity_sync.engine.secrets import CredentialsError, seal, sealed_with, unseal


def _settings(tmp_path: Path, passphrase: str | None = None) -> Settings:
    return Settings(data_dir=tmp_path, signing_keys_passphrase=SecretStr(passphrase) if passphrase else None)


def test_with_a_passphrase(tmp_path: Path) -> None:
    settings = _settings(tmp_path, "correct horse")
    sealed = seal(settings, "job-1", {"token": "idsync_secret"})
    assert "idsync_secret" not in sealed and sealed_with(sealed) == "passphrase"
    assert unseal(settings, "job-1", sealed) == {"token": "idsync_secret"}
    with pytest.raises(CredentialsError, match="wrong passphrase"):
        unseal(_settings(tmp_path, "wrong"), "job-1", sealed)
    with pytest.raises(CredentialsError, match="sealed with a passphrase"):
        unseal(_settings(tmp_path), "job-1", sealed)


def test_without_a_passphrase_a_key_file_owned_by_the_service(tmp_path: Path) -> None:
    settings = _settings(tmp_path)
    sealed = seal(settings, "job-1", {"client_secret": "s3cret"})
    key = settings.resolved_signing_keys_dir() / "credentials.key"
    assert stat.S_IMODE(key.stat().st_mode) == 0o600 and sealed_with(sealed) == "keyfile"
    assert "s3cret" not in sealed
    assert unseal(settings, "job-1", sealed) == {"client_secret": "s3cret"}
    key.unlink()
    with pytest.raises(CredentialsError, match="missing"):
        unseal(settings, "job-1", sealed)


def test_a_sealed_value_opens_only_on_its_own_job_and_unaltered(tmp_path: Path) -> None:
    settings = _settings(tmp_path)
    sealed = seal(settings, "job-1", {"token": "t"})
    with pytest.raises(CredentialsError):
        unseal(settings, "job-2", sealed)
    tampered = sealed[:-2] + ("A" if sealed[-2] != "A" else "B") + sealed[-1]
    with pytest.raises(CredentialsError):
        unseal(settings, "job-1", tampered)
    with pytest.raises(CredentialsError, match="damaged"):
        unseal(settings, "job-1", "plain text")
