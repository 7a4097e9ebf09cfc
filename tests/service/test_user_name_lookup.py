"""``userName eq`` — the lookup Entra and Okta make before every create — is answered from the
unique index of live names (storage/filter_sql.py ``user_name_key``), and answers exactly what the
value index answers for every other attribute: the same comparison form, live users of this tenant
only."""

from __future__ import annotations

from identity_sync.auth.tokens import Principal
from identity_sync.scim.registry import USER
from identity_sync.service.resources import ResourceService
from identity_sync.service.tenants import TenantService
from identity_sync.storage.listing import ListRequest

SCHEMA = "urn:ietf:params:scim:schemas:core:2.0:User"


def _found(service: ResourceService, principal: Principal, filter_text: str) -> list[str]:
    return [r.doc["userName"] for r in service.search(principal, USER, filter_text, ListRequest()).resources]


def test_user_name_eq_finds_what_the_value_index_finds(service: ResourceService, acme: Principal,
                                                       tenants: TenantService) -> None:
    for name in ("Ada@Example.com", "Ｂｏｂ@example.com", "gone@example.com"):
        service.create(acme, USER, {"schemas": [SCHEMA], "userName": name, "externalId": name})
    gone = service.search(acme, USER, 'userName eq "gone@example.com"', ListRequest()).resources[0]
    service.delete(acme, USER, gone.id, None)
    globex = tenants.authenticate(f"Bearer {tenants.create_tenant('globex').token}", "globex")
    service.create(globex, USER, {"schemas": [SCHEMA], "userName": "eve@example.com"})

    for wanted in ("ada@example.com", "ADA@EXAMPLE.COM", "bob@example.com", "Ｂｏｂ@example.com",
                   "gone@example.com", "eve@example.com", "nobody@example.com"):
        by_name = _found(service, acme, f'userName eq "{wanted}"')
        by_index = _found(service, acme, f'externalId eq "{wanted}" or userName eq "{wanted}"')
        assert by_name == by_index, wanted
    assert _found(service, acme, 'userName eq "ada@example.com"') == ["Ada@Example.com"]
    assert _found(service, acme, 'userName eq "gone@example.com"') == []
    assert _found(service, acme, 'userName eq "eve@example.com"') == []
    assert _found(service, globex, 'userName eq "EVE@example.com"') == ["eve@example.com"]
