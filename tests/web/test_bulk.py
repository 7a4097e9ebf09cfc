"""POST /Bulk (RFC 7644 §3.7): bulkId references, failOnErrors, limits."""

from __future__ import annotations

from typing import Any

from tests.conftest import ScimClient

BULK = "urn:ietf:params:scim:api:messages:2.0:BulkRequest"
USER = "urn:ietf:params:scim:schemas:core:2.0:User"
GROUP = "urn:ietf:params:scim:schemas:core:2.0:Group"


def _bulk(scim: ScimClient, operations: list[dict[str, Any]], **extra: Any) -> Any:
    return scim.post("/Bulk", {"schemas": [BULK], "Operations": operations, **extra})


def test_bulk_ids_link_a_group_to_users_created_in_the_same_request_in_any_order(scim: ScimClient) -> None:
    response = _bulk(scim, [
        {"method": "POST", "path": "/Groups", "bulkId": "g",
         "data": {"schemas": [GROUP], "displayName": "G", "members": [{"value": "bulkId:u"}]}},
        {"method": "POST", "path": "/Users", "bulkId": "u", "data": {"schemas": [USER], "userName": "u@x"}},
        {"method": "PATCH", "path": "/Users/bulkId:u", "data": {
            "schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
            "Operations": [{"op": "replace", "path": "title", "value": "Boss"}]}},
    ])
    assert response.status_code == 200, response.text
    results = response.json()["Operations"]
    assert [r["status"] for r in results] == ["201", "201", "200"]
    group_id = results[0]["location"].rsplit("/", 1)[1]
    user_id = results[1]["location"].rsplit("/", 1)[1]
    assert [m["value"] for m in scim.get(f"/Groups/{group_id}").json()["members"]] == [user_id]
    assert scim.get(f"/Users/{user_id}").json()["title"] == "Boss"


def test_each_operation_stands_alone_and_fail_on_errors_stops_the_rest(scim: ScimClient) -> None:
    ops = [
        {"method": "POST", "path": "/Users", "bulkId": "a", "data": {"schemas": [USER], "userName": "dup"}},
        {"method": "POST", "path": "/Users", "bulkId": "b", "data": {"schemas": [USER], "userName": "dup"}},
        {"method": "DELETE", "path": "/Users/missing"},
        {"method": "POST", "path": "/Users", "bulkId": "c", "data": {"schemas": [USER], "userName": "later"}},
    ]
    results = _bulk(scim, ops, failOnErrors=2).json()["Operations"]
    assert [r["status"] for r in results] == ["201", "409", "404"]
    assert results[1]["response"]["scimType"] == "uniqueness"
    assert scim.find('userName eq "later"') == []


def test_an_unresolvable_bulk_id_is_409_and_too_many_operations_413(scim: ScimClient) -> None:
    results = _bulk(scim, [{"method": "PUT", "path": "/Users/bulkId:ghost",
                            "data": {"schemas": [USER], "userName": "g"}}]).json()["Operations"]
    assert results[0]["status"] == "409"
    too_many = _bulk(scim, [{"method": "DELETE", "path": "/Users/x"}] * 1001)
    assert too_many.status_code == 413
