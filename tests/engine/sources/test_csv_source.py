"""The csv:DIR source: what a well-formed export reads as, and where a malformed one is refused."""

from __future__ import annotations

import hashlib
import time
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from identity_sync.engine.model import SourceError, SourceObject, SourceSnapshot
from identity_sync.engine.sources.csv_source import CsvSource
from tests.engine.directory import group, user, write_directory

GROUPS_HEADER = "id,displayName,members\n"


def write(directory: Path, users: str, groups: str | None = GROUPS_HEADER, assignments: str | None = None,
          ) -> CsvSource:
    """Write the files verbatim (text is encoded as UTF-8, bytes as they are)."""
    directory.mkdir(parents=True, exist_ok=True)
    for name, content in (("users.csv", users), ("groups.csv", groups), ("assignments.csv", assignments)):
        if content is not None:
            data = content if isinstance(content, bytes) else content.encode()
            (directory / name).write_bytes(data)
    return CsvSource(directory)


def read_error(source: CsvSource) -> str:
    with pytest.raises(SourceError) as raised:
        source.read()
    message = str(raised.value)
    assert "\n" not in message
    return message


# -- what a well-formed export reads as ----------------------------------------------------------

def test_users_read_with_graph_names_and_typed_values(tmp_path: Path) -> None:
    source = write(tmp_path, "id,userPrincipalName,accountEnabled,businessPhones,proxyAddresses,manager,costCenter\n"
                             "u1,ann@example.com,true,+1 555;+1 556,SMTP:ann@example.com; ;smtp:a@example.com,,CC-1\n"
                             "u2,bob@example.com,FALSE,,,u1,\n")
    snapshot = source.read()
    assert list(snapshot.users) == ["u1", "u2"]
    ann = snapshot.users["u1"]
    assert ann == SourceObject("user", "u1", {
        "id": "u1", "userPrincipalName": "ann@example.com", "accountEnabled": True,
        "businessPhones": ["+1 555", "+1 556"], "proxyAddresses": ["SMTP:ann@example.com", "smtp:a@example.com"],
        "costCenter": "CC-1"})
    bob = snapshot.users["u2"]
    assert bob.attributes == {"id": "u2", "userPrincipalName": "bob@example.com", "accountEnabled": False,
                              "manager": "u1"}
    assert bob.display == "bob@example.com"
    assert snapshot.description == f"csv:{tmp_path}"


def test_empty_cells_are_absent_not_empty_strings(tmp_path: Path) -> None:
    snapshot = write(tmp_path, 'id,mail,department\nu1,,""\n').read()
    assert snapshot.users["u1"].attributes == {"id": "u1"}


def test_groups_list_their_members_once_in_file_order(tmp_path: Path) -> None:
    snapshot = write(tmp_path, "id\nu1\nu2\n",
                     "id,displayName,members,description\n"
                     "g1,Sales,u2;u1;;u2;g2,The sales team\n"
                     "g2,Empty,,\n").read()
    assert list(snapshot.groups) == ["g1", "g2"]
    assert snapshot.groups["g1"] == SourceObject("group", "g1", {
        "id": "g1", "displayName": "Sales", "members": ["u2", "u1", "g2"], "description": "The sales team"})
    assert snapshot.groups["g2"].attributes == {"id": "g2", "displayName": "Empty"}
    assert snapshot.groups["g1"].display == "Sales"


def test_member_ids_share_the_users_id_strings(tmp_path: Path) -> None:
    snapshot = write(tmp_path, "id,manager\nuser-0001,\nuser-0002,user-0001\n",
                     "id,members\ng1,user-0001;user-0002\n").read()
    user_ids = list(snapshot.users)
    members = snapshot.groups["g1"].attributes["members"]
    assert members[0] is user_ids[0] and members[1] is user_ids[1]
    assert snapshot.users["user-0002"].attributes["manager"] is user_ids[0]


def test_snapshot_mappings_behave_as_mappings(tmp_path: Path) -> None:
    snapshot = write_directory_source(tmp_path)
    assert len(snapshot.users) == 3 and "u2" in snapshot.users and "g1" not in snapshot.users
    assert snapshot.users.get("nobody") is None
    assert [obj.anchor for obj in snapshot.users.values()] == ["u1", "u2", "u3"]
    assert dict(snapshot.groups.items())["g1"].object_type == "group"
    with pytest.raises(KeyError):
        snapshot.users["g1"]


def write_directory_source(tmp_path: Path) -> SourceSnapshot:
    write_directory(tmp_path, [user("u1"), user("u2", manager="u1"), user("u3", accountEnabled=False)],
                    [group("g1", members=["u1", "u2"]), group("g2", members=["g1"])], assignments=["g2", "u3"])
    return CsvSource(tmp_path).read()


def test_written_directory_reads_back(tmp_path: Path) -> None:
    snapshot = write_directory_source(tmp_path)
    assert snapshot.users["u3"].attributes["accountEnabled"] is False
    assert snapshot.users["u1"].attributes["userPrincipalName"] == "u1@example.com"
    assert snapshot.groups["g2"].attributes["members"] == ["g1"]
    assert snapshot.assigned == frozenset({"g2", "u3"})


def test_missing_assignments_file_means_nothing_assigned(tmp_path: Path) -> None:
    write_directory(tmp_path, [user("u1")])
    assert CsvSource(tmp_path).read().assigned == frozenset()


def test_assignments_may_repeat_a_principal_and_carry_other_columns(tmp_path: Path) -> None:
    source = write(tmp_path, "id\nu1\n", assignments="principalId,appRoleId\nu1,r1\nu1,r2\n")
    assert source.read().assigned == frozenset({"u1"})


def test_header_only_files_read_as_empty(tmp_path: Path) -> None:
    snapshot = write(tmp_path, "id,displayName\n").read()
    assert len(snapshot.users) == 0 and len(snapshot.groups) == 0


def test_byte_order_mark_and_crlf_line_ends_are_tolerated(tmp_path: Path) -> None:
    source = write(tmp_path, b"\xef\xbb\xbfid,displayName\r\nu1,Ren\xc3\xa9e\r\n")
    assert source.read().users["u1"].attributes == {"id": "u1", "displayName": "Renée"}


def test_quoted_cells_keep_commas_semicolons_quotes_and_line_breaks(tmp_path: Path) -> None:
    source = write(tmp_path, 'id,displayName,streetAddress,businessPhones\n'
                             'u1,"Doe, Jane","1 Main St\nFloor 2",+1 555\n'
                             'u2,"Say ""hi""",,"+1; +2"\n')
    snapshot = source.read()
    assert snapshot.users["u1"].attributes["displayName"] == "Doe, Jane"
    assert snapshot.users["u1"].attributes["streetAddress"] == "1 Main St\nFloor 2"
    assert snapshot.users["u2"].attributes["displayName"] == 'Say "hi"'
    assert snapshot.users["u2"].attributes["businessPhones"] == ["+1", "+2"]


def test_watermark_is_a_digest_of_the_files_and_changes_with_them(tmp_path: Path) -> None:
    source = write(tmp_path, "id\nu1\n")
    first = source.read().watermark
    assert len(first) == 64 and int(first, 16) >= 0
    assert source.read().watermark == first
    write(tmp_path, "id\nu2\n")
    assert source.read().watermark != first
    write(tmp_path, "id\nu1\n", assignments="principalId\n")
    assert source.read().watermark not in (first, hashlib.sha256(b"").hexdigest())


def test_get_reads_one_object_fresh(tmp_path: Path) -> None:
    source = write(tmp_path, "id,department\nu1,Sales\n", "id,members\ng1,u1\n")
    assert source.get("u1") == SourceObject("user", "u1", {"id": "u1", "department": "Sales"})
    assert source.get("g1") is not None and source.get("g1").object_type == "group"
    assert source.get("missing") is None
    write(tmp_path, "id,department\nu1,Marketing\n")
    assert source.get("u1").attributes["department"] == "Marketing"


def test_get_validates_like_read(tmp_path: Path) -> None:
    source = write(tmp_path, "id\nu1\nu1\n")
    with pytest.raises(SourceError, match="duplicate id"):
        source.get("u1")


# -- where a malformed export is refused ---------------------------------------------------------

@pytest.mark.parametrize(("users", "expected"), [
    ("", "users.csv:1:1: empty file"),
    ("id,mail,,city\nu1,,,\n", "users.csv:1:9: empty column name"),
    ("id, mail\nu1,x\n", "users.csv:1:4: column name ' mail' has leading or trailing spaces"),
    ("id,mail,city,Mail\nu1,,,\n", "users.csv:1:14: duplicate column 'Mail' (first at 1:4)"),
    ("id,UserPrincipalName\nu1,x\n", "users.csv:1:4: column 'UserPrincipalName' must be spelled 'userPrincipalName'"),
    ("objectId,mail\nu1,x\n", "users.csv:1:1: no 'id' column in the header"),
    ("id,mail\n,x\n", "users.csv:2:1: empty id"),
    ("mail,id\nx, \n", "users.csv:2:3: empty id"),
    ("mail,id\nx, u1\n", "users.csv:2:3: id ' u1' has leading or trailing spaces"),
    ("id,mail\nu1,a\nu2,b\nu1,c\n", "users.csv:4:1: duplicate id 'u1' (first on line 2)"),
    ("mail,id\na,u1\n\"b\nc\",u1\n", "users.csv:4:4: duplicate id 'u1' (first on line 2)"),
    ("id,mail,accountEnabled\nu1,x,yes\n", "users.csv:2:6: accountEnabled must be true or false, not 'yes'"),
    ("id,mail,city\nu1,x\n", "users.csv:2:5: 2 cells where the header has 3"),
    ("id,mail\nu1,x,y\n", "users.csv:2:6: 3 cells where the header has 2 (an unquoted comma?)"),
    ("id,mail\nu1,\"x\n", "users.csv:2:4: unbalanced quote"),
    ("id,mail\nu1,\"x\nu2,y\n", "users.csv:2:4: unbalanced quote"),
    ("id,mail\nu1,a\"b\n", "users.csv:2:5: quote inside an unquoted cell"),
    ("id,mail\nu1,\"a\"b\n", "users.csv:2:7: unexpected character after a closing quote"),
    ("id,mail\nu1,a\nu2,b", "users.csv:3:5: no line break after the last row: the export looks truncated"),
    ("id,mail,city\nu1,a,b\nu2,tru", "users.csv:3:7: 2 cells where the header has 3 (a truncated or broken line?)"),
    ("id,mail\nu1,a\n\nu2,b\n", "users.csv:3:1: empty line"),
    ("id,mail\nu1,a\rb\n", "users.csv:2:5: carriage return inside a line"),
    (b"id,displayName\nu1,Ren\xe9e\n", "users.csv:2:7: not UTF-8: byte 0xE9"),
    (b"id,displayName\nu1,\xc3\xa9\xc3\xa9\xff\n", "users.csv:2:6: not UTF-8: byte 0xFF"),
    ("id,manager\nu1,\nu2,u9\n", "users.csv:3:4: manager 'u9' names no user of users.csv"),
    ("id,manager\nu1,\nu2,g1\n", "users.csv:3:4: manager 'g1' names no user of users.csv"),
])
def test_malformed_users_file_is_refused_at_its_place(tmp_path: Path, users: str | bytes, expected: str) -> None:
    message = read_error(write(tmp_path, users, "id,members\ng1,\n"))
    assert message.startswith(expected), message


def test_line_numbers_count_line_breaks_inside_quoted_cells(tmp_path: Path) -> None:
    source = write(tmp_path, 'id,streetAddress,accountEnabled\n'
                             'u1,"1 Main St\nFloor 2\nRoom 3",true\n'
                             'u2,"a\nb",maybe\n')
    assert read_error(source).startswith("users.csv:6:4: accountEnabled must be true or false, not 'maybe'")


def test_a_cell_error_inside_a_multi_line_record_names_the_line_of_the_cell(tmp_path: Path) -> None:
    source = write(tmp_path, 'id,streetAddress,manager\nu1,,\nu2,"x\ny",nobody\n')
    assert read_error(source).startswith("users.csv:4:4: manager 'nobody' names no user")


def test_columns_count_characters_not_bytes(tmp_path: Path) -> None:
    source = write(tmp_path, "id,displayName,accountEnabled\nu1,Zoë Ærøskøbing,nope\n")
    assert read_error(source).startswith("users.csv:2:19: accountEnabled must be true or false")


def test_byte_order_mark_is_not_counted_in_columns(tmp_path: Path) -> None:
    source = write(tmp_path, b"\xef\xbb\xbfid,mail,\n")
    assert read_error(source).startswith("users.csv:1:9: empty column name")


@pytest.mark.parametrize(("groups", "expected"), [
    ("id,members\ng1,u1;u7\n", "groups.csv:2:7: member 'u7' names no user of users.csv and no group of groups.csv"),
    ("id,members\ng1,\"u1; u7\"\n", "groups.csv:2:9: member 'u7' names no user"),
    ("id,members\ng1,g1\n", "groups.csv:2:4: group 'g1' lists itself as a member"),
    ("id,members\ng1,u1\ng1,\n", "groups.csv:3:1: duplicate id 'g1' (first on line 2)"),
    ("id,members\nu1,\n", "groups.csv:2:1: group id 'u1' is also a user id (users.csv line 2)"),
    ("displayName,members\nSales,u1\n", "groups.csv:1:1: no 'id' column in the header"),
    ("id,members\ng1,u1\ng2,g1;u1", "groups.csv:3:9: no line break after the last row"),
    ("", "groups.csv:1:1: empty file"),
])
def test_malformed_groups_file_is_refused_at_its_place(tmp_path: Path, groups: str, expected: str) -> None:
    message = read_error(write(tmp_path, "id\nu1\n", groups))
    assert message.startswith(expected), message


def test_a_member_may_name_a_group_defined_later(tmp_path: Path) -> None:
    snapshot = write(tmp_path, "id\nu1\n", "id,members\ng1,g2\ng2,u1\n").read()
    assert snapshot.groups["g1"].attributes["members"] == ["g2"]


@pytest.mark.parametrize(("assignments", "expected"), [
    ("principalId\nu1\nnobody\n", "assignments.csv:3:1: principalId 'nobody' names no user of users.csv and no group"),
    ("kind,principalId\nuser,\n", "assignments.csv:2:6: empty principalId"),
    ("id\nu1\n", "assignments.csv:1:1: no 'principalId' column"),
    ("principalId\nu1", "assignments.csv:2:3: no line break after the last row"),
    ("", "assignments.csv:1:1: empty file"),
])
def test_malformed_assignments_file_is_refused_at_its_place(tmp_path: Path, assignments: str, expected: str) -> None:
    message = read_error(write(tmp_path, "id\nu1\n", "id,members\ng1,u1\n", assignments))
    assert message.startswith(expected), message


def test_missing_users_file_is_an_error_not_an_empty_directory(tmp_path: Path) -> None:
    message = read_error(CsvSource(tmp_path))
    assert message.startswith("users.csv:1:1: file is missing")


def test_missing_groups_file_is_an_error(tmp_path: Path) -> None:
    message = read_error(write(tmp_path, "id\nu1\n", groups=None))
    assert message.startswith("groups.csv:1:1: file is missing")


def test_a_directory_that_does_not_exist_is_an_error(tmp_path: Path) -> None:
    message = read_error(CsvSource(tmp_path / "absent"))
    assert message == f"csv:{tmp_path / 'absent'}: not a directory"


def test_error_messages_never_carry_a_raw_line_break(tmp_path: Path) -> None:
    source = write(tmp_path, 'id,accountEnabled\nu1,"tr\nue"\n')
    assert read_error(source) == "users.csv:2:4: accountEnabled must be true or false, not 'tr\\nue'"


def test_a_manager_may_be_listed_after_the_report(tmp_path: Path) -> None:
    snapshot = write(tmp_path, "id,manager\nu2,u1\nu1,\n").read()
    assert snapshot.users["u2"].attributes["manager"] == "u1"


def test_a_manager_id_is_exact_while_member_lists_may_have_spaces(tmp_path: Path) -> None:
    snapshot = write(tmp_path, "id\nu1\nu2\n", 'id,members\ng1,"u1; u2 ;"\n').read()
    assert snapshot.groups["g1"].attributes["members"] == ["u1", "u2"]
    message = read_error(write(tmp_path, "id,manager\nu1,\nu2, u1\n"))
    assert message.startswith("users.csv:3:4: manager ' u1' names no user")


def test_a_dangling_member_found_after_the_whole_read_is_placed_exactly(tmp_path: Path) -> None:
    source = write(tmp_path, "id\nu1\n", 'id,description,members\ng1,"two\nlines",g2;gX\ng2,,u1\n')
    assert read_error(source).startswith("groups.csv:3:11: member 'gX' names no user")


def test_nothing_is_returned_when_a_later_file_is_malformed(tmp_path: Path) -> None:
    source = write(tmp_path, "id\nu1\n", "id,members\ng1,u1\n", "principalId\nu1\ng9\n")
    assert read_error(source).startswith("assignments.csv:3:1: principalId 'g9'")


def test_list_and_reference_columns_depend_on_the_file(tmp_path: Path) -> None:
    snapshot = write(tmp_path, "id,members\nu1,a;b\n", "id,manager,proxyAddresses\ng1,x,SMTP:g@x;smtp:h@x\n").read()
    assert snapshot.users["u1"].attributes["members"] == "a;b"  # a user's "members" is just a column
    assert snapshot.groups["g1"].attributes["manager"] == "x"
    assert snapshot.groups["g1"].attributes["proxyAddresses"] == ["SMTP:g@x", "smtp:h@x"]


def test_a_utf16_export_is_refused_as_not_utf8(tmp_path: Path) -> None:
    source = write(tmp_path, "id,displayName\nu1,Zoë\n".encode("utf-16"))
    assert read_error(source).startswith("users.csv:1:1: not UTF-8: byte 0xFF")


def test_crlf_files_with_line_breaks_inside_cells_keep_their_line_numbers(tmp_path: Path) -> None:
    source = write(tmp_path, 'id,streetAddress,accountEnabled\r\nu1,"a\r\nb\r\nc",true\r\nu2,,perhaps\r\n')
    assert read_error(source).startswith("users.csv:5:5: accountEnabled must be true or false, not 'perhaps'")
    write(tmp_path, 'id,streetAddress\r\nu1,"a\r\nb"\r\n')
    assert source.read().users["u1"].attributes["streetAddress"] == "a\r\nb"


def test_a_cell_holding_the_unit_separator_is_kept(tmp_path: Path) -> None:
    snapshot = write(tmp_path, 'id,displayName,city\nu1,"a,\x1fb",Oslo\nu2,"x,y",Rome\n').read()
    assert snapshot.users["u1"].attributes == {"id": "u1", "displayName": "a,\x1fb", "city": "Oslo"}
    assert snapshot.users["u2"].attributes == {"id": "u2", "displayName": "x,y", "city": "Rome"}


# Text as HR exports hold it: separators, quotes, line breaks, diacritics, leading spaces.
free_text = st.text(alphabet=st.sampled_from(list('aZ é,"\n;Łx-')), max_size=6)
list_part = st.text(alphabet=st.sampled_from(list("ab+1 @.")), max_size=5).map(str.strip).filter(bool)


@settings(max_examples=150, deadline=None)
@given(st.lists(st.fixed_dictionaries({}, optional={
    "displayName": free_text, "department": free_text, "accountEnabled": st.booleans(),
    "businessPhones": st.lists(list_part, max_size=3), "costCenter": free_text}), min_size=1, max_size=6))
def test_what_the_test_helper_writes_reads_back(tmp_path_factory: pytest.TempPathFactory,
                                                attribute_sets: list[dict[str, Any]]) -> None:
    users = [{"id": f"u{number}", **attributes} for number, attributes in enumerate(attribute_sets)]
    directory = write_directory(tmp_path_factory.mktemp("export"), users, [group("g1", members=["u0"])])
    snapshot = CsvSource(directory).read()
    for written in users:
        expected = {key: value for key, value in written.items() if value not in ("", None, [])}
        assert snapshot.users[written["id"]].attributes == expected
    assert snapshot.groups["g1"].attributes["members"] == ["u0"]


def test_a_stray_quote_early_in_a_large_export_is_found_quickly(tmp_path: Path) -> None:
    # The stray quote opens a "cell" that runs to the end of the file: reading it must stay linear.
    rows = "".join(f"user-{number:06d},Łódź office {number}\n" for number in range(100_000))
    source = write(tmp_path, 'id,officeLocation\nu0,Contoso "HQ\n' + rows)
    started = time.monotonic()
    assert read_error(source).startswith("users.csv:2:12: quote inside an unquoted cell")
    assert time.monotonic() - started < 10
