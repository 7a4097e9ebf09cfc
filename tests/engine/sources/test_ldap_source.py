"""The LDAP source against a real slapd (tests/slapd.py): what a read gives, paging past the
server's size limit, incremental reads (RFC 4533 syncrepl and modifyTimestamp polling), the
Active Directory preset on a slapd with AD's attribute names, TLS, and the errors."""

from __future__ import annotations

import base64
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from identity_sync.engine.model import SourceError, SourceSnapshot
from identity_sync.engine.sources import SourceSpecError, open_source
from identity_sync.engine.sources.base import SourceDelta, SourceOptions
from identity_sync.engine.sources.ldap_presets import ranged_values
from tests.engine.conftest import unique
from tests.slapd import (
    ADMIN_PASSWORD,
    LIMITED_DN,
    LIMITED_PASSWORD,
    LIMITED_TOTAL,
    PLAIN_SUFFIX,
    READER_DN,
    READER_PASSWORD,
    SIZE_LIMIT,
    LdapDirectory,
    SlapdServer,
    require_ldap,
    start_slapd,
)

try:
    import ldap
except ImportError:  # the fixture skips (or fails under IDSYNC_REQUIRE_LDAP)
    ldap = None  # type: ignore[assignment]

READER = SourceOptions(bind_dn=READER_DN, password=READER_PASSWORD)


@pytest.fixture(scope="module")
def slapd() -> Iterator[SlapdServer]:
    require_ldap()
    server = start_slapd(tls=True)
    try:
        yield server
    finally:
        server.destroy()


@pytest.fixture
def directory(slapd: SlapdServer) -> Iterator[LdapDirectory]:
    d = LdapDirectory(slapd, unique("t"))
    yield d
    d.close()


def _source(server: SlapdServer, base: str, options: SourceOptions = READER, **kwargs: Any) -> Any:
    source = open_source(f"{server.url}/{base}", options)
    for name, value in kwargs.items():
        setattr(source, name, value)
    return source


def _by_uid(snapshot: SourceSnapshot) -> dict[str, Any]:
    return {obj.attributes["uid"]: obj for obj in snapshot.users.values()}


def _by_cn(objects: Any) -> dict[str, Any]:
    return {obj.attributes["cn"]: obj for obj in objects}


def _seed(d: LdapDirectory) -> dict[str, str]:
    dns = {
        "boss": d.add_user("boss", classes=("extensibleObject",), givenName="Ada", sn="Lovelace",
                           displayName="Ada Lovelace", mail="ada@mail.example.com", title="CEO",
                           departmentNumber="Sales", employeeNumber="E1",
                           telephoneNumber=["+1 555 0100", "+1 555 0101"], mobile="+1 555 0199", l="London",
                           st="Greater London", postalCode="NW1", street="1 Baker Street", c="GB", o="Analytical"),
        "u2": d.add_user("u2", givenName="Grace", sn="Hopper"),
        "u3": d.add_user("u3", sn="Turing"),
        "locked": d.add_user("locked", pwdAccountLockedTime="000001010000Z"),
    }
    d.modify(dns["u2"], manager=dns["boss"])
    dns["sub"] = d.add_group("sub", [dns["u3"]], description="the sub-team")
    dns["team"] = d.add_group("team", [dns["boss"], dns["u2"], dns["sub"]])
    dns["unique"] = d.add_group("unique", [dns["u2"] + "#'0101'B"], object_class="groupOfUniqueNames")
    return dns


# -- a complete read ------------------------------------------------------------------------------


def test_a_read_gives_users_and_groups_under_graph_names_anchored_by_entry_uuid(slapd: SlapdServer,
                                                                                 directory: LdapDirectory) -> None:
    dns = _seed(directory)
    snapshot = _source(slapd, directory.base).read()

    users = _by_uid(snapshot)
    assert set(users) == {"boss", "u2", "u3", "locked"}
    boss = users["boss"]
    uuid.UUID(boss.anchor)  # entryUUID, never the DN
    assert boss.attributes["distinguishedName"] == dns["boss"]
    assert {name: boss.attributes.get(name) for name in (
        "userPrincipalName", "givenName", "surname", "displayName", "mail", "jobTitle", "department", "employeeId",
        "businessPhones", "mobilePhone", "city", "state", "postalCode", "streetAddress", "country", "companyName",
        "mailNickname", "accountEnabled")} == {
        "userPrincipalName": "ada@mail.example.com", "givenName": "Ada", "surname": "Lovelace",
        "displayName": "Ada Lovelace", "mail": "ada@mail.example.com", "jobTitle": "CEO", "department": "Sales",
        "employeeId": "E1", "businessPhones": ["+1 555 0100", "+1 555 0101"], "mobilePhone": "+1 555 0199",
        "city": "London", "state": "Greater London", "postalCode": "NW1", "streetAddress": "1 Baker Street",
        "country": "GB", "companyName": "Analytical", "mailNickname": "boss", "accountEnabled": True}
    # Without mail, the UPN is uid@ the base DN's domain; without displayName, the cn.
    assert users["u3"].attributes["userPrincipalName"] == "u3@example.com"
    assert users["u3"].attributes["displayName"] == "u3"
    # The manager's DN is resolved to the manager's anchor.
    assert users["u2"].attributes["manager"] == boss.anchor
    assert "manager" not in boss.attributes
    # A locked account (ppolicy) is a disabled user.
    assert users["locked"].attributes["accountEnabled"] is False

    groups = _by_cn(snapshot.groups.values())
    assert set(groups) == {"sub", "team", "unique"}
    # Members are anchors: users, and groups as group anchors (nested groups are not flattened here).
    assert set(groups["team"].attributes["members"]) == {boss.anchor, users["u2"].anchor, groups["sub"].anchor}
    assert groups["sub"].anchor in snapshot.groups
    assert groups["sub"].attributes["members"] == [users["u3"].anchor]
    assert groups["sub"].attributes["description"] == "the sub-team"
    assert groups["team"].attributes["displayName"] == "team"
    # groupOfUniqueNames: the optional #'…'B suffix of a uniqueMember is not part of the DN.
    assert groups["unique"].attributes["members"] == [users["u2"].anchor]
    assert snapshot.assigned is None
    assert {"userPrincipalName", "jobTitle", "accountEnabled", "uid"} <= (snapshot.user_attributes or set())


def test_members_outside_the_search_are_left_out(slapd: SlapdServer, directory: LdapDirectory) -> None:
    """A member DN naming no user or group the filters find (a placeholder, an entry elsewhere)
    is not a member anchor; the group is still read."""
    u1 = directory.add_user("u1")
    directory.add_group("g", [u1, f"cn=nobody,{directory.base}", "cn=admin,dc=example,dc=com"])
    snapshot = _source(slapd, directory.base).read()
    [group] = snapshot.groups.values()
    assert group.attributes["members"] == [_by_uid(snapshot)["u1"].anchor]


def test_a_read_pages_past_the_servers_size_limit(slapd: SlapdServer, directory: LdapDirectory) -> None:
    count = 4 * SIZE_LIMIT
    for number in range(count):
        directory.add_user(f"user{number:04d}")
    # An ordinary search stops at the limit…
    reader = ldap.initialize(slapd.url)
    reader.simple_bind_s(READER_DN, READER_PASSWORD)
    with pytest.raises(ldap.SIZELIMIT_EXCEEDED):
        reader.search_s(directory.base, ldap.SCOPE_SUBTREE, "(objectClass=inetOrgPerson)", ["1.1"])
    reader.unbind_s()
    # …the source's paged one reads everything, whatever its page size.
    for page_size in (SIZE_LIMIT - 1, 500):
        snapshot = _source(slapd, directory.base, page_size=page_size).read()
        assert len(snapshot.users) == count
        assert set(_by_uid(snapshot)) == {f"user{number:04d}" for number in range(count)}


def test_a_read_the_server_truncates_raises_instead_of_returning_part(slapd: SlapdServer,
                                                                      directory: LdapDirectory) -> None:
    for number in range(LIMITED_TOTAL + 10):
        directory.add_user(f"user{number:04d}")
    source = _source(slapd, directory.base, SourceOptions(bind_dn=LIMITED_DN, password=LIMITED_PASSWORD),
                     page_size=30)
    with pytest.raises(SourceError) as raised:
        source.read()
    message = str(raised.value)
    assert message.startswith(f"ldap://127.0.0.1:{slapd.port}/{directory.base}: reading users and groups: ")
    assert "SIZELIMIT_EXCEEDED" in message and "never used" in message and "\n" not in message


def test_filters_choose_the_users_and_groups(slapd: SlapdServer, directory: LdapDirectory) -> None:
    directory.add_user("in", departmentNumber="Sales")
    directory.add_user("out", departmentNumber="R&D")
    g = directory.add_group("g", [directory.dn("uid=in")])
    snapshot = _source(slapd, directory.base, SourceOptions(
        bind_dn=READER_DN, password=READER_PASSWORD,
        user_filter="(&(objectClass=inetOrgPerson)(departmentNumber=Sales))", group_filter="(cn=nothing)")).read()
    assert set(_by_uid(snapshot)) == {"in"}
    assert not snapshot.groups and g


def test_a_group_filter_naming_another_class_makes_those_entries_groups(slapd: SlapdServer,
                                                                         directory: LdapDirectory) -> None:
    u1 = directory.add_user("u1")
    directory.add(directory.dn("cn=role", "groups"), ["groupOfUniqueNames"], cn="role", uniqueMember=u1)
    directory.add(directory.dn("cn=org", "groups"), ["organizationalRole"], cn="org", roleOccupant=u1)
    snapshot = _source(slapd, directory.base, SourceOptions(
        bind_dn=READER_DN, password=READER_PASSWORD, group_filter="(objectClass=organizationalRole)")).read()
    assert set(_by_uid(snapshot)) == {"u1"}
    assert set(_by_cn(snapshot.groups.values())) == {"org"}  # a group, though not a preset's group class


def test_get_reads_one_object_with_its_references_resolved(slapd: SlapdServer, directory: LdapDirectory) -> None:
    _seed(directory)
    source = _source(slapd, directory.base)
    snapshot = source.read()
    team = _by_cn(snapshot.groups.values())["team"]
    assert source.get(team.anchor) == team
    u2 = _by_uid(snapshot)["u2"]
    assert source.get(u2.anchor) == u2
    assert source.get(str(uuid.uuid4())) is None


# -- incremental reads: RFC 4533 -----------------------------------------------------------------


def _changes(source: Any, snapshot: SourceSnapshot) -> SourceDelta:
    delta = source.read_changes(snapshot.watermark, snapshot)
    assert delta is not None
    return delta


def test_syncrepl_reads_only_the_changes(slapd: SlapdServer, directory: LdapDirectory) -> None:
    dns = _seed(directory)
    for number in range(30):
        directory.add_user(f"quiet{number}")
    source = _source(slapd, directory.base)
    snapshot = source.read()
    assert '"mode":"syncrepl"' in snapshot.watermark
    users, groups = _by_uid(snapshot), _by_cn(snapshot.groups.values())

    # Nothing changed: nothing read.
    nothing = _changes(source, snapshot)
    assert (list(nothing.changed), list(nothing.removed), nothing.entries_read) == ([], [], 0)

    directory.modify(dns["boss"], title="Chief")                               # attribute change
    moved = directory.rename(dns["u3"], "uid=u3", ou="moved")                  # a move…
    directory.wait_for(dns["sub"], "member", {moved})                          # (refint rewrites sub)
    directory.modify(dns["u2"], pwdAccountLockedTime="000001010000Z")          # account disabled
    directory.delete(dns["locked"])                                            # entry deleted
    newcomer = directory.add_user("newcomer")
    directory.add_values(dns["team"], "member", [newcomer])                    # membership changes
    directory.delete_values(dns["team"], "member", [dns["boss"]])
    delta = _changes(source, snapshot)

    changed = {obj.anchor: obj for obj in delta.changed}
    # boss, u3, u2, newcomer, team: no other entry. Not sub: refint's rewrite of its member DN is
    # not replicated, and needs not be: the move kept u3's anchor, so sub's members are unchanged.
    assert delta.entries_read == len(delta.changed) == 5
    new_anchor = next(a for a, o in changed.items() if o.attributes.get("uid") == "newcomer")
    assert set(changed) == {users["boss"].anchor, users["u3"].anchor, users["u2"].anchor, groups["team"].anchor,
                            new_anchor}
    assert changed[users["boss"].anchor].attributes["jobTitle"] == "Chief"
    # A move keeps the anchor: an update with the new DN, not a delete and a create.
    assert changed[users["u3"].anchor].attributes["distinguishedName"] == moved
    assert changed[users["u2"].anchor].attributes["accountEnabled"] is False
    # Complete objects: the unchanged attributes are there too, the manager resolved.
    assert changed[users["u2"].anchor].attributes["givenName"] == "Grace"
    assert changed[users["u2"].anchor].attributes["manager"] == users["boss"].anchor
    # The team's members: an unchanged user (u2, resolved through the engine's copy), the new one,
    # the nested group.
    assert set(changed[groups["team"].anchor].attributes["members"]) == {users["u2"].anchor, new_anchor,
                                                                          groups["sub"].anchor}
    assert list(delta.removed) == [("user", users["locked"].anchor)]
    assert delta.assigned is None

    # The next read starts after these changes.
    after = SourceSnapshot({**snapshot.users, **{a: o for a, o in changed.items() if o.object_type == "user"}},
                           {**snapshot.groups, **{a: o for a, o in changed.items() if o.object_type == "group"}},
                           None, delta.cursor)
    again = source.read_changes(delta.cursor, after)
    assert again is not None and (list(again.changed), list(again.removed), again.entries_read) == ([], [], 0)


def test_a_delete_found_by_a_present_phase_after_the_server_restarted(slapd: SlapdServer) -> None:
    """syncprov's session log is in memory: after a restart it reports what is still present,
    and the source takes what is missing as deleted."""
    server = start_slapd()
    try:
        d = LdapDirectory(server, "restart")
        keep, gone = d.add_user("keep"), d.add_user("gone")
        source = _source(server, d.base)
        snapshot = source.read()
        d.close()
        server.stop()
        server.start()  # the same data, a new process
        d = LdapDirectory(server, "restart", create=False)
        d.delete(gone)
        d.modify(keep, title="kept")
        source.close()
        delta = _changes(source, snapshot)
        users = _by_uid(snapshot)
        assert list(delta.removed) == [("user", users["gone"].anchor)]
        assert [obj.anchor for obj in delta.changed] == [users["keep"].anchor]
        d.close()
    finally:
        server.destroy()


def test_a_cursor_of_another_search_or_not_ours_means_a_complete_read(slapd: SlapdServer,
                                                                      directory: LdapDirectory) -> None:
    directory.add_user("u1")
    snapshot = _source(slapd, directory.base).read()
    other = _source(slapd, directory.base, SourceOptions(bind_dn=READER_DN, password=READER_PASSWORD,
                                                         user_filter="(uid=u1)"))
    assert other.read_changes(snapshot.watermark, snapshot) is None
    for cursor in ("", "not json", '{"v": 1, "mode": "syncrepl"}', "[]"):
        assert _source(slapd, directory.base).read_changes(cursor, snapshot) is None


def test_a_usn_cursor_on_a_server_without_update_sequence_numbers_means_a_complete_read(
        slapd: SlapdServer, directory: LdapDirectory) -> None:
    """Active Directory's uSNChanged polling needs highestCommittedUSN in the root DSE (slapd has none)."""
    from identity_sync.engine.sources import ldap_sync

    source = _source(slapd, directory.base)
    snapshot = source.read()
    usn = ldap_sync.Cursor(mode="usn", config=source._config(), usn=12345).text()
    assert source.read_changes(usn, snapshot) is None


def test_more_changes_than_the_size_limit_are_read_by_entry_csn_and_an_anchor_listing(
        slapd: SlapdServer, directory: LdapDirectory) -> None:
    """A refresh cannot be paged: past the bind DN's size limit the changes are read by a paged
    search on entryCSN since the cookie, and deletes by listing the anchors."""
    gone = directory.add_user("gone")
    kept = directory.add_user("kept")
    source = _source(slapd, directory.base)
    snapshot = source.read()
    users = _by_uid(snapshot)
    for number in range(SIZE_LIMIT + 5):
        directory.add_user(f"user{number}")
    directory.delete(gone)
    delta = _changes(source, snapshot)
    assert {obj.attributes["uid"] for obj in delta.changed} == {f"user{number}" for number in range(SIZE_LIMIT + 5)}
    assert delta.entries_read == SIZE_LIMIT + 5
    assert list(delta.removed) == [("user", users["gone"].anchor)]
    assert source.anchors_listed == SIZE_LIMIT + 6  # kept and the new users
    assert kept
    # The cursor is a syncrepl cookie again: nothing changed since, nothing read.
    assert '"mode":"syncrepl"' in delta.cursor
    again = source.read_changes(delta.cursor, snapshot)
    assert again is not None and list(again.changed) == [] and again.entries_read == 0


def test_a_delete_takes_the_deleted_out_of_groups_and_managers_in_the_delta(slapd: SlapdServer,
                                                                            directory: LdapDirectory) -> None:
    """refint removes a deleted entry from member and manager values without syncrepl reporting
    it: the delta still gives those objects as a complete read would."""
    dns = _seed(directory)
    source = _source(slapd, directory.base)
    snapshot = source.read()
    users, groups = _by_uid(snapshot), _by_cn(snapshot.groups.values())
    directory.delete(dns["u3"])
    directory.delete(dns["boss"])
    delta = _changes(source, snapshot)
    assert sorted(delta.removed) == sorted([("user", users["u3"].anchor), ("user", users["boss"].anchor)])
    changed = {obj.anchor: obj for obj in delta.changed}
    assert changed[groups["sub"].anchor].attributes["members"] == []
    assert set(changed[groups["team"].anchor].attributes["members"]) == {users["u2"].anchor, groups["sub"].anchor}
    assert "manager" not in changed[users["u2"].anchor].attributes
    assert changed[users["u2"].anchor].attributes["givenName"] == "Grace"
    assert delta.entries_read == 0
    assert set(changed) == {groups["sub"].anchor, groups["team"].anchor, users["u2"].anchor}


# -- incremental reads: modifyTimestamp polling --------------------------------------------------


@pytest.fixture
def plain(slapd: SlapdServer) -> Iterator[LdapDirectory]:
    """A subtree of the database without syncprov."""
    d = LdapDirectory(slapd, unique("p"), PLAIN_SUFFIX)
    yield d
    d.close()


def test_without_syncprov_changes_are_polled_by_modify_timestamp(slapd: SlapdServer, plain: LdapDirectory) -> None:
    admin = SourceOptions(bind_dn=f"cn=admin,{PLAIN_SUFFIX}", password=ADMIN_PASSWORD)
    u1, u2 = plain.add_user("u1"), plain.add_user("u2")
    group = plain.add_group("g", [u1])
    for number in range(20):
        plain.add_user(f"quiet{number}")
    source = _source(slapd, plain.base, admin, delete_sweep_every=2)
    snapshot = source.read()
    assert '"mode":"timestamp"' in snapshot.watermark
    users = _by_uid(snapshot)
    # The poll re-reads what changed within its overlap window (the last minute), so the
    # entries written just now come again; what matters is that changes are never missed.
    plain.modify(u1, title="changed")
    plain.add_values(group, "member", [u2])
    plain.delete(plain.dn("uid=quiet3"))
    first = _changes(source, snapshot)
    changed = {obj.anchor: obj for obj in first.changed}
    assert changed[users["u1"].anchor].attributes["jobTitle"] == "changed"
    [g] = [obj for obj in first.changed if obj.object_type == "group"]
    assert set(g.attributes["members"]) == {users["u1"].anchor, users["u2"].anchor}
    assert list(first.removed) == []  # not a sweep read: deletes wait
    assert first.entries_read == len(first.changed)
    second = source.read_changes(first.cursor, snapshot)
    assert second is not None
    assert list(second.removed) == [("user", users["quiet3"].anchor)]  # every 2nd read lists anchors


def test_a_poll_after_the_overlap_reads_only_what_changed(slapd: SlapdServer, plain: LdapDirectory) -> None:
    """Entries older than the cursor's window are not read again (the cursor is moved back by
    hand here instead of waiting a minute)."""
    from identity_sync.engine.sources import ldap_sync

    admin = SourceOptions(bind_dn=f"cn=admin,{PLAIN_SUFFIX}", password=ADMIN_PASSWORD)
    for number in range(10):
        plain.add_user(f"quiet{number}")
    source = _source(slapd, plain.base, admin)
    snapshot = source.read()
    cursor = ldap_sync.parse_cursor(snapshot.watermark, source._config())
    assert cursor is not None and cursor.since is not None
    future = ldap_sync.generalized_time(ldap_sync.parse_generalized_time(cursor.since)  # type: ignore[arg-type]
                                        + ldap_sync.TIMESTAMP_OVERLAP * 2)
    import time as _time
    _time.sleep(1.1)
    assert source.read_changes(ldap_sync.replace(cursor, since=future).text(), snapshot).entries_read == 0


# -- the Active Directory preset ------------------------------------------------------------------


def _guid() -> bytes:
    return uuid.uuid4().bytes


def test_the_ad_preset_reads_ad_attributes(slapd: SlapdServer, directory: LdapDirectory) -> None:
    d = directory
    guids = {name: _guid() for name in ("ada", "off", "grp", "pc")}
    ada = d.add(d.dn("cn=Ada Lovelace"), ["user"], cn="Ada Lovelace", sn="Lovelace", givenName="Ada",
                objectGUID=guids["ada"], userPrincipalName="ada@corp.example.com", sAMAccountName="ada",
                userAccountControl="512", proxyAddresses=["SMTP:ada@corp.example.com", "smtp:a@corp.example.com"],
                extensionAttribute1="one", extensionAttribute15="fifteen", department="Sales", company="Contoso",
                employeeID="E7", mailNickname="ada", co="United Kingdom", c="GB")
    off = d.add(d.dn("cn=Off"), ["user"], cn="Off", sn="Off", objectGUID=guids["off"],
                userPrincipalName="off@corp.example.com", userAccountControl=str(512 | 2), manager=ada)
    d.add(d.dn("cn=PC1"), ["computer"], cn="PC1", sn="pc", objectGUID=guids["pc"], userAccountControl="4096")
    d.add(d.dn("cn=Staff", "groups"), ["group"], cn="Staff", objectGUID=guids["grp"], member=[ada, off],
          sAMAccountName="staff")
    source = _source(slapd, d.base, SourceOptions(bind_dn=READER_DN, password=READER_PASSWORD, preset="ad"))
    snapshot = source.read()

    ada_anchor = str(uuid.UUID(bytes_le=guids["ada"]))
    assert set(snapshot.users) == {ada_anchor, str(uuid.UUID(bytes_le=guids["off"]))}  # not the computer
    user = snapshot.users[ada_anchor].attributes
    assert user["userPrincipalName"] == "ada@corp.example.com"
    assert user["onPremisesSamAccountName"] == "ada"
    assert user["onPremisesImmutableId"] == base64.b64encode(guids["ada"]).decode()
    assert user["proxyAddresses"] == ["SMTP:ada@corp.example.com", "smtp:a@corp.example.com"]
    assert (user["extensionAttribute1"], user["extensionAttribute15"]) == ("one", "fifteen")
    assert (user["department"], user["companyName"], user["employeeId"]) == ("Sales", "Contoso", "E7")
    assert (user["country"], user["usageLocation"], user["mailNickname"]) == ("United Kingdom", "GB", "ada")
    assert user["accountEnabled"] is True and user["displayName"] == "Ada Lovelace"
    disabled = snapshot.users[str(uuid.UUID(bytes_le=guids["off"]))].attributes
    assert disabled["accountEnabled"] is False  # userAccountControl bit 2
    assert disabled["manager"] == ada_anchor
    [group] = snapshot.groups.values()
    assert group.anchor == str(uuid.UUID(bytes_le=guids["grp"]))
    assert set(group.attributes["members"]) == set(snapshot.users)
    assert group.attributes["onPremisesSamAccountName"] == "staff"
    # get() finds an object by its GUID (the filter escapes the octets).
    assert source.get(ada_anchor) == snapshot.users[ada_anchor]

    # slapd is no AD: changes are polled by modifyTimestamp, deletes found by the anchor listing.
    assert '"mode":"timestamp"' in snapshot.watermark
    d.modify(off, userAccountControl="512")
    d.delete(d.dn("cn=PC1"))
    source.delete_sweep_every = 1
    delta = _changes(source, snapshot)
    assert [obj.attributes["accountEnabled"] for obj in delta.changed
            if obj.anchor == str(uuid.UUID(bytes_le=guids["off"]))] == [True]
    assert list(delta.removed) == []  # the computer was never a user


def test_the_ad_preset_refuses_an_entry_without_object_guid(slapd: SlapdServer, directory: LdapDirectory) -> None:
    directory.add(directory.dn("cn=NoGuid"), ["user"], cn="NoGuid", sn="x")
    with pytest.raises(SourceError, match=r"entry 'cn=NoGuid,.*' has no objectGUID \(the anchor of the ad preset"):
        _source(slapd, directory.base, SourceOptions(bind_dn=READER_DN, password=READER_PASSWORD,
                                                     preset="ad")).read()


def test_the_preset_is_detected_from_the_root_dse() -> None:
    from identity_sync.engine.sources.ldap_presets import detect_preset

    assert detect_preset({"supportedControl": [b"1.3.6.1.4.1.4203.1.9.1.1"]}).name == "openldap"
    assert detect_preset({"forestFunctionality": [b"7"]}).name == "ad"
    assert detect_preset({"supportedCapabilities": [b"1.2.840.113556.1.4.800"]}).name == "ad"


def test_ranged_retrieval_of_members() -> None:
    """Active Directory sends at most 1,500 values of an attribute; the rest by range."""
    first = {"member": [], "member;range=0-1499": [b"cn=a"] * 1500}
    assert ranged_values(first, "member") == ([b"cn=a"] * 1500, 1500)
    assert ranged_values({"member;range=1500-*": [b"cn=b"]}, "member") == ([b"cn=b"], None)
    assert ranged_values({"Member": [b"cn=c"]}, "member") == ([b"cn=c"], None)
    assert ranged_values({"cn": [b"x"]}, "member") == ([], None)


def test_the_source_follows_ranges_until_the_last(slapd: SlapdServer, directory: LdapDirectory) -> None:
    """The follow-up searches (``member;range=N-*``) until a range ends in ``*`` — slapd does not
    do ranges, so its answers are played by a stand-in connection."""
    source = _source(slapd, directory.base)
    pages = {1500: ({"member;range=1500-2999": [b"cn=b"] * 1500}), 3000: ({"member;range=3000-*": [b"cn=c"]})}
    asked: list[str] = []

    class Connection:
        def search_ext_s(self, dn: str, scope: int, filter_text: str, attributes: list[str], timeout: float) -> Any:
            asked.append(attributes[0])
            start = int(attributes[0].split("=")[1].split("-")[0])
            return [(dn, pages[start])]

    source._connection = Connection()
    assert source._ranged_rest("cn=g", "member", 1500) == [b"cn=b"] * 1500 + [b"cn=c"]
    assert asked == ["member;range=1500-*", "member;range=3000-*"]


# -- connections, TLS and errors ------------------------------------------------------------------


def test_a_wrong_password_is_a_bind_refused_without_the_password(slapd: SlapdServer, directory: LdapDirectory) -> None:
    source = _source(slapd, directory.base, SourceOptions(bind_dn=READER_DN, password="wrong-secret-123"))
    with pytest.raises(SourceError) as raised:
        source.read()
    assert str(raised.value) == (f"ldap://127.0.0.1:{slapd.port}/{directory.base}: bind refused for "
                                 f"'{READER_DN}': invalid credentials")
    assert "wrong-secret-123" not in repr(source.options) and "wrong-secret-123" not in str(raised.value)


def test_a_bind_dn_without_password_is_refused_before_an_unauthenticated_bind(slapd: SlapdServer) -> None:
    with pytest.raises(SourceError, match="no password for bind DN"):
        _source(slapd, "dc=example,dc=com", SourceOptions(bind_dn=READER_DN)).read()


def test_an_unreachable_server_and_a_missing_base(slapd: SlapdServer) -> None:
    from tests.pg import free_port

    port = free_port()
    with pytest.raises(SourceError, match=rf"^ldap://127\.0\.0\.1:{port}/dc=example,dc=com: cannot reach the server"):
        open_source(f"ldap://127.0.0.1:{port}/dc=example,dc=com", READER).read()
    with pytest.raises(SourceError, match="the base DN 'ou=missing,dc=example,dc=com' does not exist"):
        _source(slapd, "ou=missing,dc=example,dc=com").read()


def test_ldaps_and_start_tls_verify_the_server_certificate(slapd: SlapdServer, directory: LdapDirectory) -> None:
    directory.add_user("u1")
    ca = str(slapd.ca_file)
    for spec, start_tls in ((f"{slapd.tls_url}/{directory.base}", False), (f"{slapd.url}/{directory.base}", True)):
        verified = open_source(spec, SourceOptions(bind_dn=READER_DN, password=READER_PASSWORD, ca_file=ca,
                                                   start_tls=start_tls))
        assert set(_by_uid(verified.read())) == {"u1"}
        verified.close()
        unverified = open_source(spec, SourceOptions(bind_dn=READER_DN, password=READER_PASSWORD,
                                                     start_tls=start_tls))
        with pytest.raises(SourceError) as raised:
            unverified.read()
        message = str(raised.value)
        assert message.startswith(f"{spec.split('/ou=')[0]}/{directory.base}: TLS failed: ")
        assert "certificate could not be verified against the system's CAs (no --source-ca-file)" in message
        assert "\n" not in message and READER_PASSWORD not in message


@pytest.mark.parametrize(("spec", "options", "problem"), [
    ("ldap://127.0.0.1:389", SourceOptions(), "expected ldap://HOST:PORT/BASE_DN"),
    ("ldap://127.0.0.1:389/", SourceOptions(), "expected ldap://HOST:PORT/BASE_DN"),
    ("ldap://127.0.0.1:x/dc=a", SourceOptions(), "the port is not a number"),
    ("ldap://127.0.0.1/not a dn", SourceOptions(), "is not a DN"),
    ("ldap://u:p@127.0.0.1/dc=a", SourceOptions(), "no user, query or fragment"),
    ("ldap://127.0.0.1/dc=a", SourceOptions(preset="novell"), "preset 'novell': expected one of openldap, ad"),
    ("ldaps://127.0.0.1/dc=a", SourceOptions(start_tls=True), "StartTLS is for ldap://"),
    ("ldap://127.0.0.1/dc=a", SourceOptions(user_filter="(uid=a"), "user filter '(uid=a' is not an LDAP filter"),
])
def test_a_bad_specification_is_refused_when_the_job_is_created(spec: str, options: SourceOptions,
                                                                 problem: str) -> None:
    require_ldap()
    with pytest.raises(SourceSpecError, match=problem.replace("(", r"\(")):
        open_source(spec, options)


def test_the_description_names_the_server_and_base_with_the_default_port() -> None:
    require_ldap()
    assert open_source("ldaps://dc1.example.com/DC=example,DC=com").description == \
        "ldaps://dc1.example.com:636/DC=example,DC=com"
    assert open_source("ldap://dc1.example.com/ou=a%20b,dc=x").description == "ldap://dc1.example.com:389/ou=a b,dc=x"


def test_cursors_and_their_positions() -> None:
    require_ldap()
    import datetime

    from identity_sync.engine.sources import ldap_sync

    cookie = "rid=000,csn=20261205120000.000001Z#000000#000#000000"
    cursor = ldap_sync.Cursor(mode="syncrepl", config="abc", cookie=cookie)
    assert ldap_sync.parse_cursor(cursor.text(), "abc") == cursor
    assert ldap_sync.parse_cursor(cursor.text(), "another search") is None
    assert ldap_sync.parse_cursor('{"v":1,"mode":"usn","config":"abc"}', "abc") is None  # no position
    oldest = "20261205110000.000000Z#000000#001#000000"
    assert ldap_sync.cookie_csn(f"rid=001,sid=002,csn=20261205120000.000002Z#000000#002#000000;{oldest}") == oldest
    assert ldap_sync.cookie_csn("rid=000") is None
    # The timestamp cursor lags the newest change seen by the read's duration and a minute, and
    # never moves backwards past where it was.
    newest = datetime.datetime(2026, 12, 5, 12, 0, 0, tzinfo=datetime.UTC)
    assert ldap_sync.next_since(newest, 30.0) == "20261205115830Z"
    assert ldap_sync.next_since(newest, 30.0, previous="20261205115900Z") == "20261205115900Z"
    assert ldap_sync.next_since(None, 30.0, previous="20261205115900Z") == "20261205115900Z"
    assert ldap_sync.parse_generalized_time(b"20261205120000.123Z") == newest
