"""Attribute-path resolution and the one comparison form of case-insensitive strings."""

from __future__ import annotations

import pytest

from identity_sync.errors import BadRequest
from identity_sync.scim.definitions import ENTERPRISE_SCHEMA, GLOBALRELAY_SCHEMA
from identity_sync.scim.filter_ast import AttrPath
from identity_sync.scim.registry import USER, canonical_key


@pytest.mark.parametrize(
    ("path", "container", "attribute", "sub"),
    [
        (AttrPath(None, "USERNAME"), None, "userName", None),
        (AttrPath(None, "name", "givenname"), None, "name", "givenName"),
        (AttrPath("urn:ietf:params:scim:schemas:core:2.0:User", "displayName"), None, "displayName", None),
        (AttrPath("urn:ietf:params:scim:schemas:extension:enterprise:2.0:User", "manager"),
         ENTERPRISE_SCHEMA, "manager", None),
        (AttrPath("URN:IETF:PARAMS:SCIM:SCHEMAS:EXTENSION:GLOBALRELAY:2.0:USER", "extensionAttribute7"),
         GLOBALRELAY_SCHEMA, "extensionAttribute7", None),
        (AttrPath(None, "department"), ENTERPRISE_SCHEMA, "department", None),
        (AttrPath(None, "proxyAddresses"), GLOBALRELAY_SCHEMA, "proxyAddresses", None),
        # Entra's pre-2018 dot form: urn:…:2.0:User.employeeNumber
        (AttrPath("urn:ietf:params:scim:schemas:extension:enterprise:2.0", "User", "employeeNumber"),
         ENTERPRISE_SCHEMA, "employeeNumber", None),
        (AttrPath(None, "externalId"), None, "externalId", None),
        (AttrPath(None, "meta", "lastModified"), None, "meta", "lastModified"),
    ],
)
def test_paths_resolve_to_one_place_whatever_the_spelling(path, container, attribute, sub) -> None:
    resolved = USER.resolve(path)
    assert (resolved.container, resolved.attribute.name, resolved.sub.name if resolved.sub else None) == (
        container, attribute, sub)


@pytest.mark.parametrize(
    "path",
    [AttrPath(None, "shoeSize"), AttrPath(None, "name", "nickname"), AttrPath("urn:example:unknown", "x")],
)
def test_unknown_attributes_are_refused_with_the_callers_scim_type(path) -> None:
    with pytest.raises(BadRequest) as error:
        USER.resolve(path, scim_type="invalidFilter")
    assert error.value.scim_type == "invalidFilter"


@pytest.mark.parametrize(
    ("a", "b"),
    [
        ("Alice@Example.COM", "alice@example.com"),
        ("ｕｓｅｒ@x.com", "user@x.com"),  # fullwidth letters
        ("jose\u0301@x.com", "jos\u00e9@x.com"),  # NFD vs NFC
        ("ÉLODIE", "élodie"),
    ],
)
def test_these_pairs_are_the_same_username(a: str, b: str) -> None:
    assert canonical_key(a) == canonical_key(b)


@pytest.mark.parametrize(
    ("a", "b"),
    [
        ("straße", "strasse"),  # PRECIS lower-cases; it does not case-fold ß to ss
        ("ı", "i"),  # dotless i is a different letter
        ("user ", "user"),  # trailing space is significant
    ],
)
def test_these_pairs_are_different_usernames(a: str, b: str) -> None:
    assert canonical_key(a) != canonical_key(b)


def test_canonical_key_is_idempotent() -> None:
    for text in ["ÀB", "ｕｓｅｒ", "jose\u0301", "İstanbul", "straße"]:
        assert canonical_key(canonical_key(text)) == canonical_key(text)
