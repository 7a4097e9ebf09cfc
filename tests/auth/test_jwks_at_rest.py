"""Only public keys are ever stored from a JWKS (issue 11, item 4).

A JWKS given to ``client create --federated --jwks-file`` or ``entra set --jwks-file`` that holds
private members (``d``, ``p``, ``q``, ``dp``, ``dq``, ``qi``, ``oth``; ``k`` of a symmetric key)
is **refused**, with nothing stored: Entra publishes public keys only, so such a file is the wrong
one, and its owner must learn that a private key is lying around rather than have it half-kept.
JWKS stored before this rule lose their private keys in migration ``0011``; those keys never
verified anything, so what is accepted does not change."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from alembic import command
from alembic.config import Config

from identity_sync.auth.jwt import keys_from_jwks, private_members
from identity_sync.config import Settings
from identity_sync.service.clients import ClientService
from identity_sync.service.tenants import TenantError, TenantService
from identity_sync.storage.db import MIGRATIONS, Database
from tests.auth import jwt_helpers as jh

TID = jh.ENTRA_TID
ISSUER = f"https://login.microsoftonline.com/{TID}/v2.0"


def with_private_key(kid: str = "leaked") -> dict[str, Any]:
    """A JWK of an RSA key pair with all its private members (what `to_jwk` of a private key gives)."""
    import jwt

    private = jwt.algorithms.RSAAlgorithm.to_jwk(jh.rsa_key("leaked"), as_dict=True)
    return {**private, "kid": kid, "use": "sig", "alg": "RS256"}


def _stored_jwks(db: Database) -> list[str]:
    with db.read() as conn:
        rows = conn.execute(sa.text("SELECT jwks FROM entra_trust UNION ALL SELECT jwks FROM "
                                    "oauth_federated_credentials")).fetchall()
    return [row[0] for row in rows if row[0] is not None]


def test_private_members_are_found_in_every_key_type() -> None:
    leaked = {"keys": [jh.jwks()["keys"][0], with_private_key(), {"kty": "oct", "k": "c2VjcmV0"},
                       {"kty": "EC", "crv": "P-256", "x": "a", "y": "b", "d": "c", "kid": "ec"}]}

    assert private_members(leaked) == ["leaked: d, dp, dq, p, q, qi", "key #3: k", "ec: d"]
    assert private_members(jh.jwks()) == []
    assert private_members({"keys": "nonsense"}) == [] and private_members([]) == []


@pytest.mark.parametrize("where", ["federated client", "entra trust"])
def test_a_jwks_with_a_private_key_is_refused_and_nothing_is_stored(
        db: Database, settings: Settings, tenants: TenantService, where: str) -> None:
    tenants.create_tenant("acme")
    service = ClientService(db, settings)
    jwks = {"keys": [jh.jwks()["keys"][0], with_private_key()]}

    with pytest.raises(TenantError) as refused:
        if where == "federated client":
            service.create_federated_client("acme", issuer=ISSUER, subject="s", audience="api://a", jwks=jwks)
        else:
            service.set_entra_trust("acme", TID, jwks=jwks)

    message = str(refused.value)
    assert "private key material" in message and "leaked: d, dp, dq, p, q, qi" in message
    assert with_private_key()["d"] not in message  # the error names members, never their values
    assert _stored_jwks(db) == []
    if where == "federated client":
        assert service.list_clients("acme") == []


def test_a_public_jwks_is_stored_as_given(db: Database, settings: Settings, tenants: TenantService) -> None:
    tenants.create_tenant("acme")
    ClientService(db, settings).set_entra_trust("acme", TID, jwks=jh.jwks())

    assert [json.loads(text) for text in _stored_jwks(db)] == [jh.jwks()]


def test_migration_0011_drops_stored_private_keys_and_keeps_what_verifies(tmp_path: Path) -> None:
    db = Database(f"sqlite:///{tmp_path / 'old.db'}")
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    try:
        with db.engine.connect() as conn:
            config.attributes["connection"] = conn
            command.upgrade(config, "0009")
            conn.commit()
        TenantService(db).create_tenant("acme")
        public = jh.jwks()["keys"][0]
        stored = {"keys": [public, with_private_key()]}
        with db.write() as conn:  # what `entra set` stored before the rule
            conn.execute(sa.text("INSERT INTO entra_trust (tenant_id, entra_tenant_id, audience, jwks, updated_at) "
                                 "SELECT id, :tid, 'aud', :jwks, 'then' FROM tenants"),
                         {"tid": TID, "jwks": json.dumps(stored)})
        before = set(keys_from_jwks(stored))

        db.migrate()

        (text,) = _stored_jwks(db)
        assert json.loads(text) == {"keys": [public]}
        assert set(keys_from_jwks(json.loads(text))) == before == {public["kid"]}
    finally:
        db.dispose()
