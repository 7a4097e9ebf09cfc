"""``/readyz``: whether this process can serve — the database answers, its schema is at the newest
migration this release knows (a node of a new release started before ``migrate``, or an old one
after it, is not ready), and the signing keys open. ``/healthz`` only says the process is alive."""

from __future__ import annotations

from functools import cache

import sqlalchemy as sa
import structlog
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory

from identity_sync.auth.oauth import SigningKeys
from identity_sync.storage.db import MIGRATIONS, Database

log = structlog.get_logger("identity_sync.readiness")
OK = "ok"


@cache  # the migrations shipped with this release: read once per process, on the first /readyz
def migrations_head() -> str | None:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    return ScriptDirectory.from_config(config).get_current_head()


def check(db: Database, keys: SigningKeys) -> dict[str, str]:
    """Each check's outcome: ``ok``, or a word saying what is wrong (no detail: the endpoint is
    unauthenticated; the log says more)."""
    head = migrations_head()
    result = {"database": "unreachable", "migrations": "unknown", "signing_keys": "unknown"}
    try:
        with db.read() as conn:
            conn.execute(sa.text("SELECT 1"))
            result["database"] = OK
            current = MigrationContext.configure(conn).get_current_revision()
    except Exception as exc:  # whatever the driver raises, the answer is "not ready"
        log.warning("readyz.database", error=type(exc).__name__)
        return result
    result["migrations"] = OK if current == head else "pending"
    if current != head:
        log.warning("readyz.migrations", current=current, head=head)
    try:
        keys.kids()  # re-reads the keys, opening any new one
        result["signing_keys"] = OK
    except Exception as exc:
        log.warning("readyz.signing_keys", error=type(exc).__name__, detail=str(exc))
        result["signing_keys"] = "unusable"
    return result
