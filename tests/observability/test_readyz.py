"""``/readyz``: 200 when the database answers, its schema is at this release's newest migration
and the signing keys open; else 503 saying which check failed — and nothing more (no versions,
no error text: the endpoint is unauthenticated)."""

from __future__ import annotations

from pathlib import Path

import sqlalchemy as sa
from starlette.testclient import TestClient

from identity_sync.config import Settings
from identity_sync.storage.db import Database
from identity_sync.web.app import create_app
from tests.pg import free_port


def test_ready_when_database_migrations_and_keys_are_fine(http: TestClient) -> None:
    response = http.get("/readyz")
    assert response.status_code == 200
    assert response.json() == {"database": "ok", "migrations": "ok", "signing_keys": "ok"}
    assert http.get("/healthz").status_code == 200


def test_not_ready_on_a_database_without_the_schema(tmp_path: Path) -> None:
    settings = Settings(database_url=f"sqlite:///{tmp_path / 'empty.db'}", data_dir=tmp_path)
    db = Database(settings.resolved_database_url())  # never migrated
    try:
        with TestClient(create_app(settings, db)) as http:
            response = http.get("/readyz")
    finally:
        db.dispose()
    assert response.status_code == 503
    assert response.json() == {"database": "ok", "migrations": "pending", "signing_keys": "unusable"}


def test_not_ready_when_the_schema_is_behind(settings: Settings, db: Database, http: TestClient) -> None:
    with db.write() as conn:  # as if a newer release's node had not migrated yet... or this one's
        conn.execute(sa.text("UPDATE alembic_version SET version_num = '0001'"))
    response = http.get("/readyz")
    assert response.status_code == 503
    assert response.json()["migrations"] == "pending"
    assert response.json()["database"] == "ok"


def test_not_ready_when_the_database_cannot_be_reached(tmp_path: Path) -> None:
    # A PostgreSQL server that is not there: nothing listens on the port.
    settings = Settings(database_url=f"postgresql://idsync@127.0.0.1:{free_port()}/idsync", data_dir=tmp_path)
    db = Database(settings.resolved_database_url())
    try:
        response = TestClient(create_app(settings, db)).get("/readyz")  # no lifespan: its jobs need the database
    finally:
        db.dispose()
    assert response.status_code == 503
    assert response.json() == {"database": "unreachable", "migrations": "unknown", "signing_keys": "unknown"}


def test_not_ready_when_a_signing_key_cannot_be_opened(settings: Settings, db: Database, http: TestClient) -> None:
    from identity_sync.storage.tables import signing_keys

    assert http.get("/readyz").status_code == 200
    with db.write() as conn:
        conn.execute(sa.insert(signing_keys).values(kid="zz-damaged", created_at="2026-01-01T00:00:00.000000Z",
                                                    private_key="not a sealed key"))
    response = http.get("/readyz")
    assert response.status_code == 503
    assert response.json() == {"database": "ok", "migrations": "ok", "signing_keys": "unusable"}
    assert "zz-damaged" not in response.text
