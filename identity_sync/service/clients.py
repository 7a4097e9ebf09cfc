"""OAuth clients (create, list, rotate, revoke), the token endpoint's decision and per-tenant trust
in Entra-issued tokens. Turning a presented credential into a principal is
``auth/authenticator.py``'s (one authenticator for every kind of credential)."""

from __future__ import annotations

import json
import secrets
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import structlog

from identity_sync.auth import federation as wif
from identity_sync.auth import jwt as jwtv
from identity_sync.auth import oauth, tokens
from identity_sync.auth.tokens import ALL_SCOPES, PROVISIONING
from identity_sync.clock import ago_text, now_text
from identity_sync.config import Settings
from identity_sync.service.tenants import TenantError
from identity_sync.storage import clients as store
from identity_sync.storage import federation as fed_store
from identity_sync.storage import tenants as tenant_store
from identity_sync.storage.db import Database

log = structlog.get_logger("identity_sync.auth")
#: Scope names a token request may use, and what they grant. ``scim`` is shorthand for
#: provisioning (read + write), handy in Entra's optional "OAuth 2.0 scopes" field.
SCOPE_ALIASES = {"scim": PROVISIONING, **{s: frozenset({s}) for s in ALL_SCOPES}}

def parse_scopes(text: str | None, default: frozenset[str] = PROVISIONING) -> frozenset[str]:
    """``"scim:read scim:write"`` → the scopes; unknown names raise :class:`ValueError`."""
    if text is None or not text.strip():
        return default
    granted: set[str] = set()
    for name in text.replace(",", " ").split():
        if name not in SCOPE_ALIASES:
            raise ValueError(f"Unknown scope '{name}' (known: scim, {', '.join(sorted(ALL_SCOPES))}).")
        granted |= SCOPE_ALIASES[name]
    return frozenset(granted)


@dataclass(frozen=True, slots=True)
class IssuedClient:
    tenant: str
    client_id: str
    client_secret: str
    secret_id: str
    secret_expires_at: str
    scopes: frozenset[str]


@dataclass(frozen=True, slots=True)
class FederatedClient:
    """A client that authenticates with Entra-signed assertions (no secret)."""

    tenant: str
    client_id: str
    credential_id: str
    issuer: str
    subject: str
    audience: str
    entra_tenant_id: str
    jwks_url: str | None
    scopes: frozenset[str]


#: Federated credentials do not expire on their own (there is no secret to leak); revoke them.
_NEVER = "9999-12-31T23:59:59.999999Z"


@dataclass(frozen=True, slots=True)
class AccessToken:
    access_token: str
    expires_in: int
    scope: str


class ClientService:
    """Operator actions on OAuth clients and Entra trust, and the token endpoint's logic."""

    def __init__(self, db: Database, settings: Settings, keys: oauth.SigningKeys | None = None,
                 jwks: wif.JwksSource | None = None) -> None:
        self.db = db
        self.settings = settings
        self.keys = keys or oauth.signing_keys_for(settings, db)
        self.federation_keys = jwks or wif.JwksSource()
        self.assertion_cache = jwtv.VerifiedCache(1024)

    # -- clients ---------------------------------------------------------------------------------

    def create_client(self, tenant_name: str, scopes: frozenset[str] = PROVISIONING,
                      secret_days: int | None = None) -> IssuedClient:
        client_id = oauth.new_client_id()
        with self.db.write() as conn:
            tenant = self._tenant(conn, tenant_name)
            store.insert_client(conn, client_id, tenant["id"], " ".join(sorted(scopes)), now_text())
            return self._add_secret(conn, tenant_name, tenant["id"], client_id, scopes, secret_days)

    def rotate_secret(self, tenant_name: str, client_id: str, secret_days: int | None = None) -> IssuedClient:
        """Add another live secret; the existing ones keep working until they expire or are revoked."""
        with self.db.write() as conn:
            client = self._client(conn, tenant_name, client_id)
            if client["revoked_at"] is not None:
                raise TenantError(f"Client '{client_id}' is revoked.")
            if fed_store.federated_for_client(conn, client["tenant_id"], client_id) is not None:
                raise TenantError(f"Client '{client_id}' is federated: it has no secrets to rotate.")
            return self._add_secret(conn, tenant_name, client["tenant_id"], client_id,
                                    frozenset(client["scopes"].split()), secret_days)

    def _add_secret(self, conn: Any, tenant_name: str, tenant_id: str, client_id: str, scopes: frozenset[str],
                    secret_days: int | None) -> IssuedClient:
        days = secret_days if secret_days is not None else self.settings.client_secret_lifetime_days
        if not 1 <= days <= 1095:
            raise TenantError("A client secret lives 1 to 1095 days (3 years).")
        secret, secret_id = oauth.new_client_secret(), tokens.new_credential_id()
        expires_at = ago_text(-timedelta(days=days))
        store.insert_secret(conn, tenant_id, secret_id, client_id, tokens.digest(secret), now_text(), expires_at)
        return IssuedClient(tenant_name, client_id, secret, secret_id, expires_at, scopes)

    def create_federated_client(self, tenant_name: str, *, issuer: str, subject: str, audience: str,
                                jwks: dict[str, Any] | None = None, jwks_url: str | None = None,
                                scopes: frozenset[str] = PROVISIONING) -> FederatedClient:
        """A client whose only credential is workload identity federation: assertions signed by
        the customer's Entra for ``subject``, issued by ``issuer``, for ``audience``."""
        try:
            entra_tenant_id = wif.tenant_of_issuer(issuer)
            wif.application_of(audience)
            subject = wif.check_subject(subject)
        except wif.FederationConfigError as exc:
            raise TenantError(str(exc)) from None
        self._check_jwks(jwks, jwks_url)
        client_id, credential_id, now = oauth.new_client_id(), tokens.new_credential_id(), now_text()
        with self.db.write() as conn:
            tenant = self._tenant(conn, tenant_name)
            store.insert_client(conn, client_id, tenant["id"], " ".join(sorted(scopes)), now)
            # A digest no secret can have (``:`` is not hex): the row only carries the credential's
            # id, expiry, revocation and last use.
            store.insert_secret(conn, tenant["id"], credential_id, client_id, "wif:" + secrets.token_hex(30), now,
                                _NEVER)
            fed_store.insert_federated(conn, {
                "id": credential_id, "tenant_id": tenant["id"], "client_id": client_id, "issuer": issuer,
                "subject": subject,
                "audience": audience.strip(), "entra_tenant_id": entra_tenant_id,
                "jwks": json.dumps(jwks) if jwks is not None else None, "jwks_url": jwks_url, "created_at": now})
        return FederatedClient(tenant_name, client_id, credential_id, issuer, subject, audience.strip(),
                               entra_tenant_id, jwks_url, scopes)

    def list_clients(self, tenant_name: str) -> list[dict[str, Any]]:
        with self.db.read() as conn:
            tenant_id = self._tenant(conn, tenant_name)["id"]
            clients = store.list_clients(conn, tenant_id)
            federated = fed_store.federated_of_tenant(conn, tenant_id)
        for client in clients:
            client["federated"] = federated.get(client["id"])
        return clients

    def revoke(self, tenant_name: str, client_id: str, secret_id: str | None = None) -> None:
        """Revoke a whole client, or one of its secrets; tokens issued with it stop working at once."""
        with self.db.write() as conn:
            tenant_id = self._client(conn, tenant_name, client_id)["tenant_id"]
            done = (store.revoke_secret(conn, tenant_id, client_id, secret_id, now_text()) if secret_id
                    else store.revoke_client(conn, tenant_id, client_id, now_text()))
        if not done:
            raise TenantError(f"Nothing live to revoke: client '{client_id}'" +
                              (f", secret '{secret_id}'." if secret_id else "."))

    # -- token endpoint --------------------------------------------------------------------------

    def issue_token(self, tenant_name: str, request: oauth.TokenRequest) -> AccessToken:
        """Authenticate the client against its live secrets (constant-time, every secret compared)
        and sign an access token bound to this tenant."""
        if request.client_assertion is not None:
            return self._issue_federated(tenant_name, request, request.client_assertion)
        presented = tokens.digest(request.client_secret)
        with self.db.read() as conn:
            # The client is looked for in the URL's tenant only (every statement names its tenant).
            tenant_id = tenant_store.tenant_id_named(conn, tenant_name, self.db.tenant_ids)
            rows = store.secrets_for_token(conn, tenant_id, request.client_id) \
                if tenant_id is not None and len(request.client_id) <= 40 else []
        now = now_text()
        match = None
        for row in rows:
            if tokens.same_digest(row["secret_hash"], presented) and row["revoked_at"] is None \
                    and row["expires_at"] > now:
                match = row
        if match is None or match["client_revoked_at"] is not None or match["tenant_status"] != "active" \
                or match["tenant_name"] != tenant_name:
            raise oauth.TokenRequestError("invalid_client", "Client authentication failed.", 401)
        return self._sign(tenant_name, request, match["tenant_id"], match["secret_id"], match["scopes"], now)

    def _issue_federated(self, tenant_name: str, request: oauth.TokenRequest, assertion: str) -> AccessToken:
        """Workload identity federation: the client authenticates with an assertion its federated
        credential accepts (:func:`identity_sync.auth.federation.check_assertion`)."""
        with self.db.read() as conn:
            tenant_id = tenant_store.tenant_id_named(conn, tenant_name, self.db.tenant_ids)
            row = fed_store.federated_for_client(conn, tenant_id, request.client_id) \
                if tenant_id is not None and len(request.client_id) <= 40 else None
        now = now_text()
        try:
            if row is None or row["client_revoked_at"] is not None or row["revoked_at"] is not None \
                    or row["expires_at"] <= now or row["tenant_status"] != "active" \
                    or row["tenant_name"] != tenant_name:
                raise jwtv.InvalidToken("client, credential or tenant")
            credential = wif.FederatedCredential(
                row["id"], row["client_id"], row["issuer"], row["subject"], row["audience"],
                row["entra_tenant_id"], row["jwks"], row["jwks_url"], row["created_at"])
            wif.check_assertion(assertion, credential, key_for_kid=self.federation_keys.key_for(credential),
                                leeway=self.settings.jwt_leeway_seconds, cache=self.assertion_cache)
        except (jwtv.InvalidToken, ValueError) as exc:
            log.debug("oauth.assertion_refused", tenant=tenant_name, reason=str(exc))
            raise oauth.TokenRequestError("invalid_client", "Client authentication failed.", 401) from None
        return self._sign(tenant_name, request, row["tenant_id"], row["id"], row["scopes"], now)

    def _sign(self, tenant_name: str, request: oauth.TokenRequest, tenant_id: str, secret_id: str,
              client_scopes: str, now: str) -> AccessToken:
        allowed = frozenset(client_scopes.split())
        try:
            wanted = parse_scopes(request.scope, default=allowed)
        except ValueError:
            raise oauth.TokenRequestError("invalid_scope", "The requested scope is unknown.") from None
        if not wanted <= allowed:
            raise oauth.TokenRequestError("invalid_scope", "The requested scope exceeds what the client may use.")
        lifetime = self.settings.oauth_token_lifetime_seconds
        token = oauth.issue_access_token(self.keys, issuer=self.settings.oauth_issuer, tenant_id=tenant_id,
                                         client_id=request.client_id, secret_id=secret_id, scopes=wanted,
                                         lifetime=lifetime)
        with self.db.write() as conn:
            store.touch_secret(conn, tenant_id, secret_id, now)
        log.info("oauth.token_issued", tenant=tenant_name, client_id=request.client_id,
                 secret_id=secret_id, expires_in=lifetime)
        return AccessToken(token, lifetime, " ".join(sorted(wanted)))

    # -- Entra trust -----------------------------------------------------------------------------

    def set_entra_trust(self, tenant_name: str, entra_tenant_id: str, audience: str | None = None,
                        jwks: dict[str, Any] | None = None, jwks_url: str | None = None) -> None:
        self._check_jwks(jwks, jwks_url)
        if not entra_tenant_id or "/" in entra_tenant_id or len(entra_tenant_id) > 36:
            raise TenantError("The Entra tenant id is the directory's GUID.")
        with self.db.write() as conn:
            tenant = self._tenant(conn, tenant_name)
            store.set_entra_trust(conn, tenant["id"], {
                "entra_tenant_id": entra_tenant_id, "audience": audience or jwtv.ENTRA_DEFAULT_AUDIENCE,
                "jwks": json.dumps(jwks) if jwks is not None else None, "jwks_url": jwks_url,
                "updated_at": now_text()})

    def get_entra_trust(self, tenant_name: str) -> dict[str, Any] | None:
        with self.db.read() as conn:
            return store.get_entra_trust(conn, self._tenant(conn, tenant_name)["id"])

    def clear_entra_trust(self, tenant_name: str) -> bool:
        with self.db.write() as conn:
            return store.clear_entra_trust(conn, self._tenant(conn, tenant_name)["id"])

    # -- helpers ---------------------------------------------------------------------------------

    @staticmethod
    def _check_jwks(jwks: dict[str, Any] | None, jwks_url: str | None) -> None:
        if (jwks is None) == (jwks_url is None):
            raise TenantError("Give exactly one of a JWKS file or a JWKS URL.")
        leaked = jwtv.private_members(jwks) if jwks is not None else []
        if leaked:
            # Refused, not stripped: Entra publishes public keys only, so a file with private
            # members is the wrong file, and a private key that reached a command line should be
            # known (and replaced), not silently half-stored.
            raise TenantError("The JWKS holds private key material (" + "; ".join(leaked[:5]) + "); give the "
                              "public keys only (e.g. Entra's .../discovery/v2.0/keys). Nothing was stored.")
        if jwks is not None and not jwtv.keys_from_jwks(jwks):
            raise TenantError("The JWKS holds no usable RS256 signing key with a 'kid'.")
        if jwks_url is not None and (not jwks_url.startswith("https://") or len(jwks_url) > 500):
            raise TenantError("The JWKS URL must be https://.")

    def _tenant(self, conn: Any, name: str) -> dict[str, Any]:
        tenant = tenant_store.get_tenant(conn, name)
        if tenant is None:
            raise TenantError(f"No tenant named '{name}'.")
        return tenant

    def _client(self, conn: Any, tenant_name: str, client_id: str) -> dict[str, Any]:
        client = store.get_client(conn, self._tenant(conn, tenant_name)["id"], client_id)
        if client is None:
            raise TenantError(f"No client '{client_id}' in tenant '{tenant_name}'.")
        return client


#: The refusal reasons of tokens that are JWTs (docs/observability.md), by the start of the
#: :class:`~identity_sync.auth.jwt.InvalidToken` message; anything else is ``malformed``.
