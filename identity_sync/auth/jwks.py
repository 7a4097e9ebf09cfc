"""The one JWKS cache (issue 11, item 7): the verification keys of whoever signs tokens we accept
besides ourselves — Entra's bearer tokens (a tenant's Entra trust) and Entra's client assertions
(an OAuth client's federated credential). One instance per process serves both, so a JWKS URL
that both use is fetched once.

Two sources of keys:

* a JWKS document kept in the database, parsed once per stored version (the caller names the
  version: a changed document gets a new name, the old one is simply never asked for again);
* a JWKS URL, fetched, trusted for :data:`JWKS_TTL_SECONDS`, and fetched again early on an unknown
  ``kid`` (a key Entra just rolled out) — at most every :data:`REFETCH_SECONDS`, so a stream of
  made-up ``kid`` values cannot hammer the issuer. A failed fetch keeps the keys it had and is
  retried after :data:`REFETCH_SECONDS`: one network blip must not lock a tenant out.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from typing import Any

import jwt
import structlog

from identity_sync import nonblocking
from identity_sync.auth import jwt as jwtv

log = structlog.get_logger("identity_sync.auth")

JWKS_TTL_SECONDS = 3600.0
REFETCH_SECONDS = 60.0
#: Parsed stored documents kept at most (one per federated credential or Entra trust in use).
MAX_DOCUMENTS = 4096


class JwksCache:
    def __init__(self, fetch: Callable[[str], dict[str, Any]] | None = None) -> None:
        self._fetch_json = fetch or jwtv.fetch_jwks
        self._documents: dict[str, dict[str, jwt.PyJWK]] = {}  # version -> keys
        self._fetched: dict[str, tuple[float, dict[str, jwt.PyJWK]]] = {}  # URL -> (when, keys)
        self._lock = threading.Lock()

    def from_document(self, version: str, document: str | None) -> dict[str, jwt.PyJWK]:
        """The keys of a stored JWKS document, parsed once per ``version``."""
        keys = self._documents.get(version)
        if keys is None:
            try:
                keys = jwtv.keys_from_jwks(json.loads(document or "{}"))
            except ValueError:
                keys = {}
            if len(self._documents) >= MAX_DOCUMENTS:
                self._documents.clear()  # versions no longer asked for go with the rest
            self._documents[version] = keys
        return keys

    def from_url(self, url: str, kid: str) -> jwt.PyJWK | None:
        """The key ``kid`` of the JWKS at ``url`` (fetched when stale, or early on an unknown kid)."""
        cached = self._fetched.get(url)
        age = time.monotonic() - cached[0] if cached else None
        if cached is not None and age is not None and (
                age < REFETCH_SECONDS or (kid in cached[1] and age < JWKS_TTL_SECONDS)):
            return cached[1].get(kid)
        nonblocking.refuse("fetching a JWKS")  # the network: never on the event loop
        with self._lock:
            again = self._fetched.get(url)
            if again is not None and again is not cached and time.monotonic() - again[0] < REFETCH_SECONDS:
                return again[1].get(kid)  # another thread fetched it meanwhile
            try:
                keys = jwtv.keys_from_jwks(self._fetch_json(url))
            except (OSError, ValueError):
                log.warning("auth.jwks_unavailable", url=url)
                keys = cached[1] if cached else {}
            self._fetched[url] = (time.monotonic(), keys)
        return keys.get(kid)

    def key_source(self, *, version: str, document: str | None, url: str | None) -> Callable[[str], jwt.PyJWK | None]:
        """``kid`` → key, from ``url`` when there is one, else from the stored ``document``."""
        if url:
            return lambda kid: self.from_url(url, kid)
        return self.from_document(version, document).get
