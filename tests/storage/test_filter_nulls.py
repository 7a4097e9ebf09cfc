"""`null` in value filters: `ne null` means present, `eq null` means absent (a case the
differential test found: `name[givenName ne null]` used to match a name without a givenName)."""

from __future__ import annotations

from tests.conftest import ScimClient


def test_ne_null_inside_a_value_filter_means_present(scim: ScimClient) -> None:
    with_given = scim.create_user("given@x.com", name={"givenName": "Ada", "familyName": "L"})
    without_given = scim.create_user("family@x.com", name={"familyName": "H"})
    assert [u["id"] for u in scim.find("name[givenName ne null]")] == [with_given["id"]]
    assert [u["id"] for u in scim.find("name[givenName eq null]")] == [without_given["id"]]
