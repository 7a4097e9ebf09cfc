from tests.conftest import ScimClient


def test_create_then_find_by_username_case_insensitively(scim: ScimClient) -> None:
    created = scim.create_user("Alice@Example.com")
    assert [u["id"] for u in scim.find('userName eq "alice@example.COM"')] == [created["id"]]
