"""No input gets a 5xx (issue 11, item 3): numbers past every integer type, dates past the
calendar's ends, and — as a property — any generated path, query, header and body on every route.

The property test sends requests as a client of tenant ``acme`` could (valid token, or a broken
one), built from the pieces SCIM clients send and from noise, and asserts only that the service
never answers ``>= 500``: a 500 is a bug, whatever the input. Bounded (``EXAMPLES`` per database)
so that it runs in well under a minute; ``pytest -m slow`` runs ``SLOW_EXAMPLES``."""

from __future__ import annotations

import string
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from starlette.testclient import TestClient

from tests.conftest import ScimClient

USER_SCHEMA = "urn:ietf:params:scim:schemas:core:2.0:User"
GROUP_SCHEMA = "urn:ietf:params:scim:schemas:core:2.0:Group"
PATCH_SCHEMA = "urn:ietf:params:scim:api:messages:2.0:PatchOp"
BULK_REQUEST = "urn:ietf:params:scim:api:messages:2.0:BulkRequest"
SEARCH_REQUEST = "urn:ietf:params:scim:api:messages:2.0:SearchRequest"
ENTERPRISE = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"
GR = "urn:ietf:params:scim:schemas:extension:GlobalRelay:2.0:User"
HUGE = "99999999999999999999"
EXAMPLES, SLOW_EXAMPLES = 250, 3_000


# -- the overflow cases that were 500s ----------------------------------------------------------------


@pytest.mark.parametrize("start_index", [HUGE, "9223372036854775808", str(2**63 - 1), str(2**53)])
def test_a_start_index_past_every_integer_type_is_an_empty_page(scim: ScimClient, start_index: str) -> None:
    scim.create_user("ada@example.com")

    for response in (scim.get("/Users", params={"startIndex": start_index}),
                     scim.get("/Groups", params={"startIndex": start_index, "filter": "displayName pr"}),
                     _raw_search(scim, b'{"startIndex": %s}' % start_index.encode())):
        if response.status_code == 400:  # a JSON number past 64 bits is read as a float: not an integer
            assert int(start_index) >= 2**64 and response.json()["scimType"] == "invalidValue"
            continue
        assert response.status_code == 200, response.text
        body = response.json()
        assert body["Resources"] == [] and body["itemsPerPage"] == 0
        assert body["startIndex"] == min(int(start_index), 2**53 - 1)  # JSON-safe in every parser


def test_a_start_index_far_below_one_is_one(scim: ScimClient) -> None:
    scim.create_user("ada@example.com")

    body = scim.get("/Users", params={"startIndex": "-" + HUGE}).json()

    assert body["startIndex"] == 1 and body["totalResults"] == 1 and len(body["Resources"]) == 1


def _raw_search(scim: ScimClient, body: bytes) -> Any:
    return scim.http.post(scim.base + "/.search", content=body, headers={
        "Authorization": f"Bearer {scim.token}", "Content-Type": "application/scim+json"})


def test_a_count_past_every_integer_type_is_read_as_the_largest_page_or_none(scim: ScimClient) -> None:
    scim.create_user("ada@example.com")

    for count in (HUGE, "-" + HUGE):
        response = scim.get("/Users", params={"count": count})
        assert response.status_code == 200, response.text
        assert response.json()["itemsPerPage"] == (1 if count == HUGE else 0)
    assert _error(scim.get("/Users", params={"count": "1" * 5_000}))["scimType"] == "invalidValue"  # >4300 digits
    assert _error(_raw_search(scim, b'{"count": 1e300}'))["scimType"] == "invalidValue"


def _error(response: Any) -> dict[str, Any]:
    assert response.status_code == 400, response.text
    return dict(response.json())


@pytest.mark.parametrize(("literal", "matches"), [
    ("0001-01-01T00:00:00+01:00", {"gt": True, "ge": True, "lt": False, "le": False, "eq": False, "ne": True}),
    ("0001-01-01T00:00:00+14:00", {"gt": True, "lt": False, "eq": False}),
    ("0001-01-01T00:00:00-01:00", {"gt": True, "lt": False}),
    ("0005-06-01T00:00:00Z", {"gt": True, "lt": False}),  # a year of one digit must not sort after 2026
    ("9999-12-31T23:59:59-01:00", {"gt": False, "ge": False, "lt": True, "le": True, "eq": False, "ne": True}),
    ("9999-12-31T23:59:59.999999-14:00", {"gt": False, "lt": True}),
    ("9999-12-31T23:59:59Z", {"gt": False, "lt": True}),
])
def test_date_filters_near_the_ends_of_the_calendar_compare_as_instants(
        scim: ScimClient, literal: str, matches: dict[str, bool]) -> None:
    scim.create_user("ada@example.com")

    for op, expected in matches.items():
        for attribute in ("meta.lastModified", "meta.created"):
            for path in ("/Users", "/.search"):
                filter_text = f'{attribute} {op} "{literal}"'
                response = (scim.get(path, params={"filter": filter_text}) if path == "/Users"
                            else scim.post(path, {"schemas": [SEARCH_REQUEST], "filter": filter_text}))
                assert response.status_code == 200, (filter_text, response.text)
                assert response.json()["totalResults"] == (1 if expected else 0), filter_text


# -- the property: generated requests to every route -------------------------------------------------


def _noise() -> st.SearchStrategy[str]:
    return st.text(st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=40)


_NAMES = st.sampled_from([
    "userName", "displayName", "name.givenName", "emails", "emails.value", "emails[type eq \"work\"].value",
    "active", "id", "externalId", "meta.lastModified", "meta.created", "meta.version", "meta.location",
    "members", "members.value", "groups", f"{ENTERPRISE}:manager", f"{ENTERPRISE}:employeeNumber",
    f"{GR}:proxyAddresses", "phoneNumbers[primary eq true]", "urn:x:nope", "name", "", " ", "x.y.z.w",
])
_DATES = st.one_of(
    st.sampled_from(["0001-01-01T00:00:00+01:00", "9999-12-31T23:59:59-01:00", "0000-00-00T00:00:00Z",
                     "2026-02-30T00:00:00Z", "2026-01-01T24:00:00Z", "2026-01-01", "not a date"]),
    st.builds(lambda year, hours, minutes: f"{year:04d}-01-01T00:00:00{'+' if hours >= 0 else '-'}"
              f"{abs(hours):02d}:{minutes:02d}", st.sampled_from([1, 2, 999, 1970, 9998, 9999]),
              st.integers(-23, 23), st.sampled_from([0, 30, 59])),
)
_LITERALS = st.one_of(
    st.builds(lambda d: f'"{d}"', _DATES),
    st.builds(lambda s: orjson.dumps(s).decode(), _noise()),
    st.sampled_from(["true", "false", "null", "1", "-1", "1e400", HUGE, "1.5", '"', "[", "]"]),
)
_FILTERS = st.one_of(
    st.builds(lambda name, op, literal: f"{name} {op} {literal}", _NAMES,
              st.sampled_from(["eq", "ne", "co", "sw", "ew", "gt", "ge", "lt", "le", "pr", "xx"]), _LITERALS),
    st.builds(lambda a, b, how: f"({a}) {how} not ({b})", _NAMES, _NAMES, st.sampled_from(["and", "or", "&"])),
    st.builds(lambda name, inner: f"{name}[{inner}]", _NAMES, st.sampled_from(
        ['value eq "x"', "type pr", 'value[x eq "y"]', "", "primary eq true"])),
    _noise(),
)
_INTEGERS = st.one_of(st.integers(-(2**70), 2**70).map(str), st.sampled_from([HUGE, "", " 5", "1.0", "0x10", "٣"]))
_QUERY = st.dictionaries(
    st.sampled_from(["filter", "startIndex", "count", "attributes", "excludedAttributes", "sortBy", "sortOrder",
                     "cursor", "aadOptscim062020", "Filter"]),
    st.one_of(_FILTERS, _INTEGERS, _NAMES, _noise(), st.sampled_from(["ascending", "descending", "", "eyJ9"])),
    max_size=4,
)
_JSON_SCALARS = st.one_of(st.none(), st.booleans(), st.integers(-(2**63), 2**64 - 1), st.floats(allow_nan=False),
                          _noise(), _LITERALS, _DATES)
_JSON = st.recursive(_JSON_SCALARS, lambda inner: st.one_of(
    st.lists(inner, max_size=4), st.dictionaries(st.one_of(_NAMES, _noise()), inner, max_size=4)), max_leaves=12)
_PATCH_OPS = st.lists(st.fixed_dictionaries(
    {"op": st.sampled_from(["add", "Replace", "remove", "move", ""])},
    optional={"path": st.one_of(_NAMES, st.builds(lambda n, f: f"{n}[{f}]", _NAMES, _FILTERS)), "value": _JSON}),
    max_size=4)
_SUFFIXES = st.one_of(
    st.sampled_from(["/Users", "/Groups", "/Users/{user}", "/Groups/{group}", "/Users/.search", "/Groups/.search",
                     "/.search", "/Bulk", "/Me", "/ServiceProviderConfig", "/Schemas", f"/Schemas/{USER_SCHEMA}",
                     "/Schemas/x", "/ResourceTypes", "/ResourceTypes/User", "/ResourceTypes/x", "/oauth/token",
                     "/oauth/jwks", "/users/", "//Users", "/Users/{user}/x", "/Users/%00", "/Users/%FF"]),
    st.builds(lambda noise: "/Users/" + noise,
              st.text(string.ascii_letters + string.digits + "-._~%!$&'()*+,;=:@/ ", max_size=20)),
)


_USER_BODIES = st.builds(lambda doc: {"schemas": [USER_SCHEMA], "userName": "u@example.com", **doc},
                        st.dictionaries(_NAMES, _JSON, max_size=4))
_GROUP_BODIES = st.builds(lambda doc: {"schemas": [GROUP_SCHEMA], "displayName": "g", **doc}, st.dictionaries(
    st.sampled_from(["members", "displayName", "externalId"]), _JSON, max_size=2))
_PATCH_BODIES = st.builds(lambda ops: {"schemas": [PATCH_SCHEMA], "Operations": ops}, _PATCH_OPS)
_BULK_BODIES = st.builds(lambda ops: {"schemas": [BULK_REQUEST], "Operations": ops}, st.lists(st.fixed_dictionaries(
    {"method": st.sampled_from(["POST", "PUT", "PATCH", "DELETE", "GET", 1])},
    optional={"path": st.sampled_from(["/Users", "/Groups", "/Users/bulkId:a", "/Users/x/y", "Users", "", 5]),
              "bulkId": st.sampled_from(["a", "b", "", 7]), "data": _JSON, "version": _JSON}), max_size=4))
_SEARCH_BODIES = st.builds(lambda query: {"schemas": [SEARCH_REQUEST], **query}, _QUERY)
_BODIES = st.one_of(_USER_BODIES, _GROUP_BODIES, _PATCH_BODIES, _BULK_BODIES, _SEARCH_BODIES, _JSON)
#: Requests shaped like a client's — the right method, route and kind of body, with generated
#: contents — so that most of them get past routing and authentication into the service.
_SHAPED = st.one_of(
    st.tuples(st.just("GET"), st.sampled_from(["/Users", "/Groups", "/Users/{user}", "/Groups/{group}"]),
              st.none()),
    st.tuples(st.sampled_from(["POST", "PUT"]), st.sampled_from(["/Users", "/Users/{user}"]), _USER_BODIES),
    st.tuples(st.sampled_from(["POST", "PUT"]), st.sampled_from(["/Groups", "/Groups/{group}"]), _GROUP_BODIES),
    st.tuples(st.just("PATCH"), st.sampled_from(["/Users/{user}", "/Groups/{group}"]), _PATCH_BODIES),
    st.tuples(st.just("POST"), st.just("/Bulk"), _BULK_BODIES),
    st.tuples(st.just("POST"), st.sampled_from(["/.search", "/Users/.search", "/Groups/.search"]), _SEARCH_BODIES),
)


@st.composite
def _requests(draw: st.DrawFn) -> dict[str, Any]:
    tenant = draw(st.sampled_from(["acme"] * 6 + ["globex", "nosuch", "ACME", "a" * 300]))
    if draw(st.integers(0, 9)) < 7:
        method, suffix, document = draw(_SHAPED)
        path, body = f"/scim/v2/{tenant}{suffix}", None if document is None else orjson.dumps(document)
    else:
        method = draw(st.sampled_from(["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"]))
        path = draw(st.one_of(
            st.builds(lambda suffix: f"/scim/v2/{tenant}{suffix}", _SUFFIXES),
            st.sampled_from(["/", "/healthz", "/.well-known/jwks.json", "/scim/v2", "/scim/v2/", "/scim"]),
        ))
        body = draw(st.one_of(st.none(), _BODIES.map(orjson.dumps), st.binary(max_size=64),
                              st.sampled_from([b"{", b"[]", b"null", b"1e999", b"\xff\xfe"])))
    headers = draw(st.dictionaries(
        st.sampled_from(["Authorization", "Content-Type", "If-Match", "If-None-Match", "Accept", "X-Forwarded-For"]),
        st.one_of(st.sampled_from(["Bearer {token}", "Bearer ", "Basic Zm9vOmJhcg==", "bearer {token}",
                                   "application/scim+json", "application/json; charset=utf-8", "text/plain",
                                   "application/x-www-form-urlencoded", 'W/"1"', "*", 'W/"x", "y"', "1.2.3.4"]),
                  st.text(string.printable.strip(), max_size=30)),
        max_size=3))
    return {"method": method, "path": path, "query": draw(_QUERY), "headers": headers, "body": body}


def _send(http: TestClient, scim: ScimClient, ids: dict[str, str], request: dict[str, Any]) -> Any:
    path = request["path"].format(**ids) if "{" in request["path"] else request["path"]
    headers = {"Authorization": f"Bearer {scim.token}"}
    headers.update({name: value.replace("{token}", scim.token) for name, value in request["headers"].items()})
    return http.request(request["method"], path, params=request["query"], headers=headers, content=request["body"])


@pytest.fixture
def unguarded(app: Any) -> Any:
    """The app answering 500 instead of raising into the test client, so a 500 is an answer."""
    with TestClient(app, base_url="https://scim.example.test", raise_server_exceptions=False) as client:
        yield client


@pytest.fixture
def seeded(scim: ScimClient, other_scim: ScimClient) -> dict[str, str]:
    """A user (with a manager) and a group with a member in ``acme``, to aim requests at."""
    manager = scim.create_user("boss@example.com")
    user = scim.create_user("ada@example.com", emails=[{"value": "ada@example.com", "type": "work", "primary": True}],
                            **{ENTERPRISE: {"manager": {"value": manager["id"]}}})
    group = scim.post("/Groups", {"schemas": [GROUP_SCHEMA], "displayName": "team",
                                  "members": [{"value": user["id"]}]}).json()
    return {"user": user["id"], "group": group["id"]}


def _no_server_error(unguarded: TestClient, scim: ScimClient, seeded: dict[str, str],
                     request: dict[str, Any]) -> None:
    response = _send(unguarded, scim, seeded, request)
    assert response.status_code < 500, (request, response.status_code, response.text[:500])


_SETTINGS = {"deadline": None, "derandomize": False,
             "suppress_health_check": [HealthCheck.function_scoped_fixture, HealthCheck.too_slow,
                                       HealthCheck.data_too_large]}


@settings(max_examples=EXAMPLES, **_SETTINGS)
@given(request=_requests())
def test_no_generated_request_gets_a_server_error(unguarded: TestClient, scim: ScimClient,
                                                  seeded: dict[str, str], request: dict[str, Any]) -> None:
    _no_server_error(unguarded, scim, seeded, request)


@pytest.mark.slow
@settings(max_examples=SLOW_EXAMPLES, **_SETTINGS)
@given(request=_requests())
def test_no_generated_request_gets_a_server_error_long_run(unguarded: TestClient, scim: ScimClient,
                                                           seeded: dict[str, str], request: dict[str, Any]) -> None:
    _no_server_error(unguarded, scim, seeded, request)
