"""End to end, a real slapd → the engine → our own service (SQLite and PostgreSQL), with the
default mapping unchanged: an initial cycle of more users than the server's size limit, then an
attribute change, a rename and move (an update of the same SCIM resource, never a delete and a
create), a disabled account, membership changes, a cycle without change that writes nothing,
and a deleted entry. After every cycle the target, read back over SCIM, is what the mapping says."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from identity_sync.config import Settings
from identity_sync.engine.client import documents
from identity_sync.engine.jobs import Credentials
from identity_sync.engine.mapping.model import ENTERPRISE
from identity_sync.engine.service import EngineService
from identity_sync.engine.sources.base import SourceOptions
from identity_sync.storage.db import Database
from tests.engine.conftest import unique
from tests.engine.readback import Readback
from tests.engine.targets import Target
from tests.slapd import READER_DN, READER_PASSWORD, SIZE_LIMIT, LdapDirectory, SlapdServer, require_ldap, start_slapd

WRITES = ("POST", "PATCH", "PUT", "DELETE")
STAFF = SIZE_LIMIT + 5  # more users than one search may return: the read must page


@pytest.fixture(scope="module")
def slapd() -> Iterator[SlapdServer]:
    require_ldap()
    server = start_slapd()
    try:
        yield server
    finally:
        server.destroy()


class Scenario:
    """One test's subtree and the names it gives users on the shared target."""

    def __init__(self, server: SlapdServer) -> None:
        self.prefix = unique("ldap")
        self.d = LdapDirectory(server, self.prefix)
        self.dns: dict[str, str] = {}

    def mail(self, name: str) -> str:
        return f"{self.prefix}-{name}@example.com"

    def add_user(self, name: str, **attributes: Any) -> None:
        self.dns[name] = self.d.add_user(name, mail=self.mail(name), **attributes)

    def add_group(self, name: str, members: list[str]) -> None:
        self.dns[name] = self.d.add_group(f"{self.prefix}-{name}", [self.dns[m] for m in members])


def _check(users: dict[str, dict[str, Any]], s: Scenario, name: str, **expected: Any) -> dict[str, Any]:
    resource = users[s.mail(name).lower()]
    for path, value in expected.items():
        path = {"department": f"{ENTERPRISE}:department", "employeeNumber": f"{ENTERPRISE}:employeeNumber",
                "manager": f"{ENTERPRISE}:manager", "email": 'emails[type eq "work"].value',
                "phone": 'phoneNumbers[type eq "work"].value', "givenName": "name.givenName"}.get(path, path)
        assert documents.extract(resource, path) == value, (name, path)
    return resource


def _read_only_changes(result: Any, at_most: int) -> None:
    """An incremental cycle reads the changes (syncrepl), not the directory (engine/mirror.py)."""
    read = result.source_read
    assert read["mode"] == "changes" and read["entries"] <= at_most, read


def test_an_ldap_directory_through_its_lifecycle(db: Database, settings: Settings, our_target: Target,
                                                 readback: Readback, slapd: SlapdServer) -> None:
    s = Scenario(slapd)
    s.add_user("boss", givenName="Ada", sn="Lovelace", displayName="Ada Lovelace", title="CEO",
               departmentNumber="Sales", employeeNumber="E1", telephoneNumber="+1 555 0100")
    s.add_user("u2", givenName="Grace", sn="Hopper", manager=s.dns["boss"])
    s.add_user("u3", sn="Turing")
    s.add_user("u4", sn="Liskov")
    for number in range(STAFF):
        s.add_user(f"staff{number}")
    s.add_group("sub", ["u3"])
    s.add_group("team", ["boss", "u2", "sub"])
    engine = EngineService(db, settings)
    engine.jobs.create("ldap", source=f"{slapd.url}/{s.d.base}", target_url=our_target.base_url,
                       credentials=Credentials(token=our_target.token), scope="all",
                       source_options=SourceOptions(bind_dn=READER_DN, password=READER_PASSWORD))

    # 1. Initial cycle: every user (past the size limit), groups with a nested group, a manager.
    first = engine.run("ldap")
    assert (first.kind, first.counts["created"], first.counts["failed"]) == ("initial", 4 + STAFF + 2, 0)
    users = readback.users(s.prefix)
    assert len(users) == 4 + STAFF
    boss = _check(users, s, "boss", active=True, displayName="Ada Lovelace", title="CEO", givenName="Ada",
                  department="Sales", employeeNumber="E1", email=s.mail("boss"), phone="+1 555 0100")
    assert boss["userName"] == s.mail("boss")
    _check(users, s, "u2", active=True, manager=boss["id"], displayName="u2")
    ids = {name: users[s.mail(name).lower()]["id"] for name in ("boss", "u2", "u3", "u4")}
    groups = readback.groups(s.prefix)
    team, sub = groups[f"{s.prefix}-team"], groups[f"{s.prefix}-sub"]
    assert readback.member_ids(team["id"]) == {ids["boss"], ids["u2"], sub["id"]}
    assert readback.member_ids(sub["id"]) == {ids["u3"]}

    # 2. An attribute change, a rename and move, a disabled account, membership changes.
    s.d.modify(s.dns["boss"], title="Chief", departmentNumber="Board")
    s.dns["u3"] = s.d.rename(s.dns["u3"], "uid=u3b", ou="moved")
    s.d.modify(s.dns["u3"], mail=s.mail("u3b"), uid="u3b")
    s.d.wait_for(s.dns["sub"], "member", {s.dns["u3"]})
    s.d.modify(s.dns["u4"], pwdAccountLockedTime="000001010000Z")
    s.d.delete_values(s.dns["team"], "member", [s.dns["u2"]])
    s.d.add_values(s.dns["sub"], "member", [s.dns["u4"], s.dns["staff0"]])
    second = engine.run("ldap")
    _read_only_changes(second, at_most=5)  # boss, u3, u4, team, sub
    assert (second.counts["created"], second.counts["deleted"], second.counts["failed"]) == (0, 0, 0)
    assert second.counts["disabled"] == 1
    users = readback.users(s.prefix)
    _check(users, s, "boss", title="Chief", department="Board")
    # The rename is an update of the same resource: the anchor is entryUUID, not the DN.
    assert users[s.mail("u3b").lower()]["id"] == ids["u3"] and s.mail("u3").lower() not in users
    _check(users, s, "u4", active=False)
    assert readback.member_ids(team["id"]) == {ids["boss"], sub["id"]}
    # u4 is disabled: not a member of anything in the target.
    assert readback.member_ids(sub["id"]) == {ids["u3"], users[s.mail("staff0").lower()]["id"]}

    # 3. No change in the directory: no write at all.
    third = engine.run("ldap")
    _read_only_changes(third, at_most=0)
    assert not any(third.requests.get(method, 0) for method in WRITES), third.requests

    # 4. An entry deleted: DELETE in the target; a manager deleted: the report loses its manager.
    s.d.delete(s.dns["boss"])
    s.d.wait_for(s.dns["u2"], "manager", set())
    fourth = engine.run("ldap")
    _read_only_changes(fourth, at_most=0)  # a delete is reported without an entry
    assert (fourth.counts["deleted"], fourth.counts["failed"]) == (1, 0)
    assert readback.user(ids["boss"]) is None
    users = readback.users(s.prefix)
    _check(users, s, "u2", manager=None, active=True)
    assert readback.member_ids(team["id"]) == {sub["id"]}
    s.d.close()


@pytest.mark.parametrize("nesting", ["direct", "flatten"])
def test_nested_ldap_groups_flattened_and_not(db: Database, settings: Settings, our_target: Target,
                                              readback: Readback, slapd: SlapdServer, nesting: str) -> None:
    """groupOfNames inside groupOfNames: kept nested (as Entra), or flattened for targets without
    nested groups — and a member added two levels down reaches the top group in the next cycle,
    which reads only that change."""
    s = Scenario(slapd)
    for name in ("a", "b", "c"):
        s.add_user(name)
    s.add_group("low", ["b"])
    s.add_group("mid", ["low"])
    s.add_group("top", ["a", "mid"])
    engine = EngineService(db, settings)
    engine.jobs.create("nested", source=f"{slapd.url}/{s.d.base}", target_url=our_target.base_url,
                       credentials=Credentials(token=our_target.token), scope="all", nested_groups=nesting,
                       source_options=SourceOptions(bind_dn=READER_DN, password=READER_PASSWORD))
    assert engine.run("nested").counts["failed"] == 0
    users = {name: readback.users(s.prefix)[s.mail(name).lower()]["id"] for name in ("a", "b", "c")}
    groups = {name: readback.groups(s.prefix)[f"{s.prefix}-{name}"]["id"] for name in ("low", "mid", "top")}
    if nesting == "flatten":
        assert readback.member_ids(groups["top"]) == {users["a"], users["b"]}
        assert readback.member_ids(groups["mid"]) == {users["b"]}
    else:
        assert readback.member_ids(groups["top"]) == {users["a"], groups["mid"]}
        assert readback.member_ids(groups["mid"]) == {groups["low"]}

    s.d.add_values(s.dns["low"], "member", [s.dns["c"]])
    second = engine.run("nested")
    _read_only_changes(second, at_most=2)
    assert readback.member_ids(groups["low"]) == {users["b"], users["c"]}
    if nesting == "flatten":
        assert readback.member_ids(groups["top"]) == {users["a"], users["b"], users["c"]}
        assert readback.member_ids(groups["mid"]) == {users["b"], users["c"]}
    else:
        assert readback.member_ids(groups["top"]) == {users["a"], groups["mid"]}


def test_on_demand_provisioning_reads_the_one_entry(db: Database, settings: Settings, our_target: Target,
                                                     readback: Readback, slapd: SlapdServer) -> None:
    """``job provision`` of an LDAP user after a cycle: that entry is read fresh (the rest comes
    from the engine's copy of the directory) and its change reaches the target at once."""
    import ldap

    s = Scenario(slapd)
    s.add_user("solo", title="Clerk")
    engine = EngineService(db, settings)
    engine.jobs.create("pod", source=f"{slapd.url}/{s.d.base}", target_url=our_target.base_url,
                       credentials=Credentials(token=our_target.token), scope="all",
                       source_options=SourceOptions(bind_dn=READER_DN, password=READER_PASSWORD))
    engine.run("pod")
    s.d.modify(s.dns["solo"], title="Manager")
    [(_, entry)] = s.d.conn.search_s(s.dns["solo"], ldap.SCOPE_BASE, attrlist=["entryUUID"])
    anchor = entry["entryUUID"][0].decode()
    result = engine.provision("pod", anchor)
    assert result.counts["updated"] == 1
    assert _check(readback.users(s.prefix), s, "solo", title="Manager")
