"""The LDAP / Active Directory source: ``ldap://HOST:PORT/BASE_DN`` or ``ldaps://HOST:PORT/BASE_DN``
(docs/engine.md, "The LDAP source"). Needs python-ldap: ``pip install identity-sync[ldap]``.

* Binds as ``bind_dn`` with ``password`` (from the job's sealed credentials; never in a message),
  or anonymously without a bind DN. ``ldaps://`` and ``start_tls`` verify the server's
  certificate (against ``ca_file`` when given, the system's CAs otherwise); there is no option to
  skip verification.
* The preset (``ad`` or ``openldap``, ldap_presets.py) is the job's, or detected from the root DSE.
* :meth:`LdapSource.read` is one paged search (RFC 2696) of users and groups under the base DN, so
  no server size limit truncates it; a search that ends with any error (a size or time limit, a
  dropped connection) raises ``SourceError`` — a partial read is never returned, it would read as
  deletes. ``member`` and ``manager`` DNs are resolved to anchors once every entry is read; a DN
  that names no entry the filters find (a contact, a foreign principal, a placeholder member) is
  left out.
* :meth:`LdapSource.read_changes` reads only what changed (ldap_sync.py: syncrepl, uSNChanged, or
  modifyTimestamp polling).

python-ldap is blocking; the engine calls ``read`` synchronously, once per cycle.
"""

from __future__ import annotations

import socket
import sys
import time
import urllib.parse
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any

from identity_sync.engine.model import ObjectType, SourceError, SourceObject, SourceSnapshot
from identity_sync.engine.sources import SourceSpecError
from identity_sync.engine.sources.base import SourceDelta, SourceOptions
from identity_sync.engine.sources.ldap_presets import (
    ACTIVE_DIRECTORY,
    PRESETS,
    Entry,
    Preset,
    convert,
    detect_preset,
    domain_of,
    group_classes_of,
    guid_filter_value,
    guid_text,
    ranged_values,
)

try:
    import ldap
    import ldap.dn
    import ldap.filter
    from ldap.controls import SimplePagedResultsControl

    from identity_sync.engine.sources import ldap_sync
except ImportError:  # pragma: no cover - exercised on machines without the [ldap] extra
    ldap = None

#: The control RFC 4533 content synchronisation is requested with.
SYNC_CONTROL = "1.3.6.1.4.1.4203.1.9.1.1"
PAGED_CONTROL = "1.2.840.113556.1.4.319"
DEFAULT_PORTS = {"ldap": 389, "ldaps": 636}

Raw = dict[str, list[bytes]]
#: User attributes the source computes besides the preset's map.
USER_EXTRAS = ("accountEnabled", "manager", "userPrincipalName", "onPremisesImmutableId")


def open_ldap_source(spec: str, options: SourceOptions) -> LdapSource:
    """The source ``spec`` names; checks the specification and the options, connects nothing."""
    if ldap is None:
        raise SourceSpecError(f"source {spec!r}: the LDAP source needs python-ldap: "
                              "pip install 'identity-sync[ldap]' (it builds against libldap2-dev and libsasl2-dev)")
    parsed = urllib.parse.urlsplit(spec)
    base_dn = urllib.parse.unquote(parsed.path.lstrip("/"))
    try:
        port = parsed.port
    except ValueError:
        raise SourceSpecError(f"source {spec!r}: the port is not a number") from None
    if not parsed.hostname or not base_dn:
        raise SourceSpecError(f"source {spec!r}: expected {parsed.scheme}://HOST:PORT/BASE_DN "
                              "(e.g. ldaps://dc1.example.com:636/DC=example,DC=com)")
    if parsed.query or parsed.fragment or parsed.username or parsed.password:
        raise SourceSpecError(f"source {spec!r}: no user, query or fragment in the URL (the bind DN is "
                              "--source-bind-dn, its password --source-password-file)")
    if not ldap.dn.is_dn(base_dn):
        raise SourceSpecError(f"source {spec!r}: {base_dn!r} is not a DN")
    if options.preset is not None and options.preset not in PRESETS:
        raise SourceSpecError(f"source {spec!r}: preset {options.preset!r}: expected one of {', '.join(PRESETS)}")
    if options.start_tls and parsed.scheme == "ldaps":
        raise SourceSpecError(f"source {spec!r}: StartTLS is for ldap:// (ldaps:// is TLS from the start)")
    for name in ("user_filter", "group_filter"):
        text = getattr(options, name)
        if text is not None and not _valid_filter(text):
            raise SourceSpecError(f"source {spec!r}: {name.replace('_', ' ')} {text!r} is not an LDAP filter")
    host = f"[{parsed.hostname}]" if ":" in parsed.hostname else parsed.hostname
    return LdapSource(f"{parsed.scheme}://{host}:{port or DEFAULT_PORTS[parsed.scheme]}", base_dn, options)


def _valid_filter(text: str) -> bool:
    """A cheap syntax check (balanced parentheses, an ``=`` somewhere): the server has the last word."""
    depth = 0
    for character in text:
        depth += {"(": 1, ")": -1}.get(character, 0)
        if depth < 0:
            return False
    return depth == 0 and "=" in text


class LdapSource:
    """One directory under one base DN (see the module docstring)."""

    def __init__(self, server_url: str, base_dn: str, options: SourceOptions, *, page_size: int = 500,
                 delete_sweep_every: int = 10, timeout: float = 60.0) -> None:
        self.server_url = server_url
        self.base_dn = base_dn
        self.options = options
        self.page_size = page_size
        #: In the polling modes, every Nth incremental read also lists anchors to find deletes.
        self.delete_sweep_every = max(1, delete_sweep_every)
        self.timeout = timeout
        self.description = f"{server_url}/{base_dn}"
        self._connection: ldap_sync.SyncConnection | None = None
        self._root_dse: Raw = {}
        self._preset: Preset | None = None
        #: Per read: DN → normalised DN, and the repeated values convert() shares (emptied after it).
        self._dn_cache: dict[str, str] = {}
        self._shared: dict[str, str] = {}
        #: Entries the last read or read_changes received from the server (for logs and benchmarks),
        #: and anchors the last read_changes listed to find deletes (attribute-less entries).
        self.entries_read = 0
        self.anchors_listed = 0
        #: read_changes can return deltas (engine/mirror.py keeps the attributes it is given as ``previous``).
        self.incremental = True

    # -- connection ---------------------------------------------------------------------------

    def _connect(self) -> ldap_sync.SyncConnection:
        if self._connection is not None:
            return self._connection
        conn = ldap_sync.SyncConnection(self.server_url)
        conn.set_option(ldap.OPT_PROTOCOL_VERSION, 3)
        conn.set_option(ldap.OPT_REFERRALS, 0)  # AD's referrals to other domains: not ours to chase
        conn.set_option(ldap.OPT_NETWORK_TIMEOUT, min(self.timeout, 30))
        conn.set_option(ldap.OPT_TIMEOUT, self.timeout)
        if self.server_url.startswith("ldaps:") or self.options.start_tls:
            conn.set_option(ldap.OPT_X_TLS_REQUIRE_CERT, ldap.OPT_X_TLS_DEMAND)
            if self.options.ca_file:
                conn.set_option(ldap.OPT_X_TLS_CACERTFILE, self.options.ca_file)
            conn.set_option(ldap.OPT_X_TLS_NEWCTX, 0)  # last: applies the TLS options above
        try:
            if self.options.start_tls:
                conn.start_tls_s()
            if self.options.bind_dn:
                if not self.options.password:
                    # An empty password is an *unauthenticated* bind (RFC 4513 §5.1.2), which many
                    # servers accept as anonymous: never send one by mistake.
                    raise SourceError(f"{self.description}: no password for bind DN {self.options.bind_dn!r} "
                                      "(--source-password-file)")
                conn.simple_bind_s(self.options.bind_dn, self.options.password)
            else:
                conn.simple_bind_s("", "")
            found = conn.search_ext_s("", ldap.SCOPE_BASE, "(objectClass=*)",
                                      ["*", "supportedControl", "supportedCapabilities", "highestCommittedUSN",
                                       "namingContexts"], timeout=self.timeout)
        except ldap.LDAPError as error:
            _unbind(conn)
            raise SourceError(self._explain(error, "connect")) from None
        self._root_dse = found[0][1] if found else {}
        self._connection = conn
        return conn

    def _explain(self, error: Exception, doing: str) -> str:
        """One line: the server, what failed, why — never the password."""
        info = _error_info(error)
        if isinstance(error, ldap.INVALID_CREDENTIALS):
            return f"{self.description}: bind refused for {self.options.bind_dn!r}: invalid credentials"
        tls = self.server_url.startswith("ldaps:") or self.options.start_tls
        if tls and (isinstance(error, ldap.CONNECT_ERROR) or "certificate" in info.lower()
                    or (isinstance(error, ldap.SERVER_DOWN) and self._reachable())):
            # libldap (GnuTLS on Debian) often says no more than "Connect error": the server
            # answered TCP, so the handshake is what failed.
            trust = (f"the CA of --source-ca-file {self.options.ca_file}" if self.options.ca_file
                     else "the system's CAs (no --source-ca-file)")
            how = "StartTLS" if self.options.start_tls else "the TLS handshake"
            return (f"{self.description}: TLS failed: {how} did not complete ({info or type(error).__name__}): "
                    f"the server's certificate could not be verified against {trust}, or the server does not "
                    "speak TLS there")
        if isinstance(error, ldap.SERVER_DOWN):
            return f"{self.description}: cannot reach the server: {info or 'no answer'}"
        if isinstance(error, ldap.TIMEOUT):
            return f"{self.description}: {doing}: no answer within {self.timeout:g}s"
        if isinstance(error, ldap.SIZELIMIT_EXCEEDED | ldap.ADMINLIMIT_EXCEEDED | ldap.TIMELIMIT_EXCEEDED):
            return (f"{self.description}: {doing}: the server stopped the search ({type(error).__name__}: "
                    f"{info or 'limit reached'}); a truncated read is never used")
        if isinstance(error, ldap.NO_SUCH_OBJECT):
            return f"{self.description}: {doing}: the base DN {self.base_dn!r} does not exist"
        return f"{self.description}: {doing}: {type(error).__name__}: {info or 'failed'}"

    def _reachable(self) -> bool:
        """Whether the server's port accepts a TCP connection (to tell TLS failures from an
        unreachable server)."""
        parsed = urllib.parse.urlsplit(self.server_url)
        try:
            with socket.create_connection((parsed.hostname, parsed.port or 636), timeout=5):
                return True
        except OSError:
            return False

    def close(self) -> None:
        if self._connection is not None:
            _unbind(self._connection)
        self._connection = None

    def _fail(self, error: Exception, doing: str) -> SourceError:
        """Drop the connection (the next cycle reconnects) and say what failed."""
        self.close()
        return SourceError(self._explain(error, doing))

    @property
    def preset(self) -> Preset:
        if self._preset is None:
            self._connect()
            self._preset = PRESETS[self.options.preset] if self.options.preset else detect_preset(self._root_dse)
        return self._preset

    def _filter(self) -> str:
        return self.preset.search_filter(self.options.user_filter, self.options.group_filter)

    def _config(self) -> str:
        return ldap_sync.config_digest(self.server_url, self.base_dn, self.preset.name, self._filter())

    def _incremental_mode(self) -> str:
        controls = {value.decode(errors="replace") for value in self._root_dse.get("supportedControl", [])}
        if SYNC_CONTROL in controls and self.preset.anchor == "entryUUID":
            return "syncrepl"
        if self.preset is ACTIVE_DIRECTORY and self._root_dse.get("highestCommittedUSN"):
            return "usn"
        return "timestamp"

    # -- searching ----------------------------------------------------------------------------

    def _paged(self, filter_text: str, attributes: list[str], doing: str) -> Iterator[tuple[str, Raw]]:
        """Every entry a subtree search finds, page after page (RFC 2696, critical: a server that
        cannot page would stop at its size limit). Raises ``SourceError`` on any error, however
        many pages were read."""
        conn = self._connect()
        control = SimplePagedResultsControl(True, size=self.page_size, cookie="")
        try:
            while True:
                msgid = conn.search_ext(self.base_dn, ldap.SCOPE_SUBTREE, filter_text, attributes,
                                        serverctrls=[control], timeout=self.timeout)
                _type, data, _msgid, controls = conn.result3(msgid, timeout=self.timeout)
                for dn, raw in data:
                    if dn is not None:  # None: a search reference (AD's other partitions)
                        yield dn, raw
                cookie = next((c.cookie for c in controls if c.controlType == PAGED_CONTROL), None)
                if cookie is None:
                    raise SourceError(f"{self.description}: {doing}: the server did not page the search (no "
                                      "paged results control in its answer); a read that may be truncated is "
                                      "never used")
                if not cookie:
                    return
                control.cookie = cookie
        except ldap.LDAPError as error:
            raise self._fail(error, doing) from None

    def _ranged_rest(self, dn: str, attribute: str, start: int) -> list[bytes]:
        """The values of a ranged attribute from ``start`` on (Active Directory's ranged retrieval)."""
        conn = self._connect()
        values: list[bytes] = []
        next_start: int | None = start
        while next_start is not None:
            try:
                found = conn.search_ext_s(dn, ldap.SCOPE_BASE, "(objectClass=*)", [f"{attribute};range={next_start}-*"],
                                          timeout=self.timeout)
            except ldap.LDAPError as error:
                raise self._fail(error, f"reading the members of {dn!r}") from None
            more, following = ranged_values(found[0][1] if found else {}, attribute)
            if following is not None and following <= next_start:
                raise SourceError(f"{self.description}: ranged retrieval of {attribute} of {dn!r} does not advance")
            values.extend(more)
            next_start = following
        return values

    def _convert(self, dn: str, raw: Raw, doing: str) -> Entry:
        entry = convert(self.preset, dn, raw, domain_of(self.base_dn), f"{self.description}: {doing}", self._shared,
                        group_classes_of(self.preset, self.options.group_filter))
        if entry.object_type == "group":
            for attribute in self.preset.member_attributes:
                _values, next_start = ranged_values(raw, attribute)
                if next_start is not None:
                    entry.members.extend(value.decode(errors="replace")
                                         for value in self._ranged_rest(dn, attribute, next_start))
        return entry

    def _normal(self, dn: str) -> str:
        """A DN compared as directories do: attribute types and values case-insensitively, spaces
        around separators ignored (``CN=Ada, OU=People`` is ``cn=ada,ou=people``)."""
        known = self._dn_cache.get(dn)
        if known is None:
            try:
                known = ldap.dn.dn2str([[(kind.lower(), value.lower(), flags) for kind, value, flags in rdn]
                                        for rdn in ldap.dn.str2dn(dn)])
            except ldap.DECODING_ERROR:
                known = dn.lower()
            if known == dn:
                known = dn  # one string, not two equal ones
            self._dn_cache[dn] = known
        return known

    # -- reading ------------------------------------------------------------------------------

    def read(self) -> SourceSnapshot:
        """Every user and group, complete, with the position the next incremental read starts from."""
        try:
            return self._read()
        finally:
            self._forget()

    def _forget(self) -> None:
        """The per-read caches, emptied: a source lives as long as its job's process."""
        self._dn_cache = {}
        self._shared = {}

    def _read(self) -> SourceSnapshot:
        started = time.monotonic()
        conn = self._connect()
        mode = self._incremental_mode()
        cursor = ldap_sync.Cursor(mode="timestamp", config=self._config())
        if mode == "syncrepl":
            # The position is taken *before* the read: whatever changes during it is read again
            # next time (at least once), never missed.
            try:
                result = conn.refresh(self.base_dn, ldap.SCOPE_BASE, "(!(objectClass=*))", ["1.1"], None,
                                      self.timeout)
                if result.cookie:
                    cursor = ldap_sync.Cursor(mode="syncrepl", config=cursor.config, cookie=result.cookie)
            except ldap.LDAPError:
                pass  # syncprov not on this database: poll timestamps instead
        elif mode == "usn":
            cursor = ldap_sync.Cursor(mode="usn", config=cursor.config,
                                      usn=int(self._root_dse["highestCommittedUSN"][0]))
        entries: list[Entry] = []
        newest = None
        for dn, raw in self._paged(self._filter(), self.preset.attribute_list(), "reading users and groups"):
            entries.append(self._convert(dn, raw, "reading users and groups"))
            if cursor.mode == "timestamp":
                stamp = _newest_time(raw)
                if stamp is not None and (newest is None or stamp > newest):
                    newest = stamp
        self.entries_read = len(entries)
        if cursor.mode == "timestamp":
            cursor = ldap_sync.Cursor(mode="timestamp", config=cursor.config,
                                      since=ldap_sync.next_since(newest, time.monotonic() - started))
        index = self._index(entries, {}, "reading users and groups")
        users: dict[str, SourceObject] = {}
        groups: dict[str, SourceObject] = {}
        for entry in entries:
            target = users if entry.object_type == "user" else groups
            target[entry.anchor] = self._resolve(entry, index)
        user_names = _attribute_names(users.values(), self.preset.user_map.values(), USER_EXTRAS)
        group_names = _attribute_names(groups.values(), self.preset.group_map.values(), ("members",))
        watermark = cursor.text() if cursor.mode != "timestamp" or cursor.since else "{}"
        return SourceSnapshot(users, groups, None, watermark, self.description, user_attributes=user_names,
                              group_attributes=group_names)

    def _index(self, entries: Iterable[Entry], base: dict[str, str], doing: str) -> dict[str, str]:
        """normalised DN → anchor of every entry (added to ``base``); refuses a duplicate anchor."""
        anchors: dict[str, str] = {}
        for entry in entries:
            if entry.anchor in anchors:
                raise SourceError(f"{self.description}: {doing}: entries {anchors[entry.anchor]!r} and {entry.dn!r} "
                                  f"have the same {self.preset.anchor} {entry.anchor}")
            anchors[entry.anchor] = entry.dn
            base[self._normal(entry.dn)] = entry.anchor
        return base

    def _resolve(self, entry: Entry, index: Mapping[str, str] | _Index) -> SourceObject:
        """The object with ``manager`` and ``members`` as anchors (DNs naming nothing left out)."""
        attributes = entry.attributes
        if entry.manager is not None:
            manager = index.get(self._normal(entry.manager))
            if manager is not None and manager != entry.anchor:
                attributes["manager"] = manager
        if entry.object_type == "group":
            members: dict[str, None] = {}
            for dn in entry.members:
                member = index.get(self._normal(dn))
                if member is not None and member != entry.anchor:
                    members[member] = None
            attributes["members"] = list(members)
        return SourceObject(entry.object_type, entry.anchor, attributes)

    def read_changes(self, cursor: str, previous: SourceSnapshot) -> SourceDelta | None:
        """What changed since ``cursor`` (ldap_sync.py), or ``None`` when only a complete read
        will do: another search, a cursor the server no longer knows, a server that lost its
        change tracking."""
        try:
            return self._read_changes(cursor, previous)
        finally:
            self._forget()

    def _read_changes(self, cursor: str, previous: SourceSnapshot) -> SourceDelta | None:
        self._connect()
        state = ldap_sync.parse_cursor(cursor, self._config())
        if state is None or (state.mode == "usn" and not self._root_dse.get("highestCommittedUSN")):
            return None
        started = time.monotonic()
        removed_anchors: set[str] = set()
        self.anchors_listed = 0
        if state.mode == "syncrepl":
            try:
                result = self._connect().refresh(self.base_dn, ldap.SCOPE_SUBTREE, self._filter(),
                                                 self.preset.attribute_list(), state.cookie, self.timeout)
            except (ldap.SIZELIMIT_EXCEEDED, ldap.ADMINLIMIT_EXCEEDED):
                # More changes than the bind DN may read in one search (a refresh cannot be paged).
                self.close()
                raw_entries, removed_anchors, next_cursor = self._csn_changes(state, previous)
            except (ldap.UNWILLING_TO_PERFORM, ldap.UNAVAILABLE_CRITICAL_EXTENSION, ldap.PROTOCOL_ERROR):
                self.close()  # syncprov is gone from this database: a complete read decides what next
                return None
            except ldap.LDAPError as error:
                if _result_code(error) == 4096:  # e-syncRefreshRequired: the cookie is too old
                    self.close()
                    return None
                raise self._fail(error, "reading changes") from None
            else:
                raw_entries = [(dn, raw) for dn, raw, _uuid in result.entries]
                # syncprov reports deleted entries, and entries that no longer match the filter, as deletes.
                removed_anchors = set(result.deleted)
                if result.present is not None:
                    changed_anchors = {uuid for _dn, _raw, uuid in result.entries}
                    removed_anchors |= (set(previous.users) | set(previous.groups)) - result.present - changed_anchors
                next_cursor = state.next_read(cookie=result.cookie or state.cookie)
        else:
            raw_entries, next_cursor = self._poll(state, started)
            if next_cursor.reads % self.delete_sweep_every == 0:
                removed_anchors = self._sweep(previous)
        entries = [self._convert(dn, raw, "reading changes") for dn, raw in raw_entries]
        # Entries read twice in one refresh (changed during it): the last one is current.
        entries = list({entry.anchor: entry for entry in entries}.values())
        index = _Index(lambda: self._previous_index(previous))
        self._index(entries, index.changes, "reading changes")
        changed = [self._resolve(entry, index) for entry in entries]
        changed_anchors = {obj.anchor for obj in changed}
        removed: list[tuple[ObjectType, str]] = []
        for anchor in sorted(removed_anchors - changed_anchors):
            if anchor in previous.users:
                removed.append(("user", anchor))
            elif anchor in previous.groups:
                removed.append(("group", anchor))
        changed.extend(_without_references(previous, {anchor for _type, anchor in removed}, changed_anchors))
        self.entries_read = len(raw_entries)
        return SourceDelta(changed, removed, None, next_cursor.text(), entries_read=len(raw_entries))

    def _csn_changes(self, state: ldap_sync.Cursor, previous: SourceSnapshot
                     ) -> tuple[list[tuple[str, Raw]], set[str], ldap_sync.Cursor]:
        """When a refresh would exceed the size limit: the changed entries by a paged search on
        ``entryCSN`` (every change since the cookie's CSN), the deletes by an anchor listing, and a
        new cookie taken before both (what changes meanwhile comes again next time)."""
        conn = self._connect()
        try:
            fresh = conn.refresh(self.base_dn, ldap.SCOPE_BASE, "(!(objectClass=*))", ["1.1"], None, self.timeout)
        except ldap.LDAPError as error:
            raise self._fail(error, "reading changes") from None
        csn = ldap_sync.cookie_csn(state.cookie or "")
        if csn is None or not fresh.cookie:
            raise SourceError(f"{self.description}: reading changes: the server's sync cookie has no CSN")
        # Strictly after the cookie's CSN: the change that CSN names was in the read the cookie began.
        escaped = ldap.filter.escape_filter_chars(csn)
        condition = f"(&(entryCSN>={escaped})(!(entryCSN={escaped})))"
        raw_entries = list(self._paged(f"(&{self._filter()}{condition})", self.preset.attribute_list(),
                                       "reading changes"))
        return raw_entries, self._sweep(previous), state.next_read(cookie=fresh.cookie)

    def _poll(self, state: ldap_sync.Cursor, started: float) -> tuple[list[tuple[str, Raw]], ldap_sync.Cursor]:
        """The polling modes: entries whose change attribute moved past the cursor."""
        if state.mode == "usn":
            # Read highestCommittedUSN before the search, as read() does: changes during it come again.
            highest = self._root_value("highestCommittedUSN")
            condition = f"(uSNChanged>={int(state.usn or 0) + 1})"
        else:
            condition = f"(modifyTimestamp>={ldap.filter.escape_filter_chars(state.since or '')})"
        raw_entries = list(self._paged(f"(&{self._filter()}{condition})", self.preset.attribute_list(),
                                       "reading changes"))
        if state.mode == "usn":
            return raw_entries, state.next_read(usn=int(highest) if highest else state.usn)
        newest = max((stamp for _dn, raw in raw_entries if (stamp := _newest_time(raw)) is not None), default=None)
        since = ldap_sync.next_since(newest, time.monotonic() - started, state.since)
        return raw_entries, state.next_read(since=since)

    def _sweep(self, previous: SourceSnapshot) -> set[str]:
        """Anchors the engine holds that the directory no longer has (the anchor listing: the
        anchor attribute of every entry, paged; counted in ``anchors_listed``)."""
        anchor = self.preset.anchor
        listed: set[str] = set()
        for dn, raw in self._paged(self._filter(), [anchor], "listing anchors"):
            values = next((v for name, v in raw.items() if name.lower() == anchor.lower()), None)
            if not values:
                raise SourceError(f"{self.description}: listing anchors: entry {dn!r} has no {anchor}")
            if anchor == "objectGUID":
                listed.add(guid_text(values[0]))
            else:
                listed.add(values[0].decode().lower())
        self.anchors_listed = len(listed)
        return (set(previous.users) | set(previous.groups)) - listed

    def _root_value(self, name: str) -> bytes | None:
        try:
            found = self._connect().search_ext_s("", ldap.SCOPE_BASE, "(objectClass=*)", [name],
                                                 timeout=self.timeout)
        except ldap.LDAPError as error:
            raise self._fail(error, "reading the root DSE") from None
        values: list[bytes] = next((v for key, v in (found[0][1] if found else {}).items()
                                    if key.lower() == name.lower()), [])
        return values[0] if values else None

    def _previous_index(self, previous: SourceSnapshot) -> dict[str, str]:
        """DN → anchor of the engine's copy: how unchanged entries named by a changed one resolve.
        A renamed entry keeps its old DN here too, so a group that still names the old DN (a
        server without referential integrity) still resolves to it."""
        index: dict[str, str] = {}
        for objects in (previous.users, previous.groups):
            for anchor, obj in objects.items():
                dn = obj.attributes.get("distinguishedName")
                if isinstance(dn, str):
                    index[self._normal(dn)] = anchor
        return index

    def get(self, anchor: str) -> SourceObject | None:
        """One user or group by anchor, read now; its references resolved one base search each."""
        if self.preset.anchor == "objectGUID":
            try:
                condition = f"(objectGUID={guid_filter_value(anchor)})"
            except ValueError:
                return None
        else:
            condition = f"(entryUUID={ldap.filter.escape_filter_chars(anchor)})"
        found = list(self._paged(f"(&{self._filter()}{condition})", self.preset.attribute_list(), "reading one object"))
        if not found:
            return None
        entry = self._convert(found[0][0], found[0][1], "reading one object")
        names = ([entry.manager] if entry.manager else []) + entry.members
        index = {self._normal(entry.dn): entry.anchor}
        for dn in names:
            resolved = self._anchor_of(dn)
            if resolved is not None:
                index[self._normal(dn)] = resolved
        return self._resolve(entry, index)

    def _anchor_of(self, dn: str) -> str | None:
        try:
            found = self._connect().search_ext_s(dn, ldap.SCOPE_BASE, self._filter(), self.preset.attribute_list(),
                                                 timeout=self.timeout)
        except ldap.NO_SUCH_OBJECT:
            return None
        except ldap.LDAPError as error:
            raise self._fail(error, f"reading {dn!r}") from None
        if not found or found[0][0] is None:
            return None
        return convert(self.preset, found[0][0], found[0][1], None, self.description,
                       group_classes=group_classes_of(self.preset, self.options.group_filter)).anchor


class _Index:
    """DN → anchor for a delta: the changed entries first, then (built on the first miss, from
    every object of the engine's copy) the unchanged ones."""

    def __init__(self, load_previous: Callable[[], dict[str, str]]) -> None:
        self.changes: dict[str, str] = {}
        self._load_previous = load_previous
        self._previous: dict[str, str] | None = None

    def get(self, dn: str) -> str | None:
        found = self.changes.get(dn)
        if found is None:
            if self._previous is None:
                self._previous = self._load_previous()
            found = self._previous.get(dn)
        return found


def _without_references(previous: SourceSnapshot, removed: set[str], changed: set[str]) -> list[SourceObject]:
    """Unchanged objects of the engine's copy that name a removed one (a member, a manager),
    without it — what a complete read gives them. A server's referential integrity may rewrite
    them without reporting it (OpenLDAP's refint changes are not replicated to syncrepl)."""
    if not removed:
        return []
    rewritten: list[SourceObject] = []
    for anchor, group in previous.groups.items():
        members = group.attributes.get("members") or []
        if anchor not in changed and anchor not in removed and any(member in removed for member in members):
            kept = [member for member in members if member not in removed]
            rewritten.append(SourceObject("group", anchor, {**group.attributes, "members": kept}))
    for anchor, user in previous.users.items():
        if anchor not in changed and anchor not in removed and user.attributes.get("manager") in removed:
            rewritten.append(SourceObject("user", anchor, {k: v for k, v in user.attributes.items() if k != "manager"}))
    return rewritten


def _newest_time(raw: Raw) -> Any:
    values = next((v for name, v in raw.items() if name.lower() == "modifytimestamp"), None)
    return ldap_sync.parse_generalized_time(values[0]) if values else None


def _attribute_names(objects: Iterable[SourceObject], *known: Iterable[str]) -> frozenset[str]:
    """Every attribute name some object has, and those the preset can give (a scoping filter on
    ``jobTitle`` is no typo because nobody has a title today)."""
    names: set[str] = {"distinguishedName", *(name for names in known for name in names)}
    for obj in objects:
        names.update(obj.attributes)
    return frozenset(sys.intern(name) for name in names)


def _error_info(error: Exception) -> str:
    """python-ldap's error details (a dict of ``desc`` and ``info``) as one line."""
    details = error.args[0] if error.args and isinstance(error.args[0], dict) else {}
    text = "; ".join(str(details[key]) for key in ("desc", "info") if details.get(key))
    return " ".join(text.split())


def _result_code(error: Exception) -> int | None:
    details = error.args[0] if error.args and isinstance(error.args[0], dict) else {}
    code = details.get("result")
    return code if isinstance(code, int) else None


def _unbind(conn: Any) -> None:
    try:
        conn.unbind_s()
    except ldap.LDAPError:
        pass  # already gone: nothing to release
