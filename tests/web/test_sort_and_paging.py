"""sortBy/sortOrder (RFC 7644 §3.4.2.3), startIndex/count, and cursor paging (RFC 9865)."""

from __future__ import annotations

from typing import Any

from tests.conftest import ScimClient

ENTERPRISE = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"


def _names(response: Any) -> list[str]:
    assert response.status_code == 200, response.text
    return [r["userName"] for r in response.json()["Resources"]]


def test_sort_by_a_case_insensitive_attribute_ignores_case_and_puts_missing_values_last(scim: ScimClient) -> None:
    scim.create_user("c", displayName="beta")
    scim.create_user("a", displayName="Alpha")
    scim.create_user("b")
    scim.create_user("d", displayName="GAMMA")
    assert _names(scim.get("/Users", params={"sortBy": "displayName"})) == ["a", "c", "d", "b"]
    assert _names(scim.get("/Users", params={"sortBy": "displayName", "sortOrder": "descending"})) == [
        "d", "c", "a", "b"]


def test_a_multi_valued_attribute_sorts_by_its_primary_value(scim: ScimClient) -> None:
    scim.create_user("one", emails=[{"value": "a@x"}, {"value": "z@x", "primary": True}])
    scim.create_user("two", emails=[{"value": "m@x"}])
    assert _names(scim.get("/Users", params={"sortBy": "emails.value"})) == ["two", "one"]
    assert _names(scim.get("/Users", params={"sortBy": "emails"})) == ["two", "one"]


def test_extension_attributes_and_meta_are_sort_keys(scim: ScimClient) -> None:
    scim.create_user("x", **{ENTERPRISE: {"department": "B"}})
    scim.create_user("y", **{ENTERPRISE: {"department": "a"}})
    assert _names(scim.get("/Users", params={"sortBy": f"{ENTERPRISE}:department"})) == ["y", "x"]
    assert _names(scim.get("/Users", params={"sortBy": "meta.created", "sortOrder": "descending"})) == ["y", "x"]


def test_bad_sort_parameters_are_400(scim: ScimClient) -> None:
    for params in ({"sortBy": "nope"}, {"sortBy": "groups"}, {"sortBy": "userName", "sortOrder": "up"}):
        response = scim.get("/Users", params=params)
        assert response.status_code == 400 and response.json()["scimType"] == "invalidValue", params


def test_index_paging_pages_in_creation_order(scim: ScimClient) -> None:
    for i in range(5):
        scim.create_user(f"u{i}")
    body = scim.get("/Users", params={"startIndex": 2, "count": 2}).json()
    assert (body["totalResults"], body["startIndex"], body["itemsPerPage"]) == (5, 2, 2)
    assert [r["userName"] for r in body["Resources"]] == ["u1", "u2"]


def _traverse(scim: ScimClient, params: dict[str, Any], between: Any = None) -> list[str]:
    seen, cursor = [], ""
    while True:
        body = scim.get("/Users", params={**params, "cursor": cursor, "count": 2}).json()
        seen += [r["userName"] for r in body["Resources"]]
        if "nextCursor" not in body:
            return seen
        cursor = body["nextCursor"]
        if between:
            between()


def test_cursor_paging_visits_everything_once_even_while_users_are_created_and_deleted(scim: ScimClient) -> None:
    ids = {f"u{i}": scim.create_user(f"u{i}")["id"] for i in range(7)}
    created = iter(range(100))

    def churn() -> None:
        scim.create_user(f"new{next(created)}")  # after the cursor: appears later in the traversal
        scim.delete(f"/Users/{ids.pop('u0')}") if "u0" in ids else None  # before it: changes nothing

    seen = _traverse(scim, {}, churn)
    assert seen[:7] == [f"u{i}" for i in range(7)] and len(seen) == len(set(seen))


def test_cursor_paging_follows_a_sort_with_missing_values(scim: ScimClient) -> None:
    for name, title in [("a", "t3"), ("b", None), ("c", "T1"), ("d", "t2"), ("e", None)]:
        scim.create_user(name, **({"title": title} if title else {}))
    assert _traverse(scim, {"sortBy": "title"}) == ["c", "d", "a", "b", "e"]
    assert _traverse(scim, {"sortBy": "title", "sortOrder": "descending"}) == ["a", "d", "c", "e", "b"]


def test_the_first_cursor_page_counts_and_a_foreign_cursor_is_refused(scim: ScimClient) -> None:
    for i in range(3):
        scim.create_user(f"u{i}")
    first = scim.get("/Users", params={"cursor": "", "count": 2}).json()
    assert first["totalResults"] == 3 and "startIndex" not in first
    other = scim.get("/Users", params={"cursor": first["nextCursor"], "filter": "userName pr"})
    assert other.status_code == 400 and other.json()["scimType"] == "invalidCursor"
    garbage = scim.get("/Users", params={"cursor": "not-a-cursor"})
    assert garbage.status_code == 400 and garbage.json()["scimType"] == "invalidCursor"
