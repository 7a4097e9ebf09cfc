"""Replays of Okta's SCIM 2.0 traffic (docs/entra-scim-requests.md §6.4): every request carries
``User-Agent: Okta SCIM Client 1.0.0``, filters are ``%20``-encoded, updates are GET-then-PUT of
the whole user, deactivation is a path-less PATCH (OIN) or a PUT with ``active:false`` (AIW),
and Okta never DELETEs users. Catalog cases 29 and 30, plus the "SCIM 2.0 Spec Test" steps."""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from tests.conformance import CORE, SCIM_JSON, assert_scim_error, fetch, ids, patch_body, query
from tests.conftest import ScimClient

OKTA = {"User-Agent": "Okta SCIM Client 1.0.0"}


def okta_filter(expression: str) -> str:
    """Okta's existence check: ``%20`` for spaces, ``%22`` for quotes, then its paging."""
    encoded = expression.replace("%", "%25").replace(" ", "%20").replace('"', "%22").replace("@", "%40")
    return f"filter={encoded}&startIndex=1&count=100"


def okta_user(user_name: str, **extra: Any) -> dict[str, Any]:
    """Okta's create body: includes a password and `groups: []`, which we ignore."""
    body: dict[str, Any] = {
        "schemas": [CORE],
        "userName": user_name,
        "name": {"givenName": "Ada", "familyName": "Lovelace"},
        "emails": [{"primary": True, "value": user_name, "type": "work"}],
        "displayName": "Ada Lovelace",
        "locale": "en-US",
        "externalId": "00ujl29u0le5T6Aj10h7",
        "groups": [],
        "password": "1mz050nq",
        "active": True,
    }
    body.update(extra)
    return body


def okta_create(scim: ScimClient, user_name: str, **extra: Any) -> dict[str, Any]:
    response = scim.post("/Users", okta_user(user_name, **extra), headers=OKTA)
    assert response.status_code == 201, response.text
    return response.json()


def okta_put(scim: ScimClient, user_id: str, body: dict[str, Any]) -> Any:
    return scim.put(f"/Users/{user_id}", body, headers=OKTA)


def test_okta_test_connection_lists_users_with_integer_paging(scim: ScimClient) -> None:
    """Okta Test Connection (reported): `GET /Users?startIndex=1&count=2`."""
    body = query(scim, "startIndex=1&count=2", headers=OKTA)
    assert body == {"schemas": body["schemas"], "totalResults": 0, "startIndex": 1, "itemsPerPage": 0,
                    "Resources": []}


def test_okta_spec_test_first_user_has_the_required_fields(scim: ScimClient) -> None:
    """Spec Test R1/R2: `GET /Users?count=1&startIndex=1`, then GET by id."""
    okta_create(scim, "ada@example.com")
    okta_create(scim, "grace@example.com")
    body = query(scim, "count=1&startIndex=1", headers=OKTA)
    assert body["totalResults"] == 2 and body["itemsPerPage"] == 1 and body["startIndex"] == 1
    user = body["Resources"][0]
    assert user["id"] and user["userName"] == "ada@example.com" and user["active"] is True
    assert user["name"]["givenName"] == "Ada" and user["name"]["familyName"] == "Lovelace"
    assert user["emails"][0]["value"] == "ada@example.com"
    response = scim.get(f"/Users/{user['id']}", headers=OKTA)
    assert response.status_code == 200 and response.json() == user


def test_okta_existence_check_miss_is_an_empty_list(scim: ScimClient) -> None:
    """Spec Test R3/R5: `userName%20eq%20%22…%22&startIndex=1&count=100` for a random user."""
    okta_create(scim, "ada@example.com")
    body = query(scim, okta_filter(f'userName eq "{uuid.uuid4()}@example.com"'), headers=OKTA)
    assert body["totalResults"] == 0 and body["Resources"] == []


def test_okta_create_ignores_password_and_groups_and_reads_back(scim: ScimClient) -> None:
    """Spec Test R6/R7: 201 with the full user; the password is neither echoed nor stored."""
    created = okta_create(scim, "ada@example.com")
    assert "password" not in created and "groups" not in created
    got = fetch(scim, created["id"])
    assert got == created
    assert got["locale"] == "en-US" and got["externalId"] == "00ujl29u0le5T6Aj10h7"
    assert got["displayName"] == "Ada Lovelace"
    found = query(scim, okta_filter('userName eq "ada@example.com"'), headers=OKTA)
    assert ids(found) == [created["id"]]


def test_okta_duplicate_create_is_409(scim: ScimClient) -> None:
    """Spec Test R8: the same user again → 409 uniqueness (Okta stops the job)."""
    okta_create(scim, "ada@example.com")
    response = scim.post("/Users", okta_user("ada@example.com"), headers=OKTA)
    assert_scim_error(response, 409, "uniqueness")


def test_okta_uppercase_username_filter_matches(scim: ScimClient) -> None:
    """Spec Test R9: `userName eq "<UPPERCASE>"` → 200 and the user."""
    created = okta_create(scim, "ada@example.com")
    body = query(scim, okta_filter('userName eq "ADA@EXAMPLE.COM"'), headers=OKTA)
    assert ids(body) == [created["id"]]


def test_okta_bad_id_and_bad_token_are_scim_errors(scim: ScimClient) -> None:
    """Spec Test R4/R11/R12: 404 with `status:"404"` and `detail`; 401 with `status:"401"`."""
    assert_scim_error(scim.get(f"/Users/{uuid.uuid4()}", headers=OKTA), 404)
    response = scim.get("/Users?startIndex=1&count=1", headers={**OKTA, "Authorization": "Bearer wrong"})
    assert_scim_error(response, 401)


def test_okta_empty_create_body_is_rejected(scim: ScimClient) -> None:
    """Okta: an empty body must fail (400), never create a user."""
    response = scim.http.post(f"{scim.base}/Users", content=b"",
                              headers={**OKTA, "Authorization": f"Bearer {scim.token}", "Content-Type": SCIM_JSON})
    assert_scim_error(response, 400, "invalidSyntax")
    assert query(scim, "startIndex=1&count=100")["totalResults"] == 0


def test_okta_get_then_put_updates_the_whole_user(scim: ScimClient) -> None:
    """Okta's read-modify-write: GET, change, PUT the whole object → 200 with the updated user;
    attributes left out of the PUT are gone (PUT replaces), except `active`."""
    created = okta_create(scim, "ada@example.com", title="Countess")
    current = fetch(scim, created["id"])
    current["name"]["familyName"] = "King"
    current["emails"] = [{"primary": True, "value": "ada.king@example.com", "type": "work"}]
    del current["title"]
    response = okta_put(scim, created["id"], current)
    assert response.status_code == 200, response.text
    updated = response.json()
    assert updated["name"] == {"givenName": "Ada", "familyName": "King"}
    assert updated["emails"] == [{"primary": True, "value": "ada.king@example.com", "type": "work"}]
    assert "title" not in updated
    assert updated["id"] == created["id"]
    assert updated["meta"]["created"] == created["meta"]["created"]
    assert updated["meta"]["version"] != created["meta"]["version"]
    assert fetch(scim, created["id"]) == updated


def test_okta_put_with_active_false_deactivates(scim: ScimClient) -> None:
    """Case 30: AIW apps deactivate with a PUT carrying `active:false`."""
    created = okta_create(scim, "ada@example.com")
    body = fetch(scim, created["id"])
    body["active"] = False
    response = okta_put(scim, created["id"], body)
    assert response.status_code == 200 and response.json()["active"] is False
    assert fetch(scim, created["id"])["active"] is False
    found = query(scim, okta_filter('userName eq "ada@example.com"'), headers=OKTA)["Resources"]
    assert [(u["id"], u["active"]) for u in found] == [(created["id"], False)]


@pytest.mark.parametrize("initial", [True, False])
def test_okta_put_omitting_active_keeps_the_current_value(scim: ScimClient, initial: bool) -> None:
    """Case 30, documented rule: a PUT without `active` neither disables nor re-enables."""
    created = okta_create(scim, "ada@example.com", active=initial)
    body = fetch(scim, created["id"])
    del body["active"]
    body["displayName"] = "Renamed"
    response = okta_put(scim, created["id"], body)
    assert response.status_code == 200, response.text
    got = fetch(scim, created["id"])
    assert got["active"] is initial and got["displayName"] == "Renamed"


def test_okta_pathless_patch_deactivates_and_reactivates(scim: ScimClient) -> None:
    """Case 29: OIN deactivation `{"op":"replace","value":{"active":false}}`, then reactivation."""
    created = okta_create(scim, "ada@example.com")
    response = scim.patch(f"/Users/{created['id']}",
                          patch_body({"op": "replace", "value": {"active": False}}), headers=OKTA)
    assert response.status_code in (200, 204), response.text
    if response.status_code == 200:
        assert response.json()["active"] is False
    got = fetch(scim, created["id"])
    assert got["active"] is False
    assert {k: v for k, v in got.items() if k not in ("active", "meta")} == {
        k: v for k, v in created.items() if k not in ("active", "meta")}
    response = scim.patch(f"/Users/{created['id']}",
                          patch_body({"op": "replace", "value": {"active": True}}), headers=OKTA)
    assert response.status_code in (200, 204)
    assert fetch(scim, created["id"])["active"] is True


def test_okta_put_onto_an_existing_username_is_409_and_changes_nothing(scim: ScimClient) -> None:
    """A PUT that renames onto a taken userName (any case) is refused."""
    okta_create(scim, "ada@example.com")
    grace = okta_create(scim, "grace@example.com")
    before = fetch(scim, grace["id"])
    body = dict(before, userName="ADA@example.com")
    assert_scim_error(okta_put(scim, grace["id"], body), 409, "uniqueness")
    assert fetch(scim, grace["id"]) == before


def test_okta_put_to_unknown_id_is_404(scim: ScimClient) -> None:
    """A PUT for a user that does not exist does not create one."""
    assert_scim_error(okta_put(scim, str(uuid.uuid4()), okta_user("ghost@example.com")), 404)
    assert query(scim, "startIndex=1&count=100")["totalResults"] == 0


def test_okta_import_pages_of_100(scim: ScimClient) -> None:
    """Okta import: `GET /Users?startIndex=1&count=100`, then the next page; integers, no gaps."""
    created = [okta_create(scim, f"user{i:03d}@example.com", externalId=f"okta-{i}")["id"] for i in range(3)]
    first = query(scim, "startIndex=1&count=100", headers=OKTA)
    assert first["totalResults"] == 3 and ids(first) == created
    second = query(scim, "startIndex=101&count=100", headers=OKTA)
    assert second["totalResults"] == 3 and second["Resources"] == [] and second["startIndex"] == 101
