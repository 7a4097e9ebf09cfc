"""Which scope a request needs. Reading (GET, HEAD, and the read-only ``POST /.search``) needs
``scim:read``; every other SCIM method needs ``scim:write``; operator routes need ``admin``.
A valid credential without the scope gets 403, not 401: it is authenticated, just not allowed."""

from __future__ import annotations

from identity_sync.auth.tokens import SCIM_READ, SCIM_WRITE, Principal
from identity_sync.errors import Forbidden

_READ_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


def required_scope(method: str, path: str) -> str:
    if method.upper() in _READ_METHODS or (method.upper() == "POST" and path.rstrip("/").endswith("/.search")):
        return SCIM_READ
    return SCIM_WRITE


def require(principal: Principal, scope: str) -> Principal:
    if scope not in principal.scopes:
        raise Forbidden(f"The credential lacks the '{scope}' scope.")
    return principal
