"""Workload identity federation (RFC 7523 client assertions) as Microsoft Entra performs it.

Entra authenticates to the token endpoint without a secret: it sends
``client_assertion_type=urn:ietf:params:oauth:client-assertion-type:jwt-bearer`` and
``client_assertion=<JWT Entra signed for its workload identity>``. A *federated credential* of an
OAuth client says which assertions stand for that client: issuer
(``https://login.microsoftonline.com/<tid>/v2.0``), subject (the workload identity's object id),
audience (``api://<app id>/.default``, or the bare app id GUID Entra actually puts in v2 tokens:
both are accepted), and the keys (a JWKS file kept in the database, or Entra's JWKS URL).

Checks, on top of :func:`identity_sync.auth.jwt.verify` (RS256 only, key by ``kid``, ``exp``
required, ``exp``/``nbf`` with the usual leeway): ``iss`` exactly the configured issuer, ``sub``
exactly the configured subject, ``aud`` the configured application, and ``tid`` present and equal
to the Entra tenant named by the issuer.

No replay cache: Entra's assertions are its own access tokens, which carry ``uti`` rather than
``jti`` and which Entra reuses until they expire (retries, several token requests per hour), so
one-time use would break Entra without adding much — an assertion is bound to one audience,
subject and issuer and lives about an hour.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import jwt
import structlog

from identity_sync.auth import jwt as jwtv
from identity_sync.auth.jwks import JWKS_TTL_SECONDS, REFETCH_SECONDS, JwksCache

__all__ = ["JWKS_TTL_SECONDS", "REFETCH_SECONDS", "JwksSource", "check_assertion"]

log = structlog.get_logger("identity_sync.auth")

JWT_BEARER = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
_GUID = r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}"
_ISSUERS = (
    re.compile(rf"https://login\.microsoftonline\.com/(?P<tid>{_GUID})/v2\.0"),
    re.compile(rf"https://sts\.windows\.net/(?P<tid>{_GUID})/"),
)
_AUDIENCE = re.compile(rf"(?:api://)?(?P<app>{_GUID}|[^/\s]+)(?:/\.default)?")


class FederationConfigError(ValueError):
    """An operator's federated-credential settings are unusable (shown to the operator)."""


def tenant_of_issuer(issuer: str) -> str:
    """The Entra tenant id in an Entra issuer URL (v2 ``login.microsoftonline.com/<tid>/v2.0`` or
    v1 ``sts.windows.net/<tid>/``); anything else is refused."""
    for pattern in _ISSUERS:
        match = pattern.fullmatch(issuer)
        if match:
            return match["tid"].lower()
    raise FederationConfigError("The issuer must be https://login.microsoftonline.com/<tenant id>/v2.0 "
                                "(or https://sts.windows.net/<tenant id>/).")


def application_of(audience: str) -> str:
    """``api://<app>/.default``, ``api://<app>`` and ``<app>`` all name application ``<app>``."""
    match = _AUDIENCE.fullmatch(audience.strip())
    if not match or len(audience) > 200:
        raise FederationConfigError("The audience is api://<application id>/.default or the application id.")
    return match["app"].lower()


def check_subject(subject: str) -> str:
    subject = subject.strip()
    if not subject or len(subject) > 200 or any(c.isspace() for c in subject):
        raise FederationConfigError("The subject is the workload identity's object id.")
    return subject


@dataclass(frozen=True, slots=True)
class FederatedCredential:
    """One client's federated credential, as stored."""

    credential_id: str
    client_id: str
    issuer: str
    subject: str
    audience: str
    entra_tenant_id: str
    jwks: str | None
    jwks_url: str | None
    created_at: str


def check_assertion(token: str, credential: FederatedCredential, *, key_for_kid: Callable[[str], jwt.PyJWK | None],
                    leeway: int, cache: jwtv.VerifiedCache) -> dict[str, Any]:
    """The claims of a client assertion that stands for ``credential``'s client, or
    :class:`~identity_sync.auth.jwt.InvalidToken`."""
    if not jwtv.looks_like_jwt(token):
        raise jwtv.InvalidToken("not a JWT")
    claims = jwtv.verify(token, keyset=f"wif:{credential.credential_id}:{credential.created_at}",
                         key_for_kid=key_for_kid, issuers=(credential.issuer,), audience=None,
                         leeway=leeway, cache=cache)
    aud = claims.get("aud")
    audiences = aud if isinstance(aud, list) else [aud]
    wanted = application_of(credential.audience)
    if not any(isinstance(a, str) and _application_or_none(a) == wanted for a in audiences):
        raise jwtv.InvalidToken("audience")
    if claims.get("sub") != credential.subject:
        raise jwtv.InvalidToken("subject")
    tid = claims.get("tid")
    if not isinstance(tid, str) or tid.lower() != credential.entra_tenant_id:
        raise jwtv.InvalidToken("tid")
    return claims


def _application_or_none(audience: str) -> str | None:
    try:
        return application_of(audience)
    except FederationConfigError:
        return None


class JwksSource(JwksCache):
    """The process's one JWKS cache (auth/jwks.py), with the federated credential's view of it:
    its stored JWKS parsed once per credential version, or its JWKS URL."""

    def key_for(self, credential: FederatedCredential) -> Callable[[str], jwt.PyJWK | None]:
        return self.key_source(version=f"wif:{credential.credential_id}:{credential.created_at}",
                               document=credential.jwks, url=credential.jwks_url)
