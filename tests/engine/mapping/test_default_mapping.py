"""The default mapping is the seed's: every row of its user and group tables, each from its natural
Entra source attribute (docs/default-mapping.md), and every row does what the table says."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from identity_sync.engine.mapping.compute import compute_values, source_attributes
from identity_sync.engine.mapping.expressions import EvaluationContext
from identity_sync.engine.mapping.model import ENTERPRISE, GLOBAL_RELAY, default_mapping
from identity_sync.engine.model import SourceObject

MAPPING_DOC = Path(__file__).resolve().parents[3] / "docs" / "default-mapping.md"
E, G = ENTERPRISE, GLOBAL_RELAY

# The seed's user table (tutorial step 10), in its order.
SEED_USER_ROWS = [
    "userName", "active", "displayName", "title", "preferredLanguage", "name.givenName", "name.familyName",
    "name.formatted", 'addresses[type eq "work"].formatted', 'addresses[type eq "work"].streetAddress',
    'emails[type eq "work"].value', 'addresses[type eq "work"].locality', 'addresses[type eq "work"].region',
    'addresses[type eq "work"].postalCode', 'addresses[type eq "work"].country', 'addresses[type eq "other"].formatted',
    'phoneNumbers[type eq "work"].value', 'phoneNumbers[type eq "mobile"].value', 'phoneNumbers[type eq "fax"].value',
    "externalId", "name.honorificPrefix", "name.honorificSuffix", "nickName", "userType", "locale", "timezone",
    'emails[type eq "home"].value', 'emails[type eq "other"].value', 'phoneNumbers[type eq "home"].value',
    'phoneNumbers[type eq "other"].value', 'phoneNumbers[type eq "pager"].value',
    'addresses[type eq "home"].streetAddress', 'addresses[type eq "home"].locality', 'addresses[type eq "home"].region',
    'addresses[type eq "home"].postalCode', 'addresses[type eq "home"].country', 'addresses[type eq "home"].formatted',
    'addresses[type eq "other"].streetAddress', 'addresses[type eq "other"].locality',
    'addresses[type eq "other"].region', 'addresses[type eq "other"].postalCode', 'addresses[type eq "other"].country',
    'roles[primary eq "True"].display', 'roles[primary eq "True"].type', 'roles[primary eq "True"].value',
    f"{E}:employeeNumber", f"{E}:costCenter", f"{E}:organization", f"{E}:division", f"{E}:department",
    f"{E}:manager", f"{G}:proxyAddresses", *(f"{G}:extensionAttribute{i}" for i in range(1, 16)),
]

# Each row with a source object that has a value for it, and the value the target gets.
CASES: dict[str, tuple[dict[str, object], object]] = {
    "userName": ({"userPrincipalName": "ada@contoso.com"}, "ada@contoso.com"),
    "displayName": ({"displayName": "Ada Lovelace"}, "Ada Lovelace"),
    "title": ({"jobTitle": "Analyst"}, "Analyst"),
    "preferredLanguage": ({"preferredLanguage": "en-GB"}, "en-GB"),
    "name.givenName": ({"givenName": "Ada"}, "Ada"),
    "name.familyName": ({"surname": "Lovelace"}, "Lovelace"),
    "name.formatted": ({"givenName": "Ada", "surname": "Lovelace"}, "Ada Lovelace"),
    'addresses[type eq "work"].formatted': ({"officeLocation": "Building 7"}, "Building 7"),
    'addresses[type eq "work"].streetAddress': ({"streetAddress": "1 Main St"}, "1 Main St"),
    'emails[type eq "work"].value': ({"mail": "ada@mail.contoso.com"}, "ada@mail.contoso.com"),
    'addresses[type eq "work"].locality': ({"city": "London"}, "London"),
    'addresses[type eq "work"].region': ({"state": "Greater London"}, "Greater London"),
    'addresses[type eq "work"].postalCode': ({"postalCode": "N1 9GU"}, "N1 9GU"),
    'addresses[type eq "work"].country': ({"country": "GB"}, "GB"),
    'phoneNumbers[type eq "work"].value': ({"businessPhones": ["+44 1", "+44 2"]}, "+44 1"),
    'phoneNumbers[type eq "mobile"].value': ({"mobilePhone": "+44 7"}, "+44 7"),
    'phoneNumbers[type eq "fax"].value': ({"faxNumber": "+44 9"}, "+44 9"),
    "externalId": ({"mailNickname": "ada"}, "ada"),
    "userType": ({"employeeType": "Contractor"}, "Contractor"),
    f"{E}:employeeNumber": ({"employeeId": "1815"}, "1815"),
    f"{E}:organization": ({"companyName": "Contoso"}, "Contoso"),
    f"{E}:department": ({"department": "Sales"}, "Sales"),
    f"{E}:manager": ({"manager": "m-1"}, "m-1"),  # a source anchor here; the cycle resolves it
    f"{G}:proxyAddresses": ({"proxyAddresses": ["SMTP:a@x", "smtp:b@x", "SMTP:a@x"]}, ["SMTP:a@x", "smtp:b@x"]),
    'roles[primary eq "True"].value': ({"appRoleAssignments": ["Analyst"]}, "Analyst"),
    **{f"{G}:extensionAttribute{i}": ({f"extensionAttribute{i}": f"ea{i}"}, f"ea{i}") for i in range(1, 16)},
}


def _compute(attributes: dict[str, object], *, soft_deleted: bool = False) -> dict[str, object]:
    mapping = default_mapping().users
    obj = SourceObject("user", "u-1", attributes)
    return compute_values(mapping, source_attributes(obj, soft_deleted=soft_deleted), EvaluationContext(),
                          creating=True).values


def test_every_row_of_the_seeds_user_table_is_mapped_once_in_order() -> None:
    assert [m.target for m in default_mapping().users.mappings] == SEED_USER_ROWS
    assert [m.target for m in default_mapping().users.matching] == ["userName"]


def test_the_group_table_is_display_name_and_members_matching_on_display_name() -> None:
    groups = default_mapping().groups
    assert [m.target for m in groups.mappings] == ["displayName", "members"]
    assert [m.target for m in groups.matching] == ["displayName"]
    assert groups.mapping_for("members").is_reference


@pytest.mark.parametrize("target", sorted(CASES))
def test_each_row_takes_its_natural_source_attribute(target: str) -> None:
    attributes, expected = CASES[target]
    assert _compute(dict(attributes))[target] == expected
    assert target not in _compute({})  # no source value: nothing is provisioned (§1.4)


def test_active_is_not_is_soft_deleted() -> None:
    assert _compute({})["active"] is True
    assert _compute({}, soft_deleted=True)["active"] is False


def test_every_other_row_reads_the_source_column_the_document_names() -> None:
    """Rows without a Graph user property read the column docs/default-mapping.md names (on-premises
    AD names where they exist): each row of that table is checked against the data file."""
    text = MAPPING_DOC.read_text("utf-8").split("## Groups")[0]
    rows = re.findall(r"^\| `([^`]+)` \| `([^`]+)` \|", text, flags=re.M)
    documented = dict(rows)
    mapping = default_mapping().users
    assert set(documented) == set(SEED_USER_ROWS)
    for item in mapping.mappings:
        source = item.expression.text if item.expression is not None else item.source
        assert documented[item.target] == source, item.target
