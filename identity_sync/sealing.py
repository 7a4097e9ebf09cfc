"""Secrets at rest in the database, sealed with AES-256-GCM: the engine's target credentials
(``engine/secrets.py``) and the token-signing keys (``auth/oauth.py``).

The key comes from one place for both:

* with ``IDSYNC_SIGNING_KEYS_PASSPHRASE_FILE`` (or ``…_PASSPHRASE``) set, from that passphrase
  through scrypt with a random salt per sealed value — what several nodes share (each one's
  configuration holds the passphrase; no shared disk);
* without it, from a random 256-bit key file ``credentials.key`` created (mode 0600) in the
  signing-keys directory (default ``<data_dir>/signing-keys``): enough for one machine; more
  nodes need the same file, or a passphrase (docs/deployment.md).

A database dump or backup then holds no usable secret. The caller's ``associated`` data (a job's
id, a key's id) is the GCM associated data, so a sealed value copied onto another row does not
open there. The format (``v1:passphrase:salt:nonce:data`` / ``v1:keyfile:nonce:data``) is stored:
keep reading it.
"""

from __future__ import annotations

import base64
import os
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.scrypt import Scrypt

from identity_sync.config import Settings

KEY_FILE = "credentials.key"


class SealError(Exception):
    """A sealed value that does not open; ``kind`` says why, for the caller's own message:
    ``needs_passphrase``, ``wrong_key``, ``unknown_format``, ``damaged``, ``key_file_missing``,
    ``key_file_damaged``."""

    def __init__(self, kind: str) -> None:
        super().__init__(kind)
        self.kind = kind


def seal(settings: Settings, associated: bytes, plaintext: bytes) -> str:
    nonce = os.urandom(12)
    passphrase = settings.resolved_signing_keys_passphrase()
    if passphrase:
        salt = os.urandom(16)
        sealed = AESGCM(_derive(passphrase, salt)).encrypt(nonce, plaintext, associated)
        return ":".join(("v1", "passphrase", _b64(salt), _b64(nonce), _b64(sealed)))
    sealed = AESGCM(_key_file(settings, create=True)).encrypt(nonce, plaintext, associated)
    return ":".join(("v1", "keyfile", _b64(nonce), _b64(sealed)))


def unseal(settings: Settings, associated: bytes, sealed: str) -> bytes:
    parts = sealed.split(":")
    try:
        if parts[:2] == ["v1", "passphrase"] and len(parts) == 5:
            passphrase = settings.resolved_signing_keys_passphrase()
            if not passphrase:
                raise SealError("needs_passphrase")
            key, nonce, data = _derive(passphrase, _unb64(parts[2])), _unb64(parts[3]), _unb64(parts[4])
        elif parts[:2] == ["v1", "keyfile"] and len(parts) == 4:
            key, nonce, data = _key_file(settings, create=False), _unb64(parts[2]), _unb64(parts[3])
        else:
            raise SealError("unknown_format")
        return AESGCM(key).decrypt(nonce, data, associated)
    except InvalidTag:
        raise SealError("wrong_key") from None
    except ValueError:
        raise SealError("damaged") from None


def sealed_with(sealed: str) -> str:
    """``passphrase`` or ``keyfile``: what a sealed value's protection is."""
    return sealed.split(":")[1] if sealed.count(":") >= 3 else "unknown"


def _derive(passphrase: bytes, salt: bytes) -> bytes:
    return Scrypt(salt=salt, length=32, n=2**14, r=8, p=1).derive(passphrase)


def _key_file(settings: Settings, *, create: bool) -> bytes:
    directory = settings.resolved_signing_keys_dir()
    path = directory / KEY_FILE
    try:
        key = path.read_bytes()
    except FileNotFoundError:
        if not create:
            raise SealError("key_file_missing") from None
        key = _create_key_file(directory, path)
    if len(key) != 32:
        raise SealError("key_file_damaged")
    return key


def _create_key_file(directory: Path, path: Path) -> bytes:
    from identity_sync.storage import files

    files.private_directory(directory)  # parents too, owner-only: the data directory is often made here
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
