"""Live resource counts per tenant and type (``resource_counts``).

Every change to the set of live resources — :func:`changed` is called by ``resources.insert`` and
``resources.soft_delete`` in the transaction that makes the change — adds to ``live`` and bumps
``generation``. So:

* ``totalResults`` of an unfiltered list is one primary-key read, not a count over the tenant's
  rows on every page (which made index paging through N users cost O(N²));
* equal generations mean the same live set: a position remembered in a list (``marks.py``) is
  still exact while the generation has not moved. Updates do not bump it: they change neither
  the live set nor the creation order that unfiltered lists use.

On PostgreSQL the counter row is a lock that concurrent creates and deletes of one tenant and
type take in turn, from the moment of their change until they commit; that is only the end of
a short transaction.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy.engine import Connection

from identity_sync.storage import sqltext
from identity_sync.storage.sqltext import DriverConnection

_CHANGE = (
    "INSERT INTO resource_counts (tenant_id, resource_type, live, generation) "
    "VALUES ({tenant}, {rtype}, {delta}, 1) "
    "ON CONFLICT (tenant_id, resource_type) DO UPDATE "
    "SET live = resource_counts.live + {delta}, generation = resource_counts.generation + 1"
)
_READ = "SELECT live, generation FROM resource_counts WHERE tenant_id = {tenant} AND resource_type = {rtype}"
_RECOUNT = (
    "INSERT INTO resource_counts (tenant_id, resource_type, live, generation) "
    "SELECT tenant_id, resource_type, count(*), 1 FROM resources WHERE deleted_at IS NULL "
    "GROUP BY tenant_id, resource_type "
    "ON CONFLICT (tenant_id, resource_type) DO UPDATE SET live = excluded.live"
)


@dataclass(frozen=True, slots=True)
class LiveCount:
    live: int
    generation: int


def changed(conn: Connection, tenant_id: str, resource_type: str, delta: int) -> None:
    """``delta`` live resources more (or fewer) of ``resource_type``; a new generation."""
    sqltext.run(conn, _CHANGE, tenant=tenant_id, rtype=resource_type, delta=delta)


def read(conn: Connection | DriverConnection, tenant_id: str, resource_type: str) -> LiveCount:
    row = sqltext.run(conn, _READ, tenant=tenant_id, rtype=resource_type).first()
    return LiveCount(0, 0) if row is None else LiveCount(row[0], row[1])


def recount(conn: Connection) -> None:
    """Rebuild every count from the rows (for tools that load rows straight into ``resources``).
    Every generation moves on, so no remembered position survives; none ever goes back."""
    sqltext.run(conn, "UPDATE resource_counts SET live = 0, generation = generation + 1")
    sqltext.run(conn, _RECOUNT)
