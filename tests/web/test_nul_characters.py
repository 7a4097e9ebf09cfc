"""NUL characters: PostgreSQL text cannot hold them, so no request may carry one to the database.
Each is refused with a SCIM error (never a 5xx) and changes nothing."""

from __future__ import annotations

from tests.conftest import ScimClient

PATCH = "urn:ietf:params:scim:api:messages:2.0:PatchOp"


def test_a_nul_in_a_value_is_refused_and_nothing_is_stored(scim: ScimClient) -> None:
    response = scim.post("/Users", {"userName": "nul\u0000@x.com"})
    assert response.status_code == 400 and response.json()["scimType"] == "invalidValue"
    assert scim.find('userName sw "nul"') == []
    user = scim.create_user("clean@x.com")
    patched = scim.patch(f"/Users/{user['id']}", {"schemas": [PATCH], "Operations": [
        {"op": "replace", "path": "displayName", "value": "a\u0000b"}]})
    assert patched.status_code == 400
    assert "displayName" not in scim.get(f"/Users/{user['id']}").json()


def test_a_nul_in_a_filter_is_an_invalid_filter(scim: ScimClient) -> None:
    response = scim.get("/Users", params={"filter": 'userName eq "a\\u0000b"'})
    assert response.status_code == 400 and response.json()["scimType"] == "invalidFilter"


def test_a_nul_in_an_id_is_a_404(scim: ScimClient) -> None:
    for method in ("GET", "DELETE"):
        response = scim.request(method, "/Users/abc%00def")
        assert response.status_code == 404
        assert response.json()["status"] == "404"
