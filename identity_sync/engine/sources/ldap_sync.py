"""Incremental reads of an LDAP directory: the cursor, and the three ways to learn what changed.

* ``syncrepl`` — RFC 4533 content synchronisation (OpenLDAP's ``syncprov`` overlay), in
  refreshOnly mode with the cookie of the previous read. The server sends the entries added or
  changed since the cookie (complete), and the deleted ones: as a delete list (``syncprov`` with a
  session log) or as the set of entries still present (a present phase: the rest were deleted).
  Used when the server offers the control and the anchor is ``entryUUID`` (the identifiers
  RFC 4533 reports deletes with). syncprov also reports an entry that no longer matches the filter
  as deleted. A refresh cannot be paged: when the changes exceed the bind DN's size limit, the
  changed entries are read by a paged search on ``entryCSN`` (after the cookie's CSN) and the
  deletes by an anchor listing (below), with a cookie taken before both.
* ``usn`` — Active Directory: entries whose ``uSNChanged`` is above the ``highestCommittedUSN``
  that the root DSE gave *before* the previous read (so nothing written during a read is
  missed). Deletes come from the anchor listing below. (DirSync and the Deleted Objects container
  would report deletes in the same read; we have no Active Directory to test that against, so
  this mode shares the ``modifyTimestamp`` poller's structure, and only its query differs.)
* ``timestamp`` — any other directory: entries whose ``modifyTimestamp`` is at or after the
  cursor. A directory's clock has a one-second resolution and a long read can see an entry
  change after its page was read, so the cursor is the newest timestamp seen minus the read's
  duration and a minute: entries changed in that window are read twice, which is harmless.

In the two polling modes a deleted entry leaves nothing to find, so every
``delete_sweep_every``-th incremental read also lists every anchor (the anchor attribute alone,
paged): what the engine holds and the listing lacks was deleted. Between sweeps a delete waits.

The cursor is JSON: ``{"v": 1, "mode": …, "config": …, "cookie"|"usn"|"since": …, "reads": N}``;
``config`` is a digest of the search (base, filter, preset), so a job whose search changed makes
the next cycle a complete read instead of trusting a position in another search.
"""

from __future__ import annotations

import datetime
import hashlib
import json
from dataclasses import dataclass, field, replace
from typing import Any

import ldap
import ldap.ldapobject
from ldap.syncrepl import SyncreplConsumer

CURSOR_VERSION = 1
MODES = ("syncrepl", "usn", "timestamp")
#: A syncrepl search that asks for nothing but a cookie: the base entry, matched by no filter.
_NOTHING = "(!(objectClass=*))"
#: How much earlier than the newest timestamp seen the next ``timestamp`` poll starts, besides the read's duration.
TIMESTAMP_OVERLAP = datetime.timedelta(seconds=60)


@dataclass(frozen=True, slots=True)
class Cursor:
    mode: str
    config: str
    cookie: str | None = None
    usn: int | None = None
    since: str | None = None  # generalized time, e.g. 20261205120000Z
    reads: int = 0

    def text(self) -> str:
        body: dict[str, Any] = {"v": CURSOR_VERSION, "mode": self.mode, "config": self.config, "reads": self.reads}
        for name in ("cookie", "usn", "since"):
            if getattr(self, name) is not None:
                body[name] = getattr(self, name)
        return json.dumps(body, sort_keys=True, separators=(",", ":"))

    def next_read(self, **changes: Any) -> Cursor:
        return replace(self, reads=self.reads + 1, **changes)


def parse_cursor(text: str, config: str) -> Cursor | None:
    """The cursor, or ``None`` when it is not one of ours, from another search, or incomplete."""
    try:
        body = json.loads(text)
    except ValueError:
        return None
    if not isinstance(body, dict) or body.get("v") != CURSOR_VERSION or body.get("mode") not in MODES \
            or body.get("config") != config:
        return None
    cursor = Cursor(mode=body["mode"], config=config, cookie=body.get("cookie"), usn=body.get("usn"),
                    since=body.get("since"), reads=int(body.get("reads", 0)))
    needed = {"syncrepl": cursor.cookie, "usn": cursor.usn, "timestamp": cursor.since}[cursor.mode]
    return cursor if needed is not None else None


def cookie_csn(cookie: str) -> str | None:
    """The oldest CSN of an OpenLDAP cookie (``rid=000,csn=20261205120000.000000Z#000000#000#000000``;
    several ``;``-separated with several providers): changes since it are changes since the cookie."""
    for part in cookie.split(","):
        name, _, value = part.partition("=")
        if name.strip() == "csn" and value:
            return min(value.split(";"))
    return None


def config_digest(*parts: str) -> str:
    return hashlib.sha256("\x00".join(parts).encode()).hexdigest()[:16]


def parse_generalized_time(value: bytes | str) -> datetime.datetime | None:
    """``20261205120000Z`` or ``20261205120000.123Z`` (what directories return) as UTC."""
    text = value.decode() if isinstance(value, bytes) else value
    try:
        return datetime.datetime.strptime(text[:14], "%Y%m%d%H%M%S").replace(tzinfo=datetime.UTC)
    except ValueError:
        return None


def generalized_time(moment: datetime.datetime) -> str:
    return moment.astimezone(datetime.UTC).strftime("%Y%m%d%H%M%SZ")


def next_since(newest: datetime.datetime | None, elapsed: float, previous: str | None = None) -> str | None:
    """Where the next ``timestamp`` poll starts (see the module docstring), never later than the
    previous start: a read that found nothing keeps its position."""
    if newest is None:
        return previous
    start = newest - datetime.timedelta(seconds=elapsed) - TIMESTAMP_OVERLAP
    if previous is not None:
        before = parse_generalized_time(previous)
        if before is not None and before > start:
            return previous
    return generalized_time(start)


@dataclass(slots=True)
class SyncResult:
    """What one refreshOnly search reported."""

    #: (dn, attributes, entryUUID) of every entry added or changed since the cookie.
    entries: list[tuple[str, dict[str, list[bytes]], str]] = field(default_factory=list)
    #: entryUUIDs reported deleted.
    deleted: set[str] = field(default_factory=set)
    #: After a present phase, the entryUUIDs the server reported present (everything else was
    #: deleted); ``None`` when the server reported deletes explicitly.
    present: set[str] | None = None
    cookie: str | None = None


class SyncConnection(SyncreplConsumer, ldap.ldapobject.SimpleLDAPObject):
    """A connection that can run RFC 4533 refreshOnly searches (python-ldap's consumer calls
    these methods back as the server's messages arrive)."""

    def __init__(self, uri: str) -> None:
        super().__init__(uri)
        self._result = SyncResult()
        self._seen_present: set[str] = set()
        self._present_phase = False

    def refresh(self, base: str, scope: int, filter_text: str, attributes: list[str] | None,
                cookie: str | None, timeout: float) -> SyncResult:
        """One refreshOnly search from ``cookie`` (``None``: from the beginning). Raises python-ldap's
        errors (e.g. ``SIZELIMIT_EXCEEDED``; Active Directory and servers without ``syncprov``
        refuse the critical control)."""
        self._result = SyncResult(cookie=cookie)
        self._seen_present = set()
        self._present_phase = False
        msgid = self.syncrepl_search(base, scope, mode="refreshOnly", cookie=cookie, filterstr=filter_text,
                                     attrlist=attributes)
        while self.syncrepl_poll(msgid=msgid, all=1, timeout=timeout):
            pass
        if self._present_phase:
            self._result.present = self._seen_present
        return self._result

    # python-ldap's callbacks ---------------------------------------------------------------

    def syncrepl_get_cookie(self) -> str | None:
        return self._result.cookie

    def syncrepl_set_cookie(self, cookie: str) -> None:
        self._result.cookie = cookie

    def syncrepl_entry(self, dn: str, attrs: dict[str, list[bytes]], uuid: str) -> None:
        self._result.entries.append((dn, attrs, uuid.lower()))

    def syncrepl_delete(self, uuids: list[str]) -> None:
        self._result.deleted.update(uuid.lower() for uuid in uuids)

    def syncrepl_present(self, uuids: list[str] | None, refreshDeletes: bool = False) -> None:
        if uuids is not None:
            self._seen_present.update(uuid.lower() for uuid in uuids)
        elif not refreshDeletes:
            # The end of a present phase: whatever was not presented no longer exists.
            self._present_phase = True
