"""Operators: the people who may log in to the web console (docs/console.md). Created, listed and
disabled by ``identity-sync operator …``; verified by the console's login form.

Passwords are stored as argon2id hashes (argon2-cffi's defaults, RFC 9106's second recommended
profile: 64 MiB, 3 passes, 4 lanes; about a quarter of a second here). A login for a name that does
not exist, or of a disabled operator, still verifies the password against a hash, so that the
answer's timing does not tell which names exist.

Changes of operators are audit events (``audit_events``). They belong to no tenant: their
``tenant_id`` is :data:`NO_TENANT` (``audit list`` shows them with tenant ``-``).

Roles: ``admin`` (sees and changes everything), ``viewer`` (sees everything, changes nothing) and
``tenant-admin``: bound to one tenant (``operators.tenant_id``), it sees only that tenant's pages
and may manage that tenant's credentials (console/routes.py enforces it, deny by default).
"""

from __future__ import annotations

import re
import threading
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError
from sqlalchemy.exc import IntegrityError

from identity_sync.clock import now_text
from identity_sync.ids import new_id
from identity_sync.storage import audit
from identity_sync.storage import tenants as tenant_store
from identity_sync.storage.db import Database
from identity_sync.storage.tables import console_sessions, operators, tenants

ROLES = ("admin", "viewer", "tenant-admin")
#: The role of an operator bound to one tenant.
TENANT_ADMIN = "tenant-admin"
#: The shortest password accepted (a passphrase of a few words is longer).
MIN_PASSWORD_LENGTH = 12
#: Longer passwords are refused: argon2 hashes any length, but a megabyte-long "password" posted
#: to the login form would be hashed in full.
MAX_PASSWORD_LENGTH = 1_024
#: The ``tenant_id`` of audit events about the service itself (operators, console logins).
NO_TENANT = ""
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._@-]{0,63}")

_hasher = PasswordHasher()  # argon2id with RFC 9106's low-memory profile
_dummy_lock = threading.Lock()
_dummy_hash: str | None = None


class OperatorError(Exception):
    """An operator's mistake (bad name, role or password, unknown operator); one line."""


@dataclass(frozen=True, slots=True)
class Operator:
    id: str
    name: str
    role: str
    created_at: str
    disabled: bool
    password_hash: str  # never shown; its fingerprint binds sessions to the password (console/auth.py)
    #: A tenant admin's tenant (its id and name); ``None`` for operators of every tenant.
    tenant_id: str | None = None
    tenant: str | None = None

    @property
    def is_admin(self) -> bool:
        return self.role == "admin"

    @property
    def is_tenant_admin(self) -> bool:
        return self.role == TENANT_ADMIN

    def may_see(self, tenant_name: str) -> bool:
        """Whether this operator may see the tenant of this name at all."""
        return not self.is_tenant_admin or (self.tenant is not None and self.tenant == tenant_name)

    def describe(self) -> dict[str, Any]:
        described = {"operator": self.name, "role": self.role, "created_at": self.created_at,
                     "disabled": self.disabled}
        if self.is_tenant_admin:  # the other roles' keys stay as they were (a public interface)
            described["tenant"] = self.tenant
        return described


def check_password(password: str) -> None:
    if len(password) < MIN_PASSWORD_LENGTH:
        raise OperatorError(f"the password must be at least {MIN_PASSWORD_LENGTH} characters long")
    if len(password) > MAX_PASSWORD_LENGTH:
        raise OperatorError(f"the password must be at most {MAX_PASSWORD_LENGTH} characters long")


def _dummy() -> str:
    """A hash of nothing anyone knows, made once with the same parameters as real ones: verifying
    against it costs what a real verification costs."""
    global _dummy_hash
    with _dummy_lock:
        if _dummy_hash is None:
            _dummy_hash = _hasher.hash(new_id())
        return _dummy_hash


class OperatorService:
    def __init__(self, db: Database) -> None:
        self.db = db

    def create(self, name: str, role: str, password: str, *, tenant: str | None = None,
               actor: str = audit.OPERATOR) -> Operator:
        if not _NAME.fullmatch(name):
            raise OperatorError(f"operator name {name!r}: 1-64 letters, digits, '.', '_', '@' or '-', starting with "
                                "a letter or digit")
        if role not in ROLES:
            raise OperatorError(f"the role must be one of {', '.join(ROLES)}")
        if (role == TENANT_ADMIN) != (tenant is not None):
            raise OperatorError("a tenant-admin needs --tenant, and only a tenant-admin takes one")
        check_password(password)
        operator_id, now = new_id(), now_text()
        hashed = _hasher.hash(password)  # before the transaction: a quarter second holds no lock
        try:
            with self.db.write() as conn:
                tenant_id = None
                if tenant is not None:
                    row = tenant_store.get_tenant(conn, tenant)
                    if row is None:
                        raise OperatorError(f"no tenant named '{tenant}'")
                    tenant_id = row["id"]
                conn.execute(sa.insert(operators).values(id=operator_id, name=name, role=role, password_hash=hashed,
                                                         created_at=now, disabled=False, tenant_id=tenant_id))
                _audit(conn, actor, "create", operator_id,
                       ["name", "role", "password", *(["tenant"] if tenant else [])])
        except IntegrityError:
            raise OperatorError(f"operator '{name}' already exists") from None
        return self.get(name)

    def list(self) -> list[Operator]:
        with self.db.read() as conn:
            return [_operator(row) for row in conn.execute(_SELECT.order_by(operators.c.name))]

    def get(self, name: str) -> Operator:
        with self.db.read() as conn:
            row = conn.execute(_SELECT.where(operators.c.name == name)).first()
        if row is None:
            raise OperatorError(f"no operator named '{name}'")
        return _operator(row)

    def by_id(self, operator_id: str) -> Operator | None:
        with self.db.read() as conn:
            row = conn.execute(_SELECT.where(operators.c.id == operator_id)).first()
        return None if row is None else _operator(row)

    def disable(self, name: str, *, actor: str = audit.OPERATOR) -> Operator:
        """The operator can no longer log in, and its console sessions end (their rows go)."""
        operator = self.get(name)
        with self.db.write() as conn:
            conn.execute(sa.update(operators).where(operators.c.id == operator.id).values(disabled=True))
            conn.execute(sa.delete(console_sessions).where(console_sessions.c.operator_id == operator.id))
            _audit(conn, actor, "disable", operator.id, ["disabled"])
        return self.get(name)

    def set_password(self, name: str, password: str, *, actor: str = audit.OPERATOR) -> Operator:
        """A new password; every console session opened with the old one ends (their rows go)."""
        check_password(password)
        operator = self.get(name)
        hashed = _hasher.hash(password)
        with self.db.write() as conn:
            conn.execute(sa.update(operators).where(operators.c.id == operator.id).values(password_hash=hashed))
            conn.execute(sa.delete(console_sessions).where(console_sessions.c.operator_id == operator.id))
            _audit(conn, actor, "update", operator.id, ["password"])
        return self.get(name)

    def verify(self, name: str, password: str) -> Operator | None:
        """The enabled operator ``name`` if ``password`` is theirs, else ``None``. Always costs one
        argon2 verification, whether the name exists, is disabled, or the password is too long."""
        with self.db.read() as conn:
            row = conn.execute(_SELECT.where(operators.c.name == name)).first()
        operator = None if row is None else _operator(row)
        hashed = operator.password_hash if operator is not None else _dummy()
        try:
            _hasher.verify(hashed, password[:MAX_PASSWORD_LENGTH])
        except (VerifyMismatchError, VerificationError, InvalidHashError):
            return None
        if operator is None or operator.disabled or len(password) > MAX_PASSWORD_LENGTH:
            return None
        if _hasher.check_needs_rehash(operator.password_hash):
            # Parameters raised since the hash was made (a newer argon2-cffi): upgrade it now, while
            # the password is at hand. Sessions bound to the old hash end; this one is made after.
            with self.db.write() as conn:
                conn.execute(sa.update(operators).where(operators.c.id == operator.id).values(
                    password_hash=_hasher.hash(password)))
            return self.by_id(operator.id)
        return operator


def record_event(conn: sa.Connection, actor: str, action: str, resource_type: str, resource_id: str,
                 attributes: list[str] | None = None, tenant_id: str = NO_TENANT) -> None:
    """An audit event of the console: of the service itself (no tenant: a login, logout or job
    action) or of one tenant (a credential created in the console)."""
    audit.record(conn, audit.Event(tenant_id, now_text(), actor[:120], action[:16], resource_type, resource_id[:36],
                                   None, attributes or []))


def _audit(conn: sa.Connection, actor: str, action: str, operator_id: str, attributes: list[str]) -> None:
    record_event(conn, actor, action, "Operator", operator_id, attributes)


#: An operator with its tenant's name (a tenant admin's; NULL for the others).
_SELECT = sa.select(operators, tenants.c.name.label("tenant_name")).select_from(
    operators.outerjoin(tenants, tenants.c.id == operators.c.tenant_id))


def _operator(row: Any) -> Operator:
    return Operator(id=row.id, name=row.name, role=row.role, created_at=row.created_at, disabled=bool(row.disabled),
                    password_hash=row.password_hash, tenant_id=row.tenant_id, tenant=row.tenant_name)
