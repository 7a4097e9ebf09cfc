"""OAuth 2.0 client credentials (RFC 6749 §4.4): signing keys, access tokens, and the pieces of a
token request (client authentication by HTTP Basic, by form body, or both).

Signing keys are RSA-2048 private keys in PEM files (mode 0600) in one directory, named by their
``kid`` (a UTC timestamp plus random hex, so names sort by age). The newest key signs; every key
in the directory verifies and is published in the JWKS. Rotation without downtime is therefore:
``keys rotate`` adds a key (workers pick it up within :data:`RELOAD_SECONDS`, and at once when
they meet its ``kid``), tokens signed by older keys keep working until they expire, and
``keys prune`` removes keys older than the longest token lifetime. Keys are files, not rows,
because a private key cannot be stored as a hash and must never sit in the database in clear.

With a passphrase (``IDSYNC_SIGNING_KEYS_PASSPHRASE_FILE``), new keys are written encrypted
(PKCS#8 with the best encryption ``cryptography`` offers) and decrypted once per process. Keys
written in clear before the passphrase was set keep working, with a warning, until ``keys
rotate`` then ``keys prune`` replace them.
"""

from __future__ import annotations

import base64
import os
import secrets
import threading
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote_plus

import jwt
import structlog
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from identity_sync.auth.federation import JWT_BEARER
from identity_sync.auth.jwt import public_jwk
from identity_sync.config import Settings
from identity_sync.storage import files

log = structlog.get_logger("identity_sync.auth")

#: How often a process looks for keys added by another process or by the CLI.
RELOAD_SECONDS = 5.0
CLIENT_ID_PREFIX = "idsc_"
CLIENT_SECRET_PREFIX = "idsyncs_"
ALGORITHM = "RS256"


def audience_for(tenant_id: str) -> str:
    """The ``aud`` of access tokens for one tenant: a token is bound to exactly one tenant."""
    return f"urn:identity-sync:tenant:{tenant_id}"


def new_client_id() -> str:
    return CLIENT_ID_PREFIX + secrets.token_hex(12)


def new_client_secret() -> str:
    return CLIENT_SECRET_PREFIX + secrets.token_urlsafe(32)


def _new_kid() -> str:
    # Microseconds: the newest key is the greatest kid, also for two rotations within one second.
    return datetime.now(UTC).strftime("%Y%m%dT%H%M%S%fZ") + "-" + secrets.token_hex(4)


@dataclass(frozen=True, slots=True)
class _Key:
    kid: str
    private: rsa.RSAPrivateKey
    public: jwt.PyJWK
    public_jwk: dict[str, Any]


class SigningKeyError(Exception):
    """A key file that cannot be used: encrypted without a passphrase, a wrong passphrase, damage."""


class SigningKeys:
    """The key directory, cached in memory and re-read when it may have changed."""

    def __init__(self, directory: Path, passphrase: bytes | None = None) -> None:
        self.directory = directory
        self.passphrase = passphrase
        #: Keys found in clear although a passphrase is set (``keys list`` shows them).
        self.unencrypted: set[str] = set()
        self._keys: dict[str, _Key] = {}
        self._loaded_at = 0.0
        self._stamp = -1
        self._lock = threading.Lock()

    # -- reading ---------------------------------------------------------------------------------

    def _reload(self, force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - self._loaded_at < RELOAD_SECONDS:
            return
        with self._lock:
            if not force and now - self._loaded_at < RELOAD_SECONDS:
                return
            stamp = self._directory_stamp()  # before listing: a key written meanwhile changes it again
            keys = {}
            paths = sorted(self.directory.glob("*.pem")) if self.directory.is_dir() else []
            for path in paths:
                known = self._keys.get(path.stem)
                keys[path.stem] = known or self._load(path)
            self._keys = keys
            self._loaded_at = time.monotonic()
            self._stamp = stamp

    def _directory_stamp(self) -> int:
        try:
            return self.directory.stat().st_mtime_ns
        except OSError:
            return 0

    def _load(self, path: Path) -> _Key:
        data = path.read_bytes()
        encrypted = data.lstrip().startswith(b"-----BEGIN ENCRYPTED PRIVATE KEY-----")
        if encrypted and not self.passphrase:
            raise SigningKeyError(f"signing key {path.name} is encrypted: set IDSYNC_SIGNING_KEYS_PASSPHRASE_FILE "
                                  "(or IDSYNC_SIGNING_KEYS_PASSPHRASE)")
        try:
            private = serialization.load_pem_private_key(data, password=self.passphrase if encrypted else None)
        except (ValueError, TypeError):
            raise SigningKeyError(f"signing key {path.name} cannot be read: wrong passphrase or damaged file") from None
        if not isinstance(private, rsa.RSAPrivateKey):
            raise SigningKeyError(f"{path.name} is not an RSA private key")
        if self.passphrase and not encrypted:
            self.unencrypted.add(path.stem)
            log.warning("signing_keys.unencrypted", kid=path.stem,
                        hint="identity-sync keys rotate, then keys prune once tokens signed by it have expired")
        jwk = jwt.algorithms.RSAAlgorithm.to_jwk(private.public_key(), as_dict=True)
        jwk.update({"kid": path.stem, "alg": ALGORITHM, "use": "sig"})
        public = public_jwk(jwk)
        assert public is not None
        return _Key(path.stem, private, public, jwk)

    def public_key(self, kid: str) -> jwt.PyJWK | None:
        """The verification key named ``kid``; an unknown ``kid`` triggers one early re-read (a
        key another worker just created), at most once per second."""
        if kid in self._keys:
            self._reload()
        else:
            # A key another worker just wrote changes the directory: re-read exactly then (a stat
            # is cheap), so forged random kids cannot make every request read the disk.
            self._reload(force=self._directory_stamp() != self._stamp)
        key = self._keys.get(kid)
        return key.public if key else None

    def jwks(self) -> dict[str, Any]:
        self._reload()
        return {"keys": [k.public_jwk for k in self._keys.values()]}

    def kids(self) -> list[str]:
        self._reload(force=True)
        return list(self._keys)

    def current(self) -> _Key:
        """The newest key (created on first use)."""
        self._reload()
        if not self._keys:
            self.rotate()
        return self._keys[max(self._keys)]

    # -- changing --------------------------------------------------------------------------------

    def rotate(self) -> str:
        """Add a new key, which signs from now on; older keys keep verifying."""
        # Read the existing keys first: with a wrong passphrase, fail before writing a key with it.
        self._reload(force=True)
        files.private_directory(self.directory)  # parents too: the data directory is often made here
        kid = _new_kid()
        private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        encryption = (serialization.BestAvailableEncryption(self.passphrase) if self.passphrase
                      else serialization.NoEncryption())
        pem = private.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, encryption)
        # Written under a temporary name and renamed, so no process ever reads half a key.
        tmp = self.directory / f".{kid}.{uuid.uuid4().hex}.tmp"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as handle:
            handle.write(pem)
        tmp.rename(self.directory / f"{kid}.pem")
        self._reload(force=True)
        return kid

    def prune(self, older_than_seconds: int) -> list[str]:
        """Remove keys that no live token can need: all but the newest, when older than
        ``older_than_seconds`` (pass the longest token lifetime plus the leeway)."""
        self._reload(force=True)
        cutoff = time.time() - older_than_seconds
        newest = max(self._keys) if self._keys else None
        removed = []
        for kid in list(self._keys):
            path = self.directory / f"{kid}.pem"
            if kid != newest and path.stat().st_mtime < cutoff:
                path.unlink()
                removed.append(kid)
        self._reload(force=True)
        return removed


def signing_keys_for(settings: Settings) -> SigningKeys:
    """The signing keys as ``settings`` place and protect them."""
    return SigningKeys(settings.resolved_signing_keys_dir(), settings.resolved_signing_keys_passphrase())


def issue_access_token(keys: SigningKeys, *, issuer: str, tenant_id: str, client_id: str, secret_id: str,
                       scopes: frozenset[str], lifetime: int, now: float | None = None) -> str:
    """A signed access token bound to one tenant (``aud``), client (``sub``), secret (``sid``)
    and set of scopes."""
    key = keys.current()
    issued = int(time.time() if now is None else now)
    claims = {
        "iss": issuer, "aud": audience_for(tenant_id), "sub": client_id, "sid": secret_id,
        "scope": " ".join(sorted(scopes)), "iat": issued, "nbf": issued, "exp": issued + lifetime,
        "jti": secrets.token_hex(8),
    }
    return jwt.encode(claims, key.private, algorithm=ALGORITHM, headers={"kid": key.kid, "typ": "at+jwt"})


# -- token requests ------------------------------------------------------------------------------


class TokenRequestError(Exception):
    """An RFC 6749 §5.2 error: ``error`` code, HTTP status, and a description safe to show."""

    def __init__(self, error: str, description: str, status: int = 400) -> None:
        super().__init__(description)
        self.error, self.description, self.status = error, description, status


@dataclass(frozen=True, slots=True)
class TokenRequest:
    client_id: str
    client_secret: str
    scope: str | None
    used_basic: bool
    #: A JWT-bearer client assertion (RFC 7523 §2.2, workload identity federation); when set,
    #: ``client_secret`` is empty and the client authenticates with the assertion alone.
    client_assertion: str | None = None


def parse_token_request(body: bytes, content_type: str | None, authorization: str | None) -> TokenRequest:
    """The client credentials and scope of a token request, accepting the three ways Entra sends
    them: ``Authorization: Basic`` ("Header"), form fields ("Body"), or both at once ("Both",
    which must then agree) — or, for workload identity federation, ``client_id`` with a
    JWT-bearer ``client_assertion`` and no secret (RFC 7523 §2.2)."""
    media_type = (content_type or "").split(";")[0].strip().lower()
    if media_type != "application/x-www-form-urlencoded":
        raise TokenRequestError("invalid_request", "Send the token request as application/x-www-form-urlencoded.")
    try:
        form = parse_qs(body.decode("utf-8"), keep_blank_values=True, strict_parsing=False, max_num_fields=20)
    except (UnicodeDecodeError, ValueError):
        raise TokenRequestError("invalid_request", "The token request body is not a valid form.") from None
    if any(len(values) > 1 for values in form.values()):
        raise TokenRequestError("invalid_request", "A parameter appears more than once.")
    fields = {name: values[0] for name, values in form.items()}
    if any("\x00" in value for value in fields.values()) or "\x00" in (authorization or ""):
        # A NUL cannot reach the database (PostgreSQL refuses it): no client is named so.
        raise TokenRequestError("invalid_client", "Client authentication failed.", 401)
    grant_type = fields.get("grant_type")
    if not grant_type:
        raise TokenRequestError("invalid_request", "grant_type is required.")
    if grant_type != "client_credentials":
        raise TokenRequestError("unsupported_grant_type", "Only the client_credentials grant is supported.")

    scope = fields.get("scope")
    scope = scope.strip() if scope and scope.strip() else None
    if "client_assertion" in fields or "client_assertion_type" in fields:
        return _assertion_request(fields, authorization, scope)
    basic = _basic_credentials(authorization)
    body_id, body_secret = fields.get("client_id"), fields.get("client_secret")
    if basic is not None:
        if (body_id is not None and body_id != basic[0]) or (body_secret is not None and body_secret != basic[1]):
            raise TokenRequestError("invalid_client", "Client authentication failed.", 401)
        client_id, client_secret = basic
    elif body_id and body_secret:
        client_id, client_secret = body_id, body_secret
    else:
        raise TokenRequestError("invalid_client", "Client authentication failed.", 401)
    return TokenRequest(client_id, client_secret, scope, basic is not None)


def _assertion_request(fields: dict[str, str], authorization: str | None, scope: str | None) -> TokenRequest:
    """A client-assertion request: the JWT-bearer type, one assertion, a ``client_id`` (Entra
    always sends it; it names the client whose federated credential applies), and no other
    client authentication (RFC 6749 §2.3: one method per request). Every flaw is the same
    ``invalid_client``."""
    assertion, client_id = fields.get("client_assertion"), fields.get("client_id")
    if (
        fields.get("client_assertion_type") != JWT_BEARER
        or not assertion
        or not client_id
        or "client_secret" in fields
        or authorization
    ):
        raise TokenRequestError("invalid_client", "Client authentication failed.", 401)
    return TokenRequest(client_id, "", scope, False, assertion)


def _basic_credentials(header: str | None) -> tuple[str, str] | None:
    """``(client_id, client_secret)`` of an ``Authorization: Basic`` header (RFC 6749 §2.3.1:
    both form-urlencoded before base64), or ``None`` when there is no such header."""
    if not header:
        return None
    scheme, _, value = header.strip().partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        decoded = base64.b64decode(value.strip(), validate=True).decode("utf-8")
    except (ValueError, UnicodeDecodeError):
        raise TokenRequestError("invalid_client", "Client authentication failed.", 401) from None
    client_id, sep, secret = decoded.partition(":")
    client_id, secret = unquote_plus(client_id), unquote_plus(secret)
    if not sep or not client_id or not secret or "\x00" in client_id + secret:
        raise TokenRequestError("invalid_client", "Client authentication failed.", 401)
    return client_id, secret
