"""POST /.search (RFC 7644 §3.4.3), /Me, and a ServiceProviderConfig that advertises what works."""

from __future__ import annotations

from tests.conftest import ScimClient

SEARCH = "urn:ietf:params:scim:api:messages:2.0:SearchRequest"


def test_search_per_resource_type_takes_the_list_parameters_in_the_body(scim: ScimClient) -> None:
    scim.create_user("ada@x.com", displayName="Ada", title="Countess")
    scim.create_user("bob@x.com", displayName="Bob")
    response = scim.post("/Users/.search", {"schemas": [SEARCH], "filter": 'displayName sw "a"',
                                            "attributes": ["userName"], "sortBy": "userName", "count": 10})
    assert response.status_code == 200, response.text
    (user,) = response.json()["Resources"]
    assert user["userName"] == "ada@x.com" and "title" not in user and "id" in user


def test_search_at_the_root_spans_users_and_groups(scim: ScimClient) -> None:
    scim.create_user("ada@x.com", displayName="Admins fan")
    scim.post("/Groups", {"schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group"], "displayName": "Admins"})
    body = scim.post("/.search", {"schemas": [SEARCH], "filter": 'displayName sw "admins"'}).json()
    assert body["totalResults"] == 2
    assert sorted(r["meta"]["resourceType"] for r in body["Resources"]) == ["Group", "User"]
    only_users = scim.post("/.search", {"schemas": [SEARCH], "filter": 'userName pr'}).json()
    assert only_users["totalResults"] == 1  # Groups have no userName: they simply do not match
    unknown = scim.post("/.search", {"schemas": [SEARCH], "filter": 'nope eq "x"'})
    assert unknown.status_code == 400 and unknown.json()["scimType"] == "invalidFilter"


def test_search_refuses_a_body_that_is_not_a_search_request(scim: ScimClient) -> None:
    response = scim.post("/Users/.search", {"schemas": ["urn:x"], "filter": "userName pr"})
    assert response.status_code == 400 and response.json()["scimType"] == "invalidSyntax"


def test_me_is_404_with_a_scim_error(scim: ScimClient) -> None:
    response = scim.get("/Me")
    assert response.status_code == 404 and response.json()["status"] == "404"


def test_service_provider_config_advertises_sort_bulk_and_both_paging_methods(scim: ScimClient) -> None:
    config = scim.get("/ServiceProviderConfig").json()
    assert config["sort"] == {"supported": True} and config["etag"] == {"supported": True}
    assert config["bulk"]["supported"] and config["bulk"]["maxOperations"] == 1000
    assert config["pagination"]["cursor"] and config["pagination"]["index"]


ENTERPRISE = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"


def test_an_extension_named_by_its_urn_selects_or_drops_the_whole_extension(scim: ScimClient) -> None:
    user_id = scim.create_user("ada@x.com", displayName="Ada",
                               **{ENTERPRISE: {"employeeNumber": "7", "department": "R&D"}})["id"]
    only = scim.get(f"/Users/{user_id}", params={"attributes": ENTERPRISE})
    assert only.status_code == 200, only.text
    body = only.json()
    assert body[ENTERPRISE] == {"employeeNumber": "7", "department": "R&D"}
    assert "displayName" not in body and "userName" not in body
    without = scim.get("/Users", params={"excludedAttributes": ENTERPRISE.upper()}).json()["Resources"][0]
    assert ENTERPRISE not in without and without["displayName"] == "Ada"
    unknown = scim.get(f"/Users/{user_id}", params={"attributes": "urn:example:params:scim:schemas:nothing:2.0:User"})
    assert unknown.status_code == 400 and unknown.json()["scimType"] == "invalidValue"
