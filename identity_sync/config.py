"""Settings: one typed object read from ``IDSYNC_*`` environment variables (and nothing else),
the same way by the server and by every CLI command."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field
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

    def resolved_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite:///{self.data_dir / 'identity-sync.db'}"
