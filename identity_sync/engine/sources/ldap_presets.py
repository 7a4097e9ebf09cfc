"""How an LDAP entry becomes a :class:`SourceObject`: the presets for Active Directory and
OpenLDAP (object classes, anchor, attribute names), and the conversion of one entry.

Attributes are exposed under the Microsoft Graph names the default mapping reads
(``userPrincipalName``, ``givenName``, ``surname``, ``mail``, ``jobTitle``…), so the default
mapping works unchanged on a directory. Every other text attribute of the entry is kept under
its LDAP name (``uid``, ``cn``, ``ou``, ``objectClass``…) for mappings and scoping filters that
want it, unless a Graph name already takes that name (case-insensitively). Each object also
carries ``distinguishedName`` (as Active Directory names it): the engine's copy of the source keeps
it, which is how an incremental read resolves member and manager DNs of entries it did not read.

The anchor is never the DN: ``entryUUID`` (OpenLDAP, RFC 4530) or ``objectGUID`` (Active
Directory), so a rename or a move is an update, not a delete and a create.
"""

from __future__ import annotations

import base64
import re
import sys
import uuid
from collections.abc import Mapping
from dataclasses import dataclass

from identity_sync.engine.model import ObjectType, SourceError, Value

#: Graph attributes that are lists whatever the number of values.
LIST_ATTRIBUTES = frozenset({"businessPhones", "proxyAddresses", "otherMails", "otherTelephone"})
#: LDAP attributes never passed through as they are: references (resolved to anchors under their
#: Graph names), anchors, passwords and binary values.
_NEVER_RAW = frozenset({"member", "uniquemember", "manager", "objectguid", "objectsid", "entryuuid", "userpassword",
                        "unicodepwd", "jpegphoto", "thumbnailphoto", "usercertificate", "pwdaccountlockedtime",
                        "useraccountcontrol", "entrycsn", "usnchanged", "usncreated", "whenchanged", "whencreated",
                        "modifytimestamp", "createtimestamp", "creatorsname", "modifiersname", "distinguishedname",
                        "entrydn", "structuralobjectclass", "subschemasubentry", "hassubordinates",
                        "objectcategory", "memberof", "instancetype", "dscorepropagationdata"})

#: Mapped LDAP attributes also kept under their own name: the identifiers scoping filters use.
_ALSO_RAW = frozenset({"uid", "cn"})


@dataclass(frozen=True, slots=True)
class Preset:
    """What differs between directory kinds. Attribute maps are keyed by the lower-cased LDAP
    name; several LDAP names may give one Graph name (the first one present wins)."""

    name: str
    user_filter: str
    group_filter: str
    #: Object classes (lower case) that make an entry a group; anything else the filters find is a user.
    group_classes: frozenset[str]
    #: The anchor attribute (never the DN) and how its raw value becomes the anchor string.
    anchor: str
    user_map: Mapping[str, str]
    group_map: Mapping[str, str]
    #: Attributes holding members' DNs.
    member_attributes: tuple[str, ...]
    #: Operational attributes a search must ask for by name (``*`` does not return them).
    operational: tuple[str, ...]
    #: The attribute an incremental poll compares (``uSNChanged`` on AD, ``modifyTimestamp`` else).
    change_attribute: str

    def search_filter(self, user_filter: str | None, group_filter: str | None) -> str:
        users = _parenthesised(user_filter or self.user_filter)
        return f"(|{users}{_parenthesised(group_filter or self.group_filter)})"

    def attribute_list(self) -> list[str]:
        return ["*", *self.operational]


def _parenthesised(text: str) -> str:
    text = text.strip()
    return text if text.startswith("(") else f"({text})"


_COMMON_USER_MAP = {
    "givenname": "givenName", "sn": "surname", "displayname": "displayName", "mail": "mail", "title": "jobTitle",
    "employeetype": "employeeType", "physicaldeliveryofficename": "officeLocation", "l": "city", "st": "state",
    "postalcode": "postalCode", "telephonenumber": "businessPhones", "mobile": "mobilePhone",
    "facsimiletelephonenumber": "faxNumber", "preferredlanguage": "preferredLanguage", "homephone": "homePhone",
    "pager": "pager",
}

OPENLDAP = Preset(
    name="openldap",
    user_filter="(objectClass=inetOrgPerson)",
    group_filter="(|(objectClass=groupOfNames)(objectClass=groupOfUniqueNames))",
    group_classes=frozenset({"groupofnames", "groupofuniquenames"}),
    anchor="entryUUID",
    user_map={**_COMMON_USER_MAP, "userprincipalname": "userPrincipalName", "uid": "mailNickname",
              "departmentnumber": "department", "ou": "department", "employeenumber": "employeeId",
              "street": "streetAddress", "streetaddress": "streetAddress", "c": "country", "o": "companyName",
              "cn": "displayName"},
    group_map={"displayname": "displayName", "cn": "displayName", "description": "description", "mail": "mail"},
    member_attributes=("member", "uniqueMember"),
    operational=("entryUUID", "modifyTimestamp", "pwdAccountLockedTime"),
    change_attribute="modifyTimestamp",
)

ACTIVE_DIRECTORY = Preset(
    name="ad",
    user_filter="(&(objectClass=user)(!(objectClass=computer)))",
    group_filter="(objectClass=group)",
    group_classes=frozenset({"group"}),
    anchor="objectGUID",
    user_map={**_COMMON_USER_MAP, "userprincipalname": "userPrincipalName", "mailnickname": "mailNickname",
              "department": "department", "company": "companyName", "employeeid": "employeeId",
              "streetaddress": "streetAddress", "street": "streetAddress", "co": "country", "c": "usageLocation",
              "proxyaddresses": "proxyAddresses", "samaccountname": "onPremisesSamAccountName",
              "othertelephone": "otherTelephone", "othermailbox": "otherMails", "cn": "displayName",
              **{f"extensionattribute{n}": f"extensionAttribute{n}" for n in range(1, 16)}},
    group_map={"displayname": "displayName", "cn": "displayName", "description": "description", "mail": "mail",
               "mailnickname": "mailNickname", "samaccountname": "onPremisesSamAccountName",
               "proxyaddresses": "proxyAddresses"},
    member_attributes=("member",),
    operational=("modifyTimestamp", "uSNChanged"),
    change_attribute="uSNChanged",
)

PRESETS = {preset.name: preset for preset in (OPENLDAP, ACTIVE_DIRECTORY)}

#: Root DSE signs of Active Directory (or AD LDS): its capability OIDs and attributes.
AD_CAPABILITIES = frozenset({"1.2.840.113556.1.4.800", "1.2.840.113556.1.4.1851"})


def detect_preset(root_dse: Mapping[str, list[bytes]]) -> Preset:
    """Active Directory when the root DSE says so (``forestFunctionality``, or an AD capability in
    ``supportedCapabilities``); OpenLDAP (or any other RFC 4519 directory) otherwise."""
    names = {name.lower(): values for name, values in root_dse.items()}
    capabilities = {value.decode(errors="replace") for value in names.get("supportedcapabilities", [])}
    if "forestfunctionality" in names or "isglobalcatalogready" in names or capabilities & AD_CAPABILITIES:
        return ACTIVE_DIRECTORY
    return OPENLDAP


def guid_text(raw: bytes) -> str:
    """``objectGUID`` as Graph and PowerShell write it: AD stores the GUID's first three fields
    little-endian (``bytes_le``)."""
    return str(uuid.UUID(bytes_le=raw))


def guid_filter_value(anchor: str) -> str:
    """An anchor back as the escaped octets of an ``(objectGUID=…)`` filter."""
    return "".join(f"\\{byte:02x}" for byte in uuid.UUID(anchor).bytes_le)


_RANGE = re.compile(r"^(?P<name>[^;]+);range=(?P<low>\d+)-(?P<high>\d+|\*)$", re.IGNORECASE)


def ranged_values(attributes: Mapping[str, list[bytes]], name: str) -> tuple[list[bytes], int | None]:
    """The values of ``name`` in an entry, and where the next range starts when the server sent
    only part of them (Active Directory's ranged retrieval: past ``MaxValRange``, 1,500 values, a
    group's ``member`` comes as ``member;range=0-1499`` and the rest must be asked for with
    ``member;range=1500-*``). ``None``: these are all the values."""
    folded = name.lower()
    values: list[bytes] = []
    next_start: int | None = None
    for key, found in attributes.items():
        if key.lower() == folded:
            values.extend(found)
            continue
        match = _RANGE.match(key)
        if match is not None and match["name"].lower() == folded:
            values.extend(found)
            if match["high"] != "*":
                next_start = int(match["high"]) + 1
    return values, next_start


@dataclass(slots=True)
class Entry:
    """One entry converted, its references still DNs (resolved once every entry is known)."""

    object_type: ObjectType
    anchor: str
    dn: str
    attributes: dict[str, Value]
    manager: str | None
    members: list[str]


def _text(values: list[bytes]) -> list[str] | None:
    try:
        return [value.decode() for value in values]
    except UnicodeDecodeError:
        return None  # a binary attribute: not passed through


#: Attributes whose values repeat across a directory (a department, a city): one string each per
#: read instead of one per user (a 100,000-user read holds every value at once).
SHARED_VALUES = frozenset({"objectClass", "jobTitle", "department", "companyName", "city", "state", "country",
                           "usageLocation", "employeeType", "officeLocation", "preferredLanguage", "postalCode"})


def convert(preset: Preset, dn: str, raw: Mapping[str, list[bytes]], domain: str | None, place: str,
            shared: dict[str, str] | None = None, group_classes: frozenset[str] | None = None) -> Entry:
    """An entry as the source gives it. Raises ``SourceError`` (naming ``place`` and the DN) when
    it has no anchor: without one it cannot be tracked, and skipping it would read as a delete.
    ``shared``: the values of :data:`SHARED_VALUES` seen so far in this read, reused.
    ``group_classes``: the object classes (lower case) that make a group, if not the preset's."""
    by_name = {name.lower(): (name, values) for name, values in raw.items() if values}
    classes = {value.decode(errors="replace").lower() for value in by_name.get("objectclass", ("", []))[1]}
    object_type: ObjectType = "group" if classes & (group_classes or preset.group_classes) else "user"
    anchor = _anchor(preset, dn, by_name, place)
    mapping = preset.user_map if object_type == "user" else preset.group_map
    attributes: dict[str, Value] = {"distinguishedName": dn}
    for ldap_name, graph_name in mapping.items():
        found = by_name.get(ldap_name)
        if found is None or graph_name in attributes:
            continue
        values = _text(found[1])
        if values:
            if shared is not None and graph_name in SHARED_VALUES:
                values = [shared.setdefault(value, value) for value in values]
            attributes[graph_name] = values if graph_name in LIST_ATTRIBUTES else values[0]
    taken = {name.lower() for name in attributes}
    # uid is usually mailNickname's value, cn displayName's: one string for both.
    same = {value: value for value in attributes.values() if isinstance(value, str)}
    for folded, (name, raw_values) in by_name.items():
        if (folded in mapping and folded not in _ALSO_RAW) or folded in _NEVER_RAW or folded in taken \
                or ";" in folded:
            continue
        text = _text(raw_values)
        if text:
            if shared is not None and name in SHARED_VALUES:
                text = [shared.setdefault(value, value) for value in text]
            text = [same.get(value, value) for value in text]
            attributes[sys.intern(name)] = text[0] if len(text) == 1 else text
    manager: str | None = None
    members: list[str] = []
    if object_type == "user":
        _user_specifics(preset, by_name, attributes, domain)
        if "manager" in by_name:
            manager = by_name["manager"][1][0].decode(errors="replace")
    else:
        for member_attribute in preset.member_attributes:
            member_values, _next = ranged_values(raw, member_attribute)
            members.extend(_member_dn(value.decode(errors="replace")) for value in member_values)
    if preset.anchor == "objectGUID":
        attributes["onPremisesImmutableId"] = base64.b64encode(by_name["objectguid"][1][0]).decode()
    return Entry(object_type, anchor, dn, attributes, manager, members)


def _anchor(preset: Preset, dn: str, by_name: Mapping[str, tuple[str, list[bytes]]], place: str) -> str:
    found = by_name.get(preset.anchor.lower())
    if found is None:
        raise SourceError(f"{place}: entry {dn!r} has no {preset.anchor} (the anchor of the {preset.name} preset; "
                          "an entry that cannot be tracked is never skipped, it would read as a delete)")
    value = found[1][0]
    if preset.anchor == "objectGUID":
        if len(value) != 16:
            raise SourceError(f"{place}: entry {dn!r}: objectGUID is {len(value)} bytes, not 16")
        return sys.intern(guid_text(value))
    return sys.intern(value.decode().lower())


def _user_specifics(preset: Preset, by_name: Mapping[str, tuple[str, list[bytes]]], attributes: dict[str, Value],
                    domain: str | None) -> None:
    """``accountEnabled``, and OpenLDAP's ``userPrincipalName`` when the schema has none."""
    if preset.anchor == "objectGUID":
        control = by_name.get("useraccountcontrol")
        # ACCOUNTDISABLE is bit 2 (0x2) of userAccountControl.
        attributes["accountEnabled"] = not (control is not None and int(control[1][0]) & 0x2)
        return
    # ppolicy's pwdAccountLockedTime: present means locked ("000001010000Z": locked by an administrator).
    attributes["accountEnabled"] = "pwdaccountlockedtime" not in by_name
    if "userPrincipalName" not in attributes:
        if "mail" in attributes:
            attributes["userPrincipalName"] = attributes["mail"]
        elif "uid" in by_name and domain:
            attributes["userPrincipalName"] = f"{by_name['uid'][1][0].decode()}@{domain}"


def _member_dn(value: str) -> str:
    """A ``uniqueMember`` value may end with ``#'0101'B`` (the member's unique identifier)."""
    hash_at = value.rfind("#'")
    return value[:hash_at] if hash_at > 0 and value.endswith("'B") else value


_OBJECT_CLASS_TERM = re.compile(r"\(\s*objectClass\s*=\s*([^()*\s]+)\s*\)", re.IGNORECASE)


def group_classes_of(preset: Preset, group_filter: str | None) -> frozenset[str]:
    """The classes that make an entry a group: the preset's, and those a custom group filter
    names (``(objectClass=posixGroup)``), since one search reads users and groups together."""
    named = {name.lower() for name in _OBJECT_CLASS_TERM.findall(group_filter or "")}
    return preset.group_classes | named


def domain_of(base_dn: str) -> str | None:
    """``dc=example,dc=com`` → ``example.com`` (``uid@domain`` users' UPN); ``None`` without ``dc=``."""
    parts = [rdn.split("=", 1)[1] for rdn in base_dn.split(",") if rdn.strip().lower().startswith("dc=")]
    return ".".join(part.strip() for part in parts) or None
