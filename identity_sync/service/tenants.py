"""Tenants and credentials: creation, listing, revocation, and authenticating a request."""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from identity_sync.auth import tokens
from identity_sync.auth.authenticator import Authenticator
from identity_sync.auth.tokens import Principal
from identity_sync.clock import ago_text, now_text
from identity_sync.errors import Unauthorized
from identity_sync.storage import audit, counts
from identity_sync.storage import tenants as store
from identity_sync.storage.db import Database

TENANT_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,62}$")


class TenantError(Exception):
    """An operator mistake (bad name, unknown tenant): reported by the CLI, never over SCIM."""


@dataclass(frozen=True, slots=True)
class IssuedToken:
    tenant: str
    credential_id: str
    token: str
    expires_at: str | None


class TenantService:
    def __init__(self, db: Database) -> None:
        self.db = db
        self._authenticator: Authenticator | None = None

    def create_tenant(self, name: str) -> IssuedToken:
        """A new tenant and its first bearer token."""
        self._insert_tenant(name)
        return self.create_token(name)

    def _insert_tenant(self, name: str) -> None:
        if not TENANT_NAME.fullmatch(name):
            raise TenantError("Tenant names are 1-63 characters: lower-case letters, digits, '-' and '_'.")
        with self.db.write() as conn:
            if store.get_tenant(conn, name) is not None:
                raise TenantError(f"Tenant '{name}' already exists.")
            store.insert_tenant(conn, str(uuid.uuid4()), name, now_text())

    def ensure_default_tenant(self, *, issue_token: bool = True) -> tuple[bool, IssuedToken | None]:
        """Create the ``default`` tenant on the first start of an empty installation: ``(created,
        its first token)``. Without ``issue_token`` the tenant has no token yet (``serve`` with no
        terminal to show one on: a token nobody saw would only be a secret to leak)."""
        with self.db.read() as conn:
            if store.count_tenants(conn):
                return False, None
        if issue_token:
            return True, self.create_tenant("default")
        self._insert_tenant("default")
        return True, None

    def list_tenants(self) -> list[dict[str, Any]]:
        with self.db.read() as conn:
            return store.list_tenants(conn)

    def get_tenant(self, name: str) -> dict[str, Any]:
        """The tenant called ``name`` (``TenantError`` if there is none)."""
        with self.db.read() as conn:
            return tenant_named(conn, name)

    def set_status(self, name: str, status: str) -> None:
        with self.db.write() as conn:
            tenant = self._tenant(conn, name)
            store.set_tenant_status(conn, tenant["id"], status)

    def set_retention(self, name: str, days: int, *, actor: str = audit.OPERATOR) -> None:
        """How many days a tenant's tombstones are kept before the retention job purges them
        (0: forever, the default). An audit event of the operator, on the tenant."""
        if not 0 <= days <= MAX_RETENTION_DAYS:
            raise TenantError(f"The retention period is 0 (keep forever) to {MAX_RETENTION_DAYS} days.")
        self._change_policy(name, "retention", actor, retention_days=days)

    def set_legal_hold(self, name: str, on: bool, *, actor: str = audit.OPERATOR) -> None:
        """Under legal hold nothing of the tenant is purged, by the job or by the operator."""
        self._change_policy(name, "hold" if on else "release", actor, legal_hold=on)

    def _change_policy(self, name: str, action: str, actor: str, **values: Any) -> None:
        with self.db.write() as conn:
            tenant = self._tenant(conn, name)
            store.set_tenant_retention(conn, tenant["id"], **values)
            audit.record(conn, audit.Event(tenant["id"], now_text(), actor, action, "Tenant", tenant["id"],
                                           None, list(values)))

    def recount_resources(self) -> int:
        """Rebuild every tenant's live resource counts from the rows (storage/counts.py): after a
        rolling upgrade from a release without them, or a bulk load. Returns how many counts."""
        with self.db.write() as conn:
            return counts.recount(conn)

    def create_token(self, tenant_name: str, expires_in_days: int | None = None) -> IssuedToken:
        token = tokens.new_token()
        credential_id = tokens.new_credential_id()
        if expires_in_days is not None and not 1 <= expires_in_days <= MAX_RETENTION_DAYS:
            # Over a century the expiry date would overflow (a traceback, not an answer).
            raise TenantError(f"A token lives 1 to {MAX_RETENTION_DAYS} days (omit the option for no expiry).")
        expires_at = ago_text(-timedelta(days=expires_in_days)) if expires_in_days is not None else None
        with self.db.write() as conn:
            tenant = self._tenant(conn, tenant_name)
            store.insert_credential(conn, credential_id, tenant["id"], "bearer", tokens.digest(token), now_text(),
                                    expires_at)
        return IssuedToken(tenant_name, credential_id, token, expires_at)

    def rotate_token(self, tenant_name: str, credential_id: str, expires_in_days: int | None = None) -> IssuedToken:
        """Replace a live token: a new one, and the old one revoked, in one transaction (the old
        stops working at once; for an overlap, create a second token and revoke the first later)."""
        token = tokens.new_token()
        new_credential = tokens.new_credential_id()
        if expires_in_days is not None and not 1 <= expires_in_days <= MAX_RETENTION_DAYS:
            # Over a century the expiry date would overflow (a traceback, not an answer).
            raise TenantError(f"A token lives 1 to {MAX_RETENTION_DAYS} days (omit the option for no expiry).")
        expires_at = ago_text(-timedelta(days=expires_in_days)) if expires_in_days is not None else None
        with self.db.write() as conn:
            tenant = self._tenant(conn, tenant_name)
            if not store.revoke_credential(conn, tenant["id"], credential_id, now_text()):
                raise TenantError(f"No live token '{credential_id}' in tenant '{tenant_name}'.")
            store.insert_credential(conn, new_credential, tenant["id"], "bearer", tokens.digest(token), now_text(),
                                    expires_at)
        return IssuedToken(tenant_name, new_credential, token, expires_at)

    def list_tokens(self, tenant_name: str) -> list[dict[str, Any]]:
        with self.db.read() as conn:
            return store.list_credentials(conn, self._tenant(conn, tenant_name)["id"])

    def revoke_token(self, tenant_name: str, credential_id: str) -> None:
        with self.db.write() as conn:
            if not store.revoke_credential(conn, self._tenant(conn, tenant_name)["id"], credential_id, now_text()):
                raise TenantError(f"No live token '{credential_id}' in tenant '{tenant_name}'.")

    def authenticate(self, authorization: str | None, tenant_name: str) -> Principal:
        """The principal of a static bearer token presented to ``tenant_name``'s URL, or
        :class:`Unauthorized` (the checks and their cache: ``auth/authenticator.py``, which the
        web layer uses for every kind of credential)."""
        token = tokens.bearer_from_header(authorization)
        if token is None:
            raise Unauthorized(reason="malformed" if authorization and authorization.strip() else "missing")
        if self._authenticator is None:
            self._authenticator = Authenticator(self.db)
        principal = self._authenticator.static_token(token, tenant_name)
        # The use recorded before returning: a caller outside the service (a command, a test) may
        # end right after, and the writer's thread with it.
        self._authenticator.uses.flush()
        return principal

    def _tenant(self, conn: Any, name: str) -> dict[str, Any]:
        return tenant_named(conn, name)


#: A century: longer is "forever" (0), and dates beyond it would overflow.
MAX_RETENTION_DAYS = 36_500


def tenant_named(conn: Any, name: str) -> dict[str, Any]:
    """The tenant row called ``name``, or the operator's error (``TenantError``)."""
    tenant = store.get_tenant(conn, name)
    if tenant is None:
        raise TenantError(f"No tenant named '{name}'.")
    return tenant
