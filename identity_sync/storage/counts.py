"""Live resource counts per tenant and type (``resource_counts``).

Every change to the set of live resources adds to ``live`` and gives the row a new
``generation``: the service calls :func:`changed` in the transaction that creates or deletes a
resource. So:

* ``totalResults`` of an unfiltered list is one primary-key read, not a count over the tenant's
  rows on every page (which made index paging through N users cost O(N²));
* equal generations mean the same live set: a position remembered in a list (``marks.py``) is
  still exact while the generation has not moved. Updates do not change it: they change neither
  the live set nor the creation order that unfiltered lists use.

A generation is a random 62-bit number, not a sequence: a sequence would hand out the same
number again after a database failover that lost the last commits, or a restore from backup,
and a running process would take its old marks for current. Random numbers never repeat (in
practice), so a mark can only ever be used with the live set it was made on.

Call :func:`changed` as the *last* statement of the transaction. On PostgreSQL the counter row
is a lock that concurrent creates and deletes of one tenant and type take in turn until they
commit. Taken last, it is held only for the commit, and the transaction holding it waits for no
other lock, so it cannot be part of a deadlock (taken first, a group create held it while its
member inserts waited for a member being deleted, whose delete waited for the counter).

Rows written straight into ``resources`` (bulk-load tools, nodes of a release from before these
counts during a rolling upgrade) are not counted: ``identity-sync migrate --recount`` rebuilds
the counts from the rows.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass

from sqlalchemy.engine import Connection

from identity_sync.storage import sqltext
from identity_sync.storage.sqltext import DriverConnection

_CHANGE = (
    "INSERT INTO resource_counts (tenant_id, resource_type, live, generation) "
    "VALUES ({tenant}, {rtype}, {delta}, {generation}) "
    "ON CONFLICT (tenant_id, resource_type) DO UPDATE "
    "SET live = resource_counts.live + {delta}, generation = {generation}"
)
_READ = "SELECT live, generation FROM resource_counts WHERE tenant_id = {tenant} AND resource_type = {rtype}"
_RECOUNT = (
    "INSERT INTO resource_counts (tenant_id, resource_type, live, generation) "
    "SELECT tenant_id, resource_type, count(*), {generation} FROM resources WHERE deleted_at IS NULL "
    "GROUP BY tenant_id, resource_type "
    "ON CONFLICT (tenant_id, resource_type) DO UPDATE SET live = excluded.live"
)


@dataclass(frozen=True, slots=True)
class LiveCount:
    live: int
    generation: int


def new_generation() -> int:
    return secrets.randbits(62) + 1  # never 0: the generation of a tenant that has no row yet


def changed(conn: Connection, tenant_id: str, resource_type: str, delta: int) -> None:
    """``delta`` live resources more (or fewer) of ``resource_type``; a new generation."""
    sqltext.run(conn, _CHANGE, tenant=tenant_id, rtype=resource_type, delta=delta, generation=new_generation())


def read(conn: Connection | DriverConnection, tenant_id: str, resource_type: str) -> LiveCount:
    row = sqltext.run(conn, _READ, tenant=tenant_id, rtype=resource_type).first()
    return LiveCount(0, 0) if row is None else LiveCount(row[0], row[1])


def recount(conn: Connection) -> int:
    """Rebuild every count from the rows; every generation changes, so no remembered position
    survives. Returns how many (tenant, type) counts there are."""
    sqltext.run(conn, "UPDATE resource_counts SET live = 0, generation = {generation}", generation=new_generation())
    sqltext.run(conn, _RECOUNT, generation=new_generation())
    return sqltext.run(conn, "SELECT count(*) FROM resource_counts").scalar_one()
