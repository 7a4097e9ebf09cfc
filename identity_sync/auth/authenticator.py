"""The one authenticator (issue 11, item 7): whatever credential a request presents — a static
bearer token, one of our OAuth access tokens, a token Microsoft Entra issued — it becomes a
:class:`~identity_sync.auth.tokens.Principal` here, or a 401 that names why (logged and counted,
never answered: every failure gets the same answer, so a caller learns nothing).

Verified credentials are cached (issue 11, item 6: the credential query was ~22 % of a lookup).
What a token's validity depends on in the database — the credential row of a static token, the
client and secret rows of an access token, a tenant's Entra trust — is remembered together with
the *authentication epoch* read just before it (``Database.auth_epoch``); every transaction that
may end a credential's validity (revocation, a tenant disabled, an Entra trust changed) changes
the epoch when it commits, and a cached entry is used only while the epoch is the one it was read
under. So a revoked token is refused by every worker of every node on its next request, and the
cost of a cached check is one ``stat`` (SQLite) or one single-row read (PostgreSQL). Everything
that depends on time (expiry) and on the URL called (the tenant) is checked again on every
request from the cached row; a signature is checked once per token (``jwt.VerifiedCache``).
Unknown tokens are never cached (random tokens cannot fill the cache).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Any

import structlog

from identity_sync.auth import jwt as jwtv
from identity_sync.auth import oauth, tokens
from identity_sync.auth.jwks import JwksCache
from identity_sync.auth.tokens import PROVISIONING, Principal
from identity_sync.background import BackgroundWriter
from identity_sync.clock import now_text, parse_timestamp
from identity_sync.config import Settings
from identity_sync.errors import Unauthorized
from identity_sync.storage import clients as client_store
from identity_sync.storage import tenants as tenant_store
from identity_sync.storage.db import Database

log = structlog.get_logger("identity_sync.auth")

#: ``last_used_at`` of a static token is written at most this often (a write per request would
#: make every lookup a write), by a background thread (:class:`~identity_sync.background.BackgroundWriter`):
#: on SQLite a write waits for the commit in progress, which after another tenant's 1,000-operation
#: PATCH took up to 0.8 s (benchmarks/README.md); a lookup must not wait for a timestamp.
LAST_USED_RESOLUTION = timedelta(seconds=60)
#: Uses waiting to be recorded; more are dropped (a diagnostic timestamp, not the request's data).
USES_QUEUED = 1_000
#: Cached credentials kept at most per process (a tenant has a few; 10,000 tenants fit).
CACHE_SIZE = 65_536

_JWT_REASONS = {
    "expired": "expired", "secret expired": "expired", "not yet valid": "not_yet_valid",
    "key withdrawn": "bad_signature", "unknown kid": "bad_signature", "signature": "bad_signature",
    "algorithm not allowed or no kid": "bad_signature", "issuer": "wrong_issuer", "tid": "wrong_issuer",
    "audience": "wrong_audience", "unknown client": "unknown", "revoked": "revoked",
    "tenant disabled": "tenant_disabled", "wrong tenant": "wrong_tenant", "no Entra trust for this tenant": "no_trust",
}


class CredentialCache:
    """key → (epoch, row): rows read from the database, valid while the epoch is unchanged."""

    def __init__(self, size: int = CACHE_SIZE) -> None:
        self.size = size
        self._items: dict[Any, tuple[object, dict[str, Any]]] = {}

    def get(self, key: Any, epoch: object) -> dict[str, Any] | None:
        item = self._items.get(key)
        return item[1] if item is not None and item[0] == epoch else None

    def put(self, key: Any, epoch: object, row: dict[str, Any]) -> None:
        if len(self._items) >= self.size:
            self._items.clear()  # rare (a cache this size holds every live credential): start over
        self._items[key] = (epoch, row)


class Authenticator:
    """Every request's credential check, whatever the kind of credential."""

    def __init__(self, db: Database, settings: Settings | None = None, keys: oauth.SigningKeys | None = None,
                 jwks: JwksCache | None = None) -> None:
        self.db = db
        self._settings = settings
        self._keys = keys
        self.jwks = jwks or JwksCache()
        self.verified = jwtv.VerifiedCache()
        self.credentials = CredentialCache()
        #: Static tokens' uses, written in the background (LAST_USED_RESOLUTION); flushed at shutdown.
        self.uses: BackgroundWriter[tuple[str, str, str]] = BackgroundWriter(
            self._record_use, "credential-uses-writer", USES_QUEUED)

    @property
    def settings(self) -> Settings:
        if self._settings is None:  # made on first use: static tokens need none
            self._settings = Settings()
        return self._settings

    @property
    def keys(self) -> oauth.SigningKeys:
        if self._keys is None:  # made on first use: static tokens never need the signing keys
            self._keys = oauth.signing_keys_for(self.settings, self.db)
        return self._keys

    def authenticate(self, authorization: str | None, tenant_name: str) -> Principal:
        token = tokens.bearer_from_header(authorization)
        if token is None:
            raise Unauthorized(reason="malformed" if authorization and authorization.strip() else "missing")
        if not jwtv.looks_like_jwt(token):
            return self.static_token(token, tenant_name)
        try:
            # A token seen before skips even the unverified decoding used to route it.
            if self.verified.get("self", token) is not None or \
                    jwtv.peek_claims(token).get("iss") == self.settings.oauth_issuer:
                return self._access_token(token, tenant_name)
            return self._entra_token(token, tenant_name)
        except (jwtv.InvalidToken, ValueError) as exc:
            log.debug("auth.refused", tenant=tenant_name, reason=str(exc))
            reason = _JWT_REASONS.get(str(exc).split(":")[0], "malformed")
            raise Unauthorized("The bearer token is not valid for this Tenant URL.", reason=reason) from None

    # -- static bearer tokens ----------------------------------------------------------------------

    def static_token(self, token: str, tenant_name: str) -> Principal:
        token_digest = tokens.digest(token)
        # Looked for among the URL's tenant's credentials only: every statement on a tenant's rows
        # names the tenant (docs/deployment.md). A token of another tenant is unknown here.
        tenant_id = self._tenant_id(tenant_name)
        row = None if tenant_id is None else self._cached(
            ("static", tenant_id, token_digest),
            lambda conn: tenant_store.credential_by_hash(conn, tenant_id, token_digest))
        now = now_text()
        refused = _refusal(row, token_digest, tenant_name, now)
        if refused is not None:
            raise Unauthorized("The bearer token is not valid for this Tenant URL.", reason=refused,
                               credential_id=row["id"] if refused != "unknown" and row is not None else None)
        assert row is not None
        last_used = row["last_used_at"]
        if last_used is None or parse_timestamp(now) - parse_timestamp(last_used) > LAST_USED_RESOLUTION:
            row["last_used_at"] = now  # the cached row too: one write per resolution, not per request
            if not self.uses.submit((row["tenant_id"], row["id"], now)):
                log.info("credential.use_not_recorded", credential_id=row["id"], reason="queue full")
        return Principal(row["tenant_id"], row["tenant_name"], row["id"])

    def _record_use(self, use: tuple[str, str, str]) -> None:
        """The background writer's: never raises (a failure is logged, and changes no answer)."""
        tenant_id, credential_id, at = use
        try:
            with self.db.write() as conn:
                tenant_store.touch_credential(conn, tenant_id, credential_id, at)
        except Exception:
            log.warning("credential.use_not_recorded", credential_id=credential_id, exc_info=True)

    # -- our OAuth access tokens -------------------------------------------------------------------

    def _access_token(self, token: str, tenant_name: str) -> Principal:
        # ``aud`` must name the tenant whose URL was called: checked below, once the tenant is known.
        claims = jwtv.verify(token, keyset="self", key_for_kid=self.keys.public_key,
                             issuers=(self.settings.oauth_issuer,), audience=None,
                             leeway=self.settings.jwt_leeway_seconds, cache=self.verified)
        client_id, secret_id = claims.get("sub"), claims.get("sid")
        if not isinstance(client_id, str) or not isinstance(secret_id, str):
            raise jwtv.InvalidToken("claims")
        # The token names its tenant (``aud``): one of another tenant is refused before any read,
        # and the state is read in the URL's tenant only (docs/deployment.md).
        tenant_id = self._tenant_id(tenant_name)
        if tenant_id is None or claims.get("aud") != oauth.audience_for(tenant_id):
            raise jwtv.InvalidToken("wrong tenant")
        row = self._cached(("oauth", tenant_id, client_id, secret_id),
                           lambda conn: client_store.access_token_state(conn, tenant_id, client_id, secret_id))
        # One check after the other (each names why, for the log and the metrics): any is a 401.
        if row is None:
            raise jwtv.InvalidToken("unknown client")
        if row["client_revoked_at"] is not None or row["secret_revoked_at"] is not None:
            raise jwtv.InvalidToken("revoked")
        if row["secret_expires_at"] <= now_text():
            raise jwtv.InvalidToken("secret expired")
        if row["tenant_status"] != "active":
            raise jwtv.InvalidToken("tenant disabled")
        if row["tenant_name"] != tenant_name:
            raise jwtv.InvalidToken("wrong tenant")
        if claims.get("aud") != oauth.audience_for(row["tenant_id"]):
            raise jwtv.InvalidToken("audience")
        scopes = frozenset(str(claims.get("scope", "")).split()) & frozenset(row["scopes"].split())
        return Principal(row["tenant_id"], row["tenant_name"], f"{client_id}/{secret_id}", scopes)

    # -- tokens Microsoft Entra issued -------------------------------------------------------------

    def _entra_token(self, token: str, tenant_name: str) -> Principal:
        tenant_id = self._tenant_id(tenant_name)
        trust = None if tenant_id is None else self._cached(
            ("entra", tenant_id), lambda conn: client_store.entra_trust_for(conn, tenant_id))
        if trust is None:
            raise jwtv.InvalidToken("no Entra trust for this tenant")
        if trust["tenant_status"] != "active":
            raise jwtv.InvalidToken("tenant disabled")
        tid = trust["entra_tenant_id"]
        keyset = f"entra:{trust['tenant_id']}:{trust['updated_at']}"
        claims = jwtv.verify(
            token, keyset=keyset,
            key_for_kid=self.jwks.key_source(version=keyset, document=trust["jwks"], url=trust["jwks_url"]),
            issuers=(f"https://sts.windows.net/{tid}/", f"https://login.microsoftonline.com/{tid}/v2.0"),
            audience=trust["audience"], leeway=self.settings.jwt_leeway_seconds, cache=self.verified)
        if claims.get("tid") != tid:
            raise jwtv.InvalidToken("tid")
        return Principal(trust["tenant_id"], trust["tenant_name"], f"entra:{tid}", PROVISIONING)

    # -- the cache ---------------------------------------------------------------------------------

    def _tenant_id(self, tenant_name: str) -> str | None:
        """The id of the URL's tenant (``None``: none), remembered per process by the database
        (a tenant's name never changes owner: storage/tenants.py ``tenant_id_named``)."""
        known = self.db.tenant_ids.get(tenant_name)
        if known is not None:
            return known
        with self.db.fast_read() as conn:
            return tenant_store.tenant_id_named(conn, tenant_name, self.db.tenant_ids)

    def _cached(self, key: Any, read: Callable[[Any], dict[str, Any] | None]) -> dict[str, Any] | None:
        """The row ``read`` returns, from the cache while the authentication epoch is unchanged.
        The epoch is read *before* the row: a row read meanwhile is filed under the older epoch,
        which the change has already replaced."""
        epoch = self.db.auth_epoch()
        row = self.credentials.get(key, epoch)
        if row is None:
            with self.db.fast_read() as conn:
                found = read(conn)
            if found is None:
                return None
            row = dict(found)
            self.credentials.put(key, epoch, row)
        return row


def _refusal(row: Any, token_digest: str, tenant_name: str, now: str) -> str | None:
    """Why a static token is refused (``None``: it is not), the checks in their order."""
    if row is None or not tokens.same_digest(row["secret_hash"], token_digest):
        return "unknown"
    if row["revoked_at"] is not None:
        return "revoked"
    if row["expires_at"] is not None and row["expires_at"] <= now:
        return "expired"
    if row["tenant_status"] != "active":
        return "tenant_disabled"
    if row["tenant_name"] != tenant_name:
        return "wrong_tenant"
    return None
