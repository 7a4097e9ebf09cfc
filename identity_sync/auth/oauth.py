"""OAuth 2.0 client credentials (RFC 6749 §4.4): signing keys, access tokens, and the pieces of a
token request (client authentication by HTTP Basic, by form body, or both).

Signing keys are RSA-2048 private keys named by their ``kid`` (a UTC timestamp plus random hex,
so names sort by age), kept in the database (table ``signing_keys``, issue 11): every worker and
every node reads the same keys without a shared disk. A private key is never stored in clear:
it is sealed with AES-256-GCM (``sealing.py``: a key derived from the signing-keys passphrase,
else a random key file in the signing-keys directory; several nodes need the passphrase or that
file). The newest key signs; every key verifies and is published in the JWKS. Rotation without
downtime is therefore: ``keys rotate`` adds a key (workers pick it up within
:data:`RELOAD_SECONDS`, and at once when they meet its ``kid``), tokens signed by older keys keep
working until they expire, and ``keys prune`` removes keys older than the longest token lifetime.

Before issue 11 keys were PEM files (mode 0600, PKCS#8-encrypted with the passphrase if set) in
the signing-keys directory; the first process to find the table empty imports them (the files
stay where they are). :class:`DirectoryStore` still reads and writes that layout.
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
import sqlalchemy as sa
import structlog
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from identity_sync import sealing
from identity_sync.auth.federation import JWT_BEARER
from identity_sync.auth.jwt import public_jwk
from identity_sync.clock import format_timestamp, now_text, parse_timestamp
from identity_sync.config import Settings
from identity_sync.storage import files, tables
from identity_sync.storage.db import Database

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
    """A key that cannot be used: encrypted without a passphrase, a wrong passphrase, damage."""


def _key(kid: str, private: rsa.RSAPrivateKey) -> _Key:
    jwk = jwt.algorithms.RSAAlgorithm.to_jwk(private.public_key(), as_dict=True)
    jwk.update({"kid": kid, "alg": ALGORITHM, "use": "sig"})
    public = public_jwk(jwk)
    assert public is not None
    return _Key(kid, private, public, jwk)


def _private_from_pem(name: str, data: bytes, passphrase: bytes | None) -> tuple[rsa.RSAPrivateKey, bool]:
    """The key in a PEM file's bytes, and whether the PEM was encrypted."""
    encrypted = data.lstrip().startswith(b"-----BEGIN ENCRYPTED PRIVATE KEY-----")
    if encrypted and not passphrase:
        raise SigningKeyError(f"signing key {name} is encrypted: set IDSYNC_SIGNING_KEYS_PASSPHRASE_FILE "
                              "(or IDSYNC_SIGNING_KEYS_PASSPHRASE)")
    try:
        private = serialization.load_pem_private_key(data, password=passphrase if encrypted else None)
    except (ValueError, TypeError):
        raise SigningKeyError(f"signing key {name} cannot be read: wrong passphrase or damaged file") from None
    if not isinstance(private, rsa.RSAPrivateKey):
        raise SigningKeyError(f"{name} is not an RSA private key")
    return private, encrypted


class DirectoryStore:
    """Keys as PEM files in one directory: the layout before keys moved into the database, read
    to import them, and a store of its own for single-process uses and tests."""

    def __init__(self, directory: Path, passphrase: bytes | None) -> None:
        self.directory = directory
        self.passphrase = passphrase
        self.unencrypted: set[str] = set()

    def stamp(self) -> object:
        try:
            return self.directory.stat().st_mtime_ns
        except OSError:
            return 0

    def load(self, known: dict[str, _Key]) -> dict[str, _Key]:
        paths = sorted(self.directory.glob("*.pem")) if self.directory.is_dir() else []
        return {path.stem: known.get(path.stem) or self._load(path) for path in paths}

    def _load(self, path: Path) -> _Key:
        private, encrypted = _private_from_pem(path.name, path.read_bytes(), self.passphrase)
        if self.passphrase and not encrypted:
            self.unencrypted.add(path.stem)
            log.warning("signing_keys.unencrypted", kid=path.stem,
                        hint="identity-sync keys rotate, then keys prune once tokens signed by it have expired")
        return _key(path.stem, private)

    def add(self, kid: str, private: rsa.RSAPrivateKey, *, only_if_none: bool = False) -> None:
        files.private_directory(self.directory)  # parents too: the data directory is often made here
        if only_if_none and any(self.directory.glob("*.pem")):
            return
        encryption = (serialization.BestAvailableEncryption(self.passphrase) if self.passphrase
                      else serialization.NoEncryption())
        pem = private.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, encryption)
        # Written under a temporary name and renamed, so no process ever reads half a key.
        tmp = self.directory / f".{kid}.{uuid.uuid4().hex}.tmp"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as handle:
            handle.write(pem)
        tmp.rename(self.directory / f"{kid}.pem")

    def created(self, kid: str) -> float:
        return (self.directory / f"{kid}.pem").stat().st_mtime

    def remove(self, kid: str) -> None:
        (self.directory / f"{kid}.pem").unlink()


#: Taken (transaction-level, PostgreSQL) by whoever creates the first key or imports key files, so
#: that nodes starting together end up with one first key, not one each. SQLite's write
#: transactions (BEGIN IMMEDIATE) are serialised already.
_FIRST_KEY_LOCK = 0x696473796E64


class DatabaseStore:
    """Keys in the ``signing_keys`` table, sealed (``sealing.py``) with the key's id as associated
    data, so a sealed key copied onto another row does not open."""

    def __init__(self, db: Database, settings: Settings) -> None:
        self.db = db
        self.settings = settings
        #: Keys sealed with the key file although a passphrase is set (``keys list`` shows them).
        self.unencrypted: set[str] = set()
        self._created: dict[str, float] = {}
        self._looked_for_files = False

    def stamp(self) -> object:
        # One indexed look at a tiny table: cheap enough for the one an unknown kid costs.
        with self.db.read() as conn:
            return tuple(conn.execute(sa.select(sa.func.count(), sa.func.max(tables.signing_keys.c.kid))).one())

    def load(self, known: dict[str, _Key]) -> dict[str, _Key]:
        rows = self._rows()
        if not rows and not self._looked_for_files:
            self._looked_for_files = True
            if self._import_files():
                rows = self._rows()
        self._created = {row.kid: parse_timestamp(row.created_at).timestamp() for row in rows}
        return {row.kid: known.get(row.kid) or self._open(row.kid, row.private_key) for row in rows}

    def _rows(self) -> list[Any]:
        t = tables.signing_keys
        with self.db.read() as conn:
            return list(conn.execute(sa.select(t.c.kid, t.c.created_at, t.c.private_key).order_by(t.c.kid)))

    def _open(self, kid: str, sealed: str) -> _Key:
        try:
            pem = sealing.unseal(self.settings, _associated(kid), sealed)
        except sealing.SealError as exc:
            raise SigningKeyError(_SEAL_MESSAGES[exc.kind].format(kid=kid)) from None
        private, _ = _private_from_pem(kid, pem, None)
        if self.settings.resolved_signing_keys_passphrase() and sealing.sealed_with(sealed) != "passphrase":
            self.unencrypted.add(kid)
            log.warning("signing_keys.sealed_with_key_file", kid=kid,
                        hint="identity-sync keys rotate, then keys prune once tokens signed by it have expired")
        return _key(kid, private)

    def add(self, kid: str, private: rsa.RSAPrivateKey, *, only_if_none: bool = False,
            created_at: str | None = None) -> None:
        self._insert([(kid, private, created_at or now_text())], only_if_none=only_if_none)

    def _insert(self, keys: list[tuple[str, rsa.RSAPrivateKey, str]], *, only_if_none: bool) -> bool:
        # Sealed before the transaction: scrypt takes ~50 ms, no lock is held meanwhile.
        rows = [{"kid": kid, "created_at": created_at, "private_key": sealing.seal(
            self.settings, _associated(kid), private.private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))}
            for kid, private, created_at in keys]
        t = tables.signing_keys
        with self.db.write() as conn:
            if only_if_none:
                if conn.dialect.name == "postgresql":
                    conn.exec_driver_sql(f"SELECT pg_advisory_xact_lock({_FIRST_KEY_LOCK})")
                if conn.execute(sa.select(t.c.kid).limit(1)).first() is not None:
                    return False  # another node was first: its key is the one
            conn.execute(t.insert(), rows)
        return True

    def _import_files(self) -> bool:
        """The key files of an installation from before issue 11, copied into the empty table."""
        directory = DirectoryStore(self.settings.resolved_signing_keys_dir(),
                                   self.settings.resolved_signing_keys_passphrase())
        found = directory.load({})
        if not found:
            return False
        keys = [(kid, key.private, format_timestamp(datetime.fromtimestamp(directory.created(kid), UTC)))
                for kid, key in sorted(found.items())]
        imported = self._insert(keys, only_if_none=True)
        if imported:
            log.info("signing_keys.imported", keys=len(keys), directory=str(directory.directory),
                     hint="the files are no longer read; remove them once every node runs this release")
        return True

    def created(self, kid: str) -> float:
        return self._created[kid]

    def remove(self, kid: str) -> None:
        with self.db.write() as conn:
            conn.execute(tables.signing_keys.delete().where(tables.signing_keys.c.kid == kid))


_SEAL_MESSAGES = {
    "needs_passphrase": "signing key {kid} is sealed with a passphrase: set IDSYNC_SIGNING_KEYS_PASSPHRASE_FILE "
                        "(or IDSYNC_SIGNING_KEYS_PASSPHRASE)",
    "wrong_key": "signing key {kid} cannot be decrypted: wrong passphrase or key file",
    "unknown_format": "signing key {kid} is damaged (unknown format)",
    "damaged": "signing key {kid} is damaged",
    "key_file_missing": f"signing key {{kid}} is sealed with a key file that is missing ({sealing.KEY_FILE} in the "
                        "signing-keys directory): copy it from the node that made the key, or set a passphrase "
                        "(IDSYNC_SIGNING_KEYS_PASSPHRASE_FILE) and rotate",
    "key_file_damaged": f"{sealing.KEY_FILE} in the signing-keys directory is damaged",
}


def _associated(kid: str) -> bytes:
    return f"signing-key:{kid}".encode()


KeyStore = DirectoryStore | DatabaseStore


class SigningKeys:
    """The keys of one store, cached in memory and re-read when they may have changed."""

    def __init__(self, store: Path | KeyStore, passphrase: bytes | None = None) -> None:
        self.store: KeyStore = DirectoryStore(store, passphrase) if isinstance(store, Path) else store
        self._keys: dict[str, _Key] = {}
        self._loaded_at = 0.0
        self._stamp: object = None
        self._lock = threading.Lock()

    @property
    def unencrypted(self) -> set[str]:
        """Keys not protected by the passphrase although one is set (``keys list`` shows them)."""
        return self.store.unencrypted

    # -- reading ---------------------------------------------------------------------------------

    def _reload(self, force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - self._loaded_at < RELOAD_SECONDS:
            return
        with self._lock:
            if not force and now - self._loaded_at < RELOAD_SECONDS:
                return
            stamp = self.store.stamp()  # before reading: a key written meanwhile changes it again
            self._keys = self.store.load(self._keys)
            self._loaded_at = time.monotonic()
            self._stamp = stamp

    def public_key(self, kid: str) -> jwt.PyJWK | None:
        """The verification key named ``kid``; an unknown ``kid`` triggers an early re-read (a
        key another worker or node just created) when the store's stamp says it changed."""
        if kid in self._keys:
            self._reload()
        else:
            # Re-read exactly when a key was added (a stat, or one tiny query), so forged random
            # kids cannot make every request read every key.
            self._reload(force=self.store.stamp() != self._stamp)
        key = self._keys.get(kid)
        return key.public if key else None

    def jwks(self) -> dict[str, Any]:
        self._reload()
        return {"keys": [k.public_jwk for k in self._keys.values()]}

    def kids(self) -> list[str]:
        self._reload(force=True)
        return list(self._keys)

    def current(self) -> _Key:
        """The newest key (the first one is created on first use, once, whoever races for it)."""
        self._reload()
        if not self._keys:
            self._add(only_if_none=True)
        return self._keys[max(self._keys)]

    # -- changing --------------------------------------------------------------------------------

    def rotate(self) -> str:
        """Add a new key, which signs from now on; older keys keep verifying."""
        return self._add(only_if_none=False)

    def _add(self, *, only_if_none: bool) -> str:
        # Read the existing keys first: with a wrong passphrase, fail before writing a key with it.
        self._reload(force=True)
        if only_if_none and self._keys:
            return max(self._keys)
        kid = _new_kid()
        self.store.add(kid, rsa.generate_private_key(public_exponent=65537, key_size=2048), only_if_none=only_if_none)
        self._reload(force=True)
        return max(self._keys) if only_if_none else kid  # the racing node's key, if it was first

    def prune(self, older_than_seconds: int) -> list[str]:
        """Remove keys that no live token can need: all but the newest, when older than
        ``older_than_seconds`` (pass the longest token lifetime plus the leeway)."""
        self._reload(force=True)
        cutoff = time.time() - older_than_seconds
        newest = max(self._keys) if self._keys else None
        removed = []
        for kid in list(self._keys):
            if kid != newest and self.store.created(kid) < cutoff:
                self.store.remove(kid)
                removed.append(kid)
        self._reload(force=True)
        return removed


def signing_keys_for(settings: Settings, db: Database) -> SigningKeys:
    """The signing keys every node shares: in ``db``, sealed as ``settings`` say."""
    return SigningKeys(DatabaseStore(db, settings))


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
