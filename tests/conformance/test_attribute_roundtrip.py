"""Every user attribute of the Global Relay Identity Sync mapping table (seed tutorial, step 5
item 10) survives a POST → GET round trip verbatim, is findable with an `eq` filter on its own
path, and survives a restart. Catalog cases 8 (create round-trip), 10/11 (filters on matching
attributes) and 50 (every mapped attribute is addressable)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from starlette.testclient import TestClient

from identity_sync.config import Settings
from identity_sync.service.tenants import TenantService
from identity_sync.storage.db import Database
from identity_sync.web.app import create_app
from tests.conformance import CORE, ENTERPRISE, GLOBALRELAY, SCIM_JSON, fetch, ids, query
from tests.conftest import ScimClient

#: The table of the seed tutorial, in its order (attribute path, type).
SEED_TABLE: list[tuple[str, str]] = [
    ("userName", "String"), ("active", "Boolean"), ("displayName", "String"), ("title", "String"),
    ("preferredLanguage", "String"), ("name.givenName", "String"), ("name.familyName", "String"),
    ("name.formatted", "String"),
    ('addresses[type eq "work"].formatted', "String"), ('addresses[type eq "work"].streetAddress', "String"),
    ('emails[type eq "work"].value', "String"),
    ('addresses[type eq "work"].locality', "String"), ('addresses[type eq "work"].region', "String"),
    ('addresses[type eq "work"].postalCode', "String"), ('addresses[type eq "work"].country', "String"),
    ('addresses[type eq "other"].formatted', "String"),
    ('phoneNumbers[type eq "work"].value', "String"), ('phoneNumbers[type eq "mobile"].value', "String"),
    ('phoneNumbers[type eq "fax"].value', "String"),
    ("externalId", "String"), ("name.honorificPrefix", "String"), ("name.honorificSuffix", "String"),
    ("nickName", "String"), ("userType", "String"), ("locale", "String"), ("timezone", "String"),
    ('emails[type eq "home"].value', "String"), ('emails[type eq "other"].value', "String"),
    ('phoneNumbers[type eq "home"].value', "String"), ('phoneNumbers[type eq "other"].value', "String"),
    ('phoneNumbers[type eq "pager"].value', "String"),
    ('addresses[type eq "home"].streetAddress', "String"), ('addresses[type eq "home"].locality', "String"),
    ('addresses[type eq "home"].region', "String"), ('addresses[type eq "home"].postalCode', "String"),
    ('addresses[type eq "home"].country', "String"), ('addresses[type eq "home"].formatted', "String"),
    ('addresses[type eq "other"].streetAddress', "String"), ('addresses[type eq "other"].locality', "String"),
    ('addresses[type eq "other"].region', "String"), ('addresses[type eq "other"].postalCode', "String"),
    ('addresses[type eq "other"].country', "String"),
    ('roles[primary eq "True"].display', "String"), ('roles[primary eq "True"].type', "String"),
    ('roles[primary eq "True"].value', "String"),
    *((f"{ENTERPRISE}:{name}", "String")
      for name in ("employeeNumber", "costCenter", "organization", "division", "department")),
    (f"{ENTERPRISE}:manager", "Reference"),
    (f"{GLOBALRELAY}:proxyAddresses", "String"),
    *((f"{GLOBALRELAY}:extensionAttribute{i}", "String") for i in range(1, 16)),
]
PATHS = [path for path, _ in SEED_TABLE]
_TYPED = re.compile(r'^(\w+)\[(\w+) eq "(\w+)"\]\.(\w+)$')
#: Bob's typed elements carry Alice's values of *another* type, so a filter that matched the
#: value in the wrong element (`addresses[type eq "work"].postalCode` hitting a home address)
#: would find Bob too.
_ROTATE = {"work": "home", "home": "other", "other": "work", "mobile": "fax", "fax": "pager", "pager": "mobile"}


def _slug(path: str) -> str:
    return re.sub(r"[^A-Za-z0-9]+", "-", path.rsplit(":", 1)[-1] if path.startswith("urn:") else path).strip("-")


def value_of(tag: str, path: str) -> str:
    """The test value of a string attribute: mixed case and punctuation, to prove "verbatim"."""
    if path == f"{GLOBALRELAY}:proxyAddresses":
        raise AssertionError("multi-valued; see proxy_addresses()")
    return f"{tag} {_slug(path)}.Value/1"


def proxy_addresses(tag: str) -> list[str]:
    return [f"SMTP:{tag}@primary.example", f"smtp:{tag}.alias@other.example", f"X500:/o={tag}/cn=Recipients"]


def build_user(tag: str, *, active: bool, manager_id: str, rotate: bool = False) -> dict[str, Any]:
    """A POST body carrying every attribute of the seed table, in the canonical shape (so the GET
    must equal it exactly, apart from `id`, `meta` and the manager's `$ref`)."""
    body: dict[str, Any] = {"schemas": [CORE, ENTERPRISE, GLOBALRELAY], "active": active}
    typed: dict[str, dict[str, dict[str, Any]]] = {}
    for path in PATHS:
        if path == "active":
            continue
        if path == f"{ENTERPRISE}:manager":
            body.setdefault(ENTERPRISE, {})["manager"] = {"value": manager_id}
            continue
        if path == f"{GLOBALRELAY}:proxyAddresses":
            body.setdefault(GLOBALRELAY, {})["proxyAddresses"] = proxy_addresses(tag)
            continue
        match = _TYPED.match(path)
        if match:
            attr, key, discriminator, sub = match.groups()
            source = path
            if rotate and key == "type":
                rotated = _ROTATE.get(discriminator, discriminator)
                source = f'{attr}[{key} eq "{rotated}"].{sub}'
            if rotate and attr == "emails" and discriminator == "work":
                source = path  # keep Bob's work email his own, so Bob is a normal user
            element = typed.setdefault(attr, {}).setdefault(discriminator, {})
            element[key] = True if discriminator == "True" else discriminator
            element[sub] = value_of("Alice" if rotate and source != path else tag, source)
            continue
        if path.startswith("urn:"):
            urn, name = path.rsplit(":", 1)
            body.setdefault(urn, {})[name] = value_of(tag, path)
        elif "." in path:
            parent, sub = path.split(".")
            body.setdefault(parent, {})[sub] = value_of(tag, path)
        else:
            body[path] = value_of(tag, path)
    for attr, elements in typed.items():
        body[attr] = list(elements.values())
    if rotate:
        # A non-primary role carrying Alice's primary-role values: `roles[primary eq "True"]…`
        # must not match it.
        alice_role = {sub: value_of("Alice", f'roles[primary eq "True"].{sub}') for sub in ("display", "type", "value")}
        body["roles"].append({"primary": False, **alice_role})
    return body


def expected_value(alice: dict[str, Any], path: str) -> Any:
    """Alice's value for ``path``, read from the body that was POSTed."""
    if path == "active":
        return alice["active"]
    if path == f"{ENTERPRISE}:manager":
        return alice[ENTERPRISE]["manager"]["value"]
    match = _TYPED.match(path)
    if match:
        attr, key, discriminator, sub = match.groups()
        wanted: Any = True if discriminator == "True" else discriminator
        return next(e[sub] for e in alice[attr] if e[key] == wanted)
    if path.startswith("urn:"):
        urn, name = path.rsplit(":", 1)
        return alice[urn][name]
    if "." in path:
        parent, sub = path.split(".")
        return alice[parent][sub]
    return alice[path]


def literal(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return '"' + str(value).replace("\\", "\\\\").replace('"', '\\"') + '"'


class Population:
    """Alice (every attribute), Bob (every attribute, other values), and their two managers."""

    def __init__(self, scim: ScimClient) -> None:
        self.scim = scim
        boss_a = self._post({"schemas": [CORE], "userName": "boss.a@example.com", "active": False})
        boss_b = self._post({"schemas": [CORE], "userName": "boss.b@example.com", "active": False})
        self.alice_body = build_user("Alice", active=True, manager_id=boss_a["id"])
        self.bob_body = build_user("Bob", active=False, manager_id=boss_b["id"], rotate=True)
        self.alice_response = scim.post("/Users", self.alice_body)
        assert self.alice_response.status_code == 201, self.alice_response.text
        self.alice = self.alice_response.json()
        self.bob = self._post(self.bob_body)
        self.boss_a = boss_a

    def _post(self, body: dict[str, Any]) -> dict[str, Any]:
        response = self.scim.post("/Users", body)
        assert response.status_code == 201, response.text
        return response.json()


@pytest.fixture(scope="module")
def population(tmp_path_factory: pytest.TempPathFactory, migrated_template: Path) -> Iterator[Population]:
    """One populated tenant shared by the parametrized filter checks (they only read)."""
    directory = tmp_path_factory.mktemp("roundtrip")
    target = directory / "identity-sync.db"
    target.write_bytes(migrated_template.read_bytes())
    settings = Settings(database_url=f"sqlite:///{target}", data_dir=directory,
                        public_url="https://scim.example.test")
    db = Database(settings.resolved_database_url())
    issued = TenantService(db).create_tenant("acme")
    with TestClient(create_app(settings, db), base_url="https://scim.example.test") as http:
        yield Population(ScimClient(http, issued.tenant, issued.token))
    db.dispose()


def _expected_resource(body: dict[str, Any], created: dict[str, Any]) -> dict[str, Any]:
    expected = {k: v for k, v in body.items()}
    expected[ENTERPRISE] = dict(body[ENTERPRISE])
    manager_id = body[ENTERPRISE]["manager"]["value"]
    expected[ENTERPRISE]["manager"] = {"value": manager_id,
                                       "$ref": f"https://scim.example.test/scim/v2/acme/Users/{manager_id}"}
    expected["id"] = created["id"]
    return expected


def test_every_seed_attribute_round_trips_verbatim(population: Population) -> None:
    """Case 8: GET returns every value exactly as POSTed, multi-valued ones as arrays, plus `id`
    and a complete `meta` whose version equals the ETag header."""
    response = population.scim.get(f"/Users/{population.alice['id']}")
    assert response.status_code == 200 and response.headers["content-type"].startswith(SCIM_JSON)
    got = response.json()
    assert got == population.alice
    meta = got.pop("meta")
    assert got == _expected_resource(population.alice_body, population.alice)
    for attr in ("emails", "phoneNumbers", "addresses", "roles"):
        assert isinstance(got[attr], list)
    assert got["emails"] and len(got["emails"]) == 3 and len(got["phoneNumbers"]) == 6
    assert len(got["addresses"]) == 3 and all(len(a) == 7 for a in got["addresses"])
    assert got[GLOBALRELAY]["proxyAddresses"] == proxy_addresses("Alice")
    assert set(got[GLOBALRELAY]) == {"proxyAddresses", *(f"extensionAttribute{i}" for i in range(1, 16))}
    assert meta["resourceType"] == "User"
    assert meta["created"] == meta["lastModified"]
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z", meta["created"])
    assert meta["location"] == f"https://scim.example.test/scim/v2/acme/Users/{got['id']}"
    assert response.headers["etag"] == meta["version"]
    assert population.alice_response.headers["etag"] == meta["version"]
    assert population.alice_response.headers["location"] == meta["location"]


def test_the_second_user_round_trips_too(population: Population) -> None:
    """Case 8: Bob (extra non-primary role, rotated typed values) is stored exactly as sent."""
    got = fetch(population.scim, population.bob["id"])
    got.pop("meta")
    assert got == _expected_resource(population.bob_body, population.bob)


@pytest.mark.parametrize("path", PATHS)
def test_each_seed_attribute_is_filterable_by_its_own_path(population: Population, path: str) -> None:
    """Cases 10/11 generalised: `<path> eq <Alice's value>` finds Alice and nobody else — not
    Bob, whose same attribute differs and whose other elements carry Alice's values."""
    value = expected_value(population.alice_body, path)
    values = value if isinstance(value, list) else [value]
    for item in values:
        expression = f"{path} eq {literal(item)}"
        body = query(population.scim, "filter=" + _form_encode(expression))
        assert ids(body) == [population.alice["id"]], expression
        assert body["totalResults"] == 1
    if isinstance(value, str) and path not in (f"{ENTERPRISE}:manager", "externalId"):
        # caseExact:false strings (all but the reference and externalId) match in any case.
        body = query(population.scim, "filter=" + _form_encode(f"{path} eq {literal(value.upper())}"))
        assert ids(body) == [population.alice["id"]]


def test_case_exact_attributes_do_not_match_other_case(population: Population) -> None:
    """externalId and manager ids are caseExact: another letter case finds nobody."""
    external_id = population.alice_body["externalId"]
    assert ids(query(population.scim, "filter=" + _form_encode(f"externalId eq {literal(external_id.upper())}"))) == []


def _form_encode(expression: str) -> str:
    from urllib.parse import quote_plus

    return quote_plus(expression, safe="")


def test_a_restart_on_the_same_database_serves_identical_users(
    scim: ScimClient, settings: Settings, db: Database, tenants: TenantService
) -> None:
    """After disposing the database and building a new app on the same file, GET returns the
    same document, meta and ETag, and filters still work (the value index persisted)."""
    boss = scim.create_user("boss@example.com", active=False)
    body = build_user("Alice", active=True, manager_id=boss["id"])
    response = scim.post("/Users", body)
    assert response.status_code == 201, response.text
    user_id = response.json()["id"]
    before = scim.get(f"/Users/{user_id}")
    db.dispose()
    restarted = Database(settings.resolved_database_url())
    try:
        with TestClient(create_app(settings, restarted), base_url="https://scim.example.test") as http:
            again = ScimClient(http, scim.tenant, scim.token)
            after = again.get(f"/Users/{user_id}")
            assert after.status_code == 200
            assert after.json() == before.json()
            assert after.headers["etag"] == before.headers["etag"]
            expression = f'{GLOBALRELAY}:extensionAttribute9 eq {literal(body[GLOBALRELAY]["extensionAttribute9"])}'
            assert ids(query(again, "filter=" + _form_encode(expression))) == [user_id]
            assert ids(query(again, "filter=" + _form_encode(
                f'{ENTERPRISE}:manager eq "{boss["id"]}"'))) == [user_id]
    finally:
        restarted.dispose()
