"""The client address the token endpoint limits by (issue 11, item 2), on a real ``serve``:

* by default no proxy is trusted: the address is the TCP peer's, whatever ``X-Forwarded-For`` a
  client sends (uvicorn's own default believed it from 127.0.0.1, so a local caller could claim
  a fresh address per request and was never limited);
* with ``--forwarded-allow-ips`` naming the proxy, each caller behind it has its own address (the
  rightmost one the proxy appended; what a client prepends is not believed), and
  ``X-Forwarded-Proto`` is believed too;
* the unauthenticated bucket is per address *and* tenant: callers flooding one tenant's token
  endpoint do not lock another tenant's clients out."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from identity_sync.service.tenants import IssuedToken, TenantService
from identity_sync.storage.db import Database
from tests.pg import free_port

BURST = 3


class Served:
    def __init__(self, port: int, tokens: dict[str, IssuedToken]) -> None:
        self.base, self.tokens = f"http://127.0.0.1:{port}", tokens

    def token_request(self, tenant: str, forwarded_for: str | None = None) -> int:
        """A token request with a wrong secret, as an attacker guessing would send: its status."""
        headers = {"Content-Type": "application/x-www-form-urlencoded"}
        if forwarded_for is not None:
            headers["X-Forwarded-For"] = forwarded_for
        form = urllib.parse.urlencode({"grant_type": "client_credentials", "client_id": "idsc_guess",
                                       "client_secret": "guess"}).encode()
        return _call(urllib.request.Request(f"{self.base}/scim/v2/{tenant}/oauth/token", data=form,
                                            headers=headers, method="POST"))[0]

    def config_location(self, headers: dict[str, str]) -> str:
        request = urllib.request.Request(f"{self.base}/scim/v2/acme/ServiceProviderConfig", headers={
            "Authorization": f"Bearer {self.tokens['acme'].token}", **headers})
        status, body = _call(request)
        assert status == 200, body
        return str(json.loads(body)["meta"]["location"])


def _call(request: urllib.request.Request) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()


@pytest.fixture(scope="module")
def database(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, dict[str, IssuedToken]]]:
    directory = tmp_path_factory.mktemp("addresses")
    url = f"sqlite:///{directory / 'identity-sync.db'}"
    db = Database(url)
    db.migrate()
    tokens = {name: TenantService(db).create_tenant(name) for name in ("acme", "globex")}
    db.dispose()
    yield url, tokens


def _serve(database: tuple[str, dict[str, IssuedToken]], tmp_path: Path, *args: str) -> Iterator[Served]:
    url, tokens = database
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("IDSYNC_", "FORWARDED_ALLOW_IPS"))}
    # A bucket of BURST that does not refill within the test: the 4th request of a bucket is 429.
    env.update(IDSYNC_DATABASE_URL=url, IDSYNC_DATA_DIR=str(tmp_path), IDSYNC_LOG_LEVEL="WARNING",
               IDSYNC_TOKEN_RATE_LIMIT_PER_SECOND="0.001", IDSYNC_TOKEN_RATE_LIMIT_BURST=str(BURST),
               IDSYNC_PUBLIC_URL="", PYTHONUNBUFFERED="1")
    process = subprocess.Popen([sys.executable, "-m", "identity_sync", "serve", "--port", str(port), *args],
                               env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 30
        while True:
            assert process.poll() is None, f"serve exited with {process.returncode}"
            assert time.monotonic() < deadline, "serve did not start within 30 s"
            try:
                if _call(urllib.request.Request(f"http://127.0.0.1:{port}/healthz"))[0] == 200:
                    break
            except OSError:
                time.sleep(0.05)
        yield Served(port, tokens)
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@pytest.fixture
def direct(database: tuple[str, dict[str, IssuedToken]], tmp_path: Path) -> Iterator[Served]:
    """``serve`` with its default: no proxy trusted."""
    yield from _serve(database, tmp_path)


@pytest.fixture
def behind_proxy(database: tuple[str, dict[str, IssuedToken]], tmp_path: Path) -> Iterator[Served]:
    """``serve --forwarded-allow-ips 127.0.0.1``: the proxy runs on this host."""
    yield from _serve(database, tmp_path, "--forwarded-allow-ips", "127.0.0.1")


def test_without_a_trusted_proxy_a_spoofed_forwarded_for_buys_no_fresh_bucket(direct: Served) -> None:
    statuses = [direct.token_request("acme", forwarded_for=f"198.51.100.{i}") for i in range(BURST + 3)]

    assert statuses == [401] * BURST + [429] * 3


def test_the_callers_bucket_is_per_tenant_so_flooding_one_tenant_spares_the_others(direct: Served) -> None:
    flood = [direct.token_request("acme") for _ in range(BURST + 2)]
    other = [direct.token_request("globex") for _ in range(BURST)]

    assert flood[-1] == 429
    assert other == [401] * BURST  # refused for its wrong secret, not for acme's flood


def test_behind_a_trusted_proxy_each_caller_has_its_own_bucket(behind_proxy: Served) -> None:
    first = [behind_proxy.token_request("acme", forwarded_for="203.0.113.7") for _ in range(BURST + 1)]
    second = [behind_proxy.token_request("acme", forwarded_for="203.0.113.8") for _ in range(BURST)]

    assert first == [401] * BURST + [429]
    assert second == [401] * BURST  # another caller behind the same proxy is not limited by the first


def test_behind_a_trusted_proxy_what_a_client_prepends_to_forwarded_for_is_not_believed(
        behind_proxy: Served) -> None:
    # The proxy appends the address it saw ($proxy_add_x_forwarded_for); the client made up the rest.
    statuses = [behind_proxy.token_request("acme", forwarded_for=f"192.0.2.{i}, 203.0.113.9")
                for i in range(BURST + 2)]

    assert statuses == [401] * BURST + [429] * 2


def test_forwarded_proto_is_believed_only_from_a_trusted_proxy(direct: Served, behind_proxy: Served) -> None:
    https = {"X-Forwarded-Proto": "https", "X-Forwarded-For": "203.0.113.10"}

    assert direct.config_location(https).startswith("http://127.0.0.1:")
    assert behind_proxy.config_location(https).startswith("https://127.0.0.1:")
    assert behind_proxy.config_location({}).startswith("http://127.0.0.1:")


def test_the_proxy_option_trusts_nobody_unless_given() -> None:
    from identity_sync.cli.serve import proxy_options

    assert proxy_options(None) == proxy_options("") == proxy_options(" , ") == {
        "proxy_headers": False, "forwarded_allow_ips": ""}
    assert proxy_options("10.0.0.1, 10.0.1.0/24") == {"proxy_headers": True,
                                                     "forwarded_allow_ips": "10.0.0.1,10.0.1.0/24"}
