"""Past one PostgreSQL server (docs/deployment.md, *Past one PostgreSQL server*): a distributed
PostgreSQL (Citus) shards a table by one column, and only accepts a table whose every primary key,
unique constraint, unique index and foreign key between sharded tables includes that column (a
shard can only enforce what lies within it). This test reads the declared schema and names every
table, key or index that would not distribute.

* tenant-owned tables are sharded by ``tenant_id``, all co-located;
* the engine's tables are sharded by their job's id (``engine_jobs.id``, ``job_id`` elsewhere);
* a few global tables, small (a row per tenant, a few signing keys), are reference tables:
  copied whole to every node, so any table may point at them.
"""

from __future__ import annotations

import pytest
import sqlalchemy as sa

import identity_sync.engine.tables  # noqa: F401  (the engine's tables are declared on the same metadata)
from identity_sync.storage.tables import metadata

REFERENCE = frozenset({"tenants", "signing_keys", "operators", "auth_epoch"})
#: table -> its distribution column.
DISTRIBUTED = {
    **dict.fromkeys(("resources", "attr_values", "resource_counts", "memberships", "former_memberships",
                     "credentials", "audit_events", "oauth_clients", "oauth_client_secrets", "entra_trust",
                     "oauth_federated_credentials", "rate_limit_buckets"), "tenant_id"),
    "engine_jobs": "id",
    **dict.fromkeys(("engine_cycles", "engine_events", "engine_links", "engine_memberships", "engine_source_objects",
                     "engine_escrows", "engine_notifications"), "job_id"),
}

#: What would not distribute today (issue 11 leaves the schema change to a migration of its own:
#: each of these needs tenant_id or job_id added to a key, and the statements that use the key
#: taught to name it). A new entry makes test_nothing_new_would_fail_to_distribute fail.
KNOWN = frozenset({
    "audit_events: primary key (id)",
    "credentials: primary key (id)",
    "credentials: unique (secret_hash)",
    "former_memberships: primary key (id)",
    "oauth_clients: primary key (id)",
    "resources: primary key (id)",
    "attr_values: primary key (resource_id, path, element)",
    "attr_values: foreign key (resource_id) -> resources",
    "memberships: primary key (group_id, member_id)",
    "memberships: foreign key (group_id) -> resources",
    "memberships: foreign key (member_id) -> resources",
    "oauth_client_secrets: no column tenant_id",
    "oauth_client_secrets: primary key (id)",
    "oauth_client_secrets: unique (secret_hash)",
    "oauth_client_secrets: foreign key (client_id) -> oauth_clients",
    "oauth_federated_credentials: no column tenant_id",
    "oauth_federated_credentials: primary key (id)",
    "oauth_federated_credentials: unique (client_id)",
    "oauth_federated_credentials: foreign key (id) -> oauth_client_secrets",
    "oauth_federated_credentials: foreign key (client_id) -> oauth_clients",
    "engine_jobs: unique (name)",
    "engine_cycles: primary key (id)",
    "engine_events: primary key (id)",
})


def _names(columns: object) -> list[str]:
    return [c.name for c in columns]  # type: ignore[attr-defined]


def _problems(table: sa.Table) -> list[str]:
    name = table.name
    if name in REFERENCE:
        return [f"{name}: reference table with a foreign key to {fk.referred_table.name}"
                for fk in table.foreign_key_constraints if fk.referred_table.name not in REFERENCE]
    key = DISTRIBUTED[name]
    problems = [] if key in table.c else [f"{name}: no column {key}"]
    if key not in _names(table.primary_key.columns):
        problems.append(f"{name}: primary key ({', '.join(_names(table.primary_key.columns))})")
    uniques = [_names(c.columns) for c in table.constraints if isinstance(c, sa.UniqueConstraint)]
    uniques += [[c.name] for c in table.columns if c.unique]
    uniques += [_names(i.columns) for i in table.indexes if i.unique]
    # dict.fromkeys: a column's unique=True is also among the table's constraints; name it once.
    problems += dict.fromkeys(f"{name}: unique ({', '.join(cols)})" for cols in uniques if key not in cols)
    for fk in table.foreign_key_constraints:
        target = fk.referred_table.name
        if target in REFERENCE:
            continue
        target_key = DISTRIBUTED[target]
        pairs = {(e.parent.name, e.column.name) for e in fk.elements}
        if (key, target_key) not in pairs:  # co-located only through the distribution columns
            problems.append(f"{name}: foreign key ({', '.join(_names(fk.columns))}) -> {target}")
    return problems


def problems() -> set[str]:
    return {problem for table in metadata.sorted_tables for problem in _problems(table)}


def test_every_table_is_either_a_reference_table_or_distributed() -> None:
    assert set(metadata.tables) == REFERENCE | set(DISTRIBUTED)
    assert not REFERENCE & set(DISTRIBUTED)


def test_nothing_new_would_fail_to_distribute() -> None:
    """A table, key or index added since the list above was made must distribute."""
    assert problems() - KNOWN == set()


def test_the_checks_see_what_citus_refuses() -> None:
    table = sa.Table("t", sa.MetaData(), sa.Column("id", sa.String, primary_key=True),
                     sa.Column("tenant_id", sa.String), sa.Column("email", sa.String, unique=True))
    DISTRIBUTED["t"] = "tenant_id"
    try:
        assert _problems(table) == ["t: primary key (id)", "t: unique (email)"]
    finally:
        del DISTRIBUTED["t"]


@pytest.mark.xfail(strict=True, reason="not yet: " + "; ".join(sorted(KNOWN)))
def test_every_table_would_distribute() -> None:
    assert problems() == set()
