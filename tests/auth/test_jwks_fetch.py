"""Fetching a JWKS from a URL (auth/jwt.py ``fetch_jwks``), against a real TLS server on loopback:
https only, redirects refused (urllib would follow one to plain http and trust what it found),
size and shape checked."""

from __future__ import annotations

import http.server
import json
import ssl
import threading
from collections.abc import Iterator

import pytest

from identity_sync.auth.jwt import JWKS_MAX_BYTES, fetch_jwks
from tests.auth.tls_helpers import self_signed

JWKS = {"keys": [{"kty": "RSA", "kid": "k1", "n": "AQAB", "e": "AQAB"}]}


class _Handler(http.server.BaseHTTPRequestHandler):
    routes: dict[str, tuple[int, dict[str, str], bytes]] = {}

    def do_GET(self) -> None:
        status, headers, body = self.routes.get(self.path, (404, {}, b""))
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture(scope="module")
def tls_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, ssl.SSLContext]]:
    cert, key = self_signed(tmp_path_factory.mktemp("tls"))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    served = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    served.load_cert_chain(cert, key)
    server.socket = served.wrap_socket(server.socket, server_side=True)
    base = f"https://127.0.0.1:{server.server_address[1]}"
    _Handler.routes = {
        "/jwks": (200, {"Content-Type": "application/json"}, json.dumps(JWKS).encode()),
        "/moved": (302, {"Location": f"{base}/jwks"}, b""),
        "/downgrade": (301, {"Location": f"http://127.0.0.1:{server.server_address[1]}/jwks"}, b""),
        "/big": (200, {}, b'{"keys": [], "pad": "' + b"x" * JWKS_MAX_BYTES + b'"}'),
        "/array": (200, {}, b"[]"),
        "/broken": (200, {}, b"{not json"),
    }
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    trusting = ssl.create_default_context(cafile=str(cert))
    yield base, trusting
    server.shutdown()
    server.server_close()


def test_a_jwks_is_read_over_https(tls_server: tuple[str, ssl.SSLContext]) -> None:
    base, context = tls_server
    assert fetch_jwks(f"{base}/jwks", context=context) == JWKS


@pytest.mark.parametrize("path", ["/moved", "/downgrade"])
def test_redirects_are_refused_even_to_https(tls_server: tuple[str, ssl.SSLContext], path: str) -> None:
    base, context = tls_server
    with pytest.raises(OSError, match="redirects"):
        fetch_jwks(f"{base}{path}", context=context)


def test_a_server_whose_certificate_is_not_trusted_is_refused(tls_server: tuple[str, ssl.SSLContext]) -> None:
    base, _ = tls_server
    with pytest.raises(OSError):
        fetch_jwks(f"{base}/jwks")  # the system's trust store does not know the test's certificate


@pytest.mark.parametrize("path", ["/big", "/array", "/broken"])
def test_documents_too_large_or_not_an_object_are_refused(tls_server: tuple[str, ssl.SSLContext],
                                                          path: str) -> None:
    base, context = tls_server
    with pytest.raises(ValueError):
        fetch_jwks(f"{base}{path}", context=context)


def test_plain_http_is_refused_before_any_connection() -> None:
    with pytest.raises(ValueError, match="https"):
        fetch_jwks("http://127.0.0.1:9/jwks")
