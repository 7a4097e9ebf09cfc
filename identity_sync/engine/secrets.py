"""Target credentials at rest: sealed with AES-256-GCM, never stored in clear.

The sealing itself (where its key comes from, the stored format) is ``identity_sync/sealing.py``,
shared with the token-signing keys. The job's id is the GCM associated data, so a sealed value
copied onto another job's row does not open there.
"""

from __future__ import annotations

from typing import Any

import orjson

from identity_sync import sealing
from identity_sync.config import Settings

_KEY_FILE = sealing.KEY_FILE

_MESSAGES = {
    "needs_passphrase": "the job's credentials are sealed with a passphrase: set IDSYNC_SIGNING_KEYS_PASSPHRASE_FILE",
    "unknown_format": "the job's credentials are damaged (unknown format)",
    "wrong_key": "the job's credentials cannot be decrypted: wrong passphrase or key file",
    "damaged": "the job's credentials are damaged",
    "key_file_missing": f"the key that seals job credentials is missing ({_KEY_FILE} in the signing-keys directory, "
                        "IDSYNC_SIGNING_KEYS_DIR)",
    "key_file_damaged": f"{_KEY_FILE} in the signing-keys directory is damaged",
}


class CredentialsError(Exception):
    """Sealed credentials that cannot be opened (wrong passphrase, missing key file, damage)."""


def seal(settings: Settings, job_id: str, credentials: dict[str, str]) -> str:
    return sealing.seal(settings, job_id.encode(), orjson.dumps(credentials))


def unseal(settings: Settings, job_id: str, sealed: str) -> dict[str, Any]:
    try:
        return orjson.loads(sealing.unseal(settings, job_id.encode(), sealed))
    except sealing.SealError as exc:
        raise CredentialsError(_MESSAGES[exc.kind]) from None
    except orjson.JSONDecodeError:
        raise CredentialsError(_MESSAGES["damaged"]) from None


def sealed_with(sealed: str) -> str:
    """``passphrase`` or ``keyfile``: what ``job show`` reports about the protection."""
    return sealing.sealed_with(sealed)
