"""Settings: one typed object read from ``IDSYNC_*`` environment variables (and nothing else),
the same way by the server and by every CLI command."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


def _default_data_dir() -> Path:
    import os

    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "identity-sync"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="IDSYNC_", extra="ignore")

    #: SQLAlchemy-style URL; default: ``sqlite:///<data_dir>/identity-sync.db``.
    database_url: str | None = None
    data_dir: Path = Field(default_factory=_default_data_dir)
    #: Base URL printed in Tenant URLs and used in ``meta.location`` (set it behind a proxy).
    public_url: str | None = None
    log_level: str = "INFO"

    max_body_bytes: int = 1_048_576
    json_max_depth: int = 32
    patch_max_operations: int = 1_000
    filter_max_length: int = 4_096
    filter_max_depth: int = 32
    filter_max_terms: int = 50
    default_page_size: int = 100
    max_page_size: int = 1_000
    #: The most values of one multi-valued attribute (``emails``, ``proxyAddresses``…; not a
    #: Group's members, which are rows): each value is indexed, so this bounds a write's work.
    attribute_max_values: int = Field(default=1_000, ge=1)
    #: The most names in ``attributes`` / ``excludedAttributes`` (each name is applied to each
    #: resource of a page: the cap bounds the work of rendering one page).
    attribute_list_max_names: int = Field(default=200, ge=1)
    #: Requests of one tenant served at once by one process; more get 429 + Retry-After, so
    #: that one tenant cannot occupy every worker thread (docs/security.md, Limits).
    tenant_max_concurrent_requests: int = Field(default=8, ge=0)
    #: Each tenant's share of one process's CPU (CPU-seconds per second, 0: unlimited) and how
    #: much it may save up: past it, 429 until it refills (web/limits.py CpuBudget).
    tenant_cpu_seconds_per_second: float = Field(default=0.5, ge=0)
    tenant_cpu_burst_seconds: float = Field(default=2.0, gt=0)
    #: ``sys.setswitchinterval`` of each serving process (Python's default: 0.005): see cli.serve.
    thread_switch_interval_seconds: float = Field(default=0.0005, gt=0, le=0.1)

    # -- authorization and limits (docs/security.md) --
    #: Lifetime of access tokens from the token endpoint: Entra accepts 1-6 hours.
    oauth_token_lifetime_seconds: int = Field(default=3_600, ge=3_600, le=21_600)
    #: ``iss`` of the access tokens we sign (and the only issuer our own tokens may carry).
    oauth_issuer: str = "identity-sync"
    #: Where the token-signing keys live (default ``<data_dir>/signing-keys``); every worker and
    #: node must see the same directory.
    signing_keys_dir: Path | None = None
    #: Encrypts the signing keys at rest (PKCS#8, AES-256-CBC): a file holding the passphrase (a
    #: systemd credential, a Kubernetes secret; trailing newline ignored) or the passphrase itself.
    #: Unset, the keys are owner-only files in clear (docs/security.md).
    signing_keys_passphrase_file: Path | None = None
    signing_keys_passphrase: SecretStr | None = None
    #: Lifetime of a new client secret (Microsoft's gallery rules: 1-3 years).
    client_secret_lifetime_days: int = Field(default=365, ge=1, le=1_095)
    #: Clock skew tolerated on ``exp``/``nbf`` of every JWT.
    jwt_leeway_seconds: int = Field(default=60, ge=0, le=300)
    #: How often each serving process runs the tombstone retention job (0: never; tenants
    #: without a retention period are never purged by it anyway).
    retention_interval_seconds: float = Field(default=3_600.0, ge=0)
    #: Per-tenant token bucket for SCIM requests (0 turns it off); Entra needs >= 25 req/s.
    rate_limit_per_second: float = Field(default=100.0, ge=0)
    rate_limit_burst: int = Field(default=300, ge=1)
    #: Per-tenant token bucket for the token endpoint (online guessing of client secrets).
    token_rate_limit_per_second: float = Field(default=5.0, ge=0)
    token_rate_limit_burst: int = Field(default=20, ge=1)
    #: Reverse proxies whose ``X-Forwarded-For``/``-Proto`` are believed (``serve
    #: --forwarded-allow-ips``): comma-separated addresses or networks; unset, none is.
    forwarded_allow_ips: str | None = None
    #: Largest token request body (a form with a client id, secret and scope is ~200 bytes).
    token_request_max_bytes: int = Field(default=8_192, ge=512)

    # -- the provisioning engine (docs/engine.md) --
    #: How long provisioning logs are kept (Entra: 30 days on premium tiers, 7 on free).
    engine_log_retention_days: int = Field(default=30, ge=0, le=36_500)
    #: Where a ``graph:`` source finds Microsoft Graph and its login (tests point them at a local server).
    graph_url: str = "https://graph.microsoft.com/v1.0"
    login_url: str = "https://login.microsoftonline.com"
    #: Quarantine for failed objects (engine/quarantine.py; Entra's values): at least this many failed
    #: in a cycle, and more than this share of its events or more than the maximum.
    engine_quarantine_min_failures: int = Field(default=5000, ge=1)
    engine_quarantine_failure_ratio: float = Field(default=0.4, gt=0, le=1)
    engine_quarantine_max_failures: int = Field(default=40000, ge=1)
    #: Cycles in a row that could not run (target unreachable, source unreadable) before quarantine.
    engine_quarantine_after_failed_cycles: int = Field(default=3, ge=1)

    # -- failure e-mail (docs/engine.md, Failure e-mail; engine/notify.py) --
    #: The SMTP server failure e-mails go through. Unset, e-mail is off: messages wait in the
    #: outbox and are sent once it is set.
    smtp_host: str | None = None
    smtp_port: int = Field(default=587, ge=1, le=65_535)
    #: ``starttls`` (the submission port, 587: refuses a server that does not offer it, never
    #: falls back to clear text), ``tls`` (implicit TLS, 465), ``none`` (a relay on loopback).
    smtp_security: Literal["starttls", "tls", "none"] = "starttls"
    smtp_username: str | None = None
    #: A file holding the SMTP password (trailing newline ignored), read at each send so that a
    #: rotated password needs no restart; the password itself is never a setting, so never in a repr.
    smtp_password_file: Path | None = None
    #: The sender, ``idsync@example.com`` or ``identity-sync <idsync@example.com>``.
    smtp_from: str | None = None
    #: PEM file of the CA(s) that signed the server's certificate, instead of the system's (a
    #: private CA). The certificate and its name are always verified.
    smtp_ca_file: Path | None = None
    smtp_timeout_seconds: float = Field(default=30.0, gt=0, le=600)

    @model_validator(mode="after")
    def _smtp_complete(self) -> Settings:
        if self.smtp_host is None:
            return self
        if not self.smtp_from or "@" not in self.smtp_from:
            raise ValueError("IDSYNC_SMTP_HOST is set: set IDSYNC_SMTP_FROM too, the sender's e-mail address")
        if (self.smtp_username is None) != (self.smtp_password_file is None):
            raise ValueError("set IDSYNC_SMTP_USERNAME and IDSYNC_SMTP_PASSWORD_FILE together, or neither")
        if self.smtp_username is not None and self.smtp_security == "none":
            raise ValueError("IDSYNC_SMTP_USERNAME with IDSYNC_SMTP_SECURITY=none would send the password in "
                             "clear: use starttls or tls")
        return self

    def resolved_smtp_password(self) -> str | None:
        """The SMTP password, read from its file now (``None``: no login)."""
        if self.smtp_password_file is None:
            return None
        return self.smtp_password_file.read_text(encoding="utf-8").rstrip("\r\n")

    def resolved_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite:///{self.data_dir / 'identity-sync.db'}"

    def resolved_signing_keys_dir(self) -> Path:
        return self.signing_keys_dir or self.data_dir / "signing-keys"

    @model_validator(mode="after")
    def _one_passphrase_source(self) -> Settings:
        if self.signing_keys_passphrase_file is not None and self.signing_keys_passphrase is not None:
            raise ValueError("set IDSYNC_SIGNING_KEYS_PASSPHRASE_FILE or IDSYNC_SIGNING_KEYS_PASSPHRASE, not both")
        if self.signing_keys_passphrase_file is not None:
            try:
                self.resolved_signing_keys_passphrase()
            except OSError as exc:
                raise ValueError(f"IDSYNC_SIGNING_KEYS_PASSPHRASE_FILE cannot be read: {exc.strerror}") from None
        return self

    def resolved_signing_keys_passphrase(self) -> bytes | None:
        """The passphrase of the signing keys, or ``None`` (keys in clear). Read on each call, so a
        rotated passphrase file is seen by new processes without a change of configuration."""
        if self.signing_keys_passphrase_file is not None:
            return self.signing_keys_passphrase_file.read_bytes().rstrip(b"\r\n") or None
        if self.signing_keys_passphrase is not None:
            return self.signing_keys_passphrase.get_secret_value().encode() or None
        return None
