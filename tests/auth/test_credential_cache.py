"""The cache of verified credentials (auth/authenticator.py) and the authentication epoch that
ends it (storage/db.py): a credential is read from the database once, and a revocation made
anywhere — another worker, another node, the CLI — is seen by every authenticator on its next
request. Two ``Database`` objects stand for two workers (each has its own pool and cache); the
HTTP test runs ``serve --workers 2``."""

from __future__ import annotations

import threading
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from identity_sync.auth import authenticator as authn
from identity_sync.auth import oauth
from identity_sync.auth.authenticator import Authenticator
from identity_sync.config import Settings
from identity_sync.errors import Unauthorized
from identity_sync.service.clients import ClientService
from identity_sync.service.tenants import TenantService
from identity_sync.storage import clients as client_store
from identity_sync.storage import tenants as tenant_store
from identity_sync.storage.db import Database
from tests.observability.scrape import value
from tests.reliability.servers import Client, Server


@pytest.fixture
def workers(db_url: str, tmp_path: Path) -> Any:
    dbs = [Database(db_url), Database(db_url)]
    settings = Settings(database_url=db_url, data_dir=tmp_path)
    yield [(db, Authenticator(db, settings)) for db in dbs]
    for db in dbs:
        db.dispose()


def _count_reads(monkeypatch: pytest.MonkeyPatch) -> dict[str, int]:
    reads = {"static": 0, "oauth": 0}
    by_hash, token_state = tenant_store.credential_by_hash, client_store.access_token_state

    def counted_by_hash(conn: Any, tenant_id: str, digest: str) -> Any:
        reads["static"] += 1
        return by_hash(conn, tenant_id, digest)

    def counted_state(conn: Any, tenant_id: str, client_id: str, secret_id: str) -> Any:
        reads["oauth"] += 1
        return token_state(conn, tenant_id, client_id, secret_id)

    monkeypatch.setattr(tenant_store, "credential_by_hash", counted_by_hash)
    monkeypatch.setattr(client_store, "access_token_state", counted_state)
    return reads


def test_a_static_token_is_read_once_then_revoked_everywhere_at_once(
        workers: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    (db1, first), (db2, second) = workers
    tenants = TenantService(db1)
    issued = tenants.create_tenant("acme")
    reads = _count_reads(monkeypatch)
    for _ in range(5):
        assert first.authenticate(f"Bearer {issued.token}", "acme").tenant_name == "acme"
        assert second.authenticate(f"Bearer {issued.token}", "acme").credential_id == issued.credential_id
    assert reads["static"] == 2  # once per worker, not once per request
    with pytest.raises(Unauthorized):
        first.authenticate(f"Bearer {issued.token}", "globex")  # the URL is checked on every request

    cli = Database(db1.url)  # a third process, say the CLI
    try:
        TenantService(cli).revoke_token("acme", issued.credential_id)
    finally:
        cli.dispose()
    for worker in (first, second):
        with pytest.raises(Unauthorized) as refused:
            worker.authenticate(f"Bearer {issued.token}", "acme")
        assert refused.value.reason == "revoked"  # type: ignore[attr-defined]
    assert reads["static"] == 4


def test_disabling_a_tenant_ends_its_cached_credentials(workers: Any) -> None:
    (db1, first), (_, second) = workers
    tenants = TenantService(db1)
    issued = tenants.create_tenant("acme")
    for worker in (first, second):
        worker.authenticate(f"Bearer {issued.token}", "acme")
    tenants.set_status("acme", "disabled")
    for worker in (first, second):
        with pytest.raises(Unauthorized) as refused:
            worker.authenticate(f"Bearer {issued.token}", "acme")
        assert refused.value.reason == "tenant_disabled"  # type: ignore[attr-defined]


def test_an_unknown_token_is_not_cached(workers: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    (db1, first), _ = workers
    TenantService(db1).create_tenant("acme")
    reads = _count_reads(monkeypatch)
    for i in range(3):
        with pytest.raises(Unauthorized):
            first.authenticate(f"Bearer idsync_{'x' * 42}{i}", "acme")
    assert reads["static"] == 3 and len(first.credentials._items) == 0


def test_an_access_token_is_checked_once_then_its_revoked_secret_everywhere(
        workers: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    (db1, first), (_, second) = workers
    TenantService(db1).create_tenant("acme")
    settings = first.settings
    clients = ClientService(db1, settings, first.keys)
    client = clients.create_client("acme")
    token = oauth.issue_access_token(first.keys, issuer=settings.oauth_issuer,
                                     tenant_id=_tenant_id(db1, "acme"),
                                     client_id=client.client_id, secret_id=client.secret_id,
                                     scopes=client.scopes, lifetime=600)
    reads = _count_reads(monkeypatch)
    for _ in range(4):
        for worker in (first, second):
            assert worker.authenticate(f"Bearer {token}", "acme").tenant_name == "acme"
    assert reads["oauth"] == 2
    clients.revoke("acme", client.client_id, client.secret_id)
    for worker in (first, second):
        with pytest.raises(Unauthorized) as refused:
            worker.authenticate(f"Bearer {token}", "acme")
        assert refused.value.reason == "revoked"  # type: ignore[attr-defined]


def _tenant_id(db: Database, name: str) -> str:
    with db.read() as conn:
        tenant = tenant_store.get_tenant(conn, name)
    assert tenant is not None
    return str(tenant["id"])


def test_the_epoch_changes_only_with_a_change_that_can_end_a_credential(db: Database) -> None:
    tenants = TenantService(db)
    before = db.auth_epoch()
    issued = tenants.create_tenant("acme")
    tenants.authenticate(f"Bearer {issued.token}", "acme")  # a last_used_at write: not such a change
    assert db.auth_epoch() == before
    tenants.revoke_token("acme", issued.credential_id)
    assert db.auth_epoch() != before


def test_a_revocation_reaches_both_workers_of_serve(db_url: str, tmp_path: Path) -> None:
    db = Database(db_url)
    try:
        tenants = TenantService(db)
        issued = tenants.create_tenant("acme")
    finally:
        db.dispose()
    server = Server(db_url, tmp_path / "serve", workers=2, env={"IDSYNC_LOG_LEVEL": "INFO"}).start()
    try:
        client = Client(server.base, "acme", issued.token)
        # New connections, 8 at a time: the kernel hands them to both workers, which cache the token.
        with ThreadPoolExecutor(8) as pool:
            before = list(pool.map(lambda _: client.call("GET", "/Users").status, range(40)))
        assert before == [200] * 40
        db = Database(db_url)
        try:
            TenantService(db).revoke_token("acme", issued.credential_id)  # another process: the CLI's way
        finally:
            db.dispose()
        with ThreadPoolExecutor(8) as pool:
            after = list(pool.map(lambda _: client.call("GET", "/Users").status, range(40)))
        assert after == [401] * 40
        with urllib.request.urlopen(server.base + "/metrics", timeout=30) as response:
            metrics = response.read().decode()
    finally:
        server.stop()
    assert value(metrics, "idsync_auth_failures_total", reason="revoked") == 40


def test_the_cache_is_bounded() -> None:
    cache = authn.CredentialCache(size=3)
    for i in range(10):
        cache.put(i, 1, {"i": i})
    assert len(cache._items) <= 3 and cache.get(9, 1) == {"i": 9} and cache.get(9, 2) is None


def test_a_tokens_use_is_recorded_in_the_background_not_waited_for(db: Database) -> None:
    """A lookup never waits for its token's ``last_used_at`` write (auth/authenticator.py): on
    SQLite that write would wait for whatever commit is in progress."""
    tenants = TenantService(db)
    issued = tenants.create_tenant("acme")
    authenticator = Authenticator(db)
    held, release = threading.Event(), threading.Event()

    def hold_the_writer() -> None:
        with db.write():
            held.set()
            release.wait(10)

    holder = threading.Thread(target=hold_the_writer)
    holder.start()
    assert held.wait(5)
    try:
        started = time.monotonic()
        principal = authenticator.static_token(issued.token, "acme")
        assert time.monotonic() - started < 5  # the writer is held for 10 s
        assert principal.credential_id == issued.credential_id
        if db.engine.dialect.name == "sqlite":  # one writer: the use waits in the queue
            assert _last_used(tenants, issued.credential_id) is None
    finally:
        release.set()
        holder.join(10)
    assert authenticator.uses.flush()
    assert _last_used(tenants, issued.credential_id) is not None


def _last_used(tenants: TenantService, credential_id: str) -> str | None:
    (row,) = [row for row in tenants.list_tokens("acme") if row["id"] == credential_id]
    return row["last_used_at"]
