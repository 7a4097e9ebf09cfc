"""End to end, Microsoft Graph (the local Graph-shaped stand-in) → our own service (a real
``identity-sync serve``, SQLite and PostgreSQL), through ``EngineService`` as a job runs: an initial
cycle read through several ``@odata.nextLink`` pages with a throttled page on the way; then changes
(attributes, a rename, a manager, disable, soft delete, an unassignment, members added and
removed); a cycle with no change that writes nothing; a hard delete. After every cycle the target,
read back over SCIM, holds what the default mapping says. The cycles may read completely or
through ``read_changes``: the expectations are the same either way.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from identity_sync.config import Settings
from identity_sync.engine.client import documents
from identity_sync.engine.jobs import Credentials
from identity_sync.engine.mapping.model import ENTERPRISE, GLOBAL_RELAY
from identity_sync.engine.service import EngineService
from identity_sync.engine.sources.base import SourceOptions
from identity_sync.storage.db import Database
from tests.engine.conftest import unique
from tests.engine.readback import Readback
from tests.engine.sources.graph_standin import GraphStandIn, make_certificate
from tests.engine.targets import Target

TENANT = "0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0"
CLIENT_ID = "6a5b4c3d-2e1f-0a9b-8c7d-6e5f4a3b2c1d"
SECRET = "graph~client.secret-value"
WRITES = ("POST", "PATCH", "PUT", "DELETE")


@pytest.fixture
def graph() -> Iterator[GraphStandIn]:
    standin = GraphStandIn(TENANT, CLIENT_ID, client_secret=SECRET, page_size=3, member_chunk=2).start()
    try:
        yield standin
    finally:
        standin.stop()


class Tenant:
    """The test's users and groups in the stand-in, their UPNs and names unique on the shared target."""

    def __init__(self, graph: GraphStandIn) -> None:
        self.graph = graph
        self.prefix = unique("gr")
        self.users: dict[str, dict[str, Any]] = {}

    def upn(self, anchor: str) -> str:
        return f"{self.prefix}-{anchor}@contoso.example"

    def add_user(self, anchor: str, manager: str | None = None, **properties: Any) -> None:
        properties = {"userPrincipalName": self.upn(anchor), "displayName": f"User {anchor}", **properties}
        self.users[anchor] = {**properties, "manager": manager}
        self.graph.add_user(anchor, manager, **properties)

    def update_user(self, anchor: str, **properties: Any) -> None:
        self.users[anchor].update(properties)
        self.graph.update_user(anchor, **properties)

    def group_name(self, anchor: str) -> str:
        return f"{self.prefix} {anchor}"

    def seed(self) -> None:
        self.add_user("boss", givenName="Ada", surname="Lovelace", department="Sales", jobTitle="CEO",
                      mail=f"{self.prefix}-boss@mail.example", employeeId="E1",
                      proxyAddresses=["SMTP:boss@x.example", "smtp:ada@x.example"], businessPhones=["+1 555 0100"],
                      onPremisesExtensionAttributes={"extensionAttribute3": "ea3"}, city="London")
        self.add_user("u2", "boss", givenName="Grace", surname="Hopper", department="Sales", employeeId="E2")
        self.add_user("u3", "boss", givenName="Alan", surname="Turing", department="R&D")
        self.add_user("u4", "u2", department="Sales")
        self.add_user("u5", department="R&D")
        self.add_user("u6", department="Sales")
        self.add_user("never", department="Sales", accountEnabled=False)  # disabled: never provisioned
        self.add_user("outside", department="Sales")  # not assigned: out of scope
        self.graph.add_group("team", ["boss", "u2", "sub"], displayName=self.group_name("team"))
        self.graph.add_group("sub", ["u3", "u4"], displayName=self.group_name("sub"))
        for anchor in ("team", "sub", "u6", "never"):
            self.graph.assign(anchor)  # the default access role
        self.graph.assign("u5", "Admin")


def _engine(db: Database, settings: Settings, target: Target, graph: GraphStandIn, **options: Any) -> EngineService:
    # Graph's and its login's URLs are settings (IDSYNC_GRAPH_URL, IDSYNC_LOGIN_URL): the stand-in's here.
    engine = EngineService(db, settings.model_copy(update={"graph_url": graph.graph_url, "login_url": graph.url}))
    source_options = SourceOptions(client_id=CLIENT_ID, service_principal_id=graph.service_principal_id,
                                   **({"client_secret": SECRET} | options))
    engine.jobs.create("graph", source=f"graph:{TENANT}", target_url=target.base_url,
                       credentials=Credentials(token=target.token), source_options=source_options, scope="assigned")
    return engine


def _check_user(t: Tenant, users: dict[str, dict[str, Any]], anchor: str, *, active: bool = True) -> None:
    resource = users[t.upn(anchor).lower()]
    source = t.users[anchor]
    assert resource["active"] is active
    assert resource["displayName"] == source["displayName"]
    if "givenName" in source:
        assert documents.extract(resource, "name.givenName") == source["givenName"]
        assert documents.extract(resource, "name.formatted") == f"{source['givenName']} {source['surname']}"
    assert documents.extract(resource, f"{ENTERPRISE}:department") == source.get("department")
    assert documents.extract(resource, f"{ENTERPRISE}:employeeNumber") == source.get("employeeId")
    manager = source.get("manager")
    expected = users[t.upn(manager).lower()]["id"] if manager else None
    assert documents.extract(resource, f"{ENTERPRISE}:manager") == expected


def test_graph_to_our_service_through_a_whole_lifecycle(db: Database, settings: Settings, our_target: Target,
                                                        readback: Readback, graph: GraphStandIn) -> None:
    t = Tenant(graph)
    t.seed()
    engine = _engine(db, settings, our_target, graph)

    # 1. Initial cycle through several pages, one page throttled once (Retry-After: 1, honoured).
    graph.throttle(1, 429, "1", after=2)
    first = engine.run("graph")
    assert (first.kind, first.counts["created"], first.counts["failed"]) == ("initial", 8, 0)  # 6 users, 2 groups
    assert graph.requests.count("GET /v1.0/users/delta") == 4  # 8 users in 3 pages, one of them asked twice
    users = readback.users(t.prefix)
    assert set(users) == {t.upn(a).lower() for a in ("boss", "u2", "u3", "u4", "u5", "u6")}
    for anchor in ("boss", "u2", "u3", "u4", "u5", "u6"):
        _check_user(t, users, anchor)
    boss = users[t.upn("boss").lower()]
    assert documents.extract(boss, 'emails[type eq "work"].value') == f"{t.prefix}-boss@mail.example"
    assert documents.extract(boss, f"{GLOBAL_RELAY}:proxyAddresses") == ["SMTP:boss@x.example", "smtp:ada@x.example"]
    assert documents.extract(boss, f"{GLOBAL_RELAY}:extensionAttribute3") == "ea3"
    assert documents.extract(boss, 'phoneNumbers[type eq "work"].value') == "+1 555 0100"
    assert documents.extract(boss, 'addresses[type eq "work"].locality') == "London"
    # SingleAppRoleAssignment([appRoleAssignments]): the app role u5 is assigned with.
    assert documents.extract(users[t.upn("u5").lower()], 'roles[primary eq "True"].value') == "Admin"
    assert documents.extract(boss, 'roles[primary eq "True"].value') is None
    groups = readback.groups(t.prefix)
    team, sub = groups[t.group_name("team")], groups[t.group_name("sub")]
    ids = {a: users[t.upn(a).lower()]["id"] for a in ("boss", "u2", "u3", "u4", "u5", "u6")}
    assert readback.member_ids(team["id"]) == {ids["boss"], ids["u2"], sub["id"]}
    assert readback.member_ids(sub["id"]) == {ids["u3"], ids["u4"]}

    # 2. Changes: attributes, a rename, a new manager, disable, soft delete, unassignment, members.
    t.update_user("u2", displayName="Grace B. Hopper")
    t.update_user("u3", userPrincipalName=t.upn("u3-renamed"), manager="u2")
    t.update_user("u4", accountEnabled=False)
    graph.soft_delete_user("u5")
    graph.unassign("u6")
    graph.set_members("team", ["u2", "sub", "u5"])  # boss leaves; u5 is soft-deleted, so not a member
    graph.set_members("sub", ["u3", "u4", "boss"])  # boss joins; u4 is disabled, so leaves
    second = engine.run("graph")
    assert second.kind == "incremental"
    # Only the changes were read (the delta links), and only they were evaluated.
    assert second.source_read["mode"] == "changes" and second.source_read["entries"] < 10
    assert (second.counts["created"], second.counts["disabled"], second.counts["failed"]) == (0, 3, 0)
    users = readback.users(t.prefix)
    assert users[t.upn("u3-renamed").lower()]["id"] == ids["u3"]  # a rename is an update, not delete + create
    assert t.upn("u3").lower() not in users
    assert documents.extract(users[t.upn("u3-renamed").lower()], f"{ENTERPRISE}:manager") == ids["u2"]
    assert users[t.upn("u2").lower()]["displayName"] == "Grace B. Hopper"
    for anchor in ("u4", "u5", "u6"):
        assert users[t.upn(anchor).lower()]["active"] is False
    assert users[t.upn("boss").lower()]["active"] is True
    assert readback.member_ids(team["id"]) == {ids["u2"], sub["id"]}
    assert readback.member_ids(sub["id"]) == {ids["u3"], ids["boss"]}

    # 3. No change in the directory: no write at all.
    third = engine.run("graph")
    assert third.source_read == {"mode": "changes", "entries": 0}
    assert not any(third.requests.get(method, 0) for method in WRITES), third.requests
    assert sum(third.counts[k] for k in ("created", "updated", "disabled", "deleted", "failed")) == 0

    # 4. Hard delete (@removed "deleted"): DELETE, and out of its groups.
    graph.hard_delete_user("u2")  # also u4's and u3's manager no more
    fourth = engine.run("graph")
    assert fourth.counts["deleted"] == 1 and fourth.counts["failed"] == 0
    assert readback.user(ids["u2"]) is None
    assert readback.member_ids(team["id"]) == {sub["id"]}
    users = readback.users(t.prefix)
    assert documents.extract(users[t.upn("u3-renamed").lower()], f"{ENTERPRISE}:manager") is None


def test_a_certificate_credential_provisions_too(db: Database, settings: Settings, our_target: Target,
                                                 readback: Readback) -> None:
    pem = make_certificate()
    graph = GraphStandIn(TENANT, CLIENT_ID, certificate_pem=pem, page_size=2).start()
    try:
        t = Tenant(graph)
        t.seed()
        engine = _engine(db, settings, our_target, graph, client_secret=None, certificate_pem=pem)
        result = engine.run("graph")
        assert (result.counts["created"], result.counts["failed"]) == (8, 0)
        assert len(readback.users(t.prefix)) == 6
    finally:
        graph.stop()


def test_a_directory_that_cannot_be_read_completely_changes_nothing_in_the_target(
        db: Database, settings: Settings, our_target: Target, readback: Readback, graph: GraphStandIn) -> None:
    """Invariant 1: a read that fails on any page (throttled past every retry, a credential
    refused) stops the cycle before anything is sent — the users missing from the pages not read
    are not deleted."""
    from identity_sync.engine.errors import CycleAborted

    t = Tenant(graph)
    t.seed()
    engine = _engine(db, settings, our_target, graph)
    assert engine.run("graph").counts["created"] == 8
    before = readback.users(t.prefix)

    graph.hard_delete_user("u6")  # a real change is waiting too: it must not half-happen
    graph.throttle(6, 503, "0", after=1)  # the second request of the read never comes
    with pytest.raises(CycleAborted, match=r"source: graph:.*: GET /v1.0/(users|groups)/delta: still throttled after 6 "
                                           r"attempts: 503 ServiceUnavailable") as caught:
        engine.run("graph")
    assert caught.value.error_code == "SourceUnreadable"
    assert readback.users(t.prefix) == before

    graph.client_secret = "rotated-secret"  # the app's secret was rotated in Entra, not in the job
    with pytest.raises(CycleAborted, match="401 invalid_client: AADSTS7000215") as refused:
        engine.run("graph")
    assert SECRET not in str(refused.value)
    assert readback.users(t.prefix) == before
