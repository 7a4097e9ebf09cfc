"""The ``scim:URL`` source: any SCIM 2.0 service as the directory — a SCIM-to-SCIM relay.

``URL`` is the service's base URL (for one of our tenants, its Tenant URL). Credentials come from
the job's source options: a bearer ``token`` (``--source-token-file``), or OAuth client
credentials (``client_id``, ``client_secret``, ``token_url``); ``ca_file`` trusts a private CA for
an https URL. The service is reached only through the engine's SCIM client (retries, throttling,
secrets kept out of messages). Resources become source objects under Microsoft Graph's names
(``scim_attributes.py`` has the table); the anchor is the resource's SCIM ``id``, which never
changes, so a new ``userName`` is an update. SCIM has no notion of assignment: ``assigned`` is
``None`` and jobs use the scope "all".

Full read (``read``): every User, then every Group, page by page (index paging). A listing that
cannot be shown complete — an error after the retries, no ``totalResults``, a total that moves, a
page short of it — is a :class:`SourceError`, never a partial snapshot. A Group listed without a
``members`` attribute (some servers leave members out of list answers) is read alone. Then a
listing of every ``id``: one that the listing skipped (index paging over a changing directory can)
is read alone. A member or manager that the listings did not return (created meanwhile) is read
alone; one that is gone is left out.

Changes (``read_changes``): where the service filters on ``meta.lastModified``, the Users and
Groups modified since the cursor, each complete as the service returns it; hard deletions by
comparing a listing of every ``id`` (``attributes=id``) with the engine's copy of the source —
one small request per page of ids per cycle, the price of seeing deletions, which SCIM does not
report. An id missing from that listing is read alone before it counts as deleted (index paging
over a changing set can skip one), and the groups and users that named a deleted object (as a
member, as manager) are read again, whether or not the service touched their ``lastModified``.
The cursor is JSON: the highest ``meta.lastModified`` seen (``since``) and when the listing was
made (``listed_at``, for people). The next query starts one second before ``since`` (a write that
committed after a later one was read is not missed); what it returns again is compared with the
engine's copy, and only what differs is reported changed. ``None`` — the engine then reads
everything — when the service says it cannot filter, answers the filter with 400 or 501, ignores
it (returns older resources), or gives no ``meta.lastModified`` at all.
"""

from __future__ import annotations

import asyncio
import builtins
import json
import ssl
from collections.abc import AsyncIterator, Callable, Coroutine, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar
from urllib.parse import quote

import httpx2
import structlog

from identity_sync.clock import format_timestamp
from identity_sync.engine.client import BearerToken, ClientCredentials, ScimClient, TargetError, documents
from identity_sync.engine.client.scim_client import IncompleteListing
from identity_sync.engine.client.transport import Transport
from identity_sync.engine.model import ObjectType, SourceError, SourceObject, SourceSnapshot
from identity_sync.engine.sources import SourceSpecError
from identity_sync.engine.sources.base import SourceDelta, SourceOptions
from identity_sync.engine.sources.scim_attributes import (
    GROUP_ATTRIBUTES,
    USER_ATTRIBUTES,
    ResourceError,
    has_members_key,
    last_modified,
    to_source_object,
)

__all__ = ["OVERLAP", "ScimSource", "open_scim_source"]

#: The change query starts this long before the highest ``meta.lastModified`` seen: a write that
#: committed after a later one was read (two server processes, a slow transaction) is not missed.
OVERLAP = timedelta(seconds=1)
PAGE_SIZE = 500
#: Requests on the wire at once: a source is read page after page; single reads may overlap.
_IN_FLIGHT = 4
_TYPES: dict[ObjectType, str] = {"user": "User", "group": "Group"}

log = structlog.get_logger("identity_sync.engine.sources.scim")

T = TypeVar("T")
Raw = dict[str, Any]


def open_scim_source(url: str, options: SourceOptions) -> ScimSource:
    """The source of ``scim:URL``; :class:`SourceSpecError` for a URL or credentials that cannot
    work. No credentials at all is allowed here (a job may get them in a later ``job update``) and
    refused at the first read."""
    parsed = httpx2.URL(url)
    if parsed.scheme not in ("http", "https") or not parsed.host:
        raise SourceSpecError(f"source scim:{url}: expected scim:https://HOST/PATH")
    auth: BearerToken | ClientCredentials | None = None
    client_parts = (options.client_id, options.client_secret, options.token_url)
    if options.token is not None and any(client_parts):
        raise SourceSpecError(f"source scim:{url}: give a token or client credentials, not both")
    try:
        if options.token is not None:
            auth = BearerToken(options.token)
        elif any(client_parts):
            if not all(client_parts):
                raise SourceSpecError(f"source scim:{url}: client credentials need a client id, a client secret "
                                      "and a token URL")
            assert options.client_id and options.client_secret and options.token_url
            auth = ClientCredentials(options.token_url, options.client_id, options.client_secret)
    except ValueError as exc:
        raise SourceSpecError(f"source scim:{url}: {exc}") from None
    verify: ssl.SSLContext | bool = True
    if options.ca_file:
        try:
            verify = ssl.create_default_context(cafile=options.ca_file)
        except (OSError, ssl.SSLError) as exc:
            raise SourceSpecError(f"source scim:{url}: CA file {options.ca_file}: {exc}") from None
    return ScimSource(url, auth, verify=verify)


class ScimSource:
    """A SCIM 2.0 service read as a directory (see the module docstring)."""

    def __init__(self, url: str, auth: BearerToken | ClientCredentials | None, *,
                 verify: ssl.SSLContext | bool = True, page_size: int = PAGE_SIZE) -> None:
        self.url = url
        self.description = f"scim:{url}"
        #: ``read_changes`` may return a delta (when the service filters on meta.lastModified).
        self.incremental = True
        # Kept across reads: an OAuth token is fetched once and reused while it lives.
        self._auth = auth
        self._verify = verify
        self._page_size = page_size

    def read(self) -> SourceSnapshot:
        return self._call(self._read)

    def read_changes(self, cursor: str, previous: SourceSnapshot) -> SourceDelta | None:
        """What changed since ``cursor`` (a watermark of ``read`` or a cursor of this method), or
        ``None`` when the service cannot say (see the module docstring). ``entries_read`` counts
        the changed resources, the ids listed and the resources read alone."""
        return self._call(lambda reader: self._read_changes(reader, cursor, previous))

    def get(self, anchor: str) -> SourceObject | None:
        async def one(reader: _Reader) -> SourceObject | None:
            for object_type in ("user", "group"):
                resource = await reader.get(object_type, anchor)
                if resource is not None:
                    return to_source_object(object_type, resource)
            return None

        return self._call(one)

    def close(self) -> None:
        """Nothing to release: each read opens its connections and closes them when it ends."""

    # -- running the async client ------------------------------------------------------------

    def _call(self, work: Callable[[_Reader], Coroutine[Any, Any, T]]) -> T:
        if self._auth is None:
            raise SourceError(f"{self.description}: no credentials (give the job a source token file or "
                              "client credentials)")
        auth = self._auth

        async def session() -> T:
            async with ScimClient(self.url, auth, dialect="rfc", max_in_flight=_IN_FLIGHT,
                                  verify=self._verify) as client:
                return await work(_Reader(client, self._page_size))

        try:
            return run_in_thread(session)
        except TargetError as exc:
            raise SourceError(f"{self.description}: {exc}") from None
        except (IncompleteListing, ResourceError) as exc:
            raise SourceError(f"{self.description}: {exc}; nothing was taken from this read") from None

    # -- the reads -----------------------------------------------------------------------------

    async def _read(self, reader: _Reader) -> SourceSnapshot:
        # Translated page by page: 100,000 users are never held twice (as JSON and as objects).
        objects: dict[ObjectType, dict[str, SourceObject]] = {"user": {}, "group": {}}
        latest: datetime | None = None
        for object_type in ("user", "group"):
            async for page in reader.pages(object_type):
                for listed in page:
                    resource = await reader.complete_group(listed) if object_type == "group" else listed
                    if resource is None:
                        continue  # a group deleted between its listing and its own read is not there
                    latest = _latest(latest, [resource])
                    objects[object_type][resource["id"]] = to_source_object(object_type, resource)
            # Index paging over a changing directory can skip one: a deletion before it and a
            # creation after it leave totalResults as it was. A listing of ids (a few bytes each)
            # catches it; whatever it names that the listing lacked is read alone.
            for anchor in sorted(await reader.ids(object_type) - objects[object_type].keys()):
                resource = await reader.get(object_type, anchor)
                if resource is not None:
                    objects[object_type][anchor] = to_source_object(object_type, resource)
        users, groups = objects["user"], objects["group"]
        await _resolve_references(reader, users, groups)
        return SourceSnapshot(users, groups, None, _Cursor(latest).text(), self.description,
                              user_attributes=USER_ATTRIBUTES, group_attributes=GROUP_ATTRIBUTES)

    async def _read_changes(self, reader: _Reader, cursor_text: str, previous: SourceSnapshot) -> SourceDelta | None:
        cursor = _Cursor.parse(cursor_text)
        if cursor is None or cursor.since is None:
            return None  # another source's watermark, or nothing had a meta.lastModified
        if not await reader.can_filter():
            log.info("scim_source.complete_read", source=self.description, reason="the service does not filter")
            return None
        listed = await _modified_since(reader, cursor.since - OVERLAP)
        if listed is None:
            log.info("scim_source.complete_read", source=self.description,
                     reason="the service does not filter on meta.lastModified")
            return None
        answered = [resource for resources in listed.values() for resource in resources]
        changed: dict[tuple[ObjectType, str], Raw] = {
            (object_type, resource["id"]): resource for object_type, resources in listed.items()
            for resource in resources}
        known: dict[ObjectType, Mapping[str, SourceObject]] = {"user": previous.users, "group": previous.groups}
        counter = _Counter(reader, len(answered))
        removed = await _deletions(counter, known, changed)
        for key, resource in list(changed.items()):
            if key[0] == "group" and not has_members_key(resource):
                whole = await counter.complete_group(resource)
                if whole is not None:
                    changed[key] = whole
                else:  # deleted since it was listed
                    del changed[key]
                    if key[1] in known["group"] and key not in removed:
                        removed.append(key)
        for key in removed:
            changed.pop(key, None)  # listed as changed, then deleted before the ids were listed
        # The overlap returns again what the last read returned: only what differs from the engine's
        # copy is a change (compared by content, not by timestamp: a service that keeps seconds
        # gives two writes within one second the same meta.lastModified).
        objects = [obj for (object_type, _), resource in changed.items()
                   if _differs(obj := to_source_object(object_type, resource), known[object_type].get(obj.anchor))]
        new_cursor = _Cursor(_latest(cursor.since, answered)).text()
        return SourceDelta(objects, removed, None, new_cursor, entries_read=counter.entries)


async def _modified_since(reader: _Reader, start: datetime) -> dict[ObjectType, list[Raw]] | None:
    """The Users and Groups modified after ``start``; ``None`` when the service cannot say."""
    query = f'meta.lastModified gt "{format_timestamp(start)}"'
    listed: dict[ObjectType, list[Raw]] = {}
    for object_type in ("user", "group"):
        try:
            listed[object_type] = await reader.list(object_type, filter_text=query)
        except TargetError as exc:
            if exc.status in (400, 501):  # the service does not filter on meta.lastModified
                return None
            raise
        for resource in listed[object_type]:
            moment = _parse(last_modified(resource))
            if moment is not None and moment <= start:
                return None  # the filter was ignored: this one was not modified since
    return listed


async def _deletions(counter: _Counter, known: Mapping[ObjectType, Mapping[str, SourceObject]],
                     changed: dict[tuple[ObjectType, str], Raw]) -> list[tuple[ObjectType, str]]:
    """The anchors of the engine's copy that the service no longer has, from a listing of every id
    (SCIM reports no deletions). Adds to ``changed`` what that reveals besides: new objects the
    change query did not return, and what named a deleted object (its groups, its reports)."""
    present = {object_type: await counter.ids(object_type) for object_type in ("user", "group")}
    removed: list[tuple[ObjectType, str]] = []
    to_read: set[tuple[ObjectType, str]] = set()
    for object_type in ("user", "group"):
        for anchor in known[object_type]:
            if anchor not in present[object_type]:
                resource = await counter.get(object_type, anchor)  # skipped by the paging, or gone?
                if resource is None:
                    removed.append((object_type, anchor))
                else:
                    changed.setdefault((object_type, anchor), resource)
        # New ids the change query did not return (written after it, or a clock that went back).
        to_read.update((object_type, a) for a in present[object_type]
                       if a not in known[object_type] and (object_type, a) not in changed)
    gone = {anchor for _, anchor in removed}
    if gone:
        # The service may have dropped a deleted object from groups and managers without touching
        # their meta.lastModified. (Decoding every object of the copy: only when something was deleted.)
        to_read.update(("group", a) for a, group in known["group"].items()
                       if gone.intersection(group.attributes.get("members") or ()))
        to_read.update(("user", a) for a, user in known["user"].items() if user.attributes.get("manager") in gone)
    for object_type, anchor in sorted(to_read - set(changed) - set(removed)):
        resource = await counter.get(object_type, anchor)
        if resource is not None:
            changed[(object_type, anchor)] = resource
    return removed


class _Counter:
    """The reads of a change read that count as entries read: ids listed, resources read alone."""

    def __init__(self, reader: _Reader, entries: int) -> None:
        self.reader = reader
        self.entries = entries

    async def ids(self, object_type: ObjectType) -> set[str]:
        found = await self.reader.ids(object_type)
        self.entries += len(found)
        return found

    async def get(self, object_type: ObjectType, anchor: str) -> Raw | None:
        self.entries += 1
        return await self.reader.get(object_type, anchor)

    async def complete_group(self, group: Raw) -> Raw | None:
        self.entries += 1
        return await self.reader.complete_group(group)


def run_in_thread(work: Callable[[], Coroutine[Any, Any, T]]) -> T:
    """Run ``work()`` on an event loop of its own, in a worker thread, and return its result.

    Why a thread: the SCIM client is async, but ``Source.read`` is synchronous and the cycle calls
    it from inside its own running event loop (``Cycle.run`` calls ``read()`` in a coroutine that
    ``EngineService`` runs with ``asyncio.run``). ``asyncio.run`` refuses to start there and that
    loop cannot be re-entered, so the requests run on a new loop in another thread while the
    cycle's thread waits (it has nothing else to do before the source is read).
    """
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="scim-source") as pool:
        return pool.submit(lambda: asyncio.run(work())).result()


class _Reader:
    """The requests this source makes, through the engine's SCIM client."""

    def __init__(self, client: ScimClient, page_size: int) -> None:
        self.client = client
        self.page_size = page_size

    @property
    def _transport(self) -> Transport:
        # A source reads Groups with their members (ScimClient.get leaves them out, as Entra does)
        # and the ServiceProviderConfig: those requests go through the client's transport (same
        # retries, throttling and scrubbing); listings use ScimClient.scan.
        return self.client._transport

    async def list(self, object_type: ObjectType, *, filter_text: str | None = None) -> list[Raw]:
        """Every resource of a type (matching ``filter_text``), whole; raises IncompleteListing."""
        return [resource async for page in self.pages(object_type, filter_text=filter_text) for resource in page]

    def pages(self, object_type: ObjectType, *,
              filter_text: str | None = None) -> AsyncIterator[builtins.list[Raw]]:  # list: the method above
        """:meth:`list`, page by page."""
        params = {"filter": filter_text} if filter_text else {}
        if object_type == "user":
            # A User's `groups` (RFC 7643 §4.1.2) says again what the Groups' members say, and costs
            # the service a lookup per user.
            params["excludedAttributes"] = "groups"
        return self.client.scan(_TYPES[object_type], None, page_size=self.page_size, params=params)

    async def ids(self, object_type: ObjectType) -> set[str]:
        """The id of every resource of a type (``attributes=id``: a few bytes each)."""
        found: set[str] = set()
        async for page in self.client.scan(_TYPES[object_type], ["id"], page_size=self.page_size):
            found.update(resource["id"] for resource in page)
        return found

    async def get(self, object_type: ObjectType, resource_id: str) -> Raw | None:
        """One resource, whole (a Group with its members); ``None`` when the service answers 404."""
        path = f"{documents.ENDPOINTS[_TYPES[object_type]]}/{quote(resource_id, safe='')}"
        response = await self._transport.request("GET", path, allow=(404,), one_object=True)
        if response.status_code == 404:
            return None
        resource = self._transport.json_object("GET", path, response)
        if resource.get("id") != resource_id:
            raise IncompleteListing(f"GET /{path}: the answer is another resource")
        return resource

    async def complete_group(self, group: Raw) -> Raw | None:
        """``group`` with its members: read alone when the listing left ``members`` out; ``None``
        when it was deleted since it was listed."""
        if has_members_key(group):
            return group
        return await self.get("group", group["id"])

    async def can_filter(self) -> bool:
        """False when the ServiceProviderConfig says that the service does not filter at all; a
        service without one (404) is asked the filter itself."""
        response = await self._transport.request("GET", "ServiceProviderConfig", allow=(404,))
        if response.status_code == 404:
            return True
        config = self._transport.json_object("GET", "ServiceProviderConfig", response)
        supported = config.get("filter", {}).get("supported") if isinstance(config.get("filter"), dict) else None
        return supported is not False


async def _resolve_references(reader: _Reader, users: dict[str, SourceObject],
                              groups: dict[str, SourceObject]) -> None:
    """Members and managers name objects of the snapshot: one created between the two listings is
    read alone and added; one that no longer exists is left out of the lists that name it."""
    named = {m for g in groups.values() for m in g.attributes.get("members") or ()}
    named.update(m for u in users.values() if isinstance(m := u.attributes.get("manager"), str))
    missing = named - users.keys() - groups.keys()
    if not missing:
        return
    gone: set[str] = set()
    for anchor in sorted(missing):
        user = await reader.get("user", anchor)
        if user is not None:
            users[anchor] = to_source_object("user", user)
            continue
        group = await reader.get("group", anchor)  # read alone: with its members
        if group is not None:
            groups[anchor] = to_source_object("group", group)
        else:
            gone.add(anchor)
    if not gone:
        return
    for anchor, listed in list(users.items()):
        if listed.attributes.get("manager") in gone:
            attributes = {k: v for k, v in listed.attributes.items() if k != "manager"}
            users[anchor] = SourceObject("user", anchor, attributes)
    for anchor, listed in list(groups.items()):
        members = listed.attributes.get("members") or []
        if gone.intersection(members):
            kept = [m for m in members if m not in gone]
            groups[anchor] = SourceObject("group", anchor, {**listed.attributes, "members": kept})


class _Cursor:
    """The position of a read: see the module docstring."""

    def __init__(self, since: datetime | None, listed_at: str | None = None) -> None:
        self.since = since
        self.listed_at = listed_at if listed_at is not None else format_timestamp(datetime.now(UTC))

    @classmethod
    def parse(cls, text: str) -> _Cursor | None:
        """A cursor this source wrote; ``None`` for anything else (another source's watermark)."""
        try:
            data = json.loads(text)
        except ValueError:
            return None
        if not isinstance(data, dict) or "since" not in data:
            return None
        since = _parse(data["since"])
        if data["since"] is not None and since is None:
            return None
        return cls(since, str(data.get("listed_at", "")))

    def text(self) -> str:
        since = format_timestamp(self.since) if self.since is not None else None
        return json.dumps({"since": since, "listed_at": self.listed_at}, sort_keys=True)


def _latest(moment: datetime | None, resources: Iterable[Raw]) -> datetime | None:
    """The latest of ``moment`` and the resources' ``meta.lastModified``."""
    stamps = [m for r in resources if (m := _parse(last_modified(r))) is not None]
    return max([*stamps, *([moment] if moment is not None else [])], default=None)


def _differs(obj: SourceObject, before: SourceObject | None) -> bool:
    return before is None or _comparable(obj.attributes) != _comparable(before.attributes)


def _comparable(attributes: Mapping[str, Any]) -> dict[str, Any]:
    # Lists and tuples alike: the engine's copy may keep a list as a tuple.
    return {k: tuple(v) if isinstance(v, (list, tuple)) else v for k, v in attributes.items()}


def _parse(text: Any) -> datetime | None:
    """A SCIM dateTime (xsd:dateTime, RFC 7643 §2.3.5); no offset is UTC. ``None`` if it is not one."""
    if not isinstance(text, str):
        return None
    try:
        moment = datetime.fromisoformat(text.strip().replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        return None
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)
