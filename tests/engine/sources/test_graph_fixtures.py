"""Graph payloads in the shapes Microsoft documents (fixtures/graph/, see its README) read by the
source as they are, and the stand-in's answers in the same shapes: the stand-in is only worth
testing against while it speaks what Graph documents."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx2
import pytest

from identity_sync.engine.model import SourceError
from identity_sync.engine.sources.base import SourceOptions
from identity_sync.engine.sources.graph_client import GraphHttp
from identity_sync.engine.sources.graph_source import GraphSource, _Collection
from tests.engine.sources.graph_standin import GraphStandIn

FIXTURES = Path(__file__).parent / "fixtures" / "graph"
TENANT, CLIENT_ID, SECRET = "contoso.onmicrosoft.com", "client-1", "secret-1"


def sample(name: str) -> dict[str, Any]:
    return json.loads((FIXTURES / name).read_text(encoding="utf-8"))


def round_of(object_type: str, *names: str) -> _Collection:
    collection = _Collection(object_type, {}, complete=True, now="2026-12-05T00:00:00Z")  # type: ignore[arg-type]
    for name in names:
        for entry in sample(name)["value"]:
            collection.apply(entry, name)
    return collection


U0, U4 = "9dc02223-da42-4384-868a-0b489b28b008", "e9c981a4-7998-4215-8ab0-bf6c32efefa1"
MEMBER = {"a": "3c44c3e1-b8b7-4447-8672-4ac776d3d90e", "b": "e021d7d4-8965-4027-8a2b-50a7cde059f7",
          "c": "6bc0f9c4-ecb0-4cbe-8f1b-9f6c816bdd66", "e": "2744ccd1-0c75-43bd-836a-d890f9dd5cab"}
FINANCE, FACILITIES, LEGAL = ("711430f6-164e-4380-8d93-428bc1fab80f", "4d2f4b66-8cfc-48e6-859d-36e91326bf87",
                              "3921871a-a088-4e3e-8483-0142ac909944")


def test_the_documented_users_round_is_read() -> None:
    users = round_of("user", "users_delta_initial.json", "users_delta_next.json", "users_delta_final.json")
    objects = users.result()
    assert len(objects) == 7  # eight entries, one of them "@removed": deleted (never seen: nothing to delete)
    assert "283bb9de-ef02-4684-8abf-b538efa1eca7" not in objects and users.removed == set()
    assert objects[U0].attributes == {"id": U0, "displayName": "Noor Haddad", "givenName": "Noor",
                                      "surname": "Haddad"}
    assert objects["1f1c5b2f-ad77-4434-824f-153798634692"].attributes == {
        "id": "1f1c5b2f-ad77-4434-824f-153798634692", "displayName": "Meeting Room 4B"}  # never-set: absent
    assert sample("users_delta_final.json")["@odata.deltaLink"].count("$deltatoken=") == 1


def test_the_documented_users_changes_merge_onto_what_was_read() -> None:
    previous = round_of("user", "users_delta_initial.json", "users_delta_next.json", "users_delta_final.json")
    changes = _Collection("user", previous.result(), complete=False, now="2026-12-05T00:00:00Z")
    for entry in sample("users_delta_changes.json")["value"]:
        changes.apply(entry, "users_delta_changes.json")
    objects = changes.result()
    assert set(objects) == {U0, U4}
    assert objects[U4].attributes == {"id": U4, "displayName": "Rafael Costa Silva", "givenName": "Rafael",
                                      "surname": "Costa Silva"}
    # "@removed": changed — soft-deleted: the previous object with deletedDateTime.
    assert objects[U0].attributes == {"id": U0, "displayName": "Noor Haddad", "givenName": "Noor",
                                      "surname": "Haddad", "deletedDateTime": "2026-12-05T00:00:00Z"}
    assert changes.removed == set()


def test_the_documented_manager_delta_gives_the_managers_id() -> None:
    user = round_of("user", "users_delta_manager.json").result()["cc967443-070a-4409-857a-455dc8c2405a"]
    assert user.attributes["manager"] == "c81f7204-47bc-4005-8e8f-81f40bde0f4a"
    assert user.attributes["businessPhones"] == ["+1 425 555 0142"]


def test_the_documented_groups_round_and_member_changes_are_read() -> None:
    groups = round_of("group", "groups_delta_initial.json", "groups_delta_next.json", "groups_delta_final.json")
    first = groups.result()
    assert len(first) == 6
    assert first[FINANCE].attributes["members"] == [MEMBER["a"], MEMBER["b"]]
    assert "members" not in first[FACILITIES].attributes  # no members@delta: no members
    changes = _Collection("group", first, complete=False, now="")
    for entry in sample("groups_delta_changes.json")["value"]:
        changes.apply(entry, "groups_delta_changes.json")
    assert changes.result()[LEGAL].attributes == {"id": LEGAL, "displayName": "Legal",
                                                  "description": "Legal and compliance", "members": [MEMBER["e"]]}


def test_an_entry_without_id_is_refused() -> None:
    # As the user: delta page's "Example 2" response, shortened to three properties without an id.
    collection = _Collection("user", {}, complete=True, now="")
    with pytest.raises(SourceError, match="an entry without an 'id'"):
        collection.apply({"displayName": "displayName-value", "jobTitle": "jobTitle-value", "mobilePhone": None},
                         "example 2")


def test_the_documented_assignments_and_token_answers_are_read() -> None:
    def answer(request: httpx2.Request) -> httpx2.Response:
        if request.url.path.endswith("/token"):
            return httpx2.Response(200, json=sample("token_response.json"))
        return httpx2.Response(200, json=sample("approleassignedto.json"))

    http = GraphHttp(TENANT, CLIENT_ID, client_secret=SECRET, graph_url="https://graph.test/v1.0",
                     login_url="https://login.test", transport=httpx2.MockTransport(answer))
    source = GraphSource(http, SourceOptions(service_principal_id="be18b85f-77fc-424d-8379-acf19e8a1ce6"))
    with http:
        # An assignment to the default access role (the all-zero id): assigned, no role value.
        assert source._assignments() == ({U0}, {})


def test_the_documented_token_error_becomes_one_line() -> None:
    def answer(request: httpx2.Request) -> httpx2.Response:
        return httpx2.Response(400, json=sample("token_error.json"))

    http = GraphHttp(TENANT, CLIENT_ID, client_secret=SECRET, graph_url="https://graph.test/v1.0",
                     login_url="https://login.test", transport=httpx2.MockTransport(answer))
    with http:
        with pytest.raises(SourceError) as caught:
            http.get("users/delta")
    assert str(caught.value) == ("graph:contoso.onmicrosoft.com: the token endpoint refused the app's credentials: "
                                 "400 invalid_scope: AADSTS70011: The provided value for the input parameter "
                                 "'scope' is not valid")


def _shape(value: Any) -> Any:
    """Keys and nesting, without the values."""
    if isinstance(value, dict):
        return {key: _shape(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_shape(value[0])] if value else []
    return type(value).__name__


def _round(http: httpx2.Client, url: str) -> list[dict[str, Any]]:
    entries: list[dict[str, Any]] = []
    while True:
        page = http.get(url).json()
        entries += page["value"]
        if "@odata.nextLink" not in page:
            return entries
        url = page["@odata.nextLink"]


@pytest.fixture
def graph() -> Any:
    standin = GraphStandIn(TENANT, CLIENT_ID, client_secret=SECRET, page_size=2, member_chunk=2).start()
    try:
        yield standin
    finally:
        standin.stop()


def test_the_standin_answers_in_the_documented_shapes(graph: GraphStandIn) -> None:
    for n in range(3):
        graph.add_user(f"u{n}", displayName=f"User {n}", givenName="G", surname="S")
    graph.add_group("g1", ["u0", "u1"], displayName="TestGroup1", description="d")
    graph.add_group("g2", [], displayName="TestGroup2", description="d")
    http = httpx2.Client()
    token = http.post(f"{graph.url}/{TENANT}/oauth2/v2.0/token", data={
        "grant_type": "client_credentials", "client_id": CLIENT_ID, "client_secret": SECRET,
        "scope": "https://graph.microsoft.com/.default"}).json()
    assert set(token) >= set(sample("token_response.json"))
    http.headers["Authorization"] = f"Bearer {token['access_token']}"

    first = http.get(f"{graph.graph_url}/users/delta", params={"$select": "displayName,givenName,surname"}).json()
    assert set(first) == set(sample("users_delta_initial.json"))  # @odata.context, @odata.nextLink, value
    assert _shape(first["value"][0]) == _shape(sample("users_delta_initial.json")["value"][0])
    last = http.get(first["@odata.nextLink"]).json()
    assert set(last) == set(sample("users_delta_final.json"))  # the deltaLink instead of the nextLink
    assert "$deltatoken=" in last["@odata.deltaLink"]

    graph.update_user("u1", displayName="MOD Administrator")
    graph.soft_delete_user("u2")
    graph.hard_delete_user("u0")
    entries = {entry["id"]: entry for entry in _round(http, last["@odata.deltaLink"])}
    documented = sample("users_delta_changes.json")["value"]
    assert _shape(entries["u1"]) == _shape(documented[0])
    assert entries["u2"] == {"id": "u2", "@removed": {"reason": "changed"}}
    assert set(documented[1]) == set(entries["u2"])
    assert entries["u0"] == {"id": "u0", "@removed": {"reason": "deleted"}}

    groups = http.get(f"{graph.graph_url}/groups/delta", params={"$select": "displayName,description,members"}).json()
    assert _shape(groups["value"][0]) == _shape(sample("groups_delta_initial.json")["value"][0])
    assert set(groups["value"][1]) == set(sample("groups_delta_initial.json")["value"][1])  # no members@delta
    link = http.get(groups["@odata.nextLink"]).json()["@odata.deltaLink"] if "@odata.nextLink" in groups \
        else groups["@odata.deltaLink"]
    graph.set_members("g1", ["u9"])  # u1 leaves, u9 joins
    member_changes = [m for entry in _round(http, link) for m in entry["members@delta"]]
    documented_members = sample("groups_delta_changes.json")["value"][0]["members@delta"]
    assert {json.dumps(_shape(m), sort_keys=True) for m in member_changes} == \
        {json.dumps(_shape(m), sort_keys=True) for m in documented_members}

    assigned = http.get(f"{graph.graph_url}/servicePrincipals/{graph.service_principal_id}/appRoleAssignedTo")
    assert set(assigned.json()) == set(sample("approleassignedto.json"))
    http.close()


def test_a_hard_deleted_object_leaves_its_groups_and_reports_even_when_graph_does_not_say_so() -> None:
    """Graph is not documented to send members@delta / manager@delta removals for an object
    deleted for good; the delta must not keep naming it."""
    from identity_sync.engine.model import SourceObject, SourceSnapshot

    def answer(request: httpx2.Request) -> httpx2.Response:
        if request.url.path.endswith("/token"):
            return httpx2.Response(200, json=sample("token_response.json"))
        kind = "users" if "/users/" in request.url.path else "groups"
        value = [{"id": "u2", "@removed": {"reason": "deleted"}}] if kind == "users" else []
        return httpx2.Response(200, json={"@odata.context": f"https://graph.test/v1.0/$metadata#{kind}",
                                          "@odata.deltaLink": f"https://graph.test/v1.0/{kind}/delta?$deltatoken=2",
                                          "value": value})

    http = GraphHttp(TENANT, CLIENT_ID, client_secret=SECRET, graph_url="https://graph.test/v1.0",
                     login_url="https://login.test", transport=httpx2.MockTransport(answer))
    previous = SourceSnapshot(
        {"u1": SourceObject("user", "u1", {"id": "u1", "manager": "u2"}),
         "u2": SourceObject("user", "u2", {"id": "u2"}), "u3": SourceObject("user", "u3", {"id": "u3"})},
        {"g": SourceObject("group", "g", {"id": "g", "members": ["u1", "u2"]}),
         "h": SourceObject("group", "h", {"id": "h", "members": ["u3"]})}, None, "")
    cursor = json.dumps({"users": "https://graph.test/v1.0/users/delta?$deltatoken=1",
                         "groups": "https://graph.test/v1.0/groups/delta?$deltatoken=1"})
    delta = GraphSource(http, SourceOptions()).read_changes(cursor, previous)
    assert delta is not None
    assert list(delta.removed) == [("user", "u2")]
    assert {obj.anchor: dict(obj.attributes) for obj in delta.changed} == {
        "u1": {"id": "u1"}, "g": {"id": "g", "members": ["u1"]}}  # "h" and "u3" are untouched
    assert json.loads(delta.cursor)["users"].endswith("$deltatoken=2")
