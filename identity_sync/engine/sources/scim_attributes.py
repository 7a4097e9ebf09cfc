"""SCIM resources as the engine's source objects: SCIM attributes under Microsoft Graph's names.

The table is the inverse of the default mapping (``mapping/default_mapping.json``): every Direct
mapping ``SCIM path ← Graph name`` there is read back here as ``Graph name ← SCIM path``, so that
relaying one SCIM service into another through the default mapping reproduces its users. Values
are read with the SCIM client's own path reader (:func:`documents.extract`): names match
case-insensitively, ``[type eq "work"]`` picks the element of that type, a Reference gives its
``value``. Besides the Direct mappings:

* ``accountEnabled`` ← ``active`` (a boolean, or the strings "True"/"False" some servers send);
  the default mapping writes ``active`` from ``Not([IsSoftDeleted])``, which a disabled user makes false;
* ``businessPhones`` ← every ``phoneNumbers[type eq "work"].value`` (a list; the default mapping
  writes its first item);
* ``mail`` ← the primary email when no email is typed ``work`` (many servers leave ``type`` out);
* ``manager`` ← the enterprise extension's ``manager.value``: the manager's SCIM ``id``, which is
  its anchor here;
* groups: ``displayName``, ``externalId``, and ``members`` ← ``members[].value`` (the anchors of
  users and groups).

Not read back: ``name.formatted`` (computed from givenName and surname) and
``roles[primary eq "True"].value`` (computed from Graph's app-role assignments).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from identity_sync.engine.client import documents
from identity_sync.engine.client.documents import get_key
from identity_sync.engine.mapping.model import ENTERPRISE, GLOBAL_RELAY
from identity_sync.engine.model import ObjectType, SourceObject, Value

_WORK = '[type eq "work"]'
_HOME = '[type eq "home"]'
_OTHER = '[type eq "other"]'

#: Graph name → the SCIM path the default mapping writes it to (users).
USER_PATHS: dict[str, str] = {
    "userPrincipalName": "userName",
    "displayName": "displayName",
    "jobTitle": "title",
    "preferredLanguage": "preferredLanguage",
    "givenName": "name.givenName",
    "surname": "name.familyName",
    "personalTitle": "name.honorificPrefix",
    "generationQualifier": "name.honorificSuffix",
    "nickName": "nickName",
    "employeeType": "userType",
    "locale": "locale",
    "timeZone": "timezone",
    "mailNickname": "externalId",
    "mail": f"emails{_WORK}.value",
    "homeEmail": f"emails{_HOME}.value",
    "otherMail": f"emails{_OTHER}.value",
    "mobilePhone": 'phoneNumbers[type eq "mobile"].value',
    "faxNumber": 'phoneNumbers[type eq "fax"].value',
    "homePhone": f"phoneNumbers{_HOME}.value",
    "otherTelephone": f"phoneNumbers{_OTHER}.value",
    "pager": 'phoneNumbers[type eq "pager"].value',
    "officeLocation": f"addresses{_WORK}.formatted",
    "streetAddress": f"addresses{_WORK}.streetAddress",
    "city": f"addresses{_WORK}.locality",
    "state": f"addresses{_WORK}.region",
    "postalCode": f"addresses{_WORK}.postalCode",
    "country": f"addresses{_WORK}.country",
    "homeAddress": f"addresses{_HOME}.formatted",
    "homeStreetAddress": f"addresses{_HOME}.streetAddress",
    "homeCity": f"addresses{_HOME}.locality",
    "homeState": f"addresses{_HOME}.region",
    "homePostalCode": f"addresses{_HOME}.postalCode",
    "homeCountry": f"addresses{_HOME}.country",
    "otherAddress": f"addresses{_OTHER}.formatted",
    "otherStreetAddress": f"addresses{_OTHER}.streetAddress",
    "otherCity": f"addresses{_OTHER}.locality",
    "otherState": f"addresses{_OTHER}.region",
    "otherPostalCode": f"addresses{_OTHER}.postalCode",
    "otherCountry": f"addresses{_OTHER}.country",
    "roleDisplayName": 'roles[primary eq "True"].display',
    "roleType": 'roles[primary eq "True"].type',
    "employeeId": f"{ENTERPRISE}:employeeNumber",
    "costCenter": f"{ENTERPRISE}:costCenter",
    "companyName": f"{ENTERPRISE}:organization",
    "division": f"{ENTERPRISE}:division",
    "department": f"{ENTERPRISE}:department",
    "manager": f"{ENTERPRISE}:manager",
    "proxyAddresses": f"{GLOBAL_RELAY}:proxyAddresses",
    **{f"extensionAttribute{n}": f"{GLOBAL_RELAY}:extensionAttribute{n}" for n in range(1, 16)},
}
#: Graph name → SCIM path (groups); ``members`` is read apart (a list of references).
GROUP_PATHS: dict[str, str] = {"displayName": "displayName", "externalId": "externalId"}

#: The names a translated object can carry: what a scoping filter may name.
USER_ATTRIBUTES = frozenset({*USER_PATHS, "accountEnabled", "businessPhones"})
GROUP_ATTRIBUTES = frozenset({*GROUP_PATHS, "members"})


class ResourceError(ValueError):
    """A resource the source cannot take as a user or a group (no ``id``)."""


def to_source_object(object_type: ObjectType, resource: Mapping[str, Any]) -> SourceObject:
    """The source object for one SCIM resource (a User or a Group as the server returned it)."""
    anchor = resource.get("id")
    if not isinstance(anchor, str) or not anchor:
        raise ResourceError(f"a {object_type} without an id")
    attributes: dict[str, Value] = {}
    paths = USER_PATHS if object_type == "user" else GROUP_PATHS
    for name, path in paths.items():
        value = _clean(documents.extract(resource, path))
        if value is not None:
            attributes[name] = value
    if object_type == "user":
        _user_extras(resource, attributes)
    else:
        attributes["members"] = member_anchors(resource)
    return SourceObject(object_type, anchor, attributes)


def member_anchors(resource: Mapping[str, Any]) -> list[str]:
    """The ``value`` of every member of a Group resource, each once, in the server's order."""
    members = get_key(resource, "members")
    if not isinstance(members, list):
        return []
    values = (get_key(m, "value") if isinstance(m, dict) else None for m in members)
    return list(dict.fromkeys(v for v in values if isinstance(v, str) and v))


def has_members_key(resource: Mapping[str, Any]) -> bool:
    """Whether a listed Group carries ``members`` at all: servers that leave members out of list
    answers (or leave an empty list out) say nothing about them; the group is then read alone."""
    return any(key.lower() == "members" for key in resource)


def last_modified(resource: Mapping[str, Any]) -> str | None:
    """``meta.lastModified`` as the server wrote it, when it did."""
    value = get_key(get_key(resource, "meta"), "lastModified")
    return value if isinstance(value, str) and value else None


def _user_extras(resource: Mapping[str, Any], attributes: dict[str, Value]) -> None:
    active = get_key(resource, "active")
    if isinstance(active, str) and active.strip().lower() in ("true", "false"):
        active = active.strip().lower() == "true"  # Entra's legacy dialect writes "True"/"False"
    if isinstance(active, bool):
        attributes["accountEnabled"] = active
    phones = get_key(resource, "phoneNumbers")
    work_phones = [get_key(p, "value") for p in phones if _typed(p, "work")] if isinstance(phones, list) else []
    work_phones = [p for p in work_phones if isinstance(p, str) and p]
    if work_phones:
        attributes["businessPhones"] = work_phones
    if "mail" not in attributes:
        emails = get_key(resource, "emails")
        primary = next((e for e in emails if isinstance(e, dict) and get_key(e, "primary") is True),
                       None) if isinstance(emails, list) else None
        mail = _clean(get_key(primary, "value"))
        if mail is not None:
            attributes["mail"] = mail
    manager = attributes.get("manager")
    if not isinstance(manager, str):
        attributes.pop("manager", None)  # a manager is an anchor: anything else is not one


def _typed(element: Any, kind: str) -> bool:
    value = get_key(element, "type")
    return isinstance(value, str) and value.casefold() == kind


def _clean(value: Any) -> Value:
    """Only values the engine carries: an empty string or list is absent (attributes hold only
    values), a list keeps its non-empty scalars, an object (a complex value) is not one."""
    if isinstance(value, str):
        return value or None
    if isinstance(value, (bool, int, float)):
        return value
    if isinstance(value, list):
        items = [v for v in value if isinstance(v, (str, bool, int, float)) and v != ""]
        return items or None
    return None


