"""What the console's tenant pages show and do, through the services the CLI uses
(service/tenants.py, clients.py, audit.py, tombstones.py, resources.py, rejections.py): no SQL
here. Every function is synchronous (the handlers in tenants.py run them in a worker thread) and
raises the services' own errors (``TenantError`` for an unknown tenant, client or token)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from identity_sync.auth.tokens import Principal
from identity_sync.config import Settings
from identity_sync.scim.registry import GROUP, USER, ResourceType
from identity_sync.service.audit import AuditService
from identity_sync.service.clients import ClientService
from identity_sync.service.rejections import RejectionService
from identity_sync.service.resources import ResourceService
from identity_sync.service.tenants import TenantService
from identity_sync.service.tombstones import TombstoneService
from identity_sync.storage.db import Database
from identity_sync.storage.listing import ListRequest

#: Rows per page of the users and groups lists.
PAGE_SIZE = 25
#: The longest search text (it becomes a SCIM filter, whose length the service bounds too).
MAX_SEARCH = 100
RECENT = 20
KINDS: dict[str, ResourceType] = {"users": USER, "groups": GROUP}


@dataclass(frozen=True, slots=True)
class Listing:
    kind: str  # "users" or "groups"
    query: str
    page: int
    total: int
    rows: list[dict[str, Any]]

    @property
    def pages(self) -> int:
        return max(1, -(-self.total // PAGE_SIZE))


def search_filter(kind: str, query: str) -> str | None:
    """The SCIM filter the search box means: a user whose userName or displayName contains the
    text, a group whose displayName does (``co`` is case-insensitive on these attributes)."""
    query = query.strip()[:MAX_SEARCH]
    if not query:
        return None
    quoted = json.dumps(query)  # a SCIM string literal is a JSON string: quotes and backslashes escaped
    if kind == "users":
        return f"userName co {quoted} or displayName co {quoted}"
    return f"displayName co {quoted}"


class TenantData:
    def __init__(self, db: Database, settings: Settings) -> None:
        self.db = db
        self.settings = settings
        self.tenants = TenantService(db)
        self.clients = ClientService(db, settings)
        self.audit = AuditService(db)
        self.tombstones = TombstoneService(db)
        self.resources = ResourceService(db, settings)
        self.rejections = RejectionService(db)

    # -- reading -----------------------------------------------------------------------------------

    def tenant(self, name: str) -> dict[str, Any]:
        """The tenant's row (``TenantError`` if there is none)."""
        return self.tenants.get_tenant(name)

    def list(self) -> list[dict[str, Any]]:
        return self.tenants.list_tenants()

    def page(self, name: str) -> dict[str, Any]:
        """Everything the tenant's page shows."""
        tenant = self.tenant(name)
        trust = self.clients.get_entra_trust(name)
        if trust is not None:
            trust = {"entra_tenant_id": trust["entra_tenant_id"], "audience": trust["audience"],
                     "jwks_url": trust["jwks_url"], "inline_jwks": bool(trust["jwks"]),
                     "updated_at": trust["updated_at"]}
        return {
            "tenant": tenant,
            "tokens": list(reversed(self.tenants.list_tokens(name))),  # newest first
            "clients": list(reversed(self.clients.list_clients(name))),
            "trust": trust,
            "activity": self.audit.recent(name, RECENT),
            "rejections": self.rejections.latest(name, RECENT),
            "counts": {kind: self.search(name, kind, "", 1, count=0).total for kind in KINDS},
        }

    def principal(self, name: str) -> Principal:
        """The tenant as the SCIM services know a caller of it (the console reads, never writes)."""
        tenant = self.tenant(name)
        return Principal(tenant["id"], tenant["name"], "console")

    def search(self, name: str, kind: str, query: str, page: int, count: int = PAGE_SIZE) -> Listing:
        """One page of the tenant's users or groups, through the SCIM list service (its filter
        and paging), optionally searched by name."""
        rt = KINDS[kind]
        page = max(1, page)
        result = self.resources.search(self.principal(name), rt, search_filter(kind, query),
                                       ListRequest(start_index=(page - 1) * PAGE_SIZE + 1, count=count))
        rows = [{"id": r.id, "name": r.doc.get("userName") or r.doc.get("displayName") or r.id,
                 "display_name": r.doc.get("displayName"), "active": r.doc.get("active"),
                 "last_modified": r.last_modified} for r in result.resources]
        return Listing(kind, query, page, result.total or 0, rows)

    def resource(self, name: str, kind: str, resource_id: str) -> dict[str, Any]:
        """A user or group, and its audit history (``ScimError`` 404 if it is not live)."""
        principal, rt = self.principal(name), KINDS[kind]
        stored = self.resources.related(principal, rt, [self.resources.get(principal, rt, resource_id)],
                                        with_members=True, with_groups=True)[0]
        # A user's groups, a group's members (users or groups): links to their own pages.
        links = [{"id": item["value"], "display": item.get("display"),
                  "kind": "groups" if rt is USER or item.get("type") == "Group" else "users"}
                 for item in next(iter((stored.related or {}).values()), [])]
        return {"kind": kind, "id": stored.id, "relation": "Groups" if rt is USER else "Members",
                "links": links[:500], "link_total": len(links), "doc": json.dumps(stored.doc, indent=2, sort_keys=True),
                "name": stored.doc.get("userName") or stored.doc.get("displayName") or stored.id,
                "version": stored.version, "created_at": stored.created_at, "last_modified": stored.last_modified,
                "history": self.audit.recent(name, 100, resource_id)}

    def deleted(self, name: str) -> dict[str, Any]:
        """The tenant's tombstones, newest first (the newest 500), with their former memberships."""
        rows = list(reversed(self.tombstones.list(name, None)))
        return {"tenant": self.tenant(name), "tombstones": rows[:500], "total": len(rows)}
