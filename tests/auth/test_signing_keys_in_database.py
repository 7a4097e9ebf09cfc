"""Signing keys in the database (issue 11): two nodes — each a Database of its own and a data
directory of its own — verify each other's tokens, create one first key between them, and an
installation's key files are imported once."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from identity_sync.auth import jwt as jwtv
from identity_sync.auth import oauth
from identity_sync.auth.oauth import SigningKeyError, SigningKeys, audience_for, issue_access_token, signing_keys_for
from identity_sync.config import Settings
from identity_sync.storage.db import Database
from identity_sync.storage.tables import signing_keys

PASSPHRASE = "one passphrase in every node's configuration"


class Node:
    def __init__(self, db_url: str, data_dir: Path, passphrase: str | None = PASSPHRASE) -> None:
        self.settings = Settings(database_url=db_url, data_dir=data_dir, signing_keys_passphrase=passphrase)
        self.db = Database(db_url)
        self.keys = signing_keys_for(self.settings, self.db)

    def token(self) -> str:
        return issue_access_token(self.keys, issuer="identity-sync", tenant_id="t1", client_id="c", secret_id="s",
                                  scopes=frozenset({"scim"}), lifetime=3600)

    def verify(self, token: str) -> dict[str, object]:
        return jwtv.verify(token, keyset="self", key_for_kid=self.keys.public_key, issuers=["identity-sync"],
                           audience=audience_for("t1"), leeway=0, cache=jwtv.VerifiedCache())


@pytest.fixture
def nodes(db_url: str, tmp_path: Path) -> Iterator[list[Node]]:
    made = [Node(db_url, tmp_path / f"node-{n}") for n in range(2)]
    yield made
    for node in made:
        node.db.dispose()


def rows(db: Database) -> list[tuple[str, str]]:
    with db.read() as conn:
        return [tuple(r) for r in conn.execute(sa.select(signing_keys.c.kid, signing_keys.c.private_key)
                                               .order_by(signing_keys.c.kid))]


def test_two_nodes_verify_each_others_tokens_without_a_shared_directory(nodes: list[Node]) -> None:
    a, b = nodes
    from_a = a.token()
    assert b.verify(from_a)["sub"] == "c"
    # A rotation on one node: the other signs with the new key after its reload, and meets the
    # new kid at once when a token names it.
    new_kid = b.keys.rotate()
    from_b = b.token()
    assert jwtv.peek_claims(from_b)["sub"] == "c"
    assert a.verify(from_b)["sub"] == "c"
    assert a.verify(from_a)["sub"] == "c"  # the old key still verifies
    assert {k["kid"] for k in a.keys.jwks()["keys"]} == {k["kid"] for k in b.keys.jwks()["keys"]}
    assert len(rows(a.db)) == 2 and rows(a.db)[-1][0] == new_kid
    for _, sealed in rows(a.db):
        assert sealed.startswith("v1:passphrase:") and "PRIVATE KEY" not in sealed
    # Neither node wrote a key to its disk.
    assert not any(Path(node.settings.data_dir).exists() for node in nodes)


def test_pruning_on_one_node_withdraws_the_key_on_the_other(nodes: list[Node], monkeypatch: pytest.MonkeyPatch) -> None:
    a, b = nodes
    old_token = a.token()
    b.keys.rotate()
    assert b.verify(old_token)
    assert len(a.keys.prune(0)) == 1
    monkeypatch.setattr(oauth, "RELOAD_SECONDS", 0.0)
    with pytest.raises(jwtv.InvalidToken, match="unknown kid"):
        b.verify(old_token)


def test_nodes_racing_for_the_first_key_make_one(db_url: str, tmp_path: Path) -> None:
    racers = [Node(db_url, tmp_path / f"node-{n}") for n in range(4)]
    # Each node generates its RSA key first (tens to hundreds of ms): the barrier makes them all
    # open the inserting transaction at the same moment, where the race would be.
    start = threading.Barrier(len(racers))
    kids: list[str] = []
    errors: list[BaseException] = []

    def write_in_step(write: Any) -> Any:
        @contextmanager
        def stepped() -> Iterator[Any]:
            start.wait(timeout=30)
            with write() as conn:
                yield conn
        return stepped

    for node in racers:
        node.db.write = write_in_step(node.db.write)  # type: ignore[method-assign]

    def first_key(node: Node) -> None:
        try:
            kids.append(node.keys.current().kid)
        except BaseException as exc:  # collected and asserted on below
            errors.append(exc)

    threads = [threading.Thread(target=first_key, args=(node,)) for node in racers]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    try:
        assert errors == []
        assert len(rows(racers[0].db)) == 1
        assert set(kids) == {rows(racers[0].db)[0][0]} and len(kids) == len(racers)
    finally:
        for node in racers:
            node.db.dispose()


def test_the_key_files_of_an_installation_are_imported_once(db_url: str, tmp_path: Path) -> None:
    directory = tmp_path / "node-a" / "signing-keys"
    old = SigningKeys(directory, PASSPHRASE.encode())  # what earlier releases wrote
    first, second = old.rotate(), old.rotate()
    os.utime(directory / f"{first}.pem", (time.time() - 7200, time.time() - 7200))
    token = issue_access_token(old, issuer="identity-sync", tenant_id="t1", client_id="c", secret_id="s",
                               scopes=frozenset({"scim"}), lifetime=3600)

    a = Node(db_url, tmp_path / "node-a")
    b = Node(db_url, tmp_path / "node-b")  # no files of its own: reads what a imported
    try:
        assert a.keys.kids() == [first, second]
        assert b.keys.kids() == [first, second]
        assert b.verify(token)["sub"] == "c"
        assert b.keys.current().kid == second
        assert [kid for kid, _ in rows(a.db)] == [first, second]  # once, not once per node
        # The file's age came along: pruning keys older than an hour removes the older one only.
        assert b.keys.prune(3600) == [first]
        assert sorted(p.name for p in directory.iterdir()) == [f"{first}.pem", f"{second}.pem"]  # files untouched
        # A table with keys is never filled from files again.
        c = Node(db_url, tmp_path / "node-a")
        assert c.keys.kids() == [second]
        c.db.dispose()
    finally:
        a.db.dispose()
        b.db.dispose()


def test_without_a_passphrase_a_node_needs_the_key_file(db_url: str, tmp_path: Path) -> None:
    a = Node(db_url, tmp_path / "node-a", passphrase=None)
    b = Node(db_url, tmp_path / "node-b", passphrase=None)
    try:
        kid = a.keys.rotate()
        assert rows(a.db)[0][1].startswith("v1:keyfile:")
        assert (tmp_path / "node-a" / "signing-keys" / "credentials.key").stat().st_mode & 0o777 == 0o600
        with pytest.raises(SigningKeyError, match=f"signing key {kid} is sealed with a key file that is missing"):
            b.keys.kids()
        (tmp_path / "node-b" / "signing-keys").mkdir(parents=True)
        (tmp_path / "node-b" / "signing-keys" / "credentials.key").write_bytes(
            (tmp_path / "node-a" / "signing-keys" / "credentials.key").read_bytes())
        assert b.keys.kids() == [kid]
        # Once a passphrase is set, keys sealed with the key file keep working and are pointed out.
        c = Node(db_url, tmp_path / "node-a")
        assert c.keys.kids() == [kid] and c.keys.unencrypted == {kid}
        c.db.dispose()
    finally:
        a.db.dispose()
        b.db.dispose()
