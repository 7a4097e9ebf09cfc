"""The one JWKS cache (auth/jwks.py): Entra bearer tokens (a tenant's Entra trust) and Entra's
client assertions (federated credentials) draw their keys from the same cache, so a JWKS URL both
use is fetched once; a stored document is parsed once per version."""

from __future__ import annotations

import json
from typing import Any

from identity_sync.auth import federation as wif
from tests.auth import jwt_helpers as jh

TID = "11111111-2222-3333-4444-555555555555"
URL = f"https://login.microsoftonline.com/{TID}/discovery/v2.0/keys"


def test_a_url_used_by_a_trust_and_a_federated_credential_is_fetched_once() -> None:
    fetched: list[str] = []

    def fetch(url: str) -> dict[str, Any]:
        fetched.append(url)
        return jh.jwks(kid="k1")

    cache = wif.JwksSource(fetch)  # what web/app.py gives both the authenticator and the token endpoint
    credential = wif.FederatedCredential("c", "idsc_x", f"https://login.microsoftonline.com/{TID}/v2.0",
                                         "subject", "api://app", TID, None, URL, "t")
    for_trust = cache.key_source(version="entra:tenant:v1", document=None, url=URL)
    assert for_trust("k1") is not None
    assert cache.key_for(credential)("k1") is not None
    assert fetched == [URL]
    assert for_trust("unknown") is None and fetched == [URL]  # early refetch is rate-limited


def test_a_stored_document_is_parsed_once_per_version() -> None:
    cache = wif.JwksSource(lambda url: {})
    document = json.dumps(jh.jwks(kid="k1"))
    first = cache.from_document("v1", document)
    assert "k1" in first and cache.from_document("v1", "{}") is first  # same version: not parsed again
    assert cache.from_document("v2", "{}") == {}  # a changed configuration is a new version
