"""The Graph source against the local Graph-shaped stand-in (tests/engine/sources/graph_standin.py):
a complete read through several pages, incremental reads merged into complete objects, ``@removed``
of both kinds, member and manager changes, an expired delta link, throttling, token errors, the
certificate credential, app-role assignments and reads of one object."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

from identity_sync.engine.mapping.model import default_mapping
from identity_sync.engine.model import SourceError, SourceSnapshot
from identity_sync.engine.sources import SourceSpecError, open_source
from identity_sync.engine.sources.base import SourceOptions
from identity_sync.engine.sources.graph_source import GraphSource, open_graph_source, select_for
from tests.engine.sources.graph_standin import GraphStandIn, make_certificate

TENANT = "11111111-2222-3333-4444-555555555555"
CLIENT_ID = "aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee"
SECRET = "s3cr3t~value.that-must-never-show"


@pytest.fixture
def graph() -> Iterator[GraphStandIn]:
    standin = GraphStandIn(TENANT, CLIENT_ID, client_secret=SECRET, page_size=3, member_chunk=2).start()
    try:
        yield standin
    finally:
        standin.stop()


def source_for(standin: GraphStandIn, waits: list[float] | None = None, **options: object) -> GraphSource:
    mapping = default_mapping()
    settings: dict[str, object] = {"client_id": CLIENT_ID, "client_secret": SECRET, "graph_url": standin.graph_url,
                                   "login_url": standin.url, "user_attributes": mapping.users.source_attributes(),
                                   "group_attributes": mapping.groups.source_attributes(), **options}
    recorded = waits if waits is not None else []
    return open_graph_source(TENANT, SourceOptions(**settings), sleep=recorded.append)  # type: ignore[arg-type]


def seed(graph: GraphStandIn) -> None:
    """Seven users (three pages of three), a manager chain, two groups, one with five members."""
    graph.add_user("boss", userPrincipalName="boss@contoso.example", displayName="Ada Lovelace", givenName="Ada",
                   surname="Lovelace", jobTitle="CEO", department="Sales", businessPhones=["+1 555 0100"],
                   mobilePhone="+1 555 0101", onPremisesExtensionAttributes={"extensionAttribute3": "ea3",
                                                                             "extensionAttribute4": None},
                   employeeOrgData={"costCenter": "CC-1", "division": None})
    for n in range(2, 8):
        graph.add_user(f"u{n}", manager="boss", userPrincipalName=f"u{n}@contoso.example", displayName=f"User {n}",
                       givenName=f"Given{n}", surname=f"Sur{n}", department="R&D")
    graph.add_group("team", ["boss", "u2", "u3", "u4", "sub"], displayName="Team", mailNickname="team")
    graph.add_group("sub", ["u5"], displayName="Sub", description="nested")


def test_a_complete_read_follows_every_next_link_and_merges_a_group_spread_over_pages(graph: GraphStandIn) -> None:
    seed(graph)
    snapshot = source_for(graph).read()

    assert sorted(snapshot.users) == ["boss", "u2", "u3", "u4", "u5", "u6", "u7"]
    boss = snapshot.users["boss"].attributes
    assert boss == {"id": "boss", "accountEnabled": True, "userPrincipalName": "boss@contoso.example",
                    "displayName": "Ada Lovelace", "givenName": "Ada", "surname": "Lovelace", "jobTitle": "CEO",
                    "department": "Sales", "businessPhones": ["+1 555 0100"], "mobilePhone": "+1 555 0101",
                    "extensionAttribute3": "ea3", "costCenter": "CC-1"}  # flattened; nulls absent
    assert snapshot.users["u4"].attributes["manager"] == "boss"
    # "team" has five members: three entries of two, two and one (members@delta paging), all merged.
    assert snapshot.groups["team"].attributes["members"] == ["boss", "u2", "u3", "u4", "sub"]
    # Only what the mapping reads is selected: the default mapping's groups read no description.
    assert snapshot.groups["sub"].attributes == {"id": "sub", "displayName": "Sub", "members": ["u5"]}
    assert snapshot.assigned is None  # no service principal: no notion of assignment
    users_pages = [r for r in graph.requests if r == "GET /v1.0/users/delta"]
    assert len(users_pages) == 3  # 7 users, 3 a page
    assert len([r for r in graph.requests if r == "GET /v1.0/groups/delta"]) == 2  # 3 + 1 group entries, 3 a page
    links = json.loads(snapshot.watermark)
    assert "$deltatoken=" in links["users"] and "/users/delta" in links["users"]
    assert "$deltatoken=" in links["groups"] and "/groups/delta" in links["groups"]
    assert "extensionAttribute3" in snapshot.user_attributes and "manager" in snapshot.user_attributes


def test_select_asks_graph_only_for_properties_it_has() -> None:
    mapping = default_mapping()
    select = select_for("user", mapping.users.source_attributes())
    assert select[:5] == ["id", "accountEnabled", "userPrincipalName", "displayName", "manager"]
    # The default mapping's extensionAttributeN and costCenter/division come from Graph's objects…
    assert {"onPremisesExtensionAttributes", "employeeOrgData", "proxyAddresses", "jobTitle"} <= set(select)
    # …and names Graph does not have would make it refuse the whole query (the stand-in does too).
    assert not {"homeEmail", "extensionAttribute1", "costCenter", "deletedDateTime"} & set(select)
    assert select_for("user", {"JOBTITLE"}) == ["id", "accountEnabled", "userPrincipalName", "displayName",
                                                "manager", "jobTitle"]  # names are matched case-insensitively
    assert select_for("group", mapping.groups.source_attributes()) == ["id", "displayName", "members"]


def test_read_changes_returns_complete_objects_soft_and_hard_deletes_and_member_changes(graph: GraphStandIn) -> None:
    seed(graph)
    source = source_for(graph)
    snapshot = source.read()

    graph.update_user("u2", jobTitle="Engineer", mobilePhone=None)  # a property set, none cleared
    graph.update_user("u3", manager="u2")
    graph.update_user("u6", manager=None)
    graph.update_user("boss", onPremisesExtensionAttributes={"extensionAttribute3": None,
                                                             "extensionAttribute5": "ea5"})
    graph.add_user("u8", userPrincipalName="u8@contoso.example", displayName="User 8", manager="u2")
    graph.soft_delete_user("u5")
    graph.hard_delete_user("u4")  # also leaves "team"
    graph.set_members("sub", ["u5", "u7"])
    graph.add_group("new", ["u8", "sub"], displayName="New")
    delta = source.read_changes(snapshot.watermark, snapshot)

    assert delta is not None
    changed = {obj.anchor: obj.attributes for obj in delta.changed}
    assert set(changed) == {"u2", "u3", "u6", "boss", "u8", "u5", "sub", "new", "team"}
    # Complete objects: what did not change comes from the previous snapshot.
    assert changed["u2"] == {**snapshot.users["u2"].attributes, "jobTitle": "Engineer"}
    assert changed["u3"]["manager"] == "u2" and changed["u3"]["givenName"] == "Given3"
    assert "manager" not in changed["u6"] and changed["u6"]["surname"] == "Sur6"
    assert changed["boss"]["extensionAttribute5"] == "ea5" and "extensionAttribute3" not in changed["boss"]
    assert changed["boss"]["jobTitle"] == "CEO"
    assert changed["u8"] == {"id": "u8", "accountEnabled": True, "userPrincipalName": "u8@contoso.example",
                             "displayName": "User 8", "manager": "u2"}
    # @removed "changed": the previous object, soft-deleted.
    assert changed["u5"]["deletedDateTime"] and changed["u5"]["displayName"] == "User 5"
    # @removed "deleted": a hard delete, and out of its groups.
    assert list(delta.removed) == [("user", "u4")]
    assert changed["team"]["members"] == ["boss", "u2", "u3", "sub"]
    assert changed["sub"]["members"] == ["u5", "u7"] and changed["sub"]["displayName"] == "Sub"
    assert changed["new"]["members"] == ["u8", "sub"]
    assert delta.entries_read >= 10
    assert delta.cursor != snapshot.watermark

    # The next round starts where this one ended: nothing changed, nothing comes.
    after = _applied(snapshot, delta)
    quiet = source.read_changes(delta.cursor, after)
    assert quiet is not None and (list(quiet.changed), list(quiet.removed)) == ([], [])


def _applied(snapshot: SourceSnapshot, delta: object) -> SourceSnapshot:
    """The engine's copy after a delta (what engine/mirror.py keeps)."""
    users, groups = dict(snapshot.users), dict(snapshot.groups)
    for obj in delta.changed:  # type: ignore[attr-defined]
        (users if obj.object_type == "user" else groups)[obj.anchor] = obj
    for object_type, anchor in delta.removed:  # type: ignore[attr-defined]
        (users if object_type == "user" else groups).pop(anchor, None)
    return SourceSnapshot(users, groups, delta.assigned, delta.cursor)  # type: ignore[attr-defined]


def test_a_restored_user_is_no_longer_soft_deleted_and_a_deleted_group_is_removed(graph: GraphStandIn) -> None:
    seed(graph)
    graph.soft_delete_user("u7")
    source = source_for(graph)
    snapshot = source.read()
    # A complete read lists soft-deleted users from deleted items, with deletedDateTime.
    assert snapshot.users["u7"].attributes["deletedDateTime"] == "2026-12-01T10:00:00Z"
    assert snapshot.users["u7"].attributes["displayName"] == "User 7"

    graph.restore_user("u7")
    graph.delete_group("sub")
    delta = source.read_changes(snapshot.watermark, snapshot)
    assert delta is not None
    changed = {obj.anchor: obj.attributes for obj in delta.changed}
    assert "deletedDateTime" not in changed["u7"] and changed["u7"]["displayName"] == "User 7"
    assert ("group", "sub") in delta.removed
    assert "sub" not in changed["team"]["members"]


def test_an_expired_delta_link_asks_for_a_complete_read(graph: GraphStandIn) -> None:
    seed(graph)
    source = source_for(graph)
    snapshot = source.read()
    graph.expire_delta_links()
    assert source.read_changes(snapshot.watermark, snapshot) is None
    assert source.read_changes("not a cursor of ours", snapshot) is None


def test_throttling_is_honoured_with_retry_after(graph: GraphStandIn) -> None:
    seed(graph)
    waits: list[float] = []
    source = source_for(graph, waits)
    graph.throttle(2, 429, "7")
    snapshot = source.read()
    assert waits == [7.0, 7.0]
    assert len(snapshot.users) == 7

    waits.clear()
    graph.throttle(1, 503, "3", after=2)  # in the middle of the users' round
    assert len(source.read().users) == 7
    assert waits == [3.0]


def test_throttling_that_does_not_end_fails_the_read_without_a_partial_snapshot(graph: GraphStandIn) -> None:
    seed(graph)
    waits: list[float] = []
    source = source_for(graph, waits)
    graph.throttle(50, 429, "1", after=1)  # the second page never comes
    with pytest.raises(SourceError, match=r"GET /v1.0/users/delta: still throttled after 6 attempts: 429 "
                                          r"TooManyRequests"):
        source.read()
    assert waits == [1.0] * 5


def test_a_failure_in_the_middle_of_a_delta_round_raises(graph: GraphStandIn) -> None:
    seed(graph)
    source = source_for(graph, [])
    snapshot = source.read()
    for n in range(10):
        graph.add_user(f"n{n}", userPrincipalName=f"n{n}@contoso.example")
    graph.throttle(50, 500, after=1)
    with pytest.raises(SourceError, match="failed after 6 attempts: 500"):
        source.read_changes(snapshot.watermark, snapshot)


def test_a_wrong_secret_is_one_line_with_the_aadsts_code_and_never_the_secret(graph: GraphStandIn) -> None:
    seed(graph)
    source = open_graph_source(TENANT, SourceOptions(client_id=CLIENT_ID, client_secret="wrong-" + SECRET,
                                                     graph_url=graph.graph_url, login_url=graph.url))
    with pytest.raises(SourceError) as caught:
        source.read()
    message = str(caught.value)
    assert "401 invalid_client: AADSTS7000215: Invalid client secret provided" in message
    assert SECRET not in message and "\n" not in message and "Trace ID" not in message


def test_the_token_is_fetched_once_and_reused(graph: GraphStandIn) -> None:
    seed(graph)
    source = source_for(graph)
    snapshot = source.read()
    source.read_changes(snapshot.watermark, snapshot)
    assert graph.tokens_issued == 1
    graph.tokens.clear()  # revoked (or expired early): Graph answers 401, one new token is fetched
    assert len(source.read().users) == 7
    assert graph.tokens_issued == 2


def test_a_certificate_credential_signs_a_client_assertion() -> None:
    pem = make_certificate()
    graph = GraphStandIn(TENANT, CLIENT_ID, certificate_pem=pem).start()
    try:
        seed(graph)
        source = open_graph_source(TENANT, SourceOptions(client_id=CLIENT_ID, certificate_pem=pem,
                                                         graph_url=graph.graph_url, login_url=graph.url))
        assert len(source.read().users) == 7
        assert graph.tokens_issued == 1
        # Another certificate's key is refused by the token endpoint.
        other = open_graph_source(TENANT, SourceOptions(client_id=CLIENT_ID, certificate_pem=make_certificate(),
                                                        graph_url=graph.graph_url, login_url=graph.url))
        with pytest.raises(SourceError, match="AADSTS700027: Client assertion names another certificate"):
            other.read()
    finally:
        graph.stop()


def test_assigned_scope_reads_the_service_principals_app_role_assignments(graph: GraphStandIn) -> None:
    seed(graph)
    for anchor in ("u2", "u3", "u6", "team", "sub"):
        graph.assign(anchor)
    source = source_for(graph, service_principal_id=graph.service_principal_id)
    snapshot = source.read()
    assert snapshot.assigned == {"u2", "u3", "u6", "team", "sub"}  # two pages of three
    graph.unassign("u6")
    delta = source.read_changes(snapshot.watermark, snapshot)
    assert delta is not None and delta.assigned == {"u2", "u3", "team", "sub"}


def test_app_role_values_become_app_role_assignments(graph: GraphStandIn) -> None:
    """``SingleAppRoleAssignment([appRoleAssignments])`` of the default mapping: a user's roles are
    its own assignments' and those of the assigned groups it is a direct member of."""
    seed(graph)
    graph.assign("u2", "Admin")
    graph.assign("team", "Reader")  # boss, u2, u3, u4 (and the nested group "sub", not its members)
    graph.assign("u6")  # the default access role: assigned, no role value
    source = source_for(graph, service_principal_id=graph.service_principal_id)
    snapshot = source.read()
    roles = {anchor: user.attributes.get("appRoleAssignments") for anchor, user in snapshot.users.items()}
    assert roles == {"boss": ["Reader"], "u2": ["Admin", "Reader"], "u3": ["Reader"], "u4": ["Reader"], "u5": None,
                     "u6": None, "u7": None}

    # Assignments have no delta: a change of role or of membership shows as a changed user.
    graph.assign("u6", "Admin")
    graph.set_members("team", ["boss", "u2", "u3", "sub"])  # u4 leaves: no role left
    delta = source.read_changes(snapshot.watermark, snapshot)
    assert delta is not None
    changed = {obj.anchor: obj.attributes for obj in delta.changed if obj.object_type == "user"}
    assert set(changed) == {"u6", "u4"}
    assert changed["u6"]["appRoleAssignments"] == ["Admin"] and changed["u6"]["displayName"] == "User 6"
    assert "appRoleAssignments" not in changed["u4"]


def test_roles_are_not_read_when_the_mapping_does_not_use_them(graph: GraphStandIn) -> None:
    seed(graph)
    graph.assign("u2", "Admin")
    source = source_for(graph, service_principal_id=graph.service_principal_id, user_attributes=frozenset({"mail"}))
    snapshot = source.read()
    assert snapshot.assigned == {"u2"} and "appRoleAssignments" not in snapshot.users["u2"].attributes
    assert f"GET /v1.0/servicePrincipals/{graph.service_principal_id}" not in graph.requests


def test_get_reads_one_user_group_or_soft_deleted_user(graph: GraphStandIn) -> None:
    seed(graph)
    graph.soft_delete_user("u7")
    source = source_for(graph)
    snapshot = source.read()
    assert source.get("u3") == snapshot.users["u3"]
    assert source.get("team") == snapshot.groups["team"]
    soft = source.get("u7")
    assert soft is not None and soft.attributes["deletedDateTime"] == "2026-12-01T10:00:00Z"
    assert source.get("nobody") is None


def test_get_gives_a_user_its_app_roles_too(graph: GraphStandIn) -> None:
    seed(graph)
    graph.assign("u2", "Admin")
    graph.assign("team", "Reader")
    graph.assign("sub", "Admin")
    source = source_for(graph, service_principal_id=graph.service_principal_id)
    snapshot = source.read()
    for anchor in ("boss", "u2", "u5", "u6"):
        assert source.get(anchor) == snapshot.users[anchor], anchor
    assert snapshot.users["u2"].attributes["appRoleAssignments"] == ["Admin", "Reader"]
    assert snapshot.users["u5"].attributes["appRoleAssignments"] == ["Admin"]  # a member of "sub"


@pytest.mark.parametrize(("spec", "options", "message"), [
    ("graph:", SourceOptions(client_id=CLIENT_ID, client_secret=SECRET), "expected one of"),
    ("graph:not a tenant", SourceOptions(client_id=CLIENT_ID, client_secret=SECRET), "expected a tenant id"),
    (f"graph:{TENANT}", SourceOptions(client_secret=SECRET), "needs the app registration's client id"),
    (f"graph:{TENANT}", SourceOptions(client_id=CLIENT_ID), "needs a client secret"),
    (f"graph:{TENANT}", SourceOptions(client_id=CLIENT_ID, client_secret=SECRET, certificate_pem="x"),
     "one of them"),
    (f"graph:{TENANT}", SourceOptions(client_id=CLIENT_ID, certificate_pem="not a pem"), "must hold a CERTIFICATE"),
])
def test_a_graph_source_without_what_it_needs_is_refused_when_the_job_is_created(
        spec: str, options: SourceOptions, message: str) -> None:
    with pytest.raises(SourceSpecError, match=message):
        open_source(spec, options)


def test_the_source_never_shows_its_secret() -> None:
    source = open_source(f"graph:{TENANT}", SourceOptions(client_id=CLIENT_ID, client_secret=SECRET))
    assert SECRET not in repr(source.http) and SECRET not in repr(vars(source))  # type: ignore[attr-defined]
    assert source.description == f"graph:{TENANT}"


def _normalized(users: object, groups: object) -> dict[str, dict[str, object]]:
    """Objects as the engine compares them: members as a set, soft-deleted as a flag (the delta
    cannot know the exact deletedDateTime, only that there is one), and a soft-deleted user's
    manager left out (deleted items do not give it; a disabled user's values are not exported)."""
    result: dict[str, dict[str, object]] = {}
    for anchor, obj in [*users.items(), *groups.items()]:  # type: ignore[attr-defined]
        attributes = dict(obj.attributes)
        if "members" in attributes:
            attributes["members"] = sorted(attributes["members"])
        if "deletedDateTime" in attributes:
            attributes["deletedDateTime"] = True
            attributes.pop("manager", None)
        result[anchor] = attributes
    return result


def test_every_incremental_read_leaves_the_engine_with_what_a_complete_read_gives(graph: GraphStandIn) -> None:
    """The property cycles rely on when they switch to read_changes: the engine's copy with each
    delta applied equals a complete read of the same directory, step after step."""
    seed(graph)
    for anchor in ("team", "u6"):
        graph.assign(anchor, "Reader")
    source = source_for(graph, service_principal_id=graph.service_principal_id)
    mirror = source.read()
    steps = [
        lambda: graph.update_user("u2", jobTitle="Engineer", displayName="Grace B. Hopper"),
        lambda: (graph.update_user("boss", mobilePhone=None, businessPhones=[]), graph.update_user("u3", manager="u2")),
        lambda: (graph.soft_delete_user("u5"), graph.update_user("u4", accountEnabled=False)),
        lambda: (graph.set_members("team", ["u2", "sub", "u5", "u7"]), graph.set_members("sub", ["u3", "boss"])),
        lambda: (graph.restore_user("u5"), graph.assign("u7", "Admin"), graph.unassign("u6")),
        lambda: graph.hard_delete_user("u2"),  # a member, a manager, an assigned user's group-mate
        lambda: (graph.add_user("u9", manager="boss", userPrincipalName="u9@contoso.example"),
                 graph.add_group("late", ["u9", "team"], displayName="Late"), graph.assign("late", "Admin")),
        lambda: (graph.delete_group("sub"), graph.soft_delete_user("u9")),
        lambda: graph.hard_delete_user("u9"),  # soft-deleted first, then for good
        lambda: None,  # nothing changed
    ]
    for number, step in enumerate(steps, 1):
        step()
        delta = source.read_changes(mirror.watermark, mirror)
        assert delta is not None, number
        mirror = _applied(mirror, delta)
        complete = source.read()
        assert _normalized(mirror.users, mirror.groups) == _normalized(complete.users, complete.groups), number
        assert mirror.assigned == complete.assigned, number
        if number == len(steps):
            assert (list(delta.changed), list(delta.removed)) == ([], [])


def test_a_token_is_used_until_shortly_before_it_expires(graph: GraphStandIn) -> None:
    from identity_sync.engine.sources.graph_client import GraphHttp

    now = [1_000_000.0]
    http = GraphHttp(TENANT, CLIENT_ID, client_secret=SECRET, graph_url=graph.graph_url, login_url=graph.url,
                     clock=lambda: now[0])
    with http:
        http.get("users/delta")
        now[0] += 3599 - 61  # 3599 s tokens are renewed a minute before they expire
        http.get("users/delta")
        assert (http.tokens_fetched, graph.tokens_issued) == (1, 1)
        now[0] += 2
        http.get("users/delta")
        assert (http.tokens_fetched, graph.tokens_issued) == (2, 2)


@pytest.mark.parametrize(("graph_url", "scope"), [
    ("https://graph.microsoft.com/v1.0", "https://graph.microsoft.com/.default"),
    ("https://graph.microsoft.us/v1.0", "https://graph.microsoft.us/.default"),
    ("https://microsoftgraph.chinacloudapi.cn/v1.0", "https://microsoftgraph.chinacloudapi.cn/.default"),
    ("http://127.0.0.1:8080/v1.0", "https://graph.microsoft.com/.default"),
])
def test_the_token_scope_follows_the_graph_cloud(graph_url: str, scope: str) -> None:
    from identity_sync.engine.sources.graph_client import GraphHttp

    http = GraphHttp(TENANT, CLIENT_ID, client_secret=SECRET, graph_url=graph_url, login_url="https://login.test")
    assert http.scope == scope


def test_a_graph_job_keeps_its_secret_sealed_and_refuses_a_missing_credential(tmp_path: object) -> None:
    from pathlib import Path

    from identity_sync.config import Settings
    from identity_sync.engine.jobs import Credentials, JobError, JobService
    from identity_sync.storage.db import Database

    settings = Settings(data_dir=Path(str(tmp_path)), graph_url="http://127.0.0.1:9/v1.0")
    db = Database(settings.resolved_database_url())
    db.migrate()
    jobs = JobService(db, settings)
    with pytest.raises(JobError, match="needs a client secret"):
        jobs.create("g", source=f"graph:{TENANT}", target_url="https://t.example/scim",
                    credentials=Credentials(token="t"), source_options=SourceOptions(client_id=CLIENT_ID))
    job = jobs.create("g", source=f"graph:{TENANT}", target_url="https://t.example/scim",
                      credentials=Credentials(token="t"),
                      source_options=SourceOptions(client_id=CLIENT_ID, client_secret=SECRET,
                                                   service_principal_id="sp-1"))
    assert job.settings["source"] == {"client_id": CLIENT_ID, "service_principal_id": "sp-1"}
    assert SECRET not in repr(job.settings) and SECRET not in str(job.describe())
    source = open_source(job.source, jobs.source_options(job))
    assert source.http.graph_url == "http://127.0.0.1:9/v1.0"  # type: ignore[attr-defined]
    assert "manager" in source.user_select  # type: ignore[attr-defined]
    db.dispose()
