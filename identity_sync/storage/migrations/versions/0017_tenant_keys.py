"""Every tenant-owned table's primary key, unique constraints and foreign keys include tenant_id.

A distributed PostgreSQL (Citus) shards these tables by ``tenant_id`` and only accepts keys it can
enforce within one shard (docs/deployment.md, tests/storage/test_distribution.py). So:

* ``resources``, ``credentials``, ``oauth_clients``, ``audit_events``, ``former_memberships``:
  primary key ``(tenant_id, id)``;
* ``attr_values`` and ``memberships``: ``tenant_id`` first in the primary key, and their foreign
  keys to ``resources`` are ``(tenant_id, …) -> (tenant_id, id)``;
* ``oauth_client_secrets`` and ``oauth_federated_credentials`` get a ``tenant_id`` (their
  client's), keys ``(tenant_id, id)`` and foreign keys through ``(tenant_id, client_id)``;
* the digests of tokens and client secrets, and a client's federated credential, are unique
  within their tenant (``(tenant_id, secret_hash)``, ``(tenant_id, client_id)``);
* ``audit_events``: ``ix_audit_events_tenant (tenant_id, id)`` is the primary key now; an index on
  ``id`` alone replaces it (exports of every tenant read in id order, and SQLite numbers new
  events from the highest id).

PostgreSQL changes the constraints in place. SQLite cannot alter a primary key: each table is
rebuilt (the documented way: new table, copy, drop, rename, the same indexes again) with foreign
key enforcement off for the duration, then checked with ``PRAGMA foreign_key_check``. Rows are
kept on both, and ``downgrade`` restores the previous keys.

Revision ID: 0017
Revises: 0016
Create Date: 2026-12-05
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from alembic import op
from sqlalchemy.schema import CreateTable

revision = "0017"
down_revision = "0016"
branch_labels = None
depends_on = None

#: Rebuilt in this order: a table before those whose foreign keys point at it.
ORDER = ("resources", "attr_values", "memberships", "former_memberships", "credentials", "audit_events",
         "oauth_clients", "oauth_client_secrets", "oauth_federated_credentials")
#: The new primary keys.
PRIMARY = {
    "resources": ["tenant_id", "id"],
    "attr_values": ["tenant_id", "resource_id", "path", "element"],
    "memberships": ["tenant_id", "group_id", "member_id"],
    "former_memberships": ["tenant_id", "id"],
    "credentials": ["tenant_id", "id"],
    "audit_events": ["tenant_id", "id"],
    "oauth_clients": ["tenant_id", "id"],
    "oauth_client_secrets": ["tenant_id", "id"],
    "oauth_federated_credentials": ["tenant_id", "id"],
}
OLD_PRIMARY = {
    "resources": ["id"], "attr_values": ["resource_id", "path", "element"], "memberships": ["group_id", "member_id"],
    "former_memberships": ["id"], "credentials": ["id"], "audit_events": ["id"], "oauth_clients": ["id"],
    "oauth_client_secrets": ["id"], "oauth_federated_credentials": ["id"],
}
#: (table, name, columns) of the new unique constraints, and the single-column ones they replace.
UNIQUE = [
    ("credentials", "uq_credentials_tenant_secret_hash", ["tenant_id", "secret_hash"]),
    ("oauth_client_secrets", "uq_oauth_client_secrets_tenant_secret_hash", ["tenant_id", "secret_hash"]),
    ("oauth_federated_credentials", "uq_oauth_federated_credentials_tenant_client", ["tenant_id", "client_id"]),
]
OLD_UNIQUE = [("credentials", ["secret_hash"]), ("oauth_client_secrets", ["secret_hash"]),
              ("oauth_federated_credentials", ["client_id"])]
#: (table, columns, referred table, referred columns) of the new foreign keys between tenant tables.
FOREIGN = [
    ("attr_values", ["tenant_id", "resource_id"], "resources", ["tenant_id", "id"]),
    ("memberships", ["tenant_id", "group_id"], "resources", ["tenant_id", "id"]),
    ("memberships", ["tenant_id", "member_id"], "resources", ["tenant_id", "id"]),
    ("oauth_client_secrets", ["tenant_id", "client_id"], "oauth_clients", ["tenant_id", "id"]),
    ("oauth_federated_credentials", ["tenant_id", "id"], "oauth_client_secrets", ["tenant_id", "id"]),
    ("oauth_federated_credentials", ["tenant_id", "client_id"], "oauth_clients", ["tenant_id", "id"]),
]
OLD_FOREIGN = [
    ("attr_values", ["resource_id"], "resources", ["id"]),
    ("memberships", ["group_id"], "resources", ["id"]),
    ("memberships", ["member_id"], "resources", ["id"]),
    ("oauth_client_secrets", ["client_id"], "oauth_clients", ["id"]),
    ("oauth_federated_credentials", ["id"], "oauth_client_secrets", ["id"]),
    ("oauth_federated_credentials", ["client_id"], "oauth_clients", ["id"]),
]
#: Tables that gain tenant_id, filled from their client's row.
GAIN_TENANT = ("oauth_client_secrets", "oauth_federated_credentials")


def upgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        _rebuild_sqlite(new=True)
        return
    bind = op.get_bind()
    _drop_foreign_keys(bind)
    for table in GAIN_TENANT:
        op.add_column(table, sa.Column("tenant_id", sa.String(36)))
        op.execute(f"UPDATE {table} t SET tenant_id = c.tenant_id FROM oauth_clients c WHERE c.id = t.client_id")
        op.alter_column(table, "tenant_id", nullable=False)
    _set_primary_keys(bind, PRIMARY)
    inspector = sa.inspect(bind)
    for table, columns in OLD_UNIQUE:
        for unique in inspector.get_unique_constraints(table):
            if unique["column_names"] == columns:
                op.drop_constraint(_named(unique["name"]), table, type_="unique")
    for table, name, columns in UNIQUE:
        op.create_unique_constraint(name, table, columns)
    op.drop_index("ix_audit_events_tenant", table_name="audit_events")
    op.create_index("ix_audit_events_id", "audit_events", ["id"])
    for table, columns, referred, referred_columns in FOREIGN:
        op.create_foreign_key(None, table, referred, columns, referred_columns)


def downgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        _rebuild_sqlite(new=False)
        return
    bind = op.get_bind()
    _drop_foreign_keys(bind)
    for table, name, _columns in UNIQUE:
        op.drop_constraint(name, table, type_="unique")
    _set_primary_keys(bind, OLD_PRIMARY)
    for table, columns in OLD_UNIQUE:
        op.create_unique_constraint(None, table, columns)
    for table in GAIN_TENANT:
        op.drop_column(table, "tenant_id")
    op.drop_index("ix_audit_events_id", table_name="audit_events")
    op.create_index("ix_audit_events_tenant", "audit_events", ["tenant_id", "id"])
    for table, columns, referred, referred_columns in OLD_FOREIGN:
        op.create_foreign_key(None, table, referred, columns, referred_columns)


# -- PostgreSQL ------------------------------------------------------------------------------------

def _drop_foreign_keys(bind: sa.Connection) -> None:
    """The foreign keys between the re-keyed tables (a primary key cannot be dropped under one)."""
    inspector = sa.inspect(bind)
    for table in ORDER:
        for fk in inspector.get_foreign_keys(table):
            if fk["referred_table"] in PRIMARY:
                op.drop_constraint(_named(fk["name"]), table, type_="foreignkey")


def _named(name: str | None) -> str:
    """A constraint's name as PostgreSQL's inspector reports it (PostgreSQL names every one)."""
    assert name is not None
    return name


def _set_primary_keys(bind: sa.Connection, keys: dict[str, list[str]]) -> None:
    inspector = sa.inspect(bind)
    for table in ORDER:
        op.drop_constraint(_named(inspector.get_pk_constraint(table)["name"]), table, type_="primary")
        op.create_primary_key(f"{table}_pkey", table, keys[table])


# -- SQLite ----------------------------------------------------------------------------------------

def _schema(new: bool) -> sa.MetaData:
    """The nine tables as they are after (``new``) or before this migration, frozen here."""
    md = sa.MetaData()
    sa.Table("tenants", md, sa.Column("id", sa.String(36), primary_key=True))  # referred to only
    primary = PRIMARY if new else OLD_PRIMARY
    foreign: dict[str, list[sa.ForeignKeyConstraint]] = {}
    for table, columns, referred, referred_columns in FOREIGN if new else OLD_FOREIGN:
        foreign.setdefault(table, []).append(
            sa.ForeignKeyConstraint(columns, [f"{referred}.{c}" for c in referred_columns]))
    unique: dict[str, list[sa.UniqueConstraint]] = {}
    if new:
        for table, name, columns in UNIQUE:
            unique.setdefault(table, []).append(sa.UniqueConstraint(*columns, name=name))
    else:
        for table, columns in OLD_UNIQUE:
            unique.setdefault(table, []).append(sa.UniqueConstraint(*columns))

    def add_table(name: str, *columns: sa.Column, **kw: Any) -> None:
        sa.Table(name, md, *columns, sa.PrimaryKeyConstraint(*primary[name]), *foreign.get(name, []),
                 *unique.get(name, []), **kw)

    def tenant(fk: bool = False) -> sa.Column:
        args = [sa.ForeignKey("tenants.id")] if fk else []
        return sa.Column("tenant_id", sa.String(36), *args, nullable=False)

    s36, s32 = sa.String(36), sa.String(32)
    add_table("resources", sa.Column("id", s36, nullable=False), tenant(fk=True),
          sa.Column("resource_type", s32, nullable=False), sa.Column("name_key", sa.Text, nullable=False),
          sa.Column("doc", sa.JSON, nullable=False), sa.Column("version", sa.Integer, nullable=False),
          sa.Column("created_at", s32, nullable=False), sa.Column("last_modified", s32, nullable=False),
          sa.Column("deleted_at", s32))
    add_table("attr_values", sa.Column("resource_id", s36, nullable=False),
          sa.Column("path", sa.String(160), nullable=False),
          sa.Column("element", sa.Integer, nullable=False), tenant(), sa.Column("key", sa.Text, nullable=False),
          sqlite_with_rowid=False)
    add_table("memberships", sa.Column("group_id", s36, nullable=False), sa.Column("member_id", s36, nullable=False),
          tenant(), sa.Column("member_type", sa.String(8), nullable=False),
          sa.Column("created_at", s32, nullable=False))
    add_table("former_memberships", sa.Column("id", sa.Integer, nullable=False, autoincrement=not new), tenant(),
          sa.Column("group_id", s36, nullable=False), sa.Column("member_id", s36, nullable=False),
          sa.Column("member_type", sa.String(8), nullable=False), sa.Column("created_at", s32, nullable=False),
          sa.Column("ended_at", s32, nullable=False))
    add_table("credentials", sa.Column("id", sa.String(16), nullable=False), tenant(fk=True),
          sa.Column("kind", sa.String(16), nullable=False), sa.Column("secret_hash", sa.String(64), nullable=False),
          sa.Column("created_at", s32, nullable=False), sa.Column("expires_at", s32),
          sa.Column("last_used_at", s32), sa.Column("revoked_at", s32))
    add_table("audit_events", sa.Column("id", sa.Integer, nullable=False, autoincrement=not new), tenant(),
          sa.Column("at", s32, nullable=False), sa.Column("actor", sa.String(120), nullable=False),
          sa.Column("action", sa.String(16), nullable=False), sa.Column("resource_type", s32, nullable=False),
          sa.Column("resource_id", s36, nullable=False), sa.Column("version", sa.Integer),
          sa.Column("attributes", sa.Text, nullable=False))
    add_table("oauth_clients", sa.Column("id", sa.String(40), nullable=False), tenant(fk=True),
          sa.Column("scopes", sa.String(200), nullable=False), sa.Column("created_at", s32, nullable=False),
          sa.Column("revoked_at", s32))
    add_table("oauth_client_secrets", sa.Column("id", sa.String(16), nullable=False), *([tenant()] if new else []),
          sa.Column("client_id", sa.String(40), nullable=False),
          sa.Column("secret_hash", sa.String(64), nullable=False),
          sa.Column("created_at", s32, nullable=False), sa.Column("expires_at", s32, nullable=False),
          sa.Column("last_used_at", s32), sa.Column("revoked_at", s32))
    add_table("oauth_federated_credentials", sa.Column("id", sa.String(16), nullable=False),
          *([tenant()] if new else []),
          sa.Column("client_id", sa.String(40), nullable=False), sa.Column("issuer", sa.String(200), nullable=False),
          sa.Column("subject", sa.String(200), nullable=False), sa.Column("audience", sa.String(200), nullable=False),
          sa.Column("entra_tenant_id", s36, nullable=False), sa.Column("jwks", sa.Text),
          sa.Column("jwks_url", sa.String(500)), sa.Column("created_at", s32, nullable=False))
    return md


def _rebuild_sqlite(*, new: bool) -> None:
    bind = op.get_bind()
    md = _schema(new)
    # Off for the rebuild (a table being replaced is briefly missing under its children's foreign
    # keys), outside any transaction: SQLite ignores this pragma inside one. Migrations run on an
    # autocommit connection here (storage/db.py begins only write transactions), so the BEGIN below
    # makes the whole rebuild one transaction.
    bind.exec_driver_sql("PRAGMA foreign_keys=OFF")
    bind.exec_driver_sql("BEGIN IMMEDIATE")
    try:
        for name in ORDER:
            _rebuild_table(bind, md.tables[name], new=new)
        if new:
            bind.exec_driver_sql("DROP INDEX ix_audit_events_tenant")
            bind.exec_driver_sql("CREATE INDEX ix_audit_events_id ON audit_events (id)")
        else:
            bind.exec_driver_sql("DROP INDEX ix_audit_events_id")
            bind.exec_driver_sql("CREATE INDEX ix_audit_events_tenant ON audit_events (tenant_id, id)")
        broken = bind.exec_driver_sql("PRAGMA foreign_key_check").fetchall()
        if broken:
            raise RuntimeError(f"rows whose foreign keys do not hold after the rebuild: {broken[:10]}")
        bind.exec_driver_sql("COMMIT")
    except BaseException:
        bind.exec_driver_sql("ROLLBACK")
        raise
    finally:
        bind.exec_driver_sql("PRAGMA foreign_keys=ON")


def _rebuild_table(bind: sa.Connection, table: sa.Table, *, new: bool) -> None:
    name, temporary = table.name, f"_new_{table.name}"
    indexes = [sql for (sql,) in bind.exec_driver_sql(
        "SELECT sql FROM sqlite_master WHERE type = 'index' AND tbl_name = ? AND sql IS NOT NULL", (name,))]
    ddl = str(CreateTable(table).compile(dialect=bind.dialect)).strip()
    assert ddl.startswith(f"CREATE TABLE {name} (")
    bind.exec_driver_sql(ddl.replace(f"CREATE TABLE {name} (", f"CREATE TABLE {temporary} (", 1))
    columns = [c.name for c in table.columns]
    if new and name in GAIN_TENANT:
        # The client's tenant; a row whose client is missing would break a foreign key anyway.
        select = ", ".join("c.tenant_id" if c == "tenant_id" else f"t.{c}" for c in columns)
        source = f"{name} t JOIN oauth_clients c ON c.id = t.client_id"
    else:
        select, source = ", ".join(columns), name
    bind.exec_driver_sql(f"INSERT INTO {temporary} ({', '.join(columns)}) SELECT {select} FROM {source}")
    before = bind.exec_driver_sql(f"SELECT count(*) FROM {name}").scalar_one()
    after = bind.exec_driver_sql(f"SELECT count(*) FROM {temporary}").scalar_one()
    if before != after:
        raise RuntimeError(f"{name}: {before} rows, {after} copied (rows without a client?)")
    bind.exec_driver_sql(f"DROP TABLE {name}")
    bind.exec_driver_sql(f"ALTER TABLE {temporary} RENAME TO {name}")
    for sql in indexes:
        bind.exec_driver_sql(sql)
