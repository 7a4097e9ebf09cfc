"""Fixtures shared by the whole suite: a migrated database per test — every test that uses one
runs twice, on SQLite and on PostgreSQL (``--db`` picks one) —, the real ASGI app, and SCIM
clients bound to a tenant's URL with its bearer token."""

from __future__ import annotations

import io
import json
import logging
import os
import shutil
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import structlog
from starlette.testclient import TestClient

from identity_sync import logs
from identity_sync.auth.tokens import Principal
from identity_sync.config import Settings
from identity_sync.service.resources import ResourceService
from identity_sync.service.tenants import IssuedToken, TenantService
from identity_sync.storage.db import Database
from identity_sync.web.app import create_app
from tests import pg

DATABASES = ("sqlite", "postgresql")
_PG_TEMPLATE = "idsync_template"


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--db", choices=(*DATABASES, "both"), default="both",
                     help="run the database-backed tests on this database only (default: both)")


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    # Parametrize here rather than with fixture params so that `--db` can narrow the list.
    if "db_kind" in metafunc.fixturenames:
        chosen = metafunc.config.getoption("--db")
        metafunc.parametrize("db_kind", DATABASES if chosen == "both" else (chosen,), scope="session")

SCIM_JSON = "application/scim+json"


@pytest.fixture(scope="session")
def migrated_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One migrated database file, copied for each test (migrating per test is 10x slower)."""
    path = tmp_path_factory.mktemp("template") / "template.db"
    db = Database(f"sqlite:///{path}")
    db.migrate()
    db.engine.dispose()
    return path


@pytest.fixture(scope="session")
def pg_server() -> Iterator[pg.PostgresServer]:
    """A PostgreSQL cluster of its own for this test session, started on first use."""
    server = pg.start_server()
    if server is None:
        if os.environ.get("IDSYNC_REQUIRE_POSTGRES"):
            pytest.fail("IDSYNC_REQUIRE_POSTGRES is set but " + pg.SKIP_REASON)
        pytest.skip(pg.SKIP_REASON)
    try:
        yield server
    finally:
        server.destroy()


@pytest.fixture(scope="session")
def pg_template(pg_server: pg.PostgresServer) -> str:
    """A migrated database that each PostgreSQL test's database is cloned from (CREATE DATABASE
    … TEMPLATE copies it in ~40 ms; migrating each one would take 5x longer)."""
    pg_server.admin(f"CREATE DATABASE {_PG_TEMPLATE}")
    db = Database(pg_server.url(_PG_TEMPLATE))
    db.migrate()
    db.dispose()
    return _PG_TEMPLATE


@pytest.fixture(scope="session")
def pg_databases(pg_server: pg.PostgresServer, pg_template: str) -> Iterator[pg.DatabaseFactory]:
    factory = pg.DatabaseFactory(pg_server, pg_template, f"idsync_test_{os.getpid()}")
    yield factory
    factory.close()


def fresh_database_url(request: pytest.FixtureRequest, db_kind: str, directory: Path) -> Iterator[str]:
    """A migrated database of its own, for as long as the generator runs: a copy of the SQLite
    template in ``directory``, or a PostgreSQL clone of the template database."""
    if db_kind == "sqlite":
        target = directory / "identity-sync.db"
        shutil.copy(request.getfixturevalue("migrated_template"), target)
        yield f"sqlite:///{target}"
        return
    server: pg.PostgresServer = request.getfixturevalue("pg_server")
    factory: pg.DatabaseFactory = request.getfixturevalue("pg_databases")
    name = factory.take()
    yield server.url(name)
    factory.give_back(name)  # dropped WITH (FORCE): a server subprocess may still be connected


@pytest.fixture
def db_url(request: pytest.FixtureRequest, db_kind: str, tmp_path: Path) -> Iterator[str]:
    yield from fresh_database_url(request, db_kind, tmp_path)


@pytest.fixture
def settings(db_url: str, tmp_path: Path) -> Settings:
    return Settings(database_url=db_url, data_dir=tmp_path, public_url="https://scim.example.test")


@pytest.fixture
def db(settings: Settings) -> Iterator[Database]:
    database = Database(settings.resolved_database_url())
    yield database
    database.dispose()


@pytest.fixture
def app(settings: Settings, db: Database) -> Any:
    return create_app(settings, db)


@pytest.fixture
def http(app: Any) -> Iterator[TestClient]:
    with TestClient(app, base_url="https://scim.example.test") as client:
        yield client


class ScimClient:
    """A client for one Tenant URL: paths are relative to it (``/Users``), the bearer token and
    the SCIM media type are added unless a test overrides them."""

    def __init__(self, http: TestClient, tenant: str, token: str) -> None:
        self.http = http
        self.tenant = tenant
        self.token = token
        self.base = f"/scim/v2/{tenant}"

    def request(self, method: str, path: str, *, json: Any = None, headers: dict[str, str] | None = None,
                **kwargs: Any) -> Any:
        merged = {"Authorization": f"Bearer {self.token}"}
        if json is not None:
            merged["Content-Type"] = SCIM_JSON
        merged.update(headers or {})
        content = None
        if json is not None:
            import orjson

            content = orjson.dumps(json)
        return self.http.request(method, self.base + path, content=content, headers=merged, **kwargs)

    def get(self, path: str, **kwargs: Any) -> Any:
        return self.request("GET", path, **kwargs)

    def post(self, path: str, json: Any, **kwargs: Any) -> Any:
        return self.request("POST", path, json=json, **kwargs)

    def put(self, path: str, json: Any, **kwargs: Any) -> Any:
        return self.request("PUT", path, json=json, **kwargs)

    def patch(self, path: str, json: Any, **kwargs: Any) -> Any:
        return self.request("PATCH", path, json=json, **kwargs)

    def delete(self, path: str, **kwargs: Any) -> Any:
        return self.request("DELETE", path, **kwargs)

    def create_user(self, user_name: str, **attributes: Any) -> dict[str, Any]:
        body = {"schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"], "userName": user_name, **attributes}
        response = self.post("/Users", body)
        assert response.status_code == 201, response.text
        return response.json()

    def find(self, filter_text: str) -> list[dict[str, Any]]:
        response = self.get("/Users", params={"filter": filter_text})
        assert response.status_code == 200, response.text
        return response.json()["Resources"]


@pytest.fixture
def service(db: Database, settings: Settings) -> ResourceService:
    """The SCIM resource service on the test's database (tests that skip HTTP)."""
    return ResourceService(db, settings)


@pytest.fixture
def tenants(db: Database) -> TenantService:
    return TenantService(db)


@pytest.fixture
def scim(http: TestClient, issued: IssuedToken) -> ScimClient:
    return ScimClient(http, issued.tenant, issued.token)


@pytest.fixture
def issued(tenants: TenantService) -> IssuedToken:
    """Tenant ``acme`` and its first token (``scim`` and ``acme`` are this tenant)."""
    return tenants.create_tenant("acme")


@pytest.fixture
def acme(tenants: TenantService, issued: IssuedToken) -> Principal:
    """Tenant ``acme`` as its provisioning client, for tests that call the services directly."""
    return tenants.authenticate(f"Bearer {issued.token}", "acme")


@pytest.fixture
def other_scim(http: TestClient, tenants: TenantService) -> ScimClient:
    issued = tenants.create_tenant("globex")
    return ScimClient(http, issued.tenant, issued.token)


@contextmanager
def captured_logs(monkeypatch: pytest.MonkeyPatch, level: str) -> Iterator[io.StringIO]:
    """The service's real logging configuration (``logs.configure``) with stderr redirected to the
    buffer it yields; the previous structlog and logging configuration is restored afterwards."""
    previous = structlog.get_config()
    root = logging.getLogger()
    handlers, root_level = list(root.handlers), root.level
    buffer = io.StringIO()
    with monkeypatch.context() as patch:
        patch.setattr(sys, "stderr", buffer)
        logs.configure(level)
    structlog.configure(cache_logger_on_first_use=False)  # keep module loggers re-configurable
    try:
        yield buffer
    finally:
        structlog.configure(**previous)
        root.handlers[:], root.level = handlers, root_level


@pytest.fixture
def json_lines(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """The JSON objects logged (at INFO and above) so far, by a function."""
    with captured_logs(monkeypatch, "INFO") as buffer:
        yield lambda: [json.loads(line) for line in buffer.getvalue().splitlines() if line.strip()]
