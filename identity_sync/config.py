"""Settings: one typed object read the same way by the server and by every CLI command, from

1. the keyword arguments of ``Settings(...)`` (tests, embedding), over
2. ``IDSYNC_*`` environment variables, over
3. a TOML config file: ``IDSYNC_CONFIG`` names it (an empty value: none), else
   ``/etc/identity-sync/config.toml`` when it exists. Its keys are the field names below
   (``database_url = "postgresql://…"``, ``public_url = "https://scim.example.com"``).

One file read by ``serve`` and every CLI command is what keeps a command run in another shell from
silently opening another (new, empty) database or printing a loopback Tenant URL (issue 11).
A file that cannot be used is refused whole, with one line naming the file (and the key or the
line and column): a typo must not fall back to a default silently.
"""

from __future__ import annotations

import os
import stat
import tomllib
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, SecretStr, model_validator
from pydantic.fields import FieldInfo
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

#: Read when ``IDSYNC_CONFIG`` is unset and the file exists.
DEFAULT_CONFIG_FILE = Path("/etc/identity-sync/config.toml")
#: Keys whose value is a secret: a config file holding one must not be readable by every local
#: user (the ``*_file`` keys, which name a file holding the secret, are the better choice).
SECRET_KEYS = frozenset({"signing_keys_passphrase"})


class ConfigFileError(ValueError):
    """A config file that cannot be used; the message is one line naming the file."""


def config_file_path() -> Path | None:
    """The config file in effect: ``IDSYNC_CONFIG`` (which must then exist; empty: no file), else
    :data:`DEFAULT_CONFIG_FILE` if it exists, else none."""
    named = os.environ.get("IDSYNC_CONFIG")
    if named is not None:
        return Path(named).expanduser() if named.strip() else None
    return DEFAULT_CONFIG_FILE if DEFAULT_CONFIG_FILE.is_file() else None


def read_config_file(path: Path, fields: dict[str, FieldInfo]) -> dict[str, Any]:
    """The settings in ``path``, checked: TOML, only known keys, no secret in a world-readable file."""
    try:
        with path.open("rb") as handle:
            mode = os.fstat(handle.fileno()).st_mode
            values = tomllib.load(handle)
    except FileNotFoundError:
        raise ConfigFileError(f"config file {path} (IDSYNC_CONFIG) does not exist") from None
    except OSError as exc:
        raise ConfigFileError(f"config file {path} cannot be read: {exc.strerror}") from None
    except tomllib.TOMLDecodeError as exc:
        # tomllib's message ends with "(at line L, column C)".
        raise ConfigFileError(f"config file {path} is not valid TOML: {exc}") from None
    unknown = sorted(key for key in values if key not in fields)
    if unknown:
        raise ConfigFileError(f"config file {path}: unknown key{'s' if len(unknown) > 1 else ''} "
                              f"{', '.join(unknown)} (keys are the settings' names, e.g. database_url)")
    secrets = sorted(key for key in values if key in SECRET_KEYS or _has_password(key, values[key]))
    if secrets and mode & stat.S_IROTH:
        raise ConfigFileError(f"config file {path} holds a secret ({', '.join(secrets)}) and every local user can "
                              f"read it: chmod o-r it (e.g. 0640, group of the service), or use the *_file keys")
    return values


def _has_password(key: str, value: object) -> bool:
    if key != "database_url" or not isinstance(value, str):
        return False
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    try:
        return bool(make_url(value).password)
    except (ArgumentError, ValueError):
        return False


class TomlFileSource(PydanticBaseSettingsSource):
    """The config file as a pydantic-settings source (the lowest but the defaults)."""

    def __init__(self, settings_cls: type[BaseSettings]) -> None:
        super().__init__(settings_cls)
        path = config_file_path()
        self.values = read_config_file(path, settings_cls.model_fields) if path is not None else {}

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        return self.values.get(field_name), field_name, False

    def __call__(self) -> dict[str, Any]:
        return dict(self.values)


def set_in_environment(name: str) -> bool:
    """Whether the variable ``name`` is set (so that an error can say where a bad value came from)."""
    return name in os.environ


def prometheus_multiproc_dir() -> str | None:
    """prometheus-client's own ``PROMETHEUS_MULTIPROC_DIR``: the library reads this variable itself
    (when it is imported, in every worker process), so it cannot be a setting of ours: a value
    from the config file would disagree with what the library does. ``serve --workers`` sets it
    for its workers (cli/serve.py); metrics read it here, so that this module stays the one place
    that reads the environment."""
    return os.environ.get("PROMETHEUS_MULTIPROC_DIR") or None


def _default_data_dir() -> Path:
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "identity-sync"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="IDSYNC_", extra="ignore")

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # Earlier sources win: arguments, then the environment, then the config file.
        return init_settings, env_settings, TomlFileSource(settings_cls)

    #: SQLAlchemy-style URL; default: ``sqlite:///<data_dir>/identity-sync.db``.
    database_url: str | None = None
    data_dir: Path = Field(default_factory=_default_data_dir)
    #: Base URL printed in Tenant URLs and used in ``meta.location`` (set it behind a proxy).
    public_url: str | None = None
    #: ``serve``'s defaults for ``--host`` and ``--port``; in the config file, they also tell the
    #: other commands whether this is a loopback deployment (see ``cli._common.require_public_url``).
    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=1, le=65_535)
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
    #: While other tenants are served, how many of one tenant's admitted requests run at once
    #: (the others wait their turn, not refused; 0: no lanes). A tenant alone keeps all of
    #: ``tenant_max_concurrent_requests`` (web/limits.py Lanes).
    tenant_lanes: int = Field(default=1, ge=0)
    #: How long a costly request (a long PATCH, bulk or page) sleeps at each of its yield points while
    #: another tenant's light request runs, handing it the interpreter lock (0: never; needs lanes).
    costly_request_pause_seconds: float = Field(default=0.0002, ge=0, le=0.01)
    #: Serve the requests known costly before they run (a bulk, a large body or page, a long
    #: ``attributes`` list or filter) in a child process of their own, so that they do not hold the
    #: interpreter lock that every other tenant's requests need (web/offload.py).
    costly_requests_process: bool = True
    #: How long a read (GET) may run on the event loop itself, without the thread hop, before it
    #: gives up and runs again in a worker thread (0: always in a thread). SQLite files only:
    #: see identity_sync/nonblocking.py.
    read_on_event_loop_seconds: float = Field(default=0.002, ge=0, le=0.05)
    #: Processes serving behind one socket: ``serve --workers N`` sets it for its workers, and each
    #: one's in-process rate limiter then allows 1/N of a tenant's rate (auth/ratelimit.py).
    workers: int = Field(default=1, ge=1)
    #: ``sys.setswitchinterval`` of each serving process (Python's default: 0.005): see cli/serve.py.
    thread_switch_interval_seconds: float = Field(default=0.0005, gt=0, le=0.1)

    # -- authorization and limits (docs/security.md) --
    #: Lifetime of access tokens from the token endpoint: Entra accepts 1-6 hours.
    oauth_token_lifetime_seconds: int = Field(default=3_600, ge=3_600, le=21_600)
    #: ``iss`` of the access tokens we sign (and the only issuer our own tokens may carry).
    oauth_issuer: str = "identity-sync"
    #: The signing keys are in the database (auth/oauth.py); this directory (default
    #: ``<data_dir>/signing-keys``) holds the key file that seals them without a passphrase
    #: (``credentials.key``, sealing.py) and the key files of earlier releases, imported once.
    signing_keys_dir: Path | None = None
    #: Seals the signing keys and the engine's credentials at rest (AES-256-GCM, a key derived from
    #: it): a file holding the passphrase (a systemd credential, a Kubernetes secret; trailing
    #: newline ignored) or the passphrase itself. Unset, a random key file seals them; several
    #: nodes then all need a copy of it (docs/security.md).
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
    #: Where the tenants' buckets live: ``auto`` (PostgreSQL: in the database, shared by every
    #: worker and node; SQLite: in each process), or forced ``database`` / ``memory`` (web/limits.py).
    rate_limit_store: Literal["auto", "database", "memory"] = "auto"
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
    #: How long a job's lease lasts without renewal (engine/lease.py): a dead engine's job is taken
    #: over after at most this long.
    engine_lease_seconds: float = Field(default=300.0, ge=1.0, le=86_400.0)

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

    # -- the web console at /admin (docs/console.md) --
    #: Off: /admin answers 404 like any unknown path (operators use the CLI only).
    console_enabled: bool = True
    #: A console session ends after this long without a page view (the live progress poll does
    #: not count as one).
    console_session_idle_minutes: int = Field(default=30, ge=1, le=1_440)
    #: Mark the session cookie ``Secure`` (sent over HTTPS only). Turn off only to use the console
    #: over plain HTTP on loopback.
    console_secure_cookies: bool = True
    #: Sign-in through an OpenID Connect provider (console/oidc.py; docs/console.md, Single sign-on):
    #: its issuer URL (``https://login.example.com/realms/staff``; unset: password logins only).
    console_oidc_issuer: str | None = None
    console_oidc_client_id: str | None = None
    #: A file holding the client secret (trailing newline ignored; read at each sign-in). Unset: a
    #: public client (PKCE only).
    console_oidc_client_secret_file: Path | None = None
    #: The one redirect URI sent to the provider (register it there); default:
    #: ``<public_url>/admin/oidc/callback``.
    console_oidc_redirect_uri: str | None = None
    #: The ID token claim matched to an existing operator's name. No account is ever created by a
    #: sign-in; ``email`` needs ``email_verified: true``.
    console_oidc_operator_claim: Literal["email", "preferred_username", "sub"] = "email"
    console_oidc_scopes: str = "openid email profile"
    # -- observability (docs/observability.md) --
    #: Serve Prometheus metrics at ``/metrics`` (off: that path is 404).
    metrics_enabled: bool = True
    #: A file holding the bearer token ``/metrics`` then requires (trailing newline ignored; read at
    #: each scrape, so a rotated token needs no restart). Unset: ``/metrics`` is open, like ``/healthz``.
    metrics_token_file: Path | None = None

    @model_validator(mode="after")
    def _oidc_complete(self) -> Settings:
        if self.console_oidc_issuer is None:
            return self
        if not self.console_oidc_client_id:
            raise ValueError("IDSYNC_CONSOLE_OIDC_ISSUER is set: set IDSYNC_CONSOLE_OIDC_CLIENT_ID too")
        if self.console_oidc_redirect_uri is None and self.public_url is None:
            raise ValueError("IDSYNC_CONSOLE_OIDC_ISSUER is set: set IDSYNC_CONSOLE_OIDC_REDIRECT_URI (or "
                             "IDSYNC_PUBLIC_URL, whose /admin/oidc/callback it then is)")
        if "openid" not in self.console_oidc_scopes.split():
            raise ValueError("IDSYNC_CONSOLE_OIDC_SCOPES must include openid")
        return self

    def resolved_oidc_redirect_uri(self) -> str:
        if self.console_oidc_redirect_uri:
            return self.console_oidc_redirect_uri
        return f"{(self.public_url or '').rstrip('/')}/admin/oidc/callback"

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
