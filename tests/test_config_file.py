"""The config file (``IDSYNC_CONFIG`` or /etc/identity-sync/config.toml) under the environment."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from identity_sync import config
from identity_sync.config import ConfigFileError, Settings, config_file_path


@pytest.fixture(autouse=True)
def _clean_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in list(os.environ):
        if name.startswith("IDSYNC_"):
            monkeypatch.delenv(name)
    # Whatever this machine has in /etc, these tests see only their own files.
    monkeypatch.setattr(config, "DEFAULT_CONFIG_FILE", tmp_path / "absent" / "config.toml")


def write(path: Path, text: str, mode: int = 0o640) -> Path:
    path.write_text(text)
    path.chmod(mode)
    return path


def test_the_file_sets_what_the_environment_does_not(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = write(tmp_path / "config.toml", 'database_url = "sqlite:////srv/a.db"\npublic_url = "https://scim.example.com"\n'
                                           'rate_limit_burst = 42\ndata_dir = "/srv/idsync"\n')
    monkeypatch.setenv("IDSYNC_CONFIG", str(path))
    settings = Settings()
    assert settings.database_url == "sqlite:////srv/a.db"
    assert settings.public_url == "https://scim.example.com"
    assert settings.rate_limit_burst == 42
    assert settings.data_dir == Path("/srv/idsync")


def test_environment_overrides_the_file_and_arguments_override_both(tmp_path: Path,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    path = write(tmp_path / "config.toml", 'public_url = "https://file.example"\nlog_level = "DEBUG"\n'
                                           'rate_limit_burst = 42\n')
    monkeypatch.setenv("IDSYNC_CONFIG", str(path))
    monkeypatch.setenv("IDSYNC_PUBLIC_URL", "https://env.example")
    monkeypatch.setenv("IDSYNC_LOG_LEVEL", "WARNING")
    settings = Settings(log_level="ERROR")
    assert settings.public_url == "https://env.example"
    assert settings.log_level == "ERROR"
    assert settings.rate_limit_burst == 42  # neither overrides it


def test_the_default_file_is_read_only_when_it_exists(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert config_file_path() is None
    assert Settings().public_url is None
    default = write(tmp_path / "config.toml", 'public_url = "https://default.example"\n')
    monkeypatch.setattr(config, "DEFAULT_CONFIG_FILE", default)
    assert config_file_path() == default
    assert Settings().public_url == "https://default.example"
    monkeypatch.setenv("IDSYNC_CONFIG", "")  # explicitly none
    assert Settings().public_url is None


def test_a_missing_named_file_is_an_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("IDSYNC_CONFIG", str(tmp_path / "nope.toml"))
    with pytest.raises(ConfigFileError, match=r"nope\.toml \(IDSYNC_CONFIG\) does not exist"):
        Settings()


def test_unknown_keys_are_named(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = write(tmp_path / "config.toml", 'database_url = "sqlite:///x.db"\ndatabse_url = "typo"\npublic_ur = 1\n')
    monkeypatch.setenv("IDSYNC_CONFIG", str(path))
    with pytest.raises(ConfigFileError) as error:
        Settings()
    assert str(error.value).startswith(f"config file {path}: unknown keys databse_url, public_ur")
    assert "\n" not in str(error.value)


def test_syntax_errors_name_line_and_column(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = write(tmp_path / "config.toml", 'log_level = "INFO"\npublic_url = https://x\n')
    monkeypatch.setenv("IDSYNC_CONFIG", str(path))
    with pytest.raises(ConfigFileError, match=r"is not valid TOML: .*line 2, column 14"):
        Settings()


def test_a_secret_in_a_world_readable_file_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = write(tmp_path / "config.toml", 'signing_keys_passphrase = "hunter2"\n', mode=0o644)
    monkeypatch.setenv("IDSYNC_CONFIG", str(path))
    with pytest.raises(ConfigFileError, match="signing_keys_passphrase.*every local user can read it"):
        Settings()
    path.chmod(0o640)
    assert Settings().resolved_signing_keys_passphrase() == b"hunter2"
    write(path, 'database_url = "postgresql://idsync:pw@db/idsync"\n', mode=0o604)
    with pytest.raises(ConfigFileError, match=r"\(database_url\)"):
        Settings()
    # Without a password (peer or certificate authentication, or a password file), it is fine.
    write(path, 'database_url = "postgresql://idsync@db/idsync"\n', mode=0o644)
    assert Settings().database_url == "postgresql://idsync@db/idsync"


def _cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("IDSYNC_")}
    return subprocess.run([sys.executable, "-m", "identity_sync", *args], env={**clean, **env}, capture_output=True,
                          text=True, timeout=60)


def test_the_cli_reads_the_file_and_reports_its_errors_in_one_line(tmp_path: Path) -> None:
    path = write(tmp_path / "config.toml", f'database_url = "sqlite:///{tmp_path}/file.db"\ndata_dir = "{tmp_path}"\n'
                                           'rate_limit_burst = 0\n')
    result = _cli({"IDSYNC_CONFIG": str(path)}, "migrate")
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [
        f"error: invalid configuration: rate_limit_burst in {path}: Input should be greater than or equal to 1"]
    write(path, f'database_url = "sqlite:///{tmp_path}/file.db"\ndata_dir = "{tmp_path}"\n')
    result = _cli({"IDSYNC_CONFIG": str(path)}, "migrate")
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "file.db").exists()  # the file's database, not the default one
    result = _cli({"IDSYNC_CONFIG": str(path), "IDSYNC_RATE_LIMIT_BURST": "0"}, "migrate")
    assert "IDSYNC_RATE_LIMIT_BURST: Input should be" in result.stderr
    write(path, "bogus = 1\n")
    result = _cli({"IDSYNC_CONFIG": str(path)}, "tenant", "list")
    assert result.returncode == 1
    assert result.stderr.strip() == f"error: config file {path}: unknown key bogus (keys are the settings' names, " \
                                    "e.g. database_url)"
