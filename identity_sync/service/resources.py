"""SCIM resource operations. Each public method is one transaction: it validates, applies and
stores, or changes nothing at all."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import structlog

from identity_sync.auth.tokens import Principal
from identity_sync.clock import now_text
from identity_sync.config import Settings
from identity_sync.errors import BadRequest, NotFound, PreconditionFailed, ScimError
from identity_sync.ids import new_id
from identity_sync.scim import definitions as d
from identity_sync.scim import members as member_plan
from identity_sync.scim.evaluate import matches_element
from identity_sync.scim.filter import parse_filter
from identity_sync.scim.members import MemberDelta
from identity_sync.scim.patch import Operation, apply_operations, parse_operations
from identity_sync.scim.registry import GROUP, USER, ResourceType, canonical_key
from identity_sync.scim.resource import normalize
from identity_sync.storage import audit, counts, memberships
from identity_sync.storage import resources as store
from identity_sync.storage.db import Database
from identity_sync.storage.listing import ListRequest
from identity_sync.storage.resources import StoredResource

log = structlog.get_logger("identity_sync.service")

# A list request and a stored resource are what this service takes and returns: web/ takes their
# types from here, so that it depends on the service layer only (tests/web/test_layers.py).
__all__ = ["ListRequest", "ResourceService", "StoredResource", "changed_attributes", "etag"]


def etag(version: int) -> str:
    return f'W/"{version}"'


#: A PATCH with more operations than this applies them before its write transaction
#: (ResourceService._applied_beforehand); Entra's and Okta's send a few, applied in microseconds.
APPLIED_BEFOREHAND_AFTER = 16


class ResourceService:
    def __init__(self, db: Database, settings: Settings) -> None:
        self.db = db
        self.settings = settings

    def create(self, principal: Principal, rt: ResourceType, body: Any) -> StoredResource:
        body, members, _ = member_plan.split_members(body) if rt is GROUP else (body, None, False)
        doc = normalize(rt, body, max_values=self.settings.attribute_max_values)
        resource_id = new_id()
        # Everything that depends on the document alone, before the write: on SQLite the write
        # transaction is the database's one writer's turn.
        new, name_key, changed = store.prepared(rt, doc), _name_key(rt, doc), changed_attributes({}, doc, bool(members))
        with self.db.write() as conn:
            self._check_references(conn, principal, rt, doc, resource_id)
            now = now_text()
            stored = store.insert(conn, principal.tenant_id, rt, resource_id, name_key, new, now)
            if members:
                self._add_members(conn, principal, resource_id, MemberDelta("add", *_ids(members)), now)
            self._audit(conn, principal, "create", rt, stored, changed)
            counts.changed(conn, principal.tenant_id, rt.name, +1)  # last: storage/counts.py says why
        log.info("resource.created", tenant=principal.tenant_name, type=rt.name, id=resource_id)
        if rt is USER:
            # A user created just now is in no group yet: its `groups` are known without a query
            # (related() loads only what is not).
            return replace(stored, related={"groups": []})
        return stored

    def get(self, principal: Principal, rt: ResourceType, resource_id: str) -> StoredResource:
        with self.db.fast_read() as conn:
            stored = store.get(conn, principal.tenant_id, rt, resource_id)
        if stored is None:
            raise NotFound(f"{rt.name} {resource_id[:64]} not found.")
        return stored

    def query(self, principal: Principal, rt: ResourceType, filter_text: str | None, start_index: int,
              count: int) -> tuple[int, list[StoredResource]]:
        page = self.search(principal, rt, filter_text, ListRequest(start_index=start_index, count=count))
        assert page.total is not None
        return page.total, page.resources

    def search(self, principal: Principal, rt: ResourceType, filter_text: str | None,
               request: ListRequest) -> store.Page:
        """One page of a list or ``.search`` request: filter, sort, index or cursor paging."""
        s = self.settings
        node = None
        if filter_text is not None and filter_text.strip():
            node = parse_filter(filter_text, max_length=s.filter_max_length, max_depth=s.filter_max_depth,
                                max_terms=s.filter_max_terms)
        with self.db.fast_read() as conn:
            return store.search(conn, principal.tenant_id, rt, node, request, self.db.marks)

    def replace(self, principal: Principal, rt: ResourceType, resource_id: str, body: Any,
                if_match: str | None) -> StoredResource:
        # PUT without `members` does not assert them (like `active` below): memberships are kept.
        body, members, members_given = member_plan.split_members(body) if rt is GROUP else (body, None, False)
        doc = normalize(rt, body, max_values=self.settings.attribute_max_values)
        with self.db.write() as conn:
            current = self._current(conn, principal, rt, resource_id, if_match)
            if rt is USER and "active" not in doc and "active" in current.doc:
                # PUT without `active` does not assert it (RFC 7644 §3.5.1 lets us choose): an
                # omitted flag must neither disable nor re-enable an account by accident.
                doc["active"] = current.doc["active"]
            self._check_references(conn, principal, rt, doc, resource_id, current.doc)
            now = now_text()
            stored = store.update(conn, principal.tenant_id, rt, current, _name_key(rt, doc), doc, now)
            members_changed = members_given and self._replace_members(
                conn, principal, resource_id, MemberDelta("replace", *_ids(members)), now)
            self._audit(conn, principal, "replace", rt, stored, changed_attributes(current.doc, doc, members_changed))
        log.info("resource.replaced", tenant=principal.tenant_name, type=rt.name, id=resource_id)
        return stored

    def patch(self, principal: Principal, rt: ResourceType, resource_id: str, body: Any,
              if_match: str | None) -> StoredResource:
        operations = parse_operations(body, max_operations=self.settings.patch_max_operations)
        steps = member_plan.plan(operations) if rt is GROUP else list(operations)
        prepared = self._applied_beforehand(principal, rt, resource_id, steps) \
            if len(steps) > APPLIED_BEFOREHAND_AFTER else None
        with self.db.write() as conn:
            current = self._current(conn, principal, rt, resource_id, if_match)
            doc, members_changed, now = current.doc, False, now_text()
            pending: list[Operation] = []  # consecutive document operations apply as one batch
            if prepared is not None and prepared[0] == current.version:
                doc, steps = prepared[1], []  # what applying them to this very version gives
            for step in [*steps, None]:
                if isinstance(step, Operation):
                    pending.append(step)
                    continue
                if pending:
                    doc, pending = apply_operations(rt, doc, pending, max_values=self.settings.attribute_max_values), []
                if step is not None:
                    members_changed |= self._apply_member_delta(conn, principal, resource_id, step, now)
            if doc != current.doc:
                self._check_references(conn, principal, rt, doc, resource_id, current.doc)
                stored = store.update(conn, principal.tenant_id, rt, current, _name_key(rt, doc), doc, now)
            elif members_changed:
                stored = store.touch(conn, principal.tenant_id, rt, current, now)
            else:
                return current  # Entra re-sends unchanged values every cycle: no new version.
            self._audit(conn, principal, "patch", rt, stored, changed_attributes(current.doc, doc, members_changed))
        log.info("resource.patched", tenant=principal.tenant_name, type=rt.name, id=resource_id,
                 operations=len(operations))
        return stored

    def _applied_beforehand(self, principal: Principal, rt: ResourceType, resource_id: str,
                            steps: list[Any]) -> tuple[int, dict[str, Any]] | None:
        """A long list of document operations applied to the resource as last committed, outside the
        write transaction: on SQLite the transaction holds the whole database, and 1,000 operations
        take up to a second to apply (re-adding each of 1,000 values compares it with the others).
        The result stands only if the transaction then finds that same version (patch()); if another
        write came in between, or the operations fail here, they are applied again inside it, as
        always, and fail or succeed there."""
        if not all(isinstance(step, Operation) for step in steps):
            return None  # membership changes read and write the memberships: inside the transaction
        with self.db.fast_read() as conn:
            snapshot = store.get(conn, principal.tenant_id, rt, resource_id)
        if snapshot is None:
            return None
        try:
            doc = apply_operations(rt, snapshot.doc, steps, max_values=self.settings.attribute_max_values)
        except ScimError:
            return None
        return snapshot.version, doc

    # -- memberships -----------------------------------------------------------------------------

    def _apply_member_delta(self, conn: Any, principal: Principal, group_id: str, delta: MemberDelta,
                            now: str) -> bool:
        if delta.kind == "add":
            return self._add_members(conn, principal, group_id, delta, now) > 0
        if delta.kind == "replace":
            return self._replace_members(conn, principal, group_id, delta, now)
        if delta.kind == "remove_all":
            log.warning("group.members.cleared", tenant=principal.tenant_name, id=group_id)
            return memberships.remove_all(conn, principal.tenant_id, group_id) > 0
        if delta.where is not None:
            # A filter other than `value eq`: evaluated on the members (rare; O(group size)).
            doomed = [member_id for member_id, kind in memberships.members_of(conn, principal.tenant_id, group_id)
                      if matches_element(member_plan.MEMBERS, {"value": member_id, "type": kind}, delta.where)]
            return memberships.remove(conn, principal.tenant_id, group_id, doomed) > 0
        return memberships.remove(conn, principal.tenant_id, group_id, delta.ids) > 0

    def _add_members(self, conn: Any, principal: Principal, group_id: str, delta: MemberDelta, now: str) -> int:
        if group_id in delta.ids:
            raise BadRequest("A group cannot be a member of itself.", "invalidValue")
        # Only new members are checked (and, on PostgreSQL, locked): Entra re-sends members the
        # group has, and locking those would make a concurrent delete of one of them, which
        # locks the member and then its groups, deadlock with this group's lock.
        present = memberships.already_members(conn, principal.tenant_id, group_id, delta.ids)
        new = [member_id for member_id in delta.ids if member_id not in present]
        found = memberships.live_members(conn, principal.tenant_id, new)
        missing = [member_id for member_id in new if member_id not in found]
        if missing:
            shown = ", ".join(m[:64] for m in missing[:3])
            raise BadRequest(f"No User or Group with id {shown} in this tenant; nothing was changed.",
                             "invalidValue")
        return memberships.add(conn, principal.tenant_id, group_id, found, now)

    def _replace_members(self, conn: Any, principal: Principal, group_id: str, delta: MemberDelta,
                         now: str) -> bool:
        before = {member_id for member_id, _ in memberships.members_of(conn, principal.tenant_id, group_id)}
        if before == set(delta.ids):
            return False
        # Members kept stay untouched (their membership keeps its date): only the difference
        # is written, and only new members are checked and locked (see _add_members).
        memberships.remove(conn, principal.tenant_id, group_id, before - set(delta.ids))
        self._add_members(conn, principal, group_id, delta, now)
        return True

    def member_page(self, principal: Principal, group_id: str, after: str, limit: int) -> list[tuple[str, str]]:
        """One page of a group's members, for streaming a group of any size to a client."""
        with self.db.read() as conn:
            if not store.exists(conn, principal.tenant_id, GROUP, group_id):
                return []  # deleted while being streamed: the list simply ends
            return memberships.member_page(conn, principal.tenant_id, group_id, after, limit)

    def related(self, principal: Principal, rt: ResourceType, page: list[StoredResource],
                with_members: bool, with_groups: bool) -> list[StoredResource]:
        """``page`` with its relation-backed attributes loaded: a Group's ``members`` (when asked
        for: Entra always reads groups with ``excludedAttributes=members``) and a User's ``groups``
        (unless already known, as for a user just created)."""
        if not page or not ((rt is GROUP and with_members) or (rt is USER and with_groups)):
            return page
        if rt is USER:
            unknown = [r.id for r in page if r.related is None or "groups" not in r.related]
            if not unknown:
                return page
            with self.db.fast_read() as conn:
                groups = memberships.groups_of(conn, principal.tenant_id, unknown)
            return [r if r.related is not None and "groups" in r.related
                    else replace(r, related={"groups": groups.get(r.id, [])}) for r in page]
        with self.db.read() as conn:
            return [replace(r, related={"members": [
                {"value": member_id, "type": kind}
                for member_id, kind in memberships.members_of(conn, principal.tenant_id, r.id)
            ]}) for r in page]

    def delete(self, principal: Principal, rt: ResourceType, resource_id: str, if_match: str | None) -> None:
        with self.db.write() as conn:
            current = self._current(conn, principal, rt, resource_id, if_match)
            now = now_text()
            left = memberships.retire(conn, principal.tenant_id, resource_id, now)
            if store.soft_delete(conn, principal.tenant_id, rt, resource_id, now):
                # The groups it was a member of changed too: one event each, in the same statement.
                self._audit(conn, principal, "delete", rt, replace(current, last_modified=now), [], *(
                    audit.Event(principal.tenant_id, now, principal.credential_id, "patch", GROUP.name, group_id,
                                version, ["members"]) for group_id, version in left))
                counts.changed(conn, principal.tenant_id, rt.name, -1)  # last: storage/counts.py says why
        log.info("resource.deleted", tenant=principal.tenant_name, type=rt.name, id=resource_id)

    @staticmethod
    def _audit(conn: Any, principal: Principal, action: str, rt: ResourceType, stored: StoredResource,
               attributes: list[str], *also: audit.Event) -> None:
        """The change's audit event (and ``also``), in the transaction of the change (storage/audit.py)."""
        audit.record(conn, audit.Event(principal.tenant_id, stored.last_modified, principal.credential_id, action,
                                       rt.name, stored.id, stored.version, attributes), *also)

    def _current(self, conn: Any, principal: Principal, rt: ResourceType, resource_id: str,
                 if_match: str | None) -> StoredResource:
        current = store.get(conn, principal.tenant_id, rt, resource_id, for_update=True)
        if current is None:
            raise NotFound(f"{rt.name} {resource_id[:64]} not found.")
        if if_match is not None and not _etag_matches(if_match, current.version):
            raise PreconditionFailed("The resource has changed since it was read (If-Match failed).")
        return current

    def _check_references(self, conn: Any, principal: Principal, rt: ResourceType, doc: dict[str, Any],
                          resource_id: str, previous: dict[str, Any] | None = None) -> None:
        """A newly set manager must be a live user of the same tenant (and not the user itself).
        A manager set earlier is not re-checked, so deleting a manager never blocks its reports."""
        manager = _manager(doc) if rt is USER else None
        if not manager or (previous is not None and manager == _manager(previous)):
            return
        manager_id = manager.get("value")
        if not isinstance(manager_id, str) or manager_id == resource_id or not store.exists(
            conn, principal.tenant_id, USER, manager_id
        ):
            raise BadRequest("'manager' must reference another existing User of this tenant.", "invalidValue")


def changed_attributes(before: dict[str, Any], after: dict[str, Any], members_changed: bool) -> list[str]:
    """The top-level attributes that differ, an extension's as ``URN:attribute`` (for the audit
    trail: which attributes a change touched, not their values)."""
    changed = []
    for key in before.keys() | after.keys():
        old, new = before.get(key), after.get(key)
        if old == new:
            continue
        if key.startswith("urn:") and isinstance(old, dict | None) and isinstance(new, dict | None):
            old, new = old or {}, new or {}
            changed += [f"{key}:{sub}" for sub in old.keys() | new.keys() if old.get(sub) != new.get(sub)]
        else:
            changed.append(key)
    return changed + (["members"] if members_changed else [])


def _ids(members: Any) -> tuple[tuple[str, ...], dict[str, str]]:
    ids, types = member_plan.member_ids(members)
    return tuple(ids), types


def _manager(doc: dict[str, Any]) -> Any:
    return (doc.get(d.ENTERPRISE_SCHEMA) or {}).get("manager")


def _name_key(rt: ResourceType, doc: dict[str, Any]) -> str:
    return canonical_key(doc["userName"] if rt is USER else doc["displayName"])


def _etag_matches(header: str, version: int) -> bool:
    wanted = etag(version)
    candidates = [c.strip() for c in header.split(",")]
    return "*" in candidates or any(c == wanted or c == wanted[2:] for c in candidates)
