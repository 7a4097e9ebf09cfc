"""Differential testing of filters: for generated users and generated filters, the SQL query
(``storage/filter_sql.py`` over the value index) returns exactly the users that the in-memory
evaluator (``scim/evaluate.py``, walking the stored documents) accepts — and the two refuse the
same filters with ``invalidFilter``.

Values are drawn from an alphabet that is hostile to SQL and to case folding: both quotes, ``%``,
``_``, backslashes, ``*``/``[`` (GLOB), ``-``/``=``/``;``, accented and fullwidth letters, ``ß``,
emoji, and now and then a whole injection attempt. Literals are mostly taken from the generated
data, re-cased or cut, so that most filters match something. Runs on SQLite and PostgreSQL.

The default run executes a few hundred examples (each one checks several filters); the ``slow``
run (``pytest -m slow``) several thousand.
"""

from __future__ import annotations

import collections
import itertools
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from identity_sync.auth.tokens import Principal
from identity_sync.config import Settings
from identity_sync.errors import BadRequest, Conflict
from identity_sync.scim.evaluate import Candidate, matches
from identity_sync.scim.filter import format_filter, parse_filter
from identity_sync.scim.filter_ast import And, AttrPath, Compare, Filter, Not, Or, Present, ValuePath
from identity_sync.scim.registry import USER
from identity_sync.service.resources import ResourceService
from identity_sync.service.tenants import TenantService
from identity_sync.storage import resources as store
from identity_sync.storage.db import Database

ENTERPRISE = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"
GR = "urn:ietf:params:scim:schemas:extension:GlobalRelay:2.0:User"

# Hostile characters first (hypothesis shrinks towards the start of the alphabet).
ALPHABET = ['"', "'", "%", "_", "\\", "*", "[", "-", "=", ";", "a", "A", "b", "B", " ", "é", "É", "ß", "ｆ", "Ｆ",
            "İ", "😀", "z"]
# Now and then a value that would end a quoted SQL string and inject a clause, were values ever
# formatted into the SQL text instead of bound.
INJECTION = "x' OR '1'='1' --"
text = st.one_of(st.text(st.sampled_from(ALPHABET), min_size=0, max_size=6), st.just(INJECTION))
nonempty = st.text(st.sampled_from(ALPHABET), min_size=1, max_size=6)

# Paths as a client might spell them: any case, URN-qualified or not, sub-attributes.
STRING_PATHS = [
    "userName", "USERNAME", "displayName", "nickName", "title", "externalId", "name.givenName",
    "name.familyName", "emails.value", "emails.type", "emails", "EMAILS.VALUE",
    f"{ENTERPRISE}:department", "department", f"{ENTERPRISE}:employeeNumber",
    f"{GR}:proxyAddresses", "proxyAddresses", f"{GR}:extensionAttribute1", "id",
    "urn:ietf:params:scim:schemas:core:2.0:User:userName",
]
BOOLEAN_PATHS = ["active", "emails.primary"]
OTHER_PATHS = ["name", "meta.lastModified", "meta.created", "meta.resourceType", "groups", "unknownAttr",
               "name.unknown", "meta"]
STATS: collections.Counter[str] = collections.Counter()
OPERATORS = ["eq", "ne", "co", "sw", "ew", "gt", "ge", "lt", "le"]


def _path(spelling: str) -> AttrPath:
    return parse_filter(f"{spelling} pr").path  # type: ignore[union-attr]


@st.composite
def users(draw: st.DrawFn) -> list[dict[str, Any]]:
    out = []
    for i in range(draw(st.integers(1, 6))):
        user: dict[str, Any] = {"userName": draw(nonempty) + str(i)}
        for attr in ("displayName", "nickName", "title", "externalId"):
            if draw(st.booleans()):
                user[attr] = draw(text)
        if draw(st.booleans()):
            user["active"] = draw(st.sampled_from([True, False, "True", "False"]))
        if draw(st.booleans()):
            user["name"] = {"givenName": draw(text), "familyName": draw(text)}
        emails = draw(st.lists(st.fixed_dictionaries(
            {"value": text}, optional={"type": st.sampled_from(["work", "home", "WORK", "other"]),
                                       "primary": st.booleans()}), max_size=3))
        seen_primary = False
        for email in emails:  # at most one primary, as the service requires
            if email.get("primary") is True:
                email["primary"] = not seen_primary
                seen_primary = True
        if emails:
            user["emails"] = emails
        ext = {k: draw(text) for k in ("department", "employeeNumber") if draw(st.booleans())}
        if ext:
            user[ENTERPRISE] = ext
        gr: dict[str, Any] = {}
        if draw(st.booleans()):
            gr["proxyAddresses"] = draw(st.lists(nonempty, max_size=3, unique_by=str.lower))
        if draw(st.booleans()):
            gr["extensionAttribute1"] = draw(text)
        if gr:
            user[GR] = gr
        out.append(user)
    return out


def _strings(value: Any) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for v in value.values():
            yield from _strings(v)
    elif isinstance(value, list):
        for v in value:
            yield from _strings(v)


@st.composite
def literals(draw: st.DrawFn, pool: list[str]) -> Any:
    kind = draw(st.integers(0, 9))
    if kind <= 5 and pool:
        base = draw(st.sampled_from(pool))
        cut = draw(st.integers(0, len(base)))
        base = draw(st.sampled_from([base, base[:cut], base[cut:], base.upper(), base.lower(), base.swapcase()]))
        if base and draw(st.integers(0, 3)) == 0:
            # A LIKE/GLOB wildcard where the data has another character: matches only if unescaped.
            at = draw(st.integers(0, len(base) - 1))
            base = base[:at] + draw(st.sampled_from(["_", "%", "\\", "*", "?"])) + base[at + 1:]
        return base
    if kind == 6:
        return draw(text)
    if kind == 7:
        return None
    if kind == 8:
        return draw(st.sampled_from([True, False, "true", "False"]))
    return draw(st.sampled_from([0, 1, 2.5, -3]))


@st.composite
def filters(draw: st.DrawFn, pool: list[str], stamps: list[str], depth: int = 0) -> Filter:
    choice = draw(st.integers(0, 12 if depth < 3 else 8))
    if choice <= 4:
        return Compare(_path(draw(st.sampled_from(STRING_PATHS))), draw(st.sampled_from(OPERATORS)),
                       draw(literals(pool)))
    if choice == 5:
        return Compare(_path(draw(st.sampled_from(BOOLEAN_PATHS))), draw(st.sampled_from(["eq", "ne", "gt"])),
                       draw(literals(pool)))
    if choice == 6:
        path = draw(st.sampled_from(OTHER_PATHS))
        literal = draw(st.sampled_from([*stamps, "2020-01-01T00:00:00Z", "User", "Group", "x", None]))
        return Compare(_path(path), draw(st.sampled_from(OPERATORS)), literal)
    if choice == 7:
        return Present(_path(draw(st.sampled_from(STRING_PATHS + BOOLEAN_PATHS + OTHER_PATHS))))
    if choice == 8:
        return ValuePath(_path(draw(st.sampled_from(["emails", "name", f"{ENTERPRISE}:manager", "title"]))),
                         draw(element_filters(pool)))
    left = draw(filters(pool, stamps, depth + 1))
    if choice == 9:
        return Not(left)
    right = draw(filters(pool, stamps, depth + 1))
    return And(left, right) if choice in (10, 11) else Or(left, right)


@st.composite
def element_filters(draw: st.DrawFn, pool: list[str], depth: int = 0) -> Filter:
    choice = draw(st.integers(0, 6 if depth < 2 else 3))
    sub = draw(st.sampled_from(["value", "type", "primary", "givenName", "display", "familyName"]))
    if choice <= 2:
        return Compare(AttrPath(None, sub), draw(st.sampled_from(OPERATORS)), draw(literals(pool)))
    if choice == 3:
        return Present(AttrPath(None, sub))
    if choice == 4:
        return Not(draw(element_filters(pool, depth + 1)))
    left, right = draw(element_filters(pool, depth + 1)), draw(element_filters(pool, depth + 1))
    return And(left, right) if choice == 5 else Or(left, right)


class World:
    """One database per kind for the whole module; every example gets a tenant of its own."""

    def __init__(self, url: str, root: Path) -> None:
        self.db = Database(url)
        self.db.migrate()
        self.settings = Settings(database_url=url, data_dir=root)
        self.tenants = TenantService(self.db)
        self.service = ResourceService(self.db, self.settings)
        self.counter = itertools.count()
        self.checked = 0

    def tenant(self) -> Principal:
        name = f"t{next(self.counter)}"
        issued = self.tenants.create_tenant(name)
        return self.tenants.authenticate(f"Bearer {issued.token}", name)


@pytest.fixture(scope="module")
def world(request: pytest.FixtureRequest, db_kind: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    """On SQLite and on PostgreSQL (the production store): the same filters compile to each
    dialect's SQL, and both must agree with the evaluator."""
    root = tmp_path_factory.mktemp("differential")
    if db_kind == "sqlite":
        w = World(f"sqlite:///{root / 'differential.db'}", root)
        yield w
        w.db.dispose()
        return
    server = request.getfixturevalue("pg_server")
    factory = request.getfixturevalue("pg_databases")
    name = factory.take()
    w = World(server.url(name), root)
    yield w
    w.db.dispose()
    factory.give_back(name)


def _run(world: World, data: st.DataObject, people: list[dict[str, Any]], filter_count: int) -> None:
    principal = world.tenant()
    for body in people:
        try:
            world.service.create(principal, USER, {"schemas": [USER.core.id], **body})
        except Conflict:
            pass  # two generated userNames equal once case-folded
    with world.db.fast_read() as conn:
        _, stored = store.query(conn, principal.tenant_id, USER, None, start_index=1, count=1000)
    candidates = [Candidate(s.id, s.doc, s.created_at, s.last_modified) for s in stored]
    pool = sorted({v for s in stored for v in _strings(s.doc)})
    stamps = [c.created_at for c in candidates]
    for _ in range(filter_count):
        node = data.draw(filters(pool, stamps))
        text_form = format_filter(node)
        assert parse_filter(text_form, max_terms=1000) == node  # the text a client would send
        try:
            with world.db.fast_read() as conn:
                _, found = store.query(conn, principal.tenant_id, USER, node, start_index=1, count=1000)
            actual: set[str] | str = {s.id for s in found}
        except BadRequest as error:
            actual = f"400 {error.scim_type}"
        try:
            expected: set[str] | str = {c.id for c in candidates if matches(USER, c, node)}
            if not candidates:
                matches(USER, Candidate("x", {}, stamps[0] if stamps else "", ""), node)
        except BadRequest as error:
            expected = f"400 {error.scim_type}"
        assert actual == expected, f"filter {text_form!r}"
        STATS[("error" if isinstance(actual, str) else ("empty" if not actual else "match"))] += 1
        world.checked += 1


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                   HealthCheck.data_too_large])
@given(people=users(), data=st.data())
def test_sql_agrees_with_the_evaluator(world: World, people: list[dict[str, Any]], data: st.DataObject) -> None:
    _run(world, data, people, filter_count=8)


@pytest.mark.slow
@settings(max_examples=1500, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                    HealthCheck.data_too_large])
@given(people=users(), data=st.data())
def test_sql_agrees_with_the_evaluator_long_run(world: World, people: list[dict[str, Any]],
                                                data: st.DataObject) -> None:
    _run(world, data, people, filter_count=10)


def test_the_generated_filters_exercised_every_outcome() -> None:
    """Runs after the property tests of this module: the generators are only useful if filters
    matched some users, matched none, and were refused."""
    if not STATS:
        pytest.skip("the property tests did not run")
    assert min(STATS["match"], STATS["empty"], STATS["error"]) > STATS.total() / 10, STATS
