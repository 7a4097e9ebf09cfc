"""The ``graph:TENANT_ID`` source: Microsoft Entra ID itself, read through Microsoft Graph as
Entra's provisioning service reads it (provisioning-engine.md §1.3, §7.3).

**A complete read** is the initial round of Graph's delta query: ``GET /users/delta?$select=…``
and ``GET /groups/delta?$select=…,members``, following ``@odata.nextLink`` until a page carries
the ``@odata.deltaLink``. The two delta links, as JSON, are the snapshot's watermark. Soft-deleted
users are not in ``/users`` any more but are still the application's to disable, so they are read
from ``/directory/deletedItems/microsoft.graph.user`` and carry ``deletedDateTime`` (Entra
disables them; a hard delete, which removes them from deleted items too, deletes). Deleted items
give no ``manager``: a disabled user's values are not exported, and a restored user comes back
through the delta query with its manager.

**An incremental read** (:meth:`GraphSource.read_changes`) GETs the stored delta links. Graph
sends each changed object with the selected properties (only the changed ones under
``Prefer: return=minimal``; a property set to null comes as ``null``) and relationships as
``manager@delta`` / ``members@delta`` lists of ``{"@odata.type", "id"}`` entries, an entry with
``@removed`` taking the manager or member away. Each change is merged onto the engine's copy of
the object (``previous``) so that the delta holds *complete* objects. ``@removed`` on an object
says ``"reason": "changed"`` (a user moved to deleted items: returned with ``deletedDateTime``)
or ``"deleted"`` (gone for good: a hard delete, and out of every group). Groups are deleted either
way: only Microsoft 365 groups are ever soft-deleted, and a group has no "disabled" state to
provision. A delta link Graph no longer knows (``410 Gone``, ``syncStateNotFound``, tokens expire
after 7 days) returns ``None``: the engine then does a complete read. Any other failure on any
page raises :class:`SourceError` — never half a delta.

**Attributes** are Graph's property names. ``$select`` asks for the properties the job's mapping
reads (``SourceOptions.user_attributes``, matched case-insensitively; names Graph does not have,
such as the default mapping's ``homeEmail``, are left out — Graph would refuse the whole query),
plus ``id``, ``accountEnabled``, ``userPrincipalName``, ``displayName`` and ``manager``. Two of
Graph's properties are objects that mappings name by their parts, so they are flattened:
``onPremisesExtensionAttributes`` gives ``extensionAttribute1`` … ``extensionAttribute15`` (the
names Entra's own attribute list and the default mapping use) and ``employeeOrgData`` gives
``costCenter`` and ``division``. Nulls and empty lists are absent; other objects are dropped (no
mapping can name them). A group's ``members`` keeps users and groups only: devices, contacts and
service principals are never provisioned.

**Scope "assigned"**: with ``service_principal_id``, the users and groups of
``GET /servicePrincipals/{id}/appRoleAssignedTo`` (read completely every cycle: it has no delta);
without it, ``assigned`` is ``None``.
"""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

from identity_sync.engine.model import ObjectType, SourceError, SourceObject, SourceSnapshot, Value
from identity_sync.engine.sources.base import SourceDelta, SourceOptions
from identity_sync.engine.sources.graph_client import Certificate, GraphHttp, GraphStatusError, Sleep

#: Microsoft Graph v1.0 user properties a delta query can select with the source's permissions
#: (``$select`` ones included; not those that need more, such as ``employeeLeaveDateTime``, nor
#: collections of objects such as ``identities``, which no mapping can name), and ``manager``.
USER_PROPERTIES = (
    "id", "accountEnabled", "ageGroup", "businessPhones", "city", "companyName", "consentProvidedForMinor",
    "country", "createdDateTime", "creationType", "department", "displayName", "employeeHireDate",
    "employeeId", "employeeOrgData", "employeeType", "externalUserState",
    "faxNumber", "givenName", "imAddresses", "isResourceAccount", "jobTitle",
    "legalAgeGroupClassification",
    "mail", "mailNickname", "mobilePhone", "officeLocation", "onPremisesDistinguishedName", "onPremisesDomainName",
    "onPremisesExtensionAttributes", "onPremisesImmutableId", "onPremisesLastSyncDateTime",
    "onPremisesSamAccountName", "onPremisesSecurityIdentifier", "onPremisesSyncEnabled",
    "onPremisesUserPrincipalName", "otherMails", "passwordPolicies", "postalCode", "preferredDataLocation",
    "preferredLanguage", "proxyAddresses", "showInAddressList", "state", "streetAddress", "surname",
    "usageLocation", "userPrincipalName", "userType", "manager",
)
GROUP_PROPERTIES = (
    "id", "classification", "createdDateTime", "description", "displayName", "expirationDateTime", "groupTypes",
    "isAssignableToRole", "mail", "mailEnabled", "mailNickname", "membershipRule", "onPremisesDomainName",
    "onPremisesLastSyncDateTime", "onPremisesNetBiosName", "onPremisesSamAccountName",
    "onPremisesSecurityIdentifier", "onPremisesSyncEnabled", "preferredDataLocation", "preferredLanguage",
    "proxyAddresses", "securityEnabled", "theme", "visibility", "members",
)
#: Attribute names that are parts of a Graph object property (flattened, see the module docstring).
FLATTENED = {**{f"extensionAttribute{n}": "onPremisesExtensionAttributes" for n in range(1, 16)},
             "costCenter": "employeeOrgData", "division": "employeeOrgData"}
_ALWAYS = {"user": ("id", "accountEnabled", "userPrincipalName", "displayName", "manager"),
           "group": ("id", "displayName", "members")}
#: Relationship members that can be provisioned (a group's devices or contacts cannot).
_MEMBER_TYPES = frozenset({"#microsoft.graph.user", "#microsoft.graph.group"})
#: Graph's answers to a delta link it no longer knows: start over with a complete read.
_RESYNC_CODES = frozenset({"syncStateNotFound", "resyncRequired", "syncStateInvalid"})
_TENANT = re.compile(r"[A-Za-z0-9][A-Za-z0-9.-]{0,252}")


def open_graph_source(tenant: str, options: SourceOptions, *, sleep: Sleep | None = None) -> GraphSource:
    """The source ``graph:TENANT`` names; a bad specification raises ``SourceSpecError`` at job creation."""
    from identity_sync.engine.sources import SourceSpecError

    if not _TENANT.fullmatch(tenant):
        raise SourceSpecError(f"source 'graph:{tenant}': expected a tenant id (a GUID) or a verified domain name")
    if not options.client_id:
        raise SourceSpecError(f"source 'graph:{tenant}' needs the app registration's client id (--source-client-id)")
    if (options.client_secret is None) == (options.certificate_pem is None):
        raise SourceSpecError(f"source 'graph:{tenant}' needs a client secret (--source-client-secret-file) or a "
                              "certificate (--source-certificate-file), one of them")
    certificate = None
    if options.certificate_pem is not None:
        try:
            certificate = Certificate(options.certificate_pem)
        except ValueError as exc:
            raise SourceSpecError(f"source 'graph:{tenant}': {exc}") from None
    pacing: dict[str, Any] = {"sleep": sleep} if sleep is not None else {}  # else GraphHttp's own
    http = GraphHttp(tenant, options.client_id, client_secret=options.client_secret, certificate=certificate,
                     graph_url=options.graph_url, login_url=options.login_url, **pacing)
    return GraphSource(http, options)


def select_for(object_type: ObjectType, wanted: Iterable[str] | None) -> list[str]:
    """The ``$select`` list for the attribute names a mapping reads (``None``: all we know)."""
    known = USER_PROPERTIES if object_type == "user" else GROUP_PROPERTIES
    if wanted is None:
        return list(known)
    spelled = {name.casefold(): name for name in known}
    parents = {name.casefold(): parent for name, parent in FLATTENED.items()} if object_type == "user" else {}
    chosen = dict.fromkeys(_ALWAYS[object_type])
    for name in wanted:
        folded = name.casefold()
        if folded in spelled:
            chosen[spelled[folded]] = None
        elif folded in parents:
            chosen[parents[folded]] = None
    # Graph's order for the fixed part, then the mapping's (sorted: a stable URL for the same mapping).
    fixed = list(_ALWAYS[object_type])
    return fixed + sorted(name for name in chosen if name not in fixed)


def attribute_names(object_type: ObjectType) -> frozenset[str]:
    """The attribute names this source can give (for the scoping filters' typo guard)."""
    if object_type == "group":
        return frozenset(GROUP_PROPERTIES)
    flattened = {"onPremisesExtensionAttributes", "employeeOrgData"}
    return frozenset(name for name in USER_PROPERTIES if name not in flattened) | set(FLATTENED) | \
        {"deletedDateTime", "appRoleAssignments"}


class _Collection:
    """Objects of one type being put together from delta entries, on top of ``previous`` (the
    engine's copy; empty for a complete read)."""

    def __init__(self, object_type: ObjectType, previous: Mapping[str, SourceObject], *, complete: bool,
                 now: str) -> None:
        self.object_type: ObjectType = object_type
        self.previous = previous
        self.complete = complete
        self.now = now
        self.objects: dict[str, dict[str, Value]] = {}
        self.members: dict[str, dict[str, None]] = {}
        self.removed: set[str] = set()
        self.entries = 0

    def _current(self, anchor: str) -> dict[str, Value] | None:
        if anchor in self.objects:
            return self.objects[anchor]
        if anchor in self.removed or anchor not in self.previous:
            return None
        attributes = dict(self.previous[anchor].attributes)
        if self.object_type == "group":
            self.members[anchor] = dict.fromkeys(attributes.pop("members", None) or ())
        self.objects[anchor] = attributes
        return attributes

    def apply(self, entry: Any, where: str) -> None:
        """Merge one delta entry (see the module docstring)."""
        if not isinstance(entry, dict) or not isinstance(entry.get("id"), str) or not entry["id"]:
            raise SourceError(f"{where}: an entry without an 'id' ({_shape(entry)})")
        self.entries += 1
        anchor = sys.intern(entry["id"])
        removed = entry.get("@removed")
        if removed is not None:
            reason = removed.get("reason") if isinstance(removed, dict) else None
            if reason == "changed" and self.object_type == "user":
                if self.complete:  # a complete read finds soft-deleted users in deleted items
                    self.objects.pop(anchor, None)
                    return
                attributes = self._current(anchor)
                if attributes is not None:
                    attributes["deletedDateTime"] = self.now
                return
            if reason not in ("changed", "deleted"):
                raise SourceError(f"{where}: object {anchor!r}: unknown @removed reason {reason!r}")
            known = anchor in self.objects or anchor in self.previous
            self.objects.pop(anchor, None)
            self.members.pop(anchor, None)
            if known:
                self.removed.add(anchor)
            return
        attributes = self._current(anchor)
        if attributes is None:
            attributes = self.objects[anchor] = {}
            if self.object_type == "group":
                self.members[anchor] = {}
        self.removed.discard(anchor)
        attributes.pop("deletedDateTime", None)  # listed again: restored from deleted items, or never deleted
        for key, value in entry.items():
            if key == "manager@delta" and self.object_type == "user":
                _apply_manager(attributes, value, f"{where}: object {anchor!r}")
            elif key == "manager" and self.object_type == "user":  # $expand=manager (a GET by id)
                _set(attributes, "manager", value.get("id") if isinstance(value, dict) else None)
            elif key == "members@delta" and self.object_type == "group":
                _apply_members(self.members[anchor], value, f"{where}: object {anchor!r}")
            elif "@" in key:
                continue  # annotations (@odata.type, owners@delta…)
            elif key in ("onPremisesExtensionAttributes", "employeeOrgData"):
                for part, part_value in (value or {}).items() if isinstance(value, dict) else ():
                    if part in FLATTENED:
                        _set(attributes, part, part_value)
                if value is None:
                    for part, parent in FLATTENED.items():
                        if parent == key:
                            attributes.pop(part, None)
            else:
                _set(attributes, key, value)

    def result(self) -> dict[str, SourceObject]:
        objects = {}
        for anchor, attributes in self.objects.items():
            if self.object_type == "group":
                members = list(self.members.get(anchor) or ())
                if members:
                    attributes["members"] = members
                else:
                    attributes.pop("members", None)
            objects[anchor] = SourceObject(self.object_type, anchor, attributes)
        return objects


def _set(attributes: dict[str, Value], key: str, value: Any) -> None:
    if isinstance(value, list):
        value = [item for item in value if isinstance(item, (str, int, float)) and not isinstance(item, bool)]
    if value is None or value == [] or value == "" or isinstance(value, dict):
        attributes.pop(key, None)
    else:
        attributes[key] = sys.intern(value) if key == "manager" and isinstance(value, str) else value


def _apply_manager(attributes: dict[str, Value], entries: Any, where: str) -> None:
    if not isinstance(entries, list):
        raise SourceError(f"{where}: 'manager@delta' is not a list")
    for entry in entries:
        if not isinstance(entry, dict) or not isinstance(entry.get("id"), str):
            raise SourceError(f"{where}: a 'manager@delta' entry without an 'id'")
        if "@removed" in entry:
            if attributes.get("manager") == entry["id"]:
                attributes.pop("manager", None)
        else:
            attributes["manager"] = sys.intern(entry["id"])


def _apply_members(members: dict[str, None], entries: Any, where: str) -> None:
    if not isinstance(entries, list):
        raise SourceError(f"{where}: 'members@delta' is not a list")
    for entry in entries:
        if not isinstance(entry, dict) or not isinstance(entry.get("id"), str):
            raise SourceError(f"{where}: a 'members@delta' entry without an 'id'")
        kind = entry.get("@odata.type")
        if kind is not None and kind not in _MEMBER_TYPES:
            continue
        if "@removed" in entry:
            members.pop(entry["id"], None)
        else:
            members[sys.intern(entry["id"])] = None


def _shape(entry: Any) -> str:
    return f"keys {sorted(entry)[:5]}" if isinstance(entry, dict) else type(entry).__name__


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class GraphSource:
    """Microsoft Entra ID through Microsoft Graph (see the module docstring)."""

    def __init__(self, http: GraphHttp, options: SourceOptions) -> None:
        self.http = http
        self.options = options
        self.description = f"graph:{http.tenant}"
        self.incremental = True  # delta links: read_changes gives a delta while the link is valid
        self.user_select = select_for("user", options.user_attributes)
        self.wants_roles = options.user_attributes is None or \
            any(name.casefold() == "approleassignments" for name in options.user_attributes)
        self.group_select = select_for("group", options.group_attributes)

    # -- the Source interface ----------------------------------------------------------------------

    def read(self) -> SourceSnapshot:
        """A complete snapshot: the initial rounds of the users' and groups' delta queries."""
        now = _now()
        with self.http:
            users = _Collection("user", {}, complete=True, now=now)
            users_link = self._round(self._users_delta_url(), users)
            self._add_deleted_users(users)
            groups = _Collection("group", {}, complete=True, now=now)
            groups_link = self._round(self._groups_delta_url(), groups)
            assigned, roles = self._assignments()
        if roles is not None:
            _apply_roles(users, groups, roles)
        return SourceSnapshot(users.result(), groups.result(), assigned, _cursor(users_link, groups_link),
                              self.description, user_attributes=attribute_names("user"),
                              group_attributes=attribute_names("group"))

    def read_changes(self, cursor: str, previous: SourceSnapshot) -> SourceDelta | None:
        """The changes since ``cursor`` (the delta links of the last round), as complete objects."""
        links = _links(cursor)
        if links is None:
            return None
        now = _now()
        with self.http:
            users = _Collection("user", previous.users, complete=False, now=now)
            groups = _Collection("group", previous.groups, complete=False, now=now)
            try:
                users_link = self._round(links["users"], users)
                groups_link = self._round(links["groups"], groups)
            except GraphStatusError as exc:
                if exc.status == 410 or exc.code in _RESYNC_CODES:
                    return None
                raise
            assigned, roles = self._assignments()
        _forget_removed(users, groups)
        if roles is not None:
            # Assignments have no delta: every user's roles are recomputed, and sent when they changed.
            _apply_roles(users, groups, roles)
        removed: list[tuple[ObjectType, str]] = [("user", anchor) for anchor in sorted(users.removed)]
        removed += [("group", anchor) for anchor in sorted(groups.removed)]
        changed = [*users.result().values(), *groups.result().values()]
        return SourceDelta(changed, removed, assigned, _cursor(users_link, groups_link),
                           entries_read=users.entries + groups.entries)

    def get(self, anchor: str) -> SourceObject | None:
        """One user (live or soft-deleted) or group by id, read fresh (on-demand provisioning)."""
        key = quote(anchor, safe="")
        now = _now()
        users = _Collection("user", {}, complete=True, now=now)
        select = ",".join(name for name in self.user_select if name != "manager")
        with self.http:
            status, body = self.http.get(f"users/{key}?$select={select}&$expand=manager($select=id)", allow=(404,))
            if status == 404:
                status, body = self.http.get(f"directory/deletedItems/{key}?$select={select},deletedDateTime",
                                             allow=(404,))
                if status != 404 and body.get("@odata.type", "#microsoft.graph.user") == "#microsoft.graph.user":
                    users.apply(body, f"{self.description}: GET /directory/deletedItems/{anchor}")
                    users.objects[anchor]["deletedDateTime"] = body.get("deletedDateTime") or now
                    status = 200
            if status != 404:
                if anchor not in users.objects:
                    users.apply(body, f"{self.description}: GET /users/{anchor}")
                self._roles_of_one(anchor, users)
                return users.result()[anchor]
            status, body = self.http.get(f"groups/{key}?$select={','.join(self._group_properties())}", allow=(404,))
            if status == 404:
                return None
            groups = _Collection("group", {}, complete=True, now=now)
            groups.apply(body, f"{self.description}: GET /groups/{anchor}")
            for page in self.http.pages(f"groups/{key}/members?$select=id"):
                groups.apply({"id": anchor, "members@delta": page["value"]},
                             f"{self.description}: GET /groups/{anchor}/members")
            return groups.result()[anchor]

    def _roles_of_one(self, anchor: str, users: _Collection) -> None:
        """``appRoleAssignments`` of one user: its own and its assigned groups' roles."""
        _, roles = self._assignments()
        if roles is None:
            return
        wanted = set(roles.get(anchor, ()))
        if any(principal != anchor for principal in roles):
            for page in self.http.pages(f"users/{quote(anchor, safe='')}/memberOf/microsoft.graph.group?$select=id"):
                for group in page["value"]:
                    group_id = group.get("id") if isinstance(group, dict) else None
                    wanted |= roles.get(group_id, set()) if isinstance(group_id, str) else set()
        _set(users.objects[anchor], "appRoleAssignments", sorted(wanted))

    def close(self) -> None:
        """Nothing is held between reads: each read opens and closes its own connections."""

    # -- reading ---------------------------------------------------------------------------------

    def _group_properties(self) -> list[str]:
        return [name for name in self.group_select if name != "members"]

    def _users_delta_url(self) -> str:
        return f"users/delta?$select={','.join(self.user_select)}"

    def _groups_delta_url(self) -> str:
        return f"groups/delta?$select={','.join(self.group_select)}"

    def _round(self, url: str, collection: _Collection) -> str:
        """Follow one delta round from ``url`` to its deltaLink, merging every entry; → the deltaLink."""
        where = f"{self.description}: {collection.object_type}s delta"
        for page in self.http.pages(url):
            for entry in page["value"]:
                collection.apply(entry, where)
            if "@odata.nextLink" not in page:
                link = page.get("@odata.deltaLink")
                if not isinstance(link, str) or not link:
                    raise SourceError(f"{where}: the last page has neither @odata.nextLink nor @odata.deltaLink")
                return link
        raise AssertionError("pages() ends with a page without nextLink")  # pragma: no cover

    def _add_deleted_users(self, users: _Collection) -> None:
        """Users in deleted items (soft-deleted), with their ``deletedDateTime``."""
        select = ",".join(name for name in self.user_select if name != "manager")
        where = f"{self.description}: deleted users"
        live = set(users.objects)
        for page in self.http.pages(f"directory/deletedItems/microsoft.graph.user?$select={select},deletedDateTime"):
            for entry in page["value"]:
                if isinstance(entry, dict) and entry.get("id") in live:
                    continue  # restored meanwhile: the live object counts
                users.apply(entry, where)
                users.objects[entry["id"]]["deletedDateTime"] = entry.get("deletedDateTime") or users.now

    def _assignments(self) -> tuple[frozenset[str] | None, dict[str, set[str]] | None]:
        """The users and groups assigned to the application (app-role assignments of its service
        principal), and when the mapping reads ``appRoleAssignments``, each one's role values."""
        principal = self.options.service_principal_id
        if not principal:
            return None, None
        key = quote(principal, safe="")
        values: dict[str, str] = {}
        if self.wants_roles:
            _, body = self.http.get(f"servicePrincipals/{key}?$select=id,appRoles")
            for role in body.get("appRoles") or ():
                if isinstance(role, dict) and isinstance(role.get("id"), str) and role.get("value"):
                    values[role["id"]] = str(role["value"])
        assigned: set[str] = set()
        roles: dict[str, set[str]] = {}
        url = f"servicePrincipals/{key}/appRoleAssignedTo?$select=principalId,principalType,appRoleId"
        for page in self.http.pages(url):
            for assignment in page["value"]:
                if not isinstance(assignment, dict) or not isinstance(assignment.get("principalId"), str):
                    raise SourceError(f"{self.description}: an app role assignment without a principalId")
                if assignment.get("principalType", "User") not in ("User", "Group"):
                    continue  # a service principal granted an app role is nobody to provision
                anchor = sys.intern(assignment["principalId"])
                assigned.add(anchor)
                # The default access role (the all-zero id) has no value: assigned, with no role.
                value = values.get(assignment.get("appRoleId") or "")
                if value:
                    roles.setdefault(anchor, set()).add(value)
        return frozenset(assigned), (roles if self.wants_roles else None)


def _forget_removed(users: _Collection, groups: _Collection) -> None:
    """A hard-deleted object leaves its groups, and a hard-deleted manager manages nobody, even
    where Graph sent no ``members@delta`` / ``manager@delta`` removal for it: a complete read would
    not name them either."""
    gone = users.removed | groups.removed
    if not gone:
        return
    for anchor, group in groups.previous.items():
        if anchor not in groups.objects and anchor not in groups.removed and \
                not gone.isdisjoint(group.attributes.get("members") or ()):
            groups._current(anchor)
    for members in groups.members.values():
        for anchor in gone & members.keys():
            del members[anchor]
    for anchor, user in users.previous.items():
        if user.attributes.get("manager") in users.removed and anchor not in users.removed:
            users._current(anchor)
    for attributes in users.objects.values():
        if attributes.get("manager") in users.removed:
            del attributes["manager"]


def _apply_roles(users: _Collection, groups: _Collection, roles: dict[str, set[str]]) -> None:
    """``appRoleAssignments``: the role values of a user's own assignments and of the assigned
    groups it is a direct member of (nested groups are not expanded, as for scope), sorted."""

    def members_of(anchor: str) -> Iterable[str]:
        if anchor in groups.members:
            return groups.members[anchor].keys()
        group = groups.previous.get(anchor) if anchor not in groups.removed else None
        return (group.attributes.get("members") or ()) if group is not None else ()

    inherited: dict[str, set[str]] = {}
    for principal, values in roles.items():
        for member in members_of(principal):
            inherited.setdefault(member, set()).update(values)
    for anchor in [*users.objects, *(a for a in users.previous if a not in users.objects and a not in users.removed)]:
        wanted = sorted(roles.get(anchor, set()) | inherited.get(anchor, set()))
        current = users.objects[anchor] if anchor in users.objects else users.previous[anchor].attributes
        if (current.get("appRoleAssignments") or []) != wanted:
            attributes = users._current(anchor)
            assert attributes is not None
            _set(attributes, "appRoleAssignments", wanted)


def _cursor(users_link: str, groups_link: str) -> str:
    return json.dumps({"users": users_link, "groups": groups_link}, sort_keys=True)


def _links(cursor: str) -> dict[str, str] | None:
    """The delta links of a cursor; ``None`` when it is not ours (another source's watermark)."""
    try:
        links = json.loads(cursor)
    except (TypeError, ValueError):
        return None
    if not isinstance(links, dict) or not all(isinstance(links.get(k), str) and links[k] for k in ("users", "groups")):
        return None
    return {"users": links["users"], "groups": links["groups"]}
