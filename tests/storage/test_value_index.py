"""The value index always equals what ``index_entries`` derives from the stored document, however
a PATCH moved, changed or removed values (updates rewrite only the entries that changed)."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from identity_sync.scim.index import index_entries
from identity_sync.scim.registry import USER
from identity_sync.storage import resources as store
from identity_sync.storage.db import Database
from identity_sync.storage.tables import attr_values, resources
from tests.conftest import ScimClient

PATCH = "urn:ietf:params:scim:api:messages:2.0:PatchOp"
GR = "urn:ietf:params:scim:schemas:extension:GlobalRelay:2.0:User"


def _index_matches_document(db: Database, user_id: str) -> None:
    with db.read() as conn:
        doc = conn.execute(sa.select(resources.c.doc).where(resources.c.id == user_id)).scalar_one()
        rows = conn.execute(sa.select(attr_values.c.path, attr_values.c.element, attr_values.c.key)
                            .where(attr_values.c.resource_id == user_id)).all()
    assert sorted(tuple(r) for r in rows) == sorted(index_entries(USER, doc))


def test_the_index_follows_every_kind_of_patch(scim: ScimClient, db: Database) -> None:
    user = scim.create_user(
        "index@example.com",
        emails=[{"type": "work", "value": "a@x.com"}, {"type": "home", "value": "b@x.com"},
                {"type": "other", "value": "c@x.com"}],
        **{GR: {"proxyAddresses": ["SMTP:a@x.com", "smtp:b@x.com", "smtp:c@x.com"]}},
    )
    steps = [
        [{"op": "remove", "path": 'emails[type eq "work"]'}],  # every later element shifts
        [{"op": "Replace", "path": 'emails[type eq "home"].value', "value": "B@x.com"}],
        [{"op": "remove", "path": f"{GR}:proxyAddresses", "value": ["smtp:b@x.com"]}],
        [{"op": "add", "path": f"{GR}:proxyAddresses", "value": ["smtp:d@x.com", "smtp:e@x.com"]}],
        [{"op": "replace", "value": {"name.givenName": "Ada", "displayName": "Ada L"}}],
        [{"op": "remove", "path": "name"}, {"op": "replace", "path": "emails", "value": [{"value": "z@x.com"}]}],
    ]
    for operations in steps:
        response = scim.patch(f"/Users/{user['id']}", {"schemas": [PATCH], "Operations": operations})
        assert response.status_code == 200, response.text
        _index_matches_document(db, user["id"])
    assert scim.find('emails.value eq "z@x.com"')[0]["id"] == user["id"]
    assert scim.find('emails.value eq "b@x.com"') == []


ODD_VALUES = ["Zoë 日本 🎉", 'quote " and \\ backslash', "  spaced  ", "[1, 2]", "null", "0042", "x" * 2000]


@pytest.mark.parametrize("from_json", [True, False], ids=["one-statement", "executemany"])
def test_a_new_document_is_indexed_alike_by_either_way_of_inserting(
        scim: ScimClient, db: Database, monkeypatch: pytest.MonkeyPatch, from_json: bool) -> None:
    # On SQLite ≥ 3.38 a document's entries go in as one JSON array (storage/resources.py);
    # elsewhere one row per entry. Both store exactly index_entries(doc), odd values included.
    monkeypatch.setattr(store, "_SQLITE_JSON_ROWS", from_json and store._SQLITE_JSON_ROWS)
    user = scim.create_user(
        "odd@example.com", displayName=ODD_VALUES[0], title=ODD_VALUES[1], nickName=ODD_VALUES[2],
        emails=[{"type": "work", "value": "odd@example.com", "primary": True}],
        **{GR: {"proxyAddresses": [f"smtp:{n}@x.com" for n in range(3)]}},
        phoneNumbers=[{"type": "other", "value": value} for value in ODD_VALUES[3:]],
    )
    _index_matches_document(db, user["id"])
    assert scim.find(f'phoneNumbers.value eq "{ODD_VALUES[5]}"')[0]["id"] == user["id"]
    assert scim.find('displayName eq "zoë 日本 🎉"')[0]["id"] == user["id"]  # caseExact: false
