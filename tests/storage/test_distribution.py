"""Past one PostgreSQL server (docs/deployment.md, *Past one PostgreSQL server*): a distributed
PostgreSQL (Citus) shards a table by one column, and only accepts a table whose every primary key,
unique constraint, unique index and foreign key between sharded tables includes that column (a
shard can only enforce what lies within it). This test reads the declared schema and names every
table, key or index that would not distribute.

* tenant-owned tables are sharded by ``tenant_id``, all co-located;
* a few global tables, small (a row per tenant, a few signing keys), are reference tables:
  copied whole to every node, so any table may point at them;
* the engine's tables stay ordinary tables on the coordinator (Citus leaves a table it is not
  told about where it is): a job is not a tenant's (it targets any SCIM URL), an operator runs a
  handful of them, each by one leased worker whose every statement names the job, and a job's
  name is unique across the service, which a table sharded by job could not enforce. They point
  only at each other, and nothing else points at them.

The docs' Citus steps (docs/deployment.md) must declare every table as the lists here say.
"""

from __future__ import annotations

import re
from pathlib import Path

import sqlalchemy as sa

import identity_sync.engine.tables  # noqa: F401  (the engine's tables are declared on the same metadata)
from identity_sync.storage.tables import metadata

REFERENCE = frozenset({"tenants", "signing_keys", "operators", "auth_epoch"})
#: table -> its distribution column.
DISTRIBUTED = dict.fromkeys(
    ("resources", "attr_values", "resource_counts", "memberships", "former_memberships", "credentials",
     "audit_events", "oauth_clients", "oauth_client_secrets", "entra_trust", "oauth_federated_credentials",
     "rate_limit_buckets", "rejected_requests"), "tenant_id")
#: Ordinary tables of the coordinator, not distributed.
LOCAL = frozenset({"engine_jobs", "engine_cycles", "engine_events", "engine_links", "engine_memberships",
                   "engine_source_objects", "engine_escrows", "engine_notifications",
                   # the console's: operators' sessions and failed logins, and the request history
                   # (added to by every process, read for all tenants at once by the overview)
                   "console_sessions", "console_login_failures", "request_counts"})

DEPLOYMENT = Path(__file__).resolve().parents[2] / "docs" / "deployment.md"


def _names(columns: object) -> list[str]:
    return [c.name for c in columns]  # type: ignore[attr-defined]


def _problems(table: sa.Table) -> list[str]:
    name = table.name
    if name in LOCAL:
        return [f"{name}: local table with a foreign key to {fk.referred_table.name}"
                for fk in table.foreign_key_constraints if fk.referred_table.name not in LOCAL]
    problems = [f"{name}: foreign key to the coordinator's table {fk.referred_table.name}"
                for fk in table.foreign_key_constraints if fk.referred_table.name in LOCAL]
    if name in REFERENCE:
        return problems + [f"{name}: reference table with a foreign key to {fk.referred_table.name}"
                           for fk in table.foreign_key_constraints if fk.referred_table.name not in REFERENCE | LOCAL]
    key = DISTRIBUTED.get(name)
    if key is None:
        return [f"{name}: not classified above (reference, distributed by a column, or local?)"]
    problems += [] if key in table.c else [f"{name}: no column {key}"]
    if key not in _names(table.primary_key.columns):
        problems.append(f"{name}: primary key ({', '.join(_names(table.primary_key.columns))})")
    uniques = [_names(c.columns) for c in table.constraints if isinstance(c, sa.UniqueConstraint)]
    uniques += [[c.name] for c in table.columns if c.unique]
    uniques += [_names(i.columns) for i in table.indexes if i.unique]
    # dict.fromkeys: a column's unique=True is also among the table's constraints; name it once.
    problems += dict.fromkeys(f"{name}: unique ({', '.join(cols)})" for cols in uniques if key not in cols)
    for fk in table.foreign_key_constraints:
        target = fk.referred_table.name
        if target in REFERENCE or target in LOCAL:
            continue
        target_key = DISTRIBUTED.get(target)
        pairs = {(e.parent.name, e.column.name) for e in fk.elements}
        if (key, target_key) not in pairs:  # co-located only through the distribution columns
            problems.append(f"{name}: foreign key ({', '.join(_names(fk.columns))}) -> {target}")
    return problems


def problems() -> set[str]:
    return {problem for table in metadata.sorted_tables for problem in _problems(table)}


def test_every_table_is_a_reference_table_distributed_or_local() -> None:
    assert set(metadata.tables) == REFERENCE | set(DISTRIBUTED) | LOCAL
    assert not REFERENCE & set(DISTRIBUTED) and not LOCAL & (REFERENCE | set(DISTRIBUTED))


def test_nothing_new_would_fail_to_distribute() -> None:
    """A table, key or index added since the keys were made to distribute must distribute too
    (a new table must also be classified above: see the test before)."""
    assert sorted(problems()) == []


def test_the_checks_see_what_citus_refuses() -> None:
    table = sa.Table("t", sa.MetaData(), sa.Column("id", sa.String, primary_key=True),
                     sa.Column("tenant_id", sa.String), sa.Column("email", sa.String, unique=True))
    DISTRIBUTED["t"] = "tenant_id"
    try:
        assert _problems(table) == ["t: primary key (id)", "t: unique (email)"]
    finally:
        del DISTRIBUTED["t"]


def test_an_unclassified_table_is_named() -> None:
    table = sa.Table("a_new_table", sa.MetaData(), sa.Column("id", sa.String, primary_key=True))
    assert _problems(table) == ["a_new_table: not classified above (reference, distributed by a column, "
                                "or local?)"]


def test_the_checks_see_what_citus_refuses_between_tables() -> None:
    meta = sa.MetaData()
    sa.Table("p", meta, sa.Column("tenant_id", sa.String, primary_key=True),
             sa.Column("id", sa.String, primary_key=True))
    child = sa.Table("c", meta, sa.Column("tenant_id", sa.String, primary_key=True),
                     sa.Column("id", sa.String, primary_key=True), sa.Column("p_id", sa.String),
                     sa.ForeignKeyConstraint(["p_id"], ["p.id"]),
                     sa.Column("job", sa.String, sa.ForeignKey("engine_jobs.id")))
    sa.Table("engine_jobs", meta, sa.Column("id", sa.String, primary_key=True))
    DISTRIBUTED.update(p="tenant_id", c="tenant_id")
    try:
        assert _problems(child) == ["c: foreign key to the coordinator's table engine_jobs",
                                    "c: foreign key (p_id) -> p"]
    finally:
        del DISTRIBUTED["p"], DISTRIBUTED["c"]


def _declared_in_docs() -> tuple[list[str], dict[str, str], dict[str, str]]:
    """The docs' Citus steps: reference tables, distributed tables with their column, and what
    each distributed table is co-located with, in the order they are declared."""
    text = DEPLOYMENT.read_text()
    block = text[text.index("SELECT create_reference_table"):]
    block = block[:block.index("```")]
    reference = re.findall(r"create_reference_table\('(\w+)'\)", block)
    distributed: dict[str, str] = {}
    colocated: dict[str, str] = {}
    for table, column, rest in re.findall(r"create_distributed_table\('(\w+)', '(\w+)'(.*?)\);", block):
        distributed[table] = column
        match = re.search(r"colocate_with => '(\w+)'", rest)
        colocated[table] = match.group(1) if match else table
    return reference, distributed, colocated


def test_the_docs_declare_every_table_as_classified_here() -> None:
    reference, distributed, colocated = _declared_in_docs()
    assert sorted(reference) == sorted(REFERENCE)
    assert distributed == DISTRIBUTED
    # All co-located with the first distributed table, declared before any that names it.
    first = next(iter(distributed))
    assert set(colocated.values()) == {first}
    text = DEPLOYMENT.read_text()
    for table in LOCAL:
        assert f"`{table}`" in text, f"docs/deployment.md does not say where {table} stays"


def test_every_table_would_distribute() -> None:
    assert problems() == set()
