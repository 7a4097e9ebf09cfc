"""Every statement on a tenant-owned table names its tenant (docs/deployment.md, *Past one
PostgreSQL server*): a distributed PostgreSQL (Citus) routes a statement to the one node holding a
tenant only when each tenant-owned table in it is constrained by ``tenant_id``.

The test records every statement the database receives — through SQLAlchemy
(``before_cursor_execute``) and through the driver connections of the prepared reads
(``sqltext.DriverConnection``) — while the service's flows run: users and groups created, read,
listed, filtered, sorted, paged, patched, replaced and deleted; memberships; bulk; ``/.search``;
static tokens, OAuth clients, secrets, federated credentials and Entra trust; the audit trail;
tombstones and the retention job. Each statement that touches a tenant-owned table must, for
each reference to one, either insert ``tenant_id`` or constrain it — ``= <parameter>``,
``IN (<parameters>)``, or ``= <other>.tenant_id`` of a reference that is itself constrained (a
co-located join). The few statements exempt are listed in :data:`EXEMPT` with their reason.

No SQL parser is in the lock files; :func:`unrouted` is a careful check of the statement text
(string literals removed, each ``FROM``/``JOIN``/``UPDATE``/``INTO`` reference and its alias
found, predicates matched per alias), and ``test_the_check_refuses_*`` show it failing on the
shapes it must catch.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import sqlalchemy as sa

from identity_sync.auth import ratelimit
from identity_sync.config import Settings
from identity_sync.service.audit import AuditService
from identity_sync.service.clients import ClientService
from identity_sync.service.tenants import TenantService
from identity_sync.service.tombstones import TombstoneService
from identity_sync.storage import sqltext
from identity_sync.storage.db import Database
from tests.auth import jwt_helpers as jh
from tests.conftest import ScimClient
from tests.storage.test_distribution import DISTRIBUTED

TENANT_TABLES = frozenset(DISTRIBUTED)
USER = "urn:ietf:params:scim:schemas:core:2.0:User"
GROUP = "urn:ietf:params:scim:schemas:core:2.0:Group"
PATCH = "urn:ietf:params:scim:api:messages:2.0:PatchOp"

#: Statements allowed to touch a tenant-owned table without naming the tenant: (pattern, dialect
#: or None for both, reason).
EXEMPT = [
    (r"^INSERT INTO audit_events \(id, .*\(SELECT coalesce\(max\(audit_events\.id\), 0\) \+ 1 "
     r"FROM audit_events\)", "sqlite",
     "SQLite numbers audit events from the highest id (no sequence there); SQLite is never distributed"),
    (r"^SELECT audit_events\..* FROM audit_events ORDER BY audit_events\.id", None,
     "the operator's export of every tenant's audit trail (`audit list` without --tenant): across tenants "
     "by nature; Citus runs it on every shard"),
    (r"^UPDATE resource_counts SET live = 0, generation = |^SELECT count\(\*\) FROM resource_counts$"
     r"|^INSERT INTO resource_counts \(tenant_id, resource_type, live, generation\) SELECT tenant_id, resource_type, "
     r"count\(\*\), \S+ FROM resources WHERE deleted_at IS NULL GROUP BY tenant_id, resource_type", None,
     "the operator's `recount` of every tenant's live resources: across tenants by nature; Citus runs it on every "
     "shard (grouped by tenant_id, co-located with resources)"),
]

_PARAM = r"(?:\?|:\w+|%\(\w+\)s|\$\d+)"
_KEYWORDS = {"where", "join", "left", "right", "inner", "outer", "cross", "full", "on", "set", "order", "group",
             "limit", "offset", "values", "select", "default", "using", "returning", "for", "union", "having",
             "window", "natural", "as", "and", "or"}
_REFERENCE = re.compile(r"\b(from|join|update|into)\s+(\w+)(?:\s+(?:as\s+)?(\w+))?", re.IGNORECASE)


def _constrained(alias: str, text: str, start: int = 0) -> list[re.Match[str]]:
    """``alias.tenant_id`` (or, for ``alias=None``, a bare or table-qualified one) compared with
    a parameter, after ``start``."""
    column = rf"(?<![\w.]){re.escape(alias)}\.tenant_id"
    pattern = (rf"{column}(?:\s*\|\|\s*'')?\s*(?:=\s*{_PARAM}|in\s*\(\s*{_PARAM})"
               rf"|{_PARAM}\s*=\s*{column}")
    return [m for m in re.finditer(pattern, text, re.IGNORECASE) if m.start() >= start]


def unrouted(statement: str) -> list[str]:
    """The references to tenant-owned tables in ``statement`` that do not name the tenant."""
    text = re.sub(r"'[^']*'", "''", " ".join(statement.split()))
    references = []
    for match in _REFERENCE.finditer(text):
        keyword, table, alias = match.group(1).lower(), match.group(2).lower(), match.group(3)
        if table not in TENANT_TABLES:
            continue
        if alias is not None and alias.lower() in _KEYWORDS:
            alias = None
        references.append((keyword, table, alias, match.end()))
    if not references:
        return []
    anchored: set[str] = set()
    pending = []
    used_bare: set[int] = set()
    for keyword, table, alias, end in references:
        if keyword == "into":
            columns = re.match(r"\s*\(([^)]*)\)", text[end:])
            # The row's tenant_id routes it. Not "anchored": a subquery on the same table (bare,
            # so with the same name) must name the tenant itself.
            if not (columns and "tenant_id" in [c.strip().lower() for c in columns.group(1).split(",")]):
                pending.append((table, alias or table, "inserted without tenant_id"))
            continue
        if alias is not None:
            if _constrained(alias, text):
                anchored.add(alias)
            else:
                pending.append((table, alias, "no tenant_id predicate"))
            continue
        # A bare reference: the first unclaimed `tenant_id = …` (bare or `table.`) after it.
        bare = [m for m in _constrained(table, text, end) + _bare(text, end) if m.start() not in used_bare]
        if bare:
            used_bare.add(min(bare, key=lambda m: m.start()).start())
            anchored.add(table)
        else:
            pending.append((table, table, "no tenant_id predicate"))
    # Co-located joins: `x.tenant_id = y.tenant_id` with y constrained constrains x.
    joins = re.findall(r"(?<![\w.])(\w+)\.tenant_id\s*=\s*(\w+)\.tenant_id", text, re.IGNORECASE)
    changed = True
    while changed:
        changed = False
        for left, right in joins:
            for a, b in ((left, right), (right, left)):
                if b in anchored and a not in anchored:
                    anchored.add(a)
                    changed = True
    return [f"{table} ({alias}): {why}" for table, alias, why in pending if alias not in anchored]


def _bare(text: str, start: int) -> list[re.Match[str]]:
    pattern = rf"(?<![\w.])tenant_id(?:\s*\|\|\s*'')?\s*(?:=\s*{_PARAM}|in\s*\(\s*{_PARAM})"
    return [m for m in re.finditer(pattern, text, re.IGNORECASE) if m.start() >= start]


def _exempt(statement: str, dialect: str) -> bool:
    text = " ".join(statement.split())
    return any(re.search(pattern, text) and only in (None, dialect) for pattern, only, _ in EXEMPT)


# -- the check itself --------------------------------------------------------------------------------


@pytest.mark.parametrize(("statement", "expected"), [
    ("SELECT * FROM resources WHERE resources.id = ?", ["resources (resources): no tenant_id predicate"]),
    ("SELECT m.member_id FROM memberships m JOIN resources r ON r.id = m.group_id WHERE m.tenant_id = %(t)s",
     ["resources (r): no tenant_id predicate"]),
    ("INSERT INTO oauth_client_secrets (id, client_id) VALUES (?, ?)",
     ["oauth_client_secrets (oauth_client_secrets): inserted without tenant_id"]),
    ("SELECT * FROM attr_values WHERE tenant_id = ? AND resource_id IN (SELECT id FROM resources WHERE x = ?)",
     ["resources (resources): no tenant_id predicate"]),
    ("SELECT 1 FROM credentials c WHERE c.tenant_id = 'acme'", ["credentials (c): no tenant_id predicate"]),
    ("UPDATE memberships SET x = ? WHERE memberships.group_id = ?",
     ["memberships (memberships): no tenant_id predicate"]),
    ("SELECT s.key FROM attr_values s WHERE s.tenant_id = r.tenant_id", ["attr_values (s): no tenant_id predicate"]),
    ("INSERT INTO audit_events (id, tenant_id) VALUES ((SELECT max(audit_events.id) FROM audit_events), ?)",
     ["audit_events (audit_events): no tenant_id predicate"]),
])
def test_the_check_refuses_statements_that_do_not_name_the_tenant(statement: str, expected: list[str]) -> None:
    assert unrouted(statement) == expected


@pytest.mark.parametrize("statement", [
    "SELECT r.id FROM resources r WHERE r.tenant_id || '' = :tenant AND r.id IN "
    "(SELECT v1.resource_id FROM attr_values v1 WHERE v1.tenant_id = :tenant AND EXISTS "
    "(SELECT 1 FROM attr_values v2 WHERE v2.tenant_id = v1.tenant_id AND v2.resource_id = v1.resource_id))",
    "INSERT INTO former_memberships (tenant_id, group_id) SELECT memberships.tenant_id, memberships.group_id "
    "FROM memberships WHERE memberships.tenant_id = ? AND memberships.member_id = ?",
    "DELETE FROM attr_values WHERE attr_values.tenant_id = %(tenant_id_1)s AND attr_values.resource_id = %(r)s",
    "SELECT 1 FROM tenants t JOIN entra_trust e ON e.tenant_id = t.id WHERE t.id = ? AND e.tenant_id = ?",
    "SELECT id FROM resources WHERE resources.tenant_id IN (?, ?)",
    "SELECT name FROM tenants WHERE id = ?",
])
def test_the_check_accepts_statements_that_name_the_tenant(statement: str) -> None:
    assert unrouted(statement) == []


# -- the flows -----------------------------------------------------------------------------------------


@pytest.fixture
def recorded(db: Database, monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    statements: list[str] = []

    def on_execute(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        statements.append(statement)

    real = sqltext.DriverConnection.exec_driver_sql

    def driver_execute(self: sqltext.DriverConnection, text: str, params: dict[str, Any]) -> Any:
        statements.append(text)
        return real(self, text, params)

    monkeypatch.setattr(sqltext.DriverConnection, "exec_driver_sql", driver_execute)
    sa.event.listen(db.engine, "before_cursor_execute", on_execute)
    try:
        yield statements
    finally:
        sa.event.remove(db.engine, "before_cursor_execute", on_execute)


def _ok(response: Any, *statuses: int) -> Any:
    assert response.status_code in statuses, response.text
    return response.json() if response.content else None


def _scim_flows(scim: ScimClient) -> None:
    ada = scim.create_user("ada@example.com", emails=[{"type": "work", "value": "ada@example.com", "primary": True}],
                           name={"givenName": "Ada"})
    bob = scim.create_user("bob@example.com", emails=[{"type": "work", "value": "bob@example.com"}])
    eve = scim.create_user("eve@example.com")
    group = _ok(scim.post("/Groups", {"schemas": [GROUP], "displayName": "Staff", "members": [{"value": ada["id"]}]}),
                201)
    _ok(scim.get(f"/Users/{ada['id']}"), 200)  # with its groups
    _ok(scim.get(f"/Groups/{group['id']}"), 200)  # with its members
    _ok(scim.get(f"/Groups/{group['id']}", params={"excludedAttributes": "members"}), 200)
    for params in ({}, {"startIndex": "2", "count": "1"}, {"count": "1", "cursor": ""},
                   {"filter": 'userName eq "ada@example.com"'},
                   {"filter": 'emails[type eq "work" and value co "bob"]'},
                   {"filter": 'emails.value sw "a" or name.givenName pr'},
                   {"filter": f'groups.value eq "{group["id"]}"'},
                   {"sortBy": "emails", "startIndex": "1", "count": "2"},
                   {"sortBy": "userName", "sortOrder": "descending"},
                   {"filter": "not (userName eq \"x\")"}, {"attributes": "userName"}):
        _ok(scim.get("/Users", params=params), 200)
    page = _ok(scim.get("/Users", params={"count": "1", "cursor": ""}), 200)
    _ok(scim.get("/Users", params={"count": "1", "cursor": page["nextCursor"]}), 200)
    for params in ({"filter": f'members[value eq "{ada["id"]}"]'}, {"filter": f'members eq "{ada["id"]}"'},
                   {"filter": "members pr"}):
        _ok(scim.get("/Groups", params=params), 200)
    _ok(scim.patch(f"/Users/{bob['id']}", {"schemas": [PATCH], "Operations": [
        {"op": "replace", "path": "displayName", "value": "Bob"},
        {"op": "replace", "path": 'emails[type eq "work"].value', "value": "robert@example.com"}]}), 200)
    _ok(scim.put(f"/Users/{eve['id']}", {"schemas": [USER], "userName": "eve@example.com", "title": "Ops"}), 200)
    _ok(scim.patch(f"/Groups/{group['id']}", {"schemas": [PATCH], "Operations": [
        {"op": "add", "path": "members", "value": [{"value": bob["id"]}, {"value": eve["id"]}]}]}), 200, 204)
    _ok(scim.patch(f"/Groups/{group['id']}", {"schemas": [PATCH], "Operations": [
        {"op": "remove", "path": f'members[value eq "{eve["id"]}"]'}]}), 200, 204)
    _ok(scim.patch(f"/Groups/{group['id']}", {"schemas": [PATCH], "Operations": [
        {"op": "replace", "path": "members", "value": [{"value": ada["id"]}, {"value": eve["id"]}]}]}), 200, 204)
    _ok(scim.put(f"/Groups/{group['id']}", {"schemas": [GROUP], "displayName": "Staff",
                                             "members": [{"value": ada["id"]}, {"value": bob["id"]}]}), 200)
    _ok(scim.post("/Bulk", {"schemas": ["urn:ietf:params:scim:api:messages:2.0:BulkRequest"], "Operations": [
        {"method": "POST", "path": "/Users", "bulkId": "u",
         "data": {"schemas": [USER], "userName": "bulk@example.com"}},
        {"method": "POST", "path": "/Groups", "bulkId": "g",
         "data": {"schemas": [GROUP], "displayName": "Bulk", "members": [{"value": "bulkId:u"}]}},
        {"method": "PATCH", "path": f"/Users/{eve['id']}", "data": {"schemas": [PATCH], "Operations": [
            {"op": "replace", "path": "active", "value": False}]}},
        {"method": "DELETE", "path": f"/Users/{eve['id']}"}]}), 200)
    search = {"schemas": ["urn:ietf:params:scim:api:messages:2.0:SearchRequest"], "filter": 'userName sw "a"'}
    _ok(scim.post("/.search", search), 200)
    _ok(scim.post("/Users/.search", {**search, "sortBy": "userName", "count": 1}), 200)
    _ok(scim.post("/Groups/.search", {"schemas": search["schemas"], "filter": 'displayName eq "Staff"'}), 200)
    _ok(scim.delete(f"/Users/{bob['id']}"), 204)  # a member: its groups change too
    _ok(scim.delete(f"/Groups/{group['id']}"), 204)
    _ok(scim.get(f"/Users/{bob['id']}"), 404)


def _credential_flows(scim: ScimClient, db: Database, settings: Settings) -> None:
    tenants, clients = TenantService(db), ClientService(db, settings)
    token = tenants.create_token("acme")
    _ok(ScimClient(scim.http, "acme", token.token).get("/Users", params={"count": "1"}), 200)
    tenants.list_tokens("acme")
    tenants.revoke_token("acme", token.credential_id)
    _ok(ScimClient(scim.http, "acme", token.token).get("/Users"), 401)
    client = clients.create_client("acme")
    access = _ok(scim.http.post(scim.base + "/oauth/token", data={
        "grant_type": "client_credentials", "client_id": client.client_id, "client_secret": client.client_secret}), 200)
    _ok(ScimClient(scim.http, "acme", access["access_token"]).get("/Users"), 200)
    rotated = clients.rotate_secret("acme", client.client_id)
    clients.revoke("acme", client.client_id, rotated.secret_id)
    federated = clients.create_federated_client(
        "acme", issuer=f"https://login.microsoftonline.com/{jh.ENTRA_TID}/v2.0",
        subject="7d3c1e2f-0a9b-4c8d-8e7f-6a5b4c3d2e1f", audience=f"api://{jh.ENTRA_AUD}", jwks=jh.jwks())
    _ok(scim.http.post(scim.base + "/oauth/token", data={
        "grant_type": "client_credentials", "client_id": federated.client_id,
        "client_assertion_type": "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
        "client_assertion": jh.sign(jh.entra_claims())}), 401)
    clients.list_clients("acme")
    clients.revoke("acme", client.client_id)
    clients.set_entra_trust("acme", jh.ENTRA_TID, jwks=jh.jwks())
    clients.get_entra_trust("acme")
    _ok(ScimClient(scim.http, "acme", jh.sign(jh.entra_claims())).get("/Users"), 200, 401)
    clients.clear_entra_trust("acme")


def _operator_flows(db: Database) -> None:
    AuditService(db).list("acme", None, None, 100)
    AuditService(db).list("acme", None, None, 10, after=1)
    AuditService(db).list(None, None, None, 10)  # every tenant's: exempt (EXEMPT says why)
    TombstoneService(db).list("acme", None)
    TombstoneService(db).list(None, None)
    tenants = TenantService(db)
    tenants.recount_resources()  # every tenant's: exempt (EXEMPT says why)
    tenants.set_retention("acme", 1)
    TombstoneService(db).purge_expired(datetime.now(UTC) + timedelta(days=2))
    TombstoneService(db).purge("acme", "2999-01-01T00:00:00.000000Z")
    TombstoneService(db).purge(None, "2999-01-01T00:00:00.000000Z")


def test_every_statement_of_the_flows_names_the_tenant(db: Database, settings: Settings, scim: ScimClient,
                                                       other_scim: ScimClient, recorded: list[str]) -> None:
    _scim_flows(scim)
    other_scim.create_user("zed@example.com")  # a second tenant: statements must not mix them up
    _credential_flows(scim, db, settings)
    _operator_flows(db)
    dialect = db.engine.dialect.name
    # The shared rate-limit buckets (PostgreSQL) run through a connection of their own: their
    # one statement is checked as written.
    statements = [*recorded, ratelimit.TAKE_SQL.format_map({"key": "%(key)s", "burst": "%(burst)s",
                                                            "rate": "%(rate)s"})]

    offenders = {s: problems for s in statements if (problems := unrouted(s)) and not _exempt(s, dialect)}
    assert offenders == {}
    # Each exemption is still needed by a statement that was run (else it is stale: remove it).
    for pattern, only, _reason in EXEMPT:
        if only in (None, dialect):
            assert any(re.search(pattern, " ".join(s.split())) and unrouted(s) for s in statements), pattern
    # The flows reached every tenant-owned table the service touches over HTTP and the operator's
    # commands: a flow that silently stopped reaching one would make this test vacuous.
    touched = {m.group(2).lower() for s in statements for m in _REFERENCE.finditer(" ".join(s.split()))}
    assert TENANT_TABLES - touched == set()
    assert len(recorded) > 300
