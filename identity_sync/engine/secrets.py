"""Target credentials at rest: sealed with AES-256-GCM, never stored in clear.

The key comes from the same place as the signing keys' protection (``auth/oauth.py``):

* with ``IDSYNC_SIGNING_KEYS_PASSPHRASE_FILE`` (or ``…_PASSPHRASE``) set, from that passphrase
  through scrypt with a random salt per sealed value;
* without it, from a random 256-bit key file ``credentials.key`` created (mode 0600) in the
  signing-keys directory, which every node already has to share. A database dump or backup then
  holds no usable target token; whoever also has the key directory has them, as with the
  signing keys themselves (docs/security.md).

The job's id is the GCM associated data, so a sealed value copied onto another job's row does
not open there.
"""

from __future__ import annotations

import base64
import os
from pathlib import Path

import orjson
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.scrypt import Scrypt

from identity_sync.config import Settings

_KEY_FILE = "credentials.key"


class CredentialsError(Exception):
    """Sealed credentials that cannot be opened (wrong passphrase, missing key file, damage)."""


def seal(settings: Settings, job_id: str, credentials: dict[str, str]) -> str:
    plaintext = orjson.dumps(credentials)
    nonce = os.urandom(12)
    passphrase = settings.resolved_signing_keys_passphrase()
    if passphrase:
        salt = os.urandom(16)
        sealed = AESGCM(_derive(passphrase, salt)).encrypt(nonce, plaintext, job_id.encode())
        return ":".join(("v1", "passphrase", _b64(salt), _b64(nonce), _b64(sealed)))
    sealed = AESGCM(_key_file(settings, create=True)).encrypt(nonce, plaintext, job_id.encode())
    return ":".join(("v1", "keyfile", _b64(nonce), _b64(sealed)))


def unseal(settings: Settings, job_id: str, sealed: str) -> dict[str, str]:
    parts = sealed.split(":")
    try:
        if parts[:2] == ["v1", "passphrase"] and len(parts) == 5:
            passphrase = settings.resolved_signing_keys_passphrase()
            if not passphrase:
                raise CredentialsError("the job's credentials are sealed with a passphrase: set "
                                       "IDSYNC_SIGNING_KEYS_PASSPHRASE_FILE")
            key, nonce, data = _derive(passphrase, _unb64(parts[2])), _unb64(parts[3]), _unb64(parts[4])
        elif parts[:2] == ["v1", "keyfile"] and len(parts) == 4:
            key, nonce, data = _key_file(settings, create=False), _unb64(parts[2]), _unb64(parts[3])
        else:
            raise CredentialsError("the job's credentials are damaged (unknown format)")
        return orjson.loads(AESGCM(key).decrypt(nonce, data, job_id.encode()))
    except InvalidTag:
        raise CredentialsError("the job's credentials cannot be decrypted: wrong passphrase or key file") from None
    except (ValueError, orjson.JSONDecodeError):
        raise CredentialsError("the job's credentials are damaged") from None


def sealed_with(sealed: str) -> str:
    """``passphrase`` or ``keyfile``: what ``job show`` reports about the protection."""
    return sealed.split(":")[1] if sealed.count(":") >= 3 else "unknown"


def _derive(passphrase: bytes, salt: bytes) -> bytes:
    return Scrypt(salt=salt, length=32, n=2**14, r=8, p=1).derive(passphrase)


def _key_file(settings: Settings, *, create: bool) -> bytes:
    directory = settings.resolved_signing_keys_dir()
    path = directory / _KEY_FILE
    try:
        key = path.read_bytes()
    except FileNotFoundError:
        if not create:
            raise CredentialsError(f"the key that seals job credentials is missing ({_KEY_FILE} in the signing-keys "
                                   "directory, IDSYNC_SIGNING_KEYS_DIR)") from None
        key = _create_key_file(directory, path)
    if len(key) != 32:
        raise CredentialsError(f"{_KEY_FILE} in the signing-keys directory is damaged")
    return key


def _create_key_file(directory: Path, path: Path) -> bytes:
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    key = os.urandom(32)
    try:
        # O_EXCL: two processes creating it at once keep one key, the loser reads the winner's.
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return path.read_bytes()
    with os.fdopen(fd, "wb") as handle:
        handle.write(key)
    return key


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
