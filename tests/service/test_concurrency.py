"""Nothing accepted is lost under concurrent requests: the service serializes writers through the
database (BEGIN IMMEDIATE on SQLite) and uniqueness is settled by the unique index."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import pytest

from identity_sync.auth.tokens import Principal
from identity_sync.config import Settings
from identity_sync.errors import Conflict
from identity_sync.scim.definitions import GLOBALRELAY_SCHEMA
from identity_sync.scim.registry import USER
from identity_sync.service.resources import ResourceService
from identity_sync.service.tenants import TenantService
from identity_sync.storage.db import Database

PATCH = "urn:ietf:params:scim:api:messages:2.0:PatchOp"


@pytest.fixture
def principal(db: Database, tenants: TenantService) -> Principal:
    issued = tenants.create_tenant("acme")
    return tenants.authenticate(f"Bearer {issued.token}", "acme")


@pytest.mark.parametrize("run", range(5))
def test_concurrent_creates_of_one_username_in_case_variants_yield_exactly_one_user(
    db: Database, settings: Settings, principal: Principal, run: int
) -> None:
    service = ResourceService(db, settings)
    variants = ["Race@Example.com", "race@example.com", "RACE@EXAMPLE.COM", "rAcE@example.Com"] * 5

    def create(name: str) -> str:
        try:
            service.create(principal, USER, {"userName": name})
            return "created"
        except Conflict:
            return "conflict"

    with ThreadPoolExecutor(max_workers=20) as pool:
        outcomes = list(pool.map(create, variants))
    assert outcomes.count("created") == 1
    assert outcomes.count("conflict") == 19
    total, _ = service.query(principal, USER, 'userName eq "race@example.com"', 1, 10)
    assert total == 1


def test_concurrent_patches_to_one_user_lose_no_value(db: Database, settings: Settings, principal: Principal) -> None:
    service = ResourceService(db, settings)
    user = service.create(principal, USER, {"userName": "aliases@example.com"})
    addresses = [f"smtp:alias{i}@example.com" for i in range(30)]

    def add(address: str) -> None:
        service.patch(principal, USER, user.id, {
            "schemas": [PATCH],
            "Operations": [{"op": "Add", "path": f"{GLOBALRELAY_SCHEMA}:proxyAddresses", "value": [address]}],
        }, None)

    with ThreadPoolExecutor(max_workers=10) as pool:
        list(pool.map(add, addresses))
    stored = service.get(principal, USER, user.id)
    assert sorted(stored.doc[GLOBALRELAY_SCHEMA]["proxyAddresses"]) == sorted(addresses)
    assert stored.version == 1 + len(addresses)
