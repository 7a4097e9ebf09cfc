"""The LDAP source's benchmark (issue 12): a directory of 100,000 users (and 1,000 groups of 100
members) in a throw-away slapd on this machine, read completely, then read incrementally after
1 % of the users changed; and, unless ``--no-engine``, the engine's initial cycle of it into our
own service and the cycle after the change.

    .venv/bin/python benchmarks/ldap_source.py [--users 100000 --groups 1000 --members 100]
                                               [--mutate 1] [--no-engine] [--save]

slapd (tests/slapd.py: mdb, syncprov, a size limit of 50 that the read pages past) is loaded
offline with ``slapadd -q`` and started; the source binds as an ordinary reader. Measured:

* ``read``: ``LdapSource.read()`` — seconds, entries per second, and the peak RSS of this process
  after it (``ru_maxrss``; nothing else ran before it in this process but imports);
* ``changes_syncrepl``: ``read_changes`` after ``--mutate`` % of the users had one attribute
  changed, bound as an identity without size limit (one RFC 4533 refresh) — seconds and entries
  read, which must be the changed entries only;
* ``changes_past_size_limit``: the same, bound as the reader whose size limit (50) the changes
  exceed: changed entries by a paged ``entryCSN`` search, deletes by listing every anchor;
* ``engine_initial`` / ``engine_after_change``: ``engine.run`` into ``identity-sync serve`` on
  SQLite. Until the cycle reads through ``read_changes`` the second cycle reads everything.

Prints one JSON object (also written to benchmarks/results/ with ``--save``).
"""

from __future__ import annotations

import argparse
import json
import random
import resource
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from identity_sync.engine.sources import open_source
from identity_sync.engine.sources.base import SourceOptions
from tests.slapd import ADMIN_PASSWORD, READER_DN, READER_PASSWORD, SUFFIX, SlapdServer

RESULTS = Path(__file__).resolve().parent / "results"
DEPARTMENTS = ("Sales", "R&D", "Finance", "Support", "Operations", "Legal")


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def write_ldif(path: Path, users: int, groups: int, members: int, seed: int) -> None:
    """Users under ou=people (every one after the first 100 with a manager), groups of
    ``members`` random users under ou=groups; slapadd adds entryUUID and the timestamps."""
    rng = random.Random(seed)
    with path.open("w") as out:
        out.write(f"dn: {SUFFIX}\nobjectClass: dcObject\nobjectClass: organization\ndc: example\no: example\n\n")
        for ou in ("people", "groups"):
            out.write(f"dn: ou={ou},{SUFFIX}\nobjectClass: organizationalUnit\nou: {ou}\n\n")
        out.write(f"dn: {READER_DN}\nobjectClass: person\ncn: reader\nsn: service\nuserPassword: {READER_PASSWORD}\n\n")
        for number in range(users):
            uid = f"user{number:06d}"
            manager = f"manager: uid=user{rng.randrange(100):06d},ou=people,{SUFFIX}\n" if number >= 100 else ""
            out.write(f"dn: uid={uid},ou=people,{SUFFIX}\nobjectClass: inetOrgPerson\nuid: {uid}\n"
                      f"cn: User {number}\nsn: Surname{number}\ngivenName: Given{number}\n"
                      f"displayName: User {number}\nmail: {uid}@example.com\ntitle: Engineer\n"
                      f"departmentNumber: {rng.choice(DEPARTMENTS)}\nemployeeNumber: {number}\n"
                      f"telephoneNumber: +1 555 {number:07d}\n{manager}\n")
        for number in range(groups):
            chosen = rng.sample(range(users), min(members, users))
            lines = "".join(f"member: uid=user{m:06d},ou=people,{SUFFIX}\n" for m in chosen)
            out.write(f"dn: cn=group{number:05d},ou=groups,{SUFFIX}\nobjectClass: groupOfNames\n"
                      f"cn: group{number:05d}\n{lines}\n")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--users", type=int, default=100_000)
    parser.add_argument("--groups", type=int, default=1_000)
    parser.add_argument("--members", type=int, default=100)
    parser.add_argument("--mutate", type=float, default=1.0, help="percent of users changed")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--no-engine", action="store_true", help="measure the source alone")
    parser.add_argument("--save", action="store_true")
    args = parser.parse_args()
    report: dict[str, object] = {"users": args.users, "groups": args.groups, "members_per_group": args.members,
                                 "rss_after_imports_mb": round(_rss_mb(), 1)}
    server = SlapdServer(map_size=8 << 30)
    try:
        ldif = server.root / "directory.ldif"
        started = time.monotonic()
        write_ldif(ldif, args.users, args.groups, args.members, args.seed)
        server.slapadd(ldif)
        ldif.unlink()
        report["slapadd_seconds"] = round(time.monotonic() - started, 1)
        server.start()
        spec = f"{server.url}/{SUFFIX}"
        options = SourceOptions(bind_dn=READER_DN, password=READER_PASSWORD)
        source = open_source(spec, options)

        started = time.perf_counter()
        snapshot = source.read()
        seconds = time.perf_counter() - started
        entries = len(snapshot.users) + len(snapshot.groups)
        assert len(snapshot.users) == args.users and len(snapshot.groups) == args.groups, "an incomplete read"
        report["read"] = {"entries": entries, "seconds": round(seconds, 2),
                          "entries_per_second": round(entries / seconds), "peak_rss_mb": round(_rss_mb(), 1),
                          "mode": json.loads(snapshot.watermark)["mode"]}
        print(f"read: {report['read']}", file=sys.stderr, flush=True)

        changed = _mutate(server, args.users, args.mutate, args.seed)
        # The same cursor read twice: as the root DN (no size limit, as a replication identity is
        # configured: one RFC 4533 refresh) and as the reader (size limit 50: entryCSN + anchor listing).
        unlimited = open_source(spec, SourceOptions(bind_dn=f"cn=admin,{SUFFIX}", password=ADMIN_PASSWORD))
        for label, reader in (("changes_syncrepl", unlimited), ("changes_past_size_limit", source)):
            started = time.perf_counter()
            delta = reader.read_changes(snapshot.watermark, snapshot)
            seconds = time.perf_counter() - started
            assert delta is not None, "no incremental read"
            report[label] = {"changed_in_directory": changed, "entries_read": delta.entries_read,
                             "anchors_listed": reader.anchors_listed, "changed_objects": len(delta.changed),
                             "removed": len(delta.removed), "seconds": round(seconds, 3),
                             "peak_rss_mb": round(_rss_mb(), 1)}
            print(f"{label}: {report[label]}", file=sys.stderr, flush=True)
        unlimited.close()
        source.close()
        del snapshot, delta
        if not args.no_engine:
            report.update(_engine_cycles(spec, options, server, args))
    finally:
        server.destroy()
    text = json.dumps(report, indent=2)
    print(text)
    if args.save:
        (RESULTS / f"ldap_source-{args.users}-{int(time.time())}.json").write_text(text + "\n")
    return 0


def _mutate(server: SlapdServer, users: int, percent: float, seed: int) -> int:
    """Change one attribute of ``percent`` % of the users (as the root DN)."""
    import ldap

    rng = random.Random(seed + 1)
    chosen = rng.sample(range(users), int(users * percent / 100))
    conn = server.admin()
    for number in chosen:
        conn.modify_s(f"uid=user{number:06d},ou=people,{SUFFIX}", [(ldap.MOD_REPLACE, "title", [b"Senior Engineer"])])
    conn.unbind_s()
    return len(chosen)


def _engine_cycles(spec: str, options: SourceOptions, server: SlapdServer, args: argparse.Namespace
                   ) -> dict[str, object]:
    """The engine's initial cycle into our service, then another after a second change."""
    from _harness import Server

    from identity_sync.config import Settings
    from identity_sync.engine.jobs import Credentials
    from identity_sync.engine.service import EngineService
    from identity_sync.storage.db import Database

    out: dict[str, object] = {}
    from _harness import DEFAULT_CLI

    # The service's command line: this checkout's .venv, else the one next to this interpreter.
    cli = DEFAULT_CLI if DEFAULT_CLI.exists() else Path(sys.executable).parent / "identity-sync"
    with tempfile.TemporaryDirectory(prefix="idsync-ldap-bench-") as scratch, \
            Server(cli=cli, log_level="WARNING") as target:
        work = Path(scratch)
        settings = Settings(database_url=f"sqlite:///{work / 'engine.db'}", data_dir=work / "data")
        db = Database(settings.resolved_database_url())
        db.migrate()
        engine = EngineService(db, settings)
        engine.jobs.create("bench", source=spec, target_url=target.base_url, scope="all", source_options=options,
                           credentials=Credentials(token=target.token))
        for label in ("engine_initial", "engine_after_change"):
            if label == "engine_after_change":
                _mutate(server, args.users, args.mutate, args.seed + 10)
            started = time.perf_counter()
            result = engine.run("bench")
            out[label] = {"seconds": round(time.perf_counter() - started, 1), "kind": result.kind,
                          **{key: result.counts.get(key, 0) for key in ("created", "updated", "disabled", "deleted",
                                                                       "failed", "unchanged")},
                          "engine_peak_rss_mb": round(_rss_mb(), 1),
                          # how the cycle read its source, once it reads through engine/mirror.py
                          "source_read": getattr(result, "source_read", None)}
            print(f"{label}: {out[label]}", file=sys.stderr, flush=True)
        target.sample_memory()
        out["target_peak_rss_mb"] = round(target.peak.get("VmHWM", 0) / 1024, 1)
        db.dispose()
    return out


if __name__ == "__main__":
    sys.exit(main())
