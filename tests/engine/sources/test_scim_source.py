"""The scim:URL source: one of our tenants as the directory, relayed into another tenant (the
issue's test: after every cycle the target, read back over SCIM, is what the mapping says); what
SCIM resources read as; changes by meta.lastModified and deletions by the anchor listing; services
that cannot filter (a small fake) and one no one here wrote (scim2-server)."""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx2
import pytest

from identity_sync.config import Settings
from identity_sync.engine.client import documents
from identity_sync.engine.jobs import Credentials
from identity_sync.engine.mapping.model import ENTERPRISE, GLOBAL_RELAY, default_mapping_document
from identity_sync.engine.model import SourceError, SourceObject, SourceSnapshot
from identity_sync.engine.service import EngineService
from identity_sync.engine.sources import SourceSpecError, open_source
from identity_sync.engine.sources.base import SourceDelta, SourceOptions
from identity_sync.engine.sources.scim_attributes import GROUP_PATHS, USER_PATHS
from identity_sync.engine.sources.scim_source import ScimSource
from identity_sync.storage.db import Database
from tests.engine.targets import Target, add_tenant

USER_SCHEMA = "urn:ietf:params:scim:schemas:core:2.0:User"
GROUP_SCHEMA = "urn:ietf:params:scim:schemas:core:2.0:Group"
PATCH_SCHEMA = "urn:ietf:params:scim:api:messages:2.0:PatchOp"
WRITES = ("POST", "PATCH", "PUT", "DELETE")

#: Target paths the default mapping copies unchanged from the Graph name this source reads them as.
RELAYED_PATHS = ("userName", "displayName", "title", "name.givenName", "name.familyName", "externalId",
                 'emails[type eq "work"].value', 'phoneNumbers[type eq "work"].value',
                 'phoneNumbers[type eq "mobile"].value', 'addresses[type eq "work"].locality',
                 'addresses[type eq "work"].country', f"{ENTERPRISE}:department", f"{ENTERPRISE}:employeeNumber",
                 f"{GLOBAL_RELAY}:extensionAttribute1", f"{GLOBAL_RELAY}:proxyAddresses")


class Tenant:
    """A SCIM service written and read over HTTP, as a directory's administrator would."""

    def __init__(self, target: Target) -> None:
        self.target = target
        self.base = target.base_url.split("?")[0].rstrip("/")
        self.http = httpx2.Client(headers={"Authorization": f"Bearer {target.token}"}, timeout=30)

    def close(self) -> None:
        self.http.close()

    def user(self, user_name: str, *, manager: str | None = None, active: bool = True,
             **extra: Any) -> str:
        body: dict[str, Any] = {"schemas": [USER_SCHEMA, ENTERPRISE], "userName": user_name, "active": active,
                                "displayName": user_name.split("@")[0], **extra}
        if manager is not None:
            body.setdefault(ENTERPRISE, {})["manager"] = {"value": manager}
        return self._post("Users", body)

    def group(self, name: str, members: list[str]) -> str:
        return self._post("Groups", {"schemas": [GROUP_SCHEMA], "displayName": name,
                                     "members": [{"value": m} for m in members]})

    def patch(self, endpoint: str, resource_id: str, *operations: dict[str, Any]) -> None:
        response = self.http.patch(f"{self.base}/{endpoint}/{resource_id}",
                                   json={"schemas": [PATCH_SCHEMA], "Operations": list(operations)})
        assert response.status_code in (200, 204), response.text

    def delete(self, endpoint: str, resource_id: str) -> None:
        assert self.http.delete(f"{self.base}/{endpoint}/{resource_id}").status_code == 204

    def all(self, endpoint: str) -> list[dict[str, Any]]:
        found: list[dict[str, Any]] = []
        while True:
            response = self.http.get(f"{self.base}/{endpoint}", params={"startIndex": str(len(found) + 1),
                                                                        "count": "200"})
            body = response.raise_for_status().json()
            found.extend(body["Resources"])
            if not body["Resources"] or len(found) >= body["totalResults"]:
                return found

    def _post(self, endpoint: str, body: dict[str, Any]) -> str:
        response = self.http.post(f"{self.base}/{endpoint}", json=body)
        assert response.status_code == 201, response.text
        return str(response.json()["id"])


@pytest.fixture
def tenants(our_target: Target) -> Iterator[tuple[Tenant, Tenant]]:
    """Two fresh tenants of one service: the directory and the target of the relay."""
    source = Tenant(add_tenant(our_target, f"src-{uuid.uuid4().hex[:10]}"))
    target = Tenant(add_tenant(our_target, f"dst-{uuid.uuid4().hex[:10]}"))
    yield source, target
    source.close()
    target.close()


def scim_source(tenant: Tenant) -> ScimSource:
    source = open_source(f"scim:{tenant.target.base_url}", SourceOptions(token=tenant.target.token))
    assert isinstance(source, ScimSource)
    return source


def ada(prefix: str) -> dict[str, Any]:
    """A user with a value for most of what the default mapping relays."""
    return {"name": {"givenName": "Ada", "familyName": "Lovelace"}, "title": "CEO", "externalId": f"{prefix}-ada",
            "emails": [{"type": "work", "value": f"{prefix}-ada@mail.example.com", "primary": True}],
            "phoneNumbers": [{"type": "work", "value": "+1 555 0100"}, {"type": "mobile", "value": "+1 555 0199"}],
            "addresses": [{"type": "work", "locality": "London", "country": "GB"}],
            ENTERPRISE: {"department": "Sales", "employeeNumber": "E1"},
            GLOBAL_RELAY: {"extensionAttribute1": "ea1", "proxyAddresses": ["SMTP:ada@x.example", "smtp:a@x.example"]},
            "schemas": [USER_SCHEMA, ENTERPRISE, GLOBAL_RELAY]}


# -- what a SCIM resource reads as ------------------------------------------------------------------


def test_the_attribute_table_is_the_inverse_of_the_default_mapping() -> None:
    """Every Direct mapping of the default mapping reads back from the path it writes, so a relay
    through the default mapping gives the target what the source has."""
    mapping = default_mapping_document()
    for kind, table in (("users", USER_PATHS), ("groups", GROUP_PATHS)):
        for item in mapping[kind]["mappings"]:
            if "source" in item and item["source"] != "members":
                assert table[item["source"]] == item["target"], item


def test_a_user_and_a_group_read_under_graph_names(tenants: tuple[Tenant, Tenant]) -> None:
    source, _ = tenants
    boss = source.user("boss@example.com", **ada("t"))
    worker = source.user("worker@example.com", manager=boss, active=False,
                         emails=[{"value": "w@mail.example.com", "primary": True}])  # no type: the primary one
    team = source.group("team", [boss, worker])
    snapshot = scim_source(source).read()

    assert snapshot.assigned is None  # SCIM has no assignments: jobs use the scope "all"
    assert dict(snapshot.users[boss].attributes) == {
        "userPrincipalName": "boss@example.com", "displayName": "boss", "givenName": "Ada", "surname": "Lovelace",
        "jobTitle": "CEO", "mailNickname": "t-ada", "mail": "t-ada@mail.example.com", "businessPhones": ["+1 555 0100"],
        "mobilePhone": "+1 555 0199", "city": "London", "country": "GB", "department": "Sales", "employeeId": "E1",
        "extensionAttribute1": "ea1", "proxyAddresses": ["SMTP:ada@x.example", "smtp:a@x.example"],
        "accountEnabled": True}
    assert dict(snapshot.users[worker].attributes) == {
        "userPrincipalName": "worker@example.com", "displayName": "worker", "mail": "w@mail.example.com",
        "manager": boss, "accountEnabled": False}
    assert dict(snapshot.groups[team].attributes) == {"displayName": "team", "members": [boss, worker]}
    assert snapshot.user_attributes is not None and {"department", "accountEnabled"} <= snapshot.user_attributes
    assert scim_source(source).get(worker) == snapshot.users[worker]
    assert scim_source(source).get(team) == snapshot.groups[team]
    assert scim_source(source).get("no-such-id") is None


def test_a_bad_specification_is_refused_when_the_job_is_made() -> None:
    with pytest.raises(SourceSpecError):
        open_source("scim:ftp://scim.example.com/v2", SourceOptions(token="t"))
    with pytest.raises(SourceSpecError, match="client id, a client secret and a token URL"):
        open_source("scim:https://scim.example.com/v2", SourceOptions(client_id="app"))
    with pytest.raises(SourceSpecError, match="not both"):
        open_source("scim:https://scim.example.com/v2", SourceOptions(token="t", client_id="app"))


def test_no_credentials_or_refused_ones_are_a_source_error(tenants: tuple[Tenant, Tenant]) -> None:
    source, _ = tenants
    with pytest.raises(SourceError, match="no credentials"):
        open_source(f"scim:{source.target.base_url}").read()
    wrong = open_source(f"scim:{source.target.base_url}", SourceOptions(token="not-the-token"))
    with pytest.raises(SourceError, match="401") as raised:
        wrong.read()
    assert "not-the-token" not in str(raised.value)


def test_client_credentials_read_the_source(our_target: Target) -> None:
    """OAuth client credentials instead of a token (our service's OAuth client of its first tenant)."""
    tenant = Tenant(our_target)
    try:
        anchor = tenant.user(f"oauth-{uuid.uuid4().hex[:8]}@example.com")
        assert our_target.client_id and our_target.client_secret and our_target.token_endpoint
        source = open_source(f"scim:{our_target.base_url}", SourceOptions(
            client_id=our_target.client_id, client_secret=our_target.client_secret,
            token_url=our_target.token_endpoint))
        assert anchor in source.read().users
    finally:
        tenant.close()


# -- changes since a cursor ---------------------------------------------------------------------


def applied(snapshot: SourceSnapshot, delta: SourceDelta) -> SourceSnapshot:
    """The engine's copy of the source after ``delta`` (what engine/mirror.py keeps)."""
    users, groups = dict(snapshot.users), dict(snapshot.groups)
    for obj in delta.changed:
        (users if obj.object_type == "user" else groups)[obj.anchor] = obj
    for object_type, anchor in delta.removed:
        (users if object_type == "user" else groups).pop(anchor)
    return SourceSnapshot(users, groups, None, delta.cursor)


def test_read_changes_returns_the_changed_objects_and_the_deleted_anchors(tenants: tuple[Tenant, Tenant]) -> None:
    source, _ = tenants
    ids = {name: source.user(f"{name}@example.com") for name in ("u1", "u2", "u3", "u4", "u5")}
    team = source.group("team", [ids["u1"], ids["u2"]])
    quiet = source.group("quiet", [ids["u3"], ids["u5"]])
    time.sleep(1.1)
    marker = source.user("marker@example.com")  # the only object in the second before the first read's cursor
    reader = scim_source(source)
    first = reader.read()

    # Nothing changed: nothing reported, though the query starts a second early and sees them all again.
    nothing = reader.read_changes(first.watermark, first)
    assert nothing is not None
    assert (list(nothing.changed), list(nothing.removed), nothing.assigned) == ([], [], None)

    source.patch("Users", ids["u1"], {"op": "replace", "path": "title", "value": "CTO"})
    source.patch("Groups", team, {"op": "add", "path": "members", "value": [{"value": ids["u4"]}]})
    source.delete("Users", ids["u5"])  # a member of "quiet", which is read again
    new = source.user("u6@example.com")
    delta = reader.read_changes(nothing.cursor, first)
    assert delta is not None
    changed = {obj.anchor: obj for obj in delta.changed}
    assert set(changed) == {ids["u1"], team, quiet, new}
    assert changed[ids["u1"]].attributes["jobTitle"] == "CTO"
    assert changed[team].attributes["members"] == [ids["u1"], ids["u2"], ids["u4"]]
    assert changed[quiet].attributes["members"] == [ids["u3"]]
    assert list(delta.removed) == [("user", ids["u5"])]
    # Read: what the query returned (the changes, and the marker again: the overlap), every id
    # (6 users, 2 groups), and u5 alone before it counts as deleted; "quiet" either came with the
    # changes (the service touched it) or was read alone.
    assert delta.entries_read == len(changed) + 1 + 8 + 1
    assert marker not in changed

    after = applied(first, delta)
    assert after.users == reader.read().users and after.groups == reader.read().groups
    again = reader.read_changes(delta.cursor, after)
    assert again is not None and (list(again.changed), list(again.removed)) == ([], [])


def test_a_cursor_of_another_source_or_without_a_position_reads_everything(tenants: tuple[Tenant, Tenant]) -> None:
    source, _ = tenants
    reader = scim_source(source)
    empty = reader.read()  # an empty tenant: no meta.lastModified to start from
    assert reader.read_changes(empty.watermark, empty) is None
    assert reader.read_changes("sha256:0123", empty) is None


# -- services that cannot filter, or list members elsewhere --------------------------------------


class FakeScim:
    """A SCIM service of a few lines whose behaviour the tests choose."""

    def __init__(self) -> None:
        self.users: dict[str, dict[str, Any]] = {}
        self.groups: dict[str, dict[str, Any]] = {}
        self.filter_supported = True
        self.filter_answer = "honour"  # or "400", "ignore"
        self.members_in_lists = True
        self.extra_total = 0  # a totalResults that says more than the service gives
        self.vanished: set[str] = set()  # listed, but 404 when read alone (deleted in between)
        self.skipped: set[str] = set()  # left out of whole listings, totalResults included (paging skipped them)
        self.requests: list[str] = []
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                url = urlsplit(self.path)
                fake.requests.append(self.path)
                status, body = fake.answer(url.path.rstrip("/").split("/")[-2:], parse_qs(url.query))
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/scim+json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/scim"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def add(self, endpoint: str, resource_id: str, stamp: str, **attributes: Any) -> None:
        store = self.users if endpoint == "Users" else self.groups
        store[resource_id] = {"id": resource_id, "meta": {"lastModified": stamp}, **attributes}

    def answer(self, parts: list[str], query: dict[str, list[str]]) -> tuple[int, dict[str, Any]]:
        if parts[-1] == "ServiceProviderConfig":
            return 200, {"filter": {"supported": self.filter_supported, "maxResults": 200}}
        if parts[0] in ("Users", "Groups"):  # one resource
            found = (self.users if parts[0] == "Users" else self.groups).get(parts[1])
            found = None if parts[1] in self.vanished else found
            return (200, found) if found else (404, {"status": "404"})
        resources = list((self.users if parts[-1] == "Users" else self.groups).values())
        text = query.get("filter", [""])[0]
        if text and self.filter_answer == "400":
            return 400, {"status": "400", "scimType": "invalidFilter"}
        if text and self.filter_answer == "honour":
            since = text.split('"')[1]
            resources = [r for r in resources if r["meta"]["lastModified"] > since]
        if query.get("attributes") == ["id"]:
            resources = [{"id": r["id"]} for r in resources]
        else:
            resources = [r for r in resources if r["id"] not in self.skipped]
            if not self.members_in_lists:
                resources = [{k: v for k, v in r.items() if k != "members"} for r in resources]
        start, count = int(query.get("startIndex", ["1"])[0]), int(query.get("count", ["100"])[0])
        page = resources[start - 1:start - 1 + count]
        return 200, {"totalResults": len(resources) + self.extra_total, "Resources": page}


@pytest.fixture
def fake() -> Iterator[FakeScim]:
    service = FakeScim()
    service.add("Users", "u1", "2026-01-01T10:00:00Z", userName="u1@example.com")
    service.add("Users", "u2", "2026-01-01T10:00:05Z", userName="u2@example.com")
    service.add("Groups", "g1", "2026-01-01T10:00:01Z", displayName="g1", members=[{"value": "u1"}])
    yield service
    service.stop()


def fake_source(fake: FakeScim) -> ScimSource:
    source = open_source(f"scim:{fake.url}", SourceOptions(token="fake-token"))
    assert isinstance(source, ScimSource)
    return source


def test_a_service_that_says_it_cannot_filter_is_read_whole(fake: FakeScim) -> None:
    fake.filter_supported = False
    snapshot = fake_source(fake).read()
    assert json.loads(snapshot.watermark)["since"] == "2026-01-01T10:00:05.000000Z"
    assert fake_source(fake).read_changes(snapshot.watermark, snapshot) is None


def test_a_service_that_refuses_the_filter_is_read_whole(fake: FakeScim) -> None:
    fake.filter_answer = "400"
    snapshot = fake_source(fake).read()
    assert fake_source(fake).read_changes(snapshot.watermark, snapshot) is None


def test_a_service_that_ignores_the_filter_is_read_whole(fake: FakeScim) -> None:
    fake.filter_answer = "ignore"
    snapshot = fake_source(fake).read()
    assert fake_source(fake).read_changes(snapshot.watermark, snapshot) is None


def test_the_change_query_starts_a_second_early(fake: FakeScim) -> None:
    snapshot = fake_source(fake).read()
    fake.users["u2"]["title"] = "late"  # written in the same second as the last read, seen by nobody yet
    delta = fake_source(fake).read_changes(snapshot.watermark, snapshot)
    assert delta is not None
    assert [(o.anchor, o.attributes.get("jobTitle")) for o in delta.changed] == [("u2", "late")]
    assert any('meta.lastModified gt "2026-01-01T10:00:04.000000Z"' in parse_qs(urlsplit(r).query).get(
        "filter", [""])[0] for r in fake.requests)


def test_groups_listed_without_members_are_read_alone(fake: FakeScim) -> None:
    fake.members_in_lists = False
    snapshot = fake_source(fake).read()
    assert snapshot.groups["g1"].attributes["members"] == ["u1"]
    assert "/scim/Groups/g1" in fake.requests


def test_a_group_deleted_between_its_listing_and_its_own_read_is_not_there(fake: FakeScim) -> None:
    fake.members_in_lists = False
    fake.vanished.add("g1")
    assert "g1" not in fake_source(fake).read().groups


def test_what_named_a_deleted_object_is_read_again_though_its_timestamp_did_not_move(fake: FakeScim) -> None:
    """A service may drop a deleted user from its groups and its reports' manager without touching
    their meta.lastModified: the source reads them again."""
    fake.users["u2"][ENTERPRISE] = {"manager": {"value": "u1"}}
    before = fake_source(fake).read()
    assert before.users["u2"].attributes["manager"] == "u1"
    del fake.users["u1"]
    fake.groups["g1"]["members"] = []
    fake.users["u2"][ENTERPRISE] = {}
    delta = fake_source(fake).read_changes(before.watermark, before)
    assert delta is not None
    assert list(delta.removed) == [("user", "u1")]
    changed = {obj.anchor: dict(obj.attributes) for obj in delta.changed}
    assert changed == {"u2": {"userPrincipalName": "u2@example.com"}, "g1": {"displayName": "g1", "members": []}}


def test_an_object_the_paging_skipped_is_read_alone(fake: FakeScim) -> None:
    """A deletion before it and a creation after it while the pages are read: the totals agree,
    the object is missing from the listing, and it must not read as deleted."""
    fake.skipped.add("u2")
    assert set(fake_source(fake).read().users) == {"u1", "u2"}
    assert "/scim/Users/u2" in fake.requests


def test_a_listing_short_of_its_total_is_an_error_not_a_partial_snapshot(fake: FakeScim) -> None:
    fake.extra_total = 1
    with pytest.raises(SourceError, match="totalResults"):
        fake_source(fake).read()


def test_a_member_gone_between_the_listings_is_left_out(fake: FakeScim) -> None:
    fake.groups["g1"]["members"].append({"value": "deleted-meanwhile"})
    assert fake_source(fake).read().groups["g1"].attributes["members"] == ["u1"]


# -- a service no one here wrote -----------------------------------------------------------------


def test_scim2_server_as_a_source(scim2_target: Target) -> None:
    """scim2-server filters on meta.lastModified too: changes and deletions are seen without a full read."""
    tenant = Tenant(scim2_target)
    try:
        prefix = uuid.uuid4().hex[:8]
        boss = tenant.user(f"{prefix}-boss@example.com", **ada(prefix))
        worker = tenant.user(f"{prefix}-worker@example.com", manager=boss)
        team = tenant.group(f"{prefix} team", [boss, worker])
        reader = open_source(f"scim:{scim2_target.base_url}", SourceOptions(token=scim2_target.token))
        first = reader.read()
        assert first.users[boss].attributes["employeeId"] == "E1"
        assert first.users[worker].attributes["manager"] == boss
        assert first.groups[team].attributes["members"] == [boss, worker]

        time.sleep(1.1)  # past the query's overlap, so that only what changes now comes back
        tenant.patch("Users", worker, {"op": "replace", "path": "title", "value": "Engineer"})
        tenant.delete("Users", boss)
        delta = reader.read_changes(first.watermark, first)
        assert delta is not None
        assert ("user", boss) in delta.removed
        changed = {o.anchor: o for o in delta.changed}
        assert changed[worker].attributes["jobTitle"] == "Engineer"
    finally:
        tenant.close()


# -- end to end: one tenant relayed into another ---------------------------------------------------


def check_relay(source: Tenant, target: Tenant, disabled: frozenset[str] = frozenset()) -> None:
    """The target tenant holds what the default mapping makes of the source tenant: every enabled
    user with the relayed attributes and its manager, the ``disabled`` userNames (provisioned,
    then disabled in the source) inactive, no one else; every group with its members."""
    source_users = {u["userName"]: u for u in source.all("Users")}
    target_users = {u["userName"]: u for u in target.all("Users")}
    enabled = {name for name, u in source_users.items() if u.get("active", True)}
    assert set(target_users) == enabled | disabled
    source_names = {u["id"]: name for name, u in source_users.items()}
    for name, relayed in target_users.items():
        original = source_users[name]
        assert relayed["active"] is (name in enabled)
        for path in RELAYED_PATHS:
            assert documents.extract(relayed, path) == documents.extract(original, path), (name, path)
        given, family = documents.extract(original, "name.givenName"), documents.extract(original, "name.familyName")
        formatted = " ".join(part for part in (given, family) if part) or None
        assert documents.extract(relayed, "name.formatted") == formatted
        manager = documents.extract(original, f"{ENTERPRISE}:manager")
        expected = target_users[source_names[manager]]["id"] if manager else None
        assert documents.extract(relayed, f"{ENTERPRISE}:manager") == expected, name
    source_groups = {g["displayName"]: g for g in source.all("Groups")}
    target_groups = {g["displayName"]: g for g in target.all("Groups")}
    assert set(target_groups) == set(source_groups)
    source_group_names = {g["id"]: name for name, g in source_groups.items()}
    for name, group in source_groups.items():
        expected_members = set()
        for member in group.get("members") or []:
            if member["value"] in source_group_names:
                expected_members.add(target_groups[source_group_names[member["value"]]]["id"])
            elif source_names[member["value"]] in enabled:  # a disabled user leaves its groups
                expected_members.add(target_users[source_names[member["value"]]]["id"])
        assert {m["value"] for m in target_groups[name].get("members") or []} == expected_members, name


def test_one_tenant_provisioned_into_another_then_changes_flow(db: Database, settings: Settings,
                                                              tenants: tuple[Tenant, Tenant]) -> None:
    source, target = tenants
    boss = source.user("boss@example.com", **ada("relay"))
    u2 = source.user("u2@example.com", manager=boss, title="Engineer", name={"givenName": "Grace"})
    u3 = source.user("u3@example.com", manager=u2, addresses=[{"type": "work", "locality": "Paris"}])
    u4 = source.user("u4@example.com", manager=boss)
    source.user("never@example.com", active=False)  # disabled from the start: never provisioned
    sub = source.group("sub", [u3, u4])
    team = source.group("team", [boss, u2, sub])
    engine = EngineService(db, settings)
    engine.jobs.create("relay", source=f"scim:{source.target.base_url}", target_url=target.target.base_url,
                       credentials=Credentials(token=target.target.token), scope="all",
                       source_options=SourceOptions(token=source.target.token))

    first = engine.run("relay")
    assert (first.counts["created"], first.counts["failed"]) == (6, 0)  # 4 users, 2 groups
    check_relay(source, target)
    target_ids = {u["userName"]: u["id"] for u in target.all("Users")}

    # Changes in the source: a rename, an attribute, a disable, a hard delete, a new user, memberships.
    source.patch("Users", boss, {"op": "replace", "path": "userName", "value": "ada@example.com"})
    source.patch("Users", u2, {"op": "replace", "path": "title", "value": "Rear Admiral"},
                 {"op": "replace", "path": f"{ENTERPRISE}:department", "value": "Navy"})
    source.patch("Users", u3, {"op": "replace", "path": "active", "value": False})
    source.delete("Users", u4)
    u5 = source.user("u5@example.com", manager=boss)
    source.patch("Groups", team, {"op": "remove", "path": f'members[value eq "{u2}"]'},
                 {"op": "add", "path": "members", "value": [{"value": u5}]})
    second = engine.run("relay")
    assert (second.counts["created"], second.counts["deleted"], second.counts["failed"]) == (1, 1, 0)
    check_relay(source, target, disabled=frozenset({"u3@example.com"}))
    assert_read_changes(second)
    relayed = {u["userName"]: u["id"] for u in target.all("Users")}
    assert relayed["ada@example.com"] == target_ids["boss@example.com"]  # a rename is an update
    assert "u4@example.com" not in relayed

    # No change in the source: no write to the target.
    third = engine.run("relay")
    assert not any(third.requests.get(method, 0) for method in WRITES), third.requests
    check_relay(source, target, disabled=frozenset({"u3@example.com"}))
    assert_read_changes(third)


def assert_read_changes(result: Any) -> None:
    """Once the engine keeps its copy of the source (engine/mirror.py), a cycle after the first
    reads only the changes of this source; before that, every cycle reads everything."""
    read = getattr(result, "source_read", None)
    if read:
        assert read["mode"] == "changes", read


def test_the_source_objects_compare_equal_across_reads(tenants: tuple[Tenant, Tenant]) -> None:
    """Two reads of an unchanged service give equal objects (what de-duplicating the overlap relies on)."""
    source, _ = tenants
    anchor = source.user("same@example.com", **ada("same"))
    reader = scim_source(source)
    assert reader.read().users[anchor] == reader.read().users[anchor]
    assert isinstance(reader.read().users[anchor], SourceObject)
