"""Migration 0017 (every tenant-owned key includes tenant_id) keeps the rows of a database that
has some, on SQLite and PostgreSQL, and its downgrade restores the previous keys with the rows."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
import sqlalchemy as sa
from alembic import command
from alembic.config import Config

from identity_sync.storage.db import MIGRATIONS, Database

NOW = "2026-12-05T00:00:00.000000Z"
T1, T2 = "00000000-0000-0000-0000-00000000000a", "00000000-0000-0000-0000-00000000000b"

#: Rows written at revision 0016 (before the migration), table by table, parents first.
ROWS: dict[str, list[dict[str, object]]] = {
    "tenants": [{"id": t, "name": n, "status": "active", "created_at": NOW}
                for t, n in ((T1, "acme"), (T2, "initech"))],
    "resources": [
        {"id": rid, "tenant_id": t, "resource_type": kind, "name_key": rid, "doc": f'{{"id": "{rid}"}}', "version": 1,
         "created_at": NOW, "last_modified": NOW, "deleted_at": None}
        for rid, t, kind in (("u1", T1, "User"), ("g1", T1, "Group"), ("u2", T2, "User"))],
    "attr_values": [{"resource_id": "u1", "path": "username", "element": 0, "tenant_id": T1, "key": "u1"},
                    {"resource_id": "u2", "path": "username", "element": 0, "tenant_id": T2, "key": "u2"}],
    "memberships": [{"group_id": "g1", "member_id": "u1", "tenant_id": T1, "member_type": "User",
                     "created_at": NOW}],
    "former_memberships": [{"id": 7, "tenant_id": T1, "group_id": "g1", "member_id": "gone", "member_type": "User",
                            "created_at": NOW, "ended_at": NOW}],
    "credentials": [{"id": "c1", "tenant_id": T1, "kind": "bearer", "secret_hash": "h1", "created_at": NOW},
                    {"id": "c2", "tenant_id": T2, "kind": "bearer", "secret_hash": "h2", "created_at": NOW}],
    "audit_events": [{"id": i, "tenant_id": t, "at": NOW, "actor": "a", "action": "create", "resource_type": "User",
                      "resource_id": r, "version": 1, "attributes": "[]"}
                     for i, t, r in ((1, T1, "u1"), (2, T2, "u2"))],
    "oauth_clients": [{"id": "k1", "tenant_id": T1, "scopes": "scim:read", "created_at": NOW},
                      {"id": "k2", "tenant_id": T2, "scopes": "scim:read", "created_at": NOW}],
    "oauth_client_secrets": [
        {"id": "s1", "client_id": "k1", "secret_hash": "x1", "created_at": NOW, "expires_at": NOW},
        {"id": "s2", "client_id": "k2", "secret_hash": "wif:x2", "created_at": NOW, "expires_at": NOW}],
    "oauth_federated_credentials": [
        {"id": "s2", "client_id": "k2", "issuer": "i", "subject": "s", "audience": "a", "entra_tenant_id": "e",
         "created_at": NOW}],
}
#: What the migration adds: each OAuth secret and federated credential gets its client's tenant.
TENANT_OF = {("oauth_client_secrets", "s1"): T1, ("oauth_client_secrets", "s2"): T2,
             ("oauth_federated_credentials", "s2"): T2}


def _config(conn: sa.Connection) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["connection"] = conn
    return config


def _migrate(db: Database, revision: str, *, down: bool = False) -> None:
    with db.engine.connect() as conn:
        (command.downgrade if down else command.upgrade)(_config(conn), revision)
        conn.commit()


def _contents(db: Database) -> dict[str, list[dict[str, object]]]:
    """Every row of the tables above, without the columns the migration adds, in a stable order."""
    out = {}
    with db.engine.connect() as conn:
        for table in ROWS:
            rows = [dict(r._mapping) for r in conn.exec_driver_sql(f"SELECT * FROM {table}")]
            for row in rows:
                if table in ("oauth_client_secrets", "oauth_federated_credentials"):
                    row.pop("tenant_id", None)
                if table == "resources":
                    row["doc"] = row["doc"] if isinstance(row["doc"], dict) else json.loads(row["doc"])
            out[table] = sorted(rows, key=repr)
    return out


def _keys(db: Database, table: str) -> tuple[list[str], list[list[str]]]:
    with db.engine.connect() as conn:
        inspector = sa.inspect(conn)
        primary = inspector.get_pk_constraint(table)["constrained_columns"]
        foreign = [fk["constrained_columns"] for fk in inspector.get_foreign_keys(table)
                   if fk["referred_table"] != "tenants"]
    return primary, sorted(foreign)


@pytest.fixture
def db_at_0016(empty_url: str) -> Iterator[Database]:
    db = Database(empty_url)
    _migrate(db, "0016")
    with db.engine.connect() as conn, conn.begin():
        meta = sa.MetaData()
        meta.reflect(conn)
        for table, rows in ROWS.items():
            conn.execute(meta.tables[table].insert(), rows)
    yield db
    db.dispose()


def test_upgrade_keeps_every_row_and_rekeys_by_tenant(db_at_0016: Database) -> None:
    db = db_at_0016
    before = _contents(db)
    assert _keys(db, "memberships") == (["group_id", "member_id"], [["group_id"], ["member_id"]])
    _migrate(db, "0017")
    assert _contents(db) == before
    assert _keys(db, "resources")[0] == ["tenant_id", "id"]
    assert _keys(db, "attr_values") == (["tenant_id", "resource_id", "path", "element"], [["tenant_id", "resource_id"]])
    assert _keys(db, "memberships") == (["tenant_id", "group_id", "member_id"],
                                        [["tenant_id", "group_id"], ["tenant_id", "member_id"]])
    assert _keys(db, "oauth_federated_credentials") == (["tenant_id", "id"],
                                                        [["tenant_id", "client_id"], ["tenant_id", "id"]])
    with db.engine.connect() as conn:
        for (table, row_id), tenant in TENANT_OF.items():
            assert conn.execute(sa.text(f"SELECT tenant_id FROM {table} WHERE id = :id"),
                                {"id": row_id}).scalar_one() == tenant
        # The digest is unique within a tenant now, no longer across tenants.
        conn.execute(sa.text("INSERT INTO credentials (id, tenant_id, kind, secret_hash, created_at) "
                             "VALUES ('c3', :t, 'bearer', 'h1', :now)"), {"t": T2, "now": NOW})
        with pytest.raises(sa.exc.IntegrityError):
            conn.execute(sa.text("INSERT INTO credentials (id, tenant_id, kind, secret_hash, created_at) "
                                 "VALUES ('c4', :t, 'bearer', 'h1', :now)"), {"t": T1, "now": NOW})
        conn.rollback()
        # The composite foreign keys hold: a membership cannot name another tenant's resource.
        with pytest.raises(sa.exc.IntegrityError):
            conn.execute(sa.text("INSERT INTO memberships (group_id, member_id, tenant_id, member_type, created_at) "
                                 "VALUES ('g1', 'u2', :t, 'User', :now)"), {"t": T1, "now": NOW})
        conn.rollback()


def test_downgrade_restores_the_previous_keys_with_the_rows(db_at_0016: Database) -> None:
    db = db_at_0016
    before = _contents(db)
    _migrate(db, "0017")
    _migrate(db, "0016", down=True)
    assert _contents(db) == before
    assert _keys(db, "resources")[0] == ["id"]
    assert _keys(db, "memberships") == (["group_id", "member_id"], [["group_id"], ["member_id"]])
    with db.engine.connect() as conn:
        columns = [c["name"] for c in sa.inspect(conn).get_columns("oauth_client_secrets")]
    assert "tenant_id" not in columns
    _migrate(db, "head")  # and up again
    assert _contents(db) == before
