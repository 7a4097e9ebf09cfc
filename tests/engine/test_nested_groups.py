"""Nested groups end to end (CSV → our own service, SQLite and PostgreSQL): with ``--nested-groups
flatten`` a group's members on the target are the users of its nested groups (no group is a
member), a change deep in the nesting reaches every group above it in the next incremental cycle,
and ``--nested-scope on`` brings the members of nested groups of an assigned group into scope."""

from __future__ import annotations

from pathlib import Path

from identity_sync.config import Settings
from identity_sync.engine.jobs import Credentials
from identity_sync.engine.service import EngineService
from identity_sync.storage.db import Database
from tests.engine.conftest import unique
from tests.engine.directory import group, user, write_directory
from tests.engine.readback import Readback
from tests.engine.targets import Target


def _write(path: Path, prefix: str, low_members: list[str], assignments: list[str]) -> None:
    users = [user(a, userPrincipalName=f"{prefix}-{a}@example.com") for a in ("u1", "u2", "u3", "u4")]
    groups = [group("top", ["u1", "mid"], displayName=f"{prefix} top"),
              group("mid", ["low"], displayName=f"{prefix} mid"),
              group("low", low_members, displayName=f"{prefix} low")]
    write_directory(path, users, groups, assignments)


def test_flattened_groups_carry_the_users_of_their_nested_groups(
        db: Database, settings: Settings, our_target: Target, readback: Readback, tmp_path: Path) -> None:
    prefix = unique("flat")
    _write(tmp_path / "export", prefix, ["u2"], ["top", "mid", "low", "u1", "u2", "u3", "u4"])
    engine = EngineService(db, settings)
    engine.jobs.create("flat", source=f"csv:{tmp_path / 'export'}", target_url=our_target.base_url,
                       credentials=Credentials(token=our_target.token), nested_groups="flatten")
    first = engine.run("flat")
    assert first.counts["failed"] == 0
    ids = {upn.split("@")[0].removeprefix(f"{prefix}-"): r["id"] for upn, r in readback.users(prefix).items()}
    groups = readback.groups(prefix)
    top, mid, low = (groups[f"{prefix} {name}"]["id"] for name in ("top", "mid", "low"))
    assert readback.member_ids(top) == {ids["u1"], ids["u2"]}
    assert readback.member_ids(mid) == {ids["u2"]}
    assert readback.member_ids(low) == {ids["u2"]}

    # A change two levels down reaches every group above it; nothing else is written.
    _write(tmp_path / "export", prefix, ["u2", "u3"], ["top", "mid", "low", "u1", "u2", "u3", "u4"])
    second = engine.run("flat")
    assert second.kind == "incremental" and second.counts["failed"] == 0
    assert readback.member_ids(top) == {ids["u1"], ids["u2"], ids["u3"]}
    assert readback.member_ids(mid) == readback.member_ids(low) == {ids["u2"], ids["u3"]}
    assert second.requests.get("PATCH") == 3 and "POST" not in second.requests
    assert second.source_read == {"mode": "complete", "entries": 7}


def test_groups_stay_nested_by_default(db: Database, settings: Settings, our_target: Target, readback: Readback,
                                       tmp_path: Path) -> None:
    prefix = unique("nest")
    _write(tmp_path / "export", prefix, ["u2"], ["top", "mid", "low", "u1", "u2"])
    engine = EngineService(db, settings)
    engine.jobs.create("nest", source=f"csv:{tmp_path / 'export'}", target_url=our_target.base_url,
                       credentials=Credentials(token=our_target.token))
    engine.run("nest")
    groups = readback.groups(prefix)
    ids = {upn.split("@")[0].removeprefix(f"{prefix}-"): r["id"] for upn, r in readback.users(prefix).items()}
    top, mid = groups[f"{prefix} top"]["id"], groups[f"{prefix} mid"]["id"]
    assert readback.member_ids(top) == {ids["u1"], mid}


def test_nested_scope_assigns_the_members_of_nested_groups(
        db: Database, settings: Settings, our_target: Target, readback: Readback, tmp_path: Path) -> None:
    prefix = unique("scope")
    _write(tmp_path / "export", prefix, ["u2"], ["top"])  # only the top group is assigned
    engine = EngineService(db, settings)
    engine.jobs.create("direct", source=f"csv:{tmp_path / 'export'}", target_url=our_target.base_url,
                       credentials=Credentials(token=our_target.token))
    engine.run("direct")
    assert set(readback.users(prefix)) == {f"{prefix}-u1@example.com"}  # as Entra: direct members only
    engine.jobs.update("direct", nested_scope=True)
    again = engine.run("direct")
    assert again.kind == "initial"  # a new way of seeing the source: everything is evaluated again
    assert set(readback.users(prefix)) == {f"{prefix}-u1@example.com", f"{prefix}-u2@example.com"}
    assert set(readback.groups(prefix)) == {f"{prefix} top", f"{prefix} mid", f"{prefix} low"}
