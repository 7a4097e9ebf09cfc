"""Root search and bulk execution as services (service/search.py, service/bulk.py), without HTTP:
the web layer only parses and renders them (tests/web/test_bulk.py, test_search.py over HTTP)."""

from __future__ import annotations

import pytest

from identity_sync.auth.tokens import Principal
from identity_sync.errors import BadRequest
from identity_sync.scim.registry import GROUP, USER
from identity_sync.service.bulk import BulkRun
from identity_sync.service.resources import ResourceService
from identity_sync.service.search import search_all
from identity_sync.service.tenants import TenantService
from identity_sync.storage.db import Database


@pytest.fixture
def principal(db: Database, tenants: TenantService) -> Principal:
    issued = tenants.create_tenant("acme")
    return tenants.authenticate(f"Bearer {issued.token}", "acme")


def test_root_search_pages_over_users_then_groups(service: ResourceService, principal: Principal) -> None:
    for name in ("a", "b", "c"):
        service.create(principal, USER, {"userName": name})
    service.create(principal, GROUP, {"displayName": "g"})
    page = search_all(service, principal, (USER, GROUP), None, start_index=3, count=2)
    assert page.total == 4
    assert [(rt.name, len(found)) for rt, found in page.pages] == [("User", 1), ("Group", 1)]
    # A filter only Users understand matches no Group; one no type understands is refused.
    page = search_all(service, principal, (USER, GROUP), 'userName eq "b"', start_index=1, count=10)
    assert page.total == 1 and page.pages[0][1][0].doc["userName"] == "b"
    with pytest.raises(BadRequest) as refused:
        search_all(service, principal, (USER, GROUP), 'nosuch eq "x"', start_index=1, count=10)
    assert refused.value.scim_type == "invalidFilter"


def test_bulk_resolves_references_in_any_order_and_reports_each_operation(service: ResourceService,
                                                                          principal: Principal) -> None:
    operations = [
        {"method": "POST", "path": "/Groups", "bulkId": "g", "data": {"displayName": "team",
                                                                     "members": [{"value": "bulkId:u"}]}},
        {"method": "POST", "path": "/Users", "bulkId": "u", "data": {"userName": "ann"}},
        {"method": "PATCH", "path": "/Users/bulkId:nobody", "data": {}},
        {"method": "GET", "path": "/Users"},
    ]
    outcomes = BulkRun(service, principal, (USER, GROUP)).execute(operations, None)
    assert [o.op for o in outcomes] == operations  # in request order
    group, user, dangling, bad = outcomes
    assert (user.method, user.status, user.error) == ("POST", 201, None)
    assert group.status == 201 and group.stored is not None and user.stored is not None
    members = search_all(service, principal, (GROUP,), f'members[value eq "{user.stored.id}"]', 1, 10)
    assert [found.id for _, page in members.pages for found in page] == [group.stored.id]
    assert dangling.error is not None and dangling.error.status == 409
    assert bad.error is not None and bad.error.status == 400


def test_bulk_stops_after_fail_on_errors(service: ResourceService, principal: Principal) -> None:
    operations = [{"method": "DELETE", "path": "/Users/missing"}, {"method": "POST", "path": "/Users",
                                                                    "bulkId": "x", "data": {"userName": "x"}}]
    outcomes = BulkRun(service, principal, (USER, GROUP)).execute(operations, 1)
    assert len(outcomes) == 1 and outcomes[0].error is not None and outcomes[0].error.status == 404
    assert search_all(service, principal, (USER,), None, 1, 10).total == 0  # the POST never ran
