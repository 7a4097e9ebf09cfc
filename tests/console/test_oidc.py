"""Console sign-in through OpenID Connect (console/oidc.py) against a real provider on loopback
(tests/console/oidc_provider.py: discovery, JWKS, authorize, token, an RSA key): the code flow
with PKCE, and each refusal — wrong nonce, wrong audience, expired token, bad signature, unknown
operator, state mismatch — a clear page and an audit event. SQLite and PostgreSQL."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx2
import pytest
import sqlalchemy as sa
from cryptography.hazmat.primitives.asymmetric import rsa
from starlette.testclient import TestClient

from identity_sync.config import Settings
from identity_sync.service.operators import OperatorService
from identity_sync.storage.db import Database
from identity_sync.storage.tables import audit_events, console_sessions
from identity_sync.web.app import create_app
from tests.console.oidc_provider import CLIENT_ID, CLIENT_SECRET, Provider
from tests.console.test_console_http import console_events

BASE = "https://scim.example.test"


@pytest.fixture(scope="module")
def provider() -> Iterator[Provider]:
    running = Provider().start()
    yield running
    running.stop()


_ORIGINAL: dict[int, Any] = {}


def original_key(provider: Provider) -> Any:
    return _ORIGINAL.setdefault(id(provider), provider.key)


@pytest.fixture
def idp(provider: Provider) -> Provider:
    provider.user = {"sub": "u-1", "email": "Alice@Example.com", "email_verified": True}
    provider.tamper, provider.sign_with = {}, None
    provider.key, provider.kid = original_key(provider), "test-key-1"
    provider.token_requests.clear()
    return provider


@pytest.fixture
def oidc_app(settings: Settings, db: Database, idp: Provider, tmp_path: Path) -> Any:
    secret = tmp_path / "oidc-secret"
    secret.write_text(CLIENT_SECRET + "\n")
    configured = settings.model_copy(update={"console_oidc_issuer": idp.issuer, "console_oidc_client_id": CLIENT_ID,
                                             "console_oidc_client_secret_file": secret})
    OperatorService(db).create("alice@example.com", "admin", "correct horse battery staple")
    return create_app(configured, db)


@pytest.fixture
def http(oidc_app: Any) -> Iterator[TestClient]:
    with TestClient(oidc_app, base_url=BASE) as client:
        yield client


def sign_in(http: TestClient, through: Any = None) -> Any:
    """The browser's round trip: our login route, the provider's authorize, our callback."""
    start = http.get("/admin/oidc/login", follow_redirects=False)
    assert start.status_code == 303, start.text
    at_provider = httpx2.get(start.headers["location"], follow_redirects=False)
    assert at_provider.status_code == 302
    callback = at_provider.headers["location"]
    assert callback.startswith(f"{BASE}/admin/oidc/callback?")
    if through is not None:
        callback = through(callback)
    return http.get(callback[len(BASE):], follow_redirects=False)


def _refused(http: TestClient, response: Any, db: Database, reason: str, words: str) -> None:
    assert response.status_code == 403
    assert "Sign-in refused" in response.text and words in response.text
    assert console_events(db)[-1] == ("console:unknown", "login-failed", "Operator")
    with db.read() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(console_sessions)).scalar() == 0
        last = conn.execute(sa.select(audit_events.c.attributes).order_by(audit_events.c.id.desc()).limit(1)).scalar()
    assert sorted(json.loads(last)) == sorted(["oidc", reason])
    assert http.get("/admin", follow_redirects=False).headers["location"] == "/admin/login"


def test_the_login_page_offers_single_sign_on_when_configured(http: TestClient) -> None:
    assert 'href="/admin/oidc/login"' in http.get("/admin/login").text


def test_without_an_issuer_there_is_no_sign_on_route(settings: Settings, db: Database) -> None:
    with TestClient(create_app(settings, db), base_url=BASE) as plain:
        assert "oidc" not in plain.get("/admin/login").text
        assert plain.get("/admin/oidc/login", follow_redirects=False).status_code == 404


def test_an_operator_signs_in_with_pkce_and_the_session_is_audited(http: TestClient, idp: Provider,
                                                                   db: Database) -> None:
    start = http.get("/admin/oidc/login", follow_redirects=False)
    location = start.headers["location"]
    assert location.startswith(f"{idp.issuer}/authorize?")
    for part in ("code_challenge_method=S256", "state=", "nonce=", f"client_id={CLIENT_ID}",
                 "redirect_uri=https%3A%2F%2Fscim.example.test%2Fadmin%2Foidc%2Fcallback"):
        assert part in location
    cookie = start.headers["set-cookie"]
    assert cookie.startswith("__Host-idsync-oidc=") and "httponly" in cookie.lower() and "secure" in cookie.lower()

    done = sign_in(http)

    assert done.status_code == 303 and done.headers["location"] == "/admin"
    assert http.get("/admin").status_code == 200
    assert len(idp.token_requests[-1]["code_verifier"]) >= 43  # the provider checked it against the challenge
    assert console_events(db)[-1] == ("console:alice@example.com", "login", "Operator")
    with db.read() as conn:
        assert conn.execute(sa.select(console_sessions.c.via)).scalar() == "oidc"


def test_a_callback_with_another_state_is_refused(http: TestClient, db: Database) -> None:
    response = sign_in(http, through=lambda url: url.replace("state=", "state=x"))

    _refused(http, response, db, "state", "state does not match")


def test_a_callback_without_the_sign_in_cookie_is_refused(http: TestClient, db: Database) -> None:
    def elsewhere(url: str) -> str:  # e.g. a link sent to another browser
        http.cookies.clear()
        return url
    _refused(http, sign_in(http, through=elsewhere), db, "state", "state does not match")


def test_a_code_is_good_once(http: TestClient, db: Database) -> None:
    seen: list[str] = []
    assert sign_in(http, through=lambda url: seen.append(url) or url).status_code == 303
    again = http.get(seen[0][len(BASE):], follow_redirects=False)  # the cookie is gone: state refused
    assert again.status_code == 403


@pytest.mark.parametrize(("tamper", "reason", "words"), [
    ({"nonce": "another sign-in's nonce"}, "nonce", "nonce does not match"),
    ({"aud": "another-app"}, "audience", "issued for another application"),
    ({"aud": [CLIENT_ID, "another-app"], "azp": "another-app"}, "audience", "issued for another application"),
    ({"exp": 1_000_000_000, "iat": 999_999_000}, "expired", "has expired"),
    ({"iss": "https://evil.example.test"}, "issuer", "issued by another provider"),
    ({"email_verified": False}, "unverified_email", "not verified your e-mail"),
    ({"email": "mallory@example.com"}, "unknown_operator", "no console operator of that name"),
])
def test_an_id_token_that_fails_a_check_is_refused(http: TestClient, idp: Provider, db: Database,
                                                   tamper: dict[str, Any], reason: str, words: str) -> None:
    idp.tamper = tamper

    _refused(http, sign_in(http), db, reason, words)


def test_an_id_token_signed_with_another_key_is_refused(http: TestClient, idp: Provider, db: Database) -> None:
    idp.sign_with = rsa.generate_private_key(public_exponent=65_537, key_size=2048)

    _refused(http, sign_in(http), db, "signature", "not signed by one of its keys")


def test_a_disabled_operator_cannot_sign_in(http: TestClient, db: Database) -> None:
    OperatorService(db).disable("alice@example.com")

    response = sign_in(http)

    assert response.status_code == 403 and "disabled" in response.text
    assert console_events(db)[-1] == ("console:alice@example.com", "login-failed", "Operator")


def test_a_sign_in_never_creates_an_operator(http: TestClient, idp: Provider, db: Database) -> None:
    idp.user = {"sub": "u-2", "email": "newcomer@example.com", "email_verified": True}

    assert sign_in(http).status_code == 403
    assert [o.name for o in OperatorService(db).list()] == ["alice@example.com"]


def test_a_key_rotation_at_the_provider_is_followed(http: TestClient, idp: Provider, oidc_app: Any) -> None:
    assert sign_in(http).status_code == 303  # the keys are now cached
    idp.key, idp.kid = rsa.generate_private_key(public_exponent=65_537, key_size=2048), "test-key-2"
    http.cookies.clear()

    assert sign_in(http).status_code == 303  # an unknown key id: the JWKS is fetched again


def test_a_discovery_document_of_another_issuer_is_refused(settings: Settings, db: Database, idp: Provider) -> None:
    configured = settings.model_copy(update={"console_oidc_issuer": idp.issuer + "/",  # not exactly its issuer
                                             "console_oidc_client_id": CLIENT_ID})
    with TestClient(create_app(configured, db), base_url=BASE) as client:
        response = client.get("/admin/oidc/login", follow_redirects=False)

    assert response.status_code == 503 and "cannot be reached" in response.text
    assert console_events(db)[-1] == ("console:unknown", "login-failed", "Operator")


@pytest.mark.parametrize(("values", "words"), [
    ({"console_oidc_issuer": "https://idp.example.test"}, "CLIENT_ID"),
    ({"console_oidc_issuer": "https://idp.example.test", "console_oidc_client_id": "c", "public_url": None},
     "REDIRECT_URI"),
    ({"console_oidc_issuer": "https://idp.example.test", "console_oidc_client_id": "c",
      "console_oidc_scopes": "email profile"}, "openid"),
])
def test_an_incomplete_oidc_configuration_is_refused_at_start(tmp_path: Path, values: dict[str, Any],
                                                               words: str) -> None:
    with pytest.raises(ValueError, match=words):
        Settings(data_dir=tmp_path, **{"public_url": "https://scim.example.test", **values})


def test_the_redirect_uri_defaults_to_the_public_urls_callback(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path, public_url="https://scim.example.test/", console_oidc_client_id="c",
                        console_oidc_issuer="https://idp.example.test")

    assert settings.resolved_oidc_redirect_uri() == "https://scim.example.test/admin/oidc/callback"
