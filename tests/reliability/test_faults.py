"""Faults: the server SIGKILLed in the middle of a stream of writes (SQLite and PostgreSQL), and
PostgreSQL restarted under load. Acknowledged writes survive, nothing is ever half written, and
the service answers 503 + Retry-After while the database is away and recovers within 5 s."""

from __future__ import annotations

import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from identity_sync.scim.definitions import GLOBALRELAY_SCHEMA
from identity_sync.scim.index import index_entries
from identity_sync.scim.registry import USER
from identity_sync.service.tenants import TenantService
from identity_sync.storage import sqltext
from identity_sync.storage.db import Database
from identity_sync.storage.sqltext import json_value
from tests import pg
from tests.reliability.conftest import FAULT_RUNS
from tests.reliability.servers import Client, Server

WRITERS = 4


def _user(name: str) -> dict[str, Any]:
    return {"emails": [{"type": "work", "value": name, "primary": True}], "title": "Archivist",
            "name": {"givenName": "Ada", "familyName": name.split("@")[0]},
            GLOBALRELAY_SCHEMA: {"proxyAddresses": [f"SMTP:{name}", f"smtp:alt-{name}"]}}


@dataclass
class Load:
    """Writers that create users and add each to a group until stopped, recording every reply."""

    client: Client
    group_id: str
    prefix: str
    acked_users: dict[str, str] = field(default_factory=dict)  # userName -> id
    acked_members: set[str] = field(default_factory=set)
    #: (sent at, answered at, status, headers) of every request
    replies: list[tuple[float, float, int, dict[str, str]]] = field(default_factory=list)
    attempted: set[str] = field(default_factory=set)
    stop: threading.Event = field(default_factory=threading.Event)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def writer(self, n: int) -> None:
        i = 0
        while not self.stop.is_set():
            name = f"{self.prefix}-{n}-{i}@example.com"
            i += 1
            with self._lock:
                self.attempted.add(name)
            sent = time.monotonic()
            reply = self.client.create_user(name, **_user(name))
            self._record(sent, reply)
            if reply.status == 201:
                with self._lock:
                    self.acked_users[name] = reply.body["id"]
                sent = time.monotonic()
                added = self.client.add_member(self.group_id, reply.body["id"])
                self._record(sent, added)
                if added.status == 204:
                    with self._lock:
                        self.acked_members.add(reply.body["id"])
            elif reply.status == 0:
                time.sleep(0.02)  # the server is gone: don't spin

    def _record(self, sent: float, reply: Any) -> None:
        with self._lock:
            self.replies.append((sent, time.monotonic(), reply.status, reply.headers))

    def run(self) -> list[threading.Thread]:
        threads = [threading.Thread(target=self.writer, args=(n,), daemon=True) for n in range(WRITERS)]
        for thread in threads:
            thread.start()
        return threads


def _stored_users(db: Database, prefix: str) -> dict[str, tuple[str, dict[str, Any], int]]:
    """userName -> (id, doc, number of index rows) of the live users whose name starts with prefix."""
    with db.read() as conn:
        rows = sqltext.run(conn, "SELECT r.id, r.doc, (SELECT count(*) FROM attr_values a WHERE a.resource_id = r.id) "
                           "FROM resources r WHERE r.resource_type = 'User' AND r.deleted_at IS NULL "
                           "AND r.name_key LIKE {pattern}", pattern=prefix.lower() + "-%").all()
    return {json_value(doc)["userName"]: (rid, json_value(doc), count) for rid, doc, count in rows}


def _assert_whole(db: Database, load: Load) -> dict[str, tuple[str, dict[str, Any], int]]:
    stored = _stored_users(db, load.prefix)
    # Every acknowledged create is there, and nothing that was never sent.
    assert set(load.acked_users) <= set(stored) <= load.attempted
    # At most the writes in flight at the moment of the fault may have committed unacknowledged.
    assert len(stored) - len(load.acked_users) <= WRITERS
    for name, (_, doc, index_rows) in stored.items():
        assert doc == {**doc, "userName": name, **_user(name)}, doc  # the whole document
        assert index_rows == len(index_entries(USER, doc))  # and every index entry with it
    return stored


def _members(db: Database, group_id: str) -> set[str]:
    with db.read() as conn:
        rows = sqltext.run(conn, "SELECT member_id FROM memberships WHERE group_id = {g}", g=group_id).all()
    return {row[0] for row in rows}


@pytest.mark.parametrize("run", range(FAULT_RUNS))
def test_sigkill_during_writes_loses_no_acknowledged_write(
        service_url: str, service_db: Database, token: str, tmp_path: Path, run: int) -> None:
    server = Server(service_url, tmp_path).start()
    try:
        client = Client(server.base, "acme", token)
        group = client.create_group(f"killed-{run}-{uuid.uuid4().hex[:6]}")
        assert group.status == 201
        load = Load(client, group.body["id"], f"kill{run}-{uuid.uuid4().hex[:6]}")
        threads = load.run()
        time.sleep(0.8 + 0.1 * run)  # a different point in the stream each run
        server.kill()
        load.stop.set()
        for thread in threads:
            thread.join(timeout=30)
    finally:
        server.kill()
    assert len(load.acked_users) > 5, "the load never got going"

    restarted = Server(service_url, tmp_path).start()
    try:
        client = Client(restarted.base, "acme", token)
        stored = _assert_whole(service_db, load)
        assert load.acked_members <= _members(service_db, group.body["id"])
        for name, user_id in list(load.acked_users.items())[-5:]:
            reply = client.call("GET", f"/Users/{user_id}")
            assert reply.status == 200 and reply.body["userName"] == name
        # The restarted server takes writes again at once.
        assert client.create_user(f"{load.prefix}-after@example.com").status == 201
    finally:
        restarted.stop()
    print(f"run {run}: {len(load.acked_users)} acknowledged creates, {len(stored)} stored")


@pytest.fixture
def own_pg(request: pytest.FixtureRequest, db_kind: str) -> Any:
    """A PostgreSQL cluster for this test alone: it gets restarted, which the shared one must not."""
    if db_kind != "postgresql":
        pytest.skip("restarting the database server is a PostgreSQL test")
    request.getfixturevalue("pg_server")  # skips (or fails under CI) without PostgreSQL binaries
    # Commits wait for their WAL (synchronous_commit on): an acknowledged write survives the restart.
    server = pg.start_server(synchronous_commit=True)
    assert server is not None
    yield server
    server.destroy()


def test_postgres_restart_under_load_gives_503_then_recovers_within_5_seconds(own_pg: pg.PostgresServer,
                                                                              tmp_path: Path) -> None:
    own_pg.admin("CREATE DATABASE idsync")
    url = own_pg.url("idsync")
    db = Database(url)
    db.migrate()
    token = TenantService(db).create_tenant("acme").token
    server = Server(url, tmp_path).start()
    try:
        client = Client(server.base, "acme", token)
        group = client.create_group("restart")
        load = Load(client, group.body["id"], f"restart-{uuid.uuid4().hex[:6]}")
        threads = load.run()
        time.sleep(1.0)
        own_pg.stop("fast")  # terminates every backend, in-flight transactions included
        down_at = time.monotonic()
        time.sleep(2.0)
        # From here on PostgreSQL may accept connections (pg_ctl -w returns some time after it
        # does), so recovery is timed from this instant: the stricter choice.
        up_at = time.monotonic()
        own_pg.start()
        deadline = up_at + 15
        while time.monotonic() < deadline:
            if any(answered > up_at and status in (201, 204) for _, answered, status, _ in list(load.replies)):
                break
            time.sleep(0.05)
        time.sleep(0.5)
        load.stop.set()
        for thread in threads:
            thread.join(timeout=30)
    finally:
        server.stop()

    failures = [(status, headers) for _, _, status, headers in load.replies if status not in (201, 204)]
    # Requests sent after the server was down and answered before it was back (a request sent
    # just before the stop may still commit and be answered late: that one is not "during").
    during = [status for sent, answered, status, _ in load.replies if down_at < sent and answered < up_at]
    assert during and set(during) == {503}, sorted(set(during))
    assert failures and all(status == 503 for status, _ in failures), sorted({s for s, _ in failures})
    assert all(int(headers.get("retry-after", "0")) >= 1 for _, headers in failures)
    recovered = min(answered for _, answered, status, _ in load.replies if answered > up_at and status in (201, 204))
    print(f"first success {recovered - up_at:.2f} s after PostgreSQL was back; {len(failures)} x 503")
    assert recovered - up_at <= 5.0
    _assert_whole(db, load)
    assert load.acked_members <= _members(db, group.body["id"])
    db.dispose()
