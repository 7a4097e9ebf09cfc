"""Static bearer tokens: generation, digest, and the checks a presented token must pass.

Tokens are ``idsync_`` + 43 URL-safe characters (256 random bits). Only their SHA-256 digest is
stored; lookup is by digest, and the digests are compared once more with
:func:`hmac.compare_digest` so that no code path compares secrets with ``==``.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass

TOKEN_PREFIX = "idsync_"

#: Scopes (docs/security.md). Provisioning is read + write; operator actions are a scope of their
#: own that no provisioning credential holds unless it was explicitly granted.
SCIM_READ = "scim:read"
SCIM_WRITE = "scim:write"
ADMIN = "admin"
ALL_SCOPES = frozenset({SCIM_READ, SCIM_WRITE, ADMIN})
PROVISIONING = frozenset({SCIM_READ, SCIM_WRITE})


@dataclass(frozen=True, slots=True)
class Principal:
    """Who is calling: the only thing request handlers learn about a credential."""

    tenant_id: str
    tenant_name: str
    credential_id: str
    #: What the credential may do; static bearer tokens are provisioning credentials.
    scopes: frozenset[str] = PROVISIONING


def new_token() -> str:
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


def new_credential_id() -> str:
    return secrets.token_hex(6)


def digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def same_digest(a: str, b: str) -> bool:
    return hmac.compare_digest(a.encode(), b.encode())


def bearer_from_header(header: str | None) -> str | None:
    """The token of an ``Authorization: Bearer <token>`` header, or ``None`` when the header is
    missing, uses another scheme, or carries an empty or oversized token."""
    if not header:
        return None
    scheme, _, token = header.strip().partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token or len(token) > 4096:
        return None
    return token
