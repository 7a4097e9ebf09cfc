"""The database dies in the middle of a request: every write is all or nothing.

Property (docs/reliability.md, matrix row 14): for each write operation of the SCIM API and for
every k from 1 to N, where its write transaction executes N - 1 statements and then COMMITs, if
step k (and any after it) fails with ``OperationalError``, then

* the client gets 503 with ``Retry-After`` and an RFC 7644 §3.12 error body;
* nothing of the request is left in ``resources``, ``attr_values``, ``memberships``,
  ``former_memberships``, ``resource_counts`` or ``audit_events`` (all rows, compared before and
  after: a rolled-back request leaves no audit event);
* the same request sent again once the database is back succeeds, and leaves a consistent state:
  each ``resource_counts.live`` is the number of live rows, index rows and memberships belong to
  live resources only, and a GET shows what was sent.

Faults are injected by engine ``before_cursor_execute`` and ``commit`` hooks, and in the driver
connections that prepared statements run on (``sqltext.on_driver``), on the connections
of ``Database.write()`` only (``conn.info["write"]``): the reads that take the snapshots and serve
the GETs run untouched. On SQLite, step 1 is the ``BEGIN IMMEDIATE`` of the transaction; on both,
SAVEPOINTs are steps too. N is not configured but found: k grows until the request runs through
without reaching step k — that last send is the retry.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from typing import Any

import orjson
import pytest
import sqlalchemy as sa
from sqlalchemy.exc import OperationalError

from identity_sync.errors import ERROR_SCHEMA
from identity_sync.scim.definitions import ENTERPRISE_SCHEMA as ENT
from identity_sync.scim.definitions import GLOBALRELAY_SCHEMA as GR
from identity_sync.storage import sqltext
from identity_sync.storage import tables as t
from identity_sync.storage.db import Database
from tests.conftest import ScimClient

USER_SCHEMAS = ["urn:ietf:params:scim:schemas:core:2.0:User", ENT, GR]
GROUP_SCHEMAS = ["urn:ietf:params:scim:schemas:core:2.0:Group"]
PATCH_SCHEMAS = ["urn:ietf:params:scim:api:messages:2.0:PatchOp"]
SNAPSHOT_TABLES = (t.resources, t.attr_values, t.memberships, t.former_memberships, t.resource_counts,
                   t.audit_events)
JSON_OPTIONS = orjson.OPT_SORT_KEYS | orjson.OPT_NON_STR_KEYS  # column names are quoted_name, a str subclass
MAX_STEPS = 200  # a write transaction longer than this is a bug of its own
TRIALS: dict[str, int] = {}  # "<db>/<operation>" -> N fault trials, printed at the end of the module


def entra_user(login: str, manager_id: str | None = None, title: str = "Archivist") -> dict[str, Any]:
    """A User as Microsoft Entra provisions it, with the enterprise and GlobalRelay extensions."""
    user: dict[str, Any] = {
        "schemas": USER_SCHEMAS, "externalId": f"ext-{login}", "userName": f"{login}@contoso.com",
        "active": True, "displayName": login.title(), "title": title,
        "name": {"givenName": login.title(), "familyName": "Example", "formatted": f"{login.title()} Example"},
        "emails": [{"type": "work", "value": f"{login}@contoso.com", "primary": True}],
        ENT: {"employeeNumber": f"E-{login}", "department": "Records"},
        GR: {"proxyAddresses": [f"SMTP:{login}@contoso.com", f"smtp:{login}@archive.contoso.com"]},
    }
    if manager_id is not None:
        user[ENT]["manager"] = {"value": manager_id}
    return user


@dataclass(frozen=True)
class World:
    """What exists before the request: users boss, alice (managed by boss, in `group`), bob
    (in `group`) and carol (in no group)."""

    boss: str
    alice: str
    bob: str
    carol: str
    group: str


def build_world(scim: ScimClient) -> World:
    def create(path: str, body: dict[str, Any]) -> str:
        response = scim.post(path, body)
        assert response.status_code == 201, response.text
        return str(response.json()["id"])

    ids = {name: create("/Users", entra_user(name)) for name in ("boss", "bob", "carol")}
    ids["alice"] = create("/Users", entra_user("alice", ids["boss"]))
    group = create("/Groups", {"schemas": GROUP_SCHEMAS, "displayName": "Archive Readers",
                               "members": members(ids["alice"], ids["bob"])})
    return World(group=group, **ids)


@dataclass(frozen=True)
class Operation:
    """One request, its status when it succeeds, and what a GET must show afterwards."""

    method: str
    path: Callable[[World], str]
    body: Callable[[World], Any]
    status: int
    #: (path to GET, subset of the resource it must contain) — or None when it must be gone (404)
    then: Callable[[World, dict[str, Any]], tuple[str, dict[str, Any] | None]]

    def send(self, scim: ScimClient, world: World) -> Any:
        return scim.request(self.method, self.path(world), json=self.body(world))


def patch(*ops: dict[str, Any]) -> dict[str, Any]:
    return {"schemas": PATCH_SCHEMAS, "Operations": list(ops)}


def members(*ids: str) -> list[dict[str, str]]:
    return [{"value": i} for i in ids]


def user_patch_ops(w: World) -> list[dict[str, Any]]:
    return [
        {"op": "Replace", "path": "displayName", "value": "Alice Q. Archivist"},
        {"op": "Replace", "path": 'emails[type eq "work"].value', "value": "alice.q@contoso.com"},
        {"op": "Replace", "path": "title", "value": "Senior Archivist"},
        {"op": "Add", "path": f"{GR}:proxyAddresses", "value": ["smtp:aq@contoso.com"]},
        {"op": "Replace", "path": f"{ENT}:department", "value": "Legal"},
        {"op": "Add", "path": f"{ENT}:manager", "value": w.carol},
    ]


OPERATIONS: dict[str, Operation] = {
    "user-create": Operation(
        "POST", lambda w: "/Users", lambda w: entra_user("dana", w.boss), 201,
        lambda w, r: (f"/Users/{r['id']}", without_schemas(entra_user("dana", w.boss)))),
    "user-put": Operation(
        "PUT", lambda w: f"/Users/{w.alice}", lambda w: entra_user("alice", w.carol, title="Records Lead"), 200,
        lambda w, r: (f"/Users/{w.alice}", without_schemas(entra_user("alice", w.carol, title="Records Lead")))),
    "user-patch": Operation(
        "PATCH", lambda w: f"/Users/{w.alice}", lambda w: patch(*user_patch_ops(w)), 200,
        lambda w, r: (f"/Users/{w.alice}", {
            "displayName": "Alice Q. Archivist", "title": "Senior Archivist",
            "emails": [{"type": "work", "value": "alice.q@contoso.com", "primary": True}],
            ENT: {"department": "Legal", "manager": {"value": w.carol}},
            GR: {"proxyAddresses": ["SMTP:alice@contoso.com", "smtp:alice@archive.contoso.com",
                                    "smtp:aq@contoso.com"]}})),
    "group-create": Operation(
        "POST", lambda w: "/Groups",
        lambda w: {"schemas": GROUP_SCHEMAS, "displayName": "Legal Hold", "members": members(w.alice, w.carol)},
        201, lambda w, r: (f"/Groups/{r['id']}", {"displayName": "Legal Hold"})),
    "group-add-members": Operation(
        "PATCH", lambda w: f"/Groups/{w.group}",
        lambda w: patch({"op": "Add", "path": "members", "value": members(w.carol, w.boss)}), 204,
        lambda w, r: (f"/Groups/{w.group}", {"displayName": "Archive Readers"})),
    "group-remove-members": Operation(
        "PATCH", lambda w: f"/Groups/{w.group}",
        lambda w: patch({"op": "Remove", "path": "members", "value": members(w.alice)},
                        {"op": "Remove", "path": f'members[value eq "{w.bob}"]'}), 204,
        lambda w, r: (f"/Groups/{w.group}", {"displayName": "Archive Readers"})),
    "user-delete": Operation(
        "DELETE", lambda w: f"/Users/{w.alice}", lambda w: None, 204, lambda w, r: (f"/Users/{w.alice}", None)),
    "group-delete": Operation(
        "DELETE", lambda w: f"/Groups/{w.group}", lambda w: None, 204, lambda w, r: (f"/Groups/{w.group}", None)),
}

#: The members each group operation leaves (the ids of the World's users, by name).
EXPECTED_MEMBERS: dict[str, tuple[str, ...]] = {
    "group-create": ("alice", "carol"), "group-add-members": ("alice", "bob", "carol", "boss"),
    "group-remove-members": (), "user-delete": ("bob",),
}


def without_schemas(doc: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in doc.items() if k != "schemas"}


class DatabaseDies:
    """An engine hook counting the steps of write transactions — each statement, then the COMMIT
    as the last step; armed with k, step k and every later one fails as a database that went away
    fails (``OperationalError``)."""

    def __init__(self, engine: sa.Engine) -> None:
        self.engine = engine
        self.fail_at: int | None = None
        self.seen = 0
        self.fired: list[str] = []  # what failed: "statement" or "COMMIT"

    def statement(self, conn: sa.Connection, *_: Any) -> None:
        self._step(conn, "statement")

    def commit(self, conn: sa.Connection) -> None:
        self._step(conn, "COMMIT")

    def driver_statement(self, conn: sqltext.DriverConnection) -> None:
        self._step(conn, "statement")

    def _step(self, conn: sa.Connection | sqltext.DriverConnection, what: str) -> None:
        if not conn.info.get("write"):
            return
        self.seen += 1
        if self.fail_at is not None and self.seen >= self.fail_at:
            self.fired.append(what)
            raise OperationalError("injected", None, Exception("injected"))

    @contextmanager
    def at(self, k: int) -> Iterator[DatabaseDies]:
        self.fail_at, self.seen, self.fired = k, 0, []
        hooks = {"before_cursor_execute": self.statement, "commit": self.commit}
        for event, hook in hooks.items():
            sa.event.listen(self.engine, event, hook)
        # The prepared statements of a write run on its driver connection, past SQLAlchemy's
        # events (sqltext.on_driver): they are steps too.
        real = sqltext.DriverConnection.exec_driver_sql

        def driver_execute(conn: sqltext.DriverConnection, text: str, params: Any) -> Any:
            self.driver_statement(conn)
            return real(conn, text, params)

        sqltext.DriverConnection.exec_driver_sql = driver_execute  # type: ignore[method-assign]
        try:
            yield self
        finally:
            sqltext.DriverConnection.exec_driver_sql = real  # type: ignore[method-assign]
            for event, hook in hooks.items():
                sa.event.remove(self.engine, event, hook)
            self.fail_at = None


def snapshot(db: Database) -> dict[str, list[bytes]]:
    """Every row of the tables a SCIM write touches, sorted."""
    with db.read() as conn:
        return {table.name: sorted(orjson.dumps(row._asdict(), option=JSON_OPTIONS)
                                   for row in conn.execute(sa.select(table))) for table in SNAPSHOT_TABLES}


def assert_consistent(db: Database) -> None:
    r, a, m, c = t.resources, t.attr_values, t.memberships, t.resource_counts
    live = sa.select(r.c.id).where(r.c.deleted_at.is_(None))
    with db.read() as conn:
        counted = {(row.tenant_id, row.resource_type): row.live for row in conn.execute(sa.select(c)) if row.live}
        actual = {(row[0], row[1]): row[2] for row in conn.execute(
            sa.select(r.c.tenant_id, r.c.resource_type, sa.func.count())
            .where(r.c.deleted_at.is_(None)).group_by(r.c.tenant_id, r.c.resource_type))}
        assert counted == actual, "resource_counts.live is not the number of live rows"
        orphans = sa.select(sa.func.count()).select_from(a).where(a.c.resource_id.not_in(live))
        assert conn.execute(orphans).scalar_one() == 0, "index rows of deleted resources"
        dangling = sa.select(sa.func.count()).select_from(m).where(
            sa.or_(m.c.group_id.not_in(live), m.c.member_id.not_in(live)))
        assert conn.execute(dangling).scalar_one() == 0, "memberships of deleted resources"


def contains(got: Any, want: Any) -> bool:
    """``want`` is a sub-document of ``got`` (complex values may carry more, e.g. ``$ref``)."""
    if isinstance(want, dict):
        return isinstance(got, dict) and all(k in got and contains(got[k], v) for k, v in want.items())
    if isinstance(want, list):
        return isinstance(got, list) and len(got) == len(want) and all(map(contains, got, want))
    return bool(got == want)


def assert_unavailable(response: Any) -> None:
    assert response.status_code == 503, response.text
    assert response.headers.get("Retry-After", "").isdigit(), response.headers
    assert response.headers["content-type"].startswith("application/scim+json")
    body = response.json()
    assert body["schemas"] == [ERROR_SCHEMA] and body["status"] == "503" and body["detail"], body


@pytest.mark.parametrize("name", list(OPERATIONS))
def test_failed_step_leaves_nothing_and_retry_succeeds(name: str, scim: ScimClient, db: Database,
                                                       db_kind: str) -> None:
    operation, world = OPERATIONS[name], build_world(scim)  # also records the token's last use
    dies, last_failed = DatabaseDies(db.engine), ""
    for k in range(1, MAX_STEPS + 1):
        before = snapshot(db)
        with dies.at(k):
            response = operation.send(scim, world)
        if not dies.fired:  # the transaction has fewer than k steps: that was the retry
            break
        assert_unavailable(response)
        assert snapshot(db) == before, f"{name}: step {k} ({dies.fired[0]}) failed, yet a write stayed"
        last_failed = dies.fired[0]
    else:
        pytest.fail(f"{name} still running after {MAX_STEPS}")
    trials = k - 1
    TRIALS[f"{db_kind}/{name}"] = trials
    assert trials >= 3 and last_failed == "COMMIT", f"{name}: {trials} steps, the last {last_failed}"

    assert response.status_code == operation.status, response.text
    assert_consistent(db)
    created = response.json() if operation.status == 201 else {}
    path, want = operation.then(world, created)
    if name in EXPECTED_MEMBERS:
        group = scim.get(f"/Groups/{created.get('id', world.group)}")
        expected = {getattr(world, who) for who in EXPECTED_MEMBERS[name]}
        assert {m["value"] for m in group.json().get("members", [])} == expected, group.text
    got = scim.get(path)
    if want is None:
        assert got.status_code == 404, got.text
    else:
        assert got.status_code == 200 and contains(got.json(), want), got.text


@pytest.fixture(scope="module", autouse=True)
def report_trials(request: pytest.FixtureRequest) -> Iterator[None]:
    """Prints how many fault trials ran, per database (the criterion asks for >= 100 in all)."""
    yield
    per_db: dict[str, int] = {}
    for key, n in TRIALS.items():
        per_db[key.split("/")[0]] = per_db.get(key.split("/")[0], 0) + n
    capture = request.config.pluginmanager.get_plugin("capturemanager")
    with capture.global_and_fixture_disabled() if capture else nullcontext():
        print(f"\nstatement-fault trials: {dict(sorted(TRIALS.items()))}\nper database: {per_db}, "
              f"total {sum(per_db.values())}")
