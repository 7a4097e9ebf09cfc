"""Verifying JWT bearer tokens: our own access tokens and tokens issued by Microsoft Entra.

Rules that hold for every token, whoever issued it:

* the algorithm comes from the *key*, never from the token: a key is used only with the one
  algorithm it was published for, and only algorithms in :data:`ALLOWED_ALGORITHMS` exist at all
  (so ``alg: none`` and ``HS256`` "signed" with a public key are refused);
* the key is chosen by ``kid``; a token without a ``kid`` or with an unknown one is refused;
* ``exp`` is required, ``exp``/``nbf`` are checked with a small leeway, ``iss`` and ``aud`` must be
  exactly what the caller expects.

Signature checks cost ~110 µs (RS256); authentication runs on every request, and Entra uses one
access token for up to an hour, so a verified token's claims are remembered (keyed by the whole
token string and the keyset that verified it). The time claims are checked again on every use.
"""

from __future__ import annotations

import base64
import json
import ssl
import threading
import time
import urllib.error
import urllib.request
from collections import OrderedDict
from collections.abc import Callable, Iterable
from typing import Any

import jwt
import orjson

#: RS256 only: our signing keys are RSA and so are Entra's. Anything else is refused.
ALLOWED_ALGORITHMS = frozenset({"RS256"})
#: The most of a JWKS document read from a URL (Entra's is about 10 KiB).
JWKS_MAX_BYTES = 256 * 1024
#: Audience of tokens Entra issues for custom (non-gallery) apps in its blank-secret mode.
ENTRA_DEFAULT_AUDIENCE = "8adf8e6e-67b2-4cf2-a259-e3dc5476c621"
#: Longest token we look at (Entra tokens are ~1.5 KB).
MAX_TOKEN_LENGTH = 4096


class InvalidToken(Exception):
    """Why a token was refused: for tests and debug logs only, never sent to the caller."""


def looks_like_jwt(token: str) -> bool:
    """Whether ``token`` has the shape of a compact JWS (static tokens never contain a dot)."""
    return token.count(".") == 2 and len(token) <= MAX_TOKEN_LENGTH


def _b64json(segment: str) -> dict[str, Any]:
    try:
        value = orjson.loads(base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4)))
    except (ValueError, orjson.JSONDecodeError):
        raise InvalidToken("malformed segment") from None
    if not isinstance(value, dict):
        raise InvalidToken("segment is not an object")
    return value


def peek_claims(token: str) -> dict[str, Any]:
    """The claims, *unverified*: only to choose which issuer's rules and keys apply."""
    return _b64json(token.split(".")[1])


def public_jwk(value: dict[str, Any]) -> jwt.PyJWK | None:
    """A verification key from one JWKS entry, or ``None`` if it is unusable here (another key
    type or algorithm, a private or symmetric key, an encryption key)."""
    if value.get("kty") != "RSA" or value.get("use", "sig") != "sig" or "d" in value:
        return None
    alg = value.get("alg", "RS256")
    if alg not in ALLOWED_ALGORITHMS:
        return None
    try:
        return jwt.PyJWK({**value, "alg": alg})
    except (jwt.PyJWKError, jwt.InvalidKeyError, ValueError, TypeError):
        return None


#: JWK members that belong to a private or secret key (RFC 7518 §6.2.2, §6.3.2, §6.4; RFC 8037 §2):
#: never needed to verify a signature, never to be stored.
PRIVATE_MEMBERS = frozenset({"d", "p", "q", "dp", "dq", "qi", "oth", "k"})


def private_members(jwks: Any) -> list[str]:
    """Where a JWKS holds private key material: ``"<kid>: d, p, …"`` per offending key (empty
    for a JWKS of public keys only)."""
    found = []
    for position, entry in enumerate(jwks.get("keys", []) if isinstance(jwks, dict) else []):
        members = sorted(PRIVATE_MEMBERS.intersection(entry)) if isinstance(entry, dict) else []
        if members:
            kid = entry.get("kid")
            name = kid[:40] if isinstance(kid, str) else f"key #{position + 1}"
            found.append(f"{name}: {', '.join(members)}")
    return found


def without_private_keys(jwks: dict[str, Any]) -> dict[str, Any]:
    """``jwks`` without the keys that carry private members (they never verified anything:
    :func:`public_jwk` refuses them)."""
    keys = jwks.get("keys")
    if not isinstance(keys, list):
        return jwks
    return {**jwks, "keys": [k for k in keys if not (isinstance(k, dict) and PRIVATE_MEMBERS.intersection(k))]}


def keys_from_jwks(jwks: dict[str, Any]) -> dict[str, jwt.PyJWK]:
    keys = {}
    for entry in jwks.get("keys", []) if isinstance(jwks, dict) else []:
        if isinstance(entry, dict) and isinstance(entry.get("kid"), str):
            key = public_jwk(entry)
            if key is not None:
                keys[entry["kid"]] = key
    return keys


class _RefuseRedirects(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, req, fp, code, msg, headers, newurl):
        # urllib would follow a redirect anywhere, https to plain http included, and trust the
        # keys found there. A JWKS URL is configured by an operator: they give the final one.
        raise urllib.error.HTTPError(req.full_url, code, f"JWKS URL redirects to {newurl[:200]}", headers, fp)


def fetch_jwks(url: str, *, timeout: float = 5.0, context: ssl.SSLContext | None = None) -> dict[str, Any]:
    """The JSON object at ``url``: https only, no redirects, at most :data:`JWKS_MAX_BYTES`.
    Raises ``OSError`` (network, TLS, HTTP status, redirect) or ``ValueError`` (not https, not a
    JSON object, too large). ``context`` is for tests that serve keys over TLS themselves."""
    if not url.startswith("https://"):
        raise ValueError("a JWKS URL must be https")
    opener = urllib.request.build_opener(_RefuseRedirects, urllib.request.HTTPSHandler(context=context))
    with opener.open(url, timeout=timeout) as response:
        data = response.read(JWKS_MAX_BYTES + 1)
    if len(data) > JWKS_MAX_BYTES:
        raise ValueError("the JWKS document is too large")
    value = json.loads(data)
    if not isinstance(value, dict):
        raise ValueError("the JWKS document is not a JSON object")
    return value


class VerifiedCache:
    """A bounded, thread-safe memory of verified tokens: (keyset, token) → (kid, claims)."""

    def __init__(self, size: int = 8192) -> None:
        self.size = size
        self._items: OrderedDict[tuple[str, str], tuple[str, dict[str, Any]]] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, keyset: str, token: str) -> tuple[str, dict[str, Any]] | None:
        return self._items.get((keyset, token))

    def put(self, keyset: str, token: str, kid: str, claims: dict[str, Any]) -> None:
        with self._lock:
            self._items[(keyset, token)] = (kid, claims)
            while len(self._items) > self.size:
                self._items.popitem(last=False)


def check_times(claims: dict[str, Any], leeway: int, now: float | None = None) -> None:
    now = time.time() if now is None else now
    exp, nbf = claims.get("exp"), claims.get("nbf")
    if not isinstance(exp, (int, float)) or isinstance(exp, bool) or exp + leeway <= now:
        raise InvalidToken("expired")
    if nbf is not None and (not isinstance(nbf, (int, float)) or nbf - leeway > now):
        raise InvalidToken("not yet valid")


def verify(
    token: str,
    *,
    keyset: str,
    key_for_kid: Callable[[str], jwt.PyJWK | None],
    issuers: Iterable[str],
    audience: str | None,
    leeway: int,
    cache: VerifiedCache,
    now: float | None = None,
) -> dict[str, Any]:
    """The claims of ``token`` if its signature, issuer, audience and times are valid.

    ``keyset`` names the keys ``key_for_kid`` draws from (it is part of the cache key, so a token
    verified with one tenant's keys is never taken as verified for another's). ``audience=None``
    leaves the ``aud`` check to the caller (which must then make it)."""
    if len(token) > MAX_TOKEN_LENGTH:
        raise InvalidToken("too long")
    cached = cache.get(keyset, token)
    if cached is not None:
        # The signature was checked before; the key must still be there (a pruned or removed key
        # ends its tokens).
        kid, claims = cached
        if key_for_kid(kid) is None:
            raise InvalidToken("key withdrawn")
    else:
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError:
            raise InvalidToken("malformed header") from None
        header_kid = header.get("kid")
        if header.get("alg") not in ALLOWED_ALGORITHMS or not isinstance(header_kid, str):
            raise InvalidToken("algorithm not allowed or no kid")
        kid = header_kid
        key = key_for_kid(kid)
        if key is None:
            raise InvalidToken("unknown kid")
        try:
            # The algorithm list holds only the key's own algorithm, whatever the header says.
            claims = jwt.decode(token, key, algorithms=[key.algorithm_name],
                                options={"verify_aud": False, "verify_iss": False, "verify_exp": False,
                                         "verify_nbf": False, "verify_iat": False})
        except jwt.PyJWTError as exc:
            raise InvalidToken(f"signature: {type(exc).__name__}") from None
        cache.put(keyset, token, kid, claims)
    if claims.get("iss") not in set(issuers):
        raise InvalidToken("issuer")
    aud = claims.get("aud")
    if audience is not None and aud != audience and not (isinstance(aud, list) and audience in aud):
        raise InvalidToken("audience")
    check_times(claims, leeway, now)
    return claims
