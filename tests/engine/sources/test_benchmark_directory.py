"""The benchmark directory generator writes an export the CSV source accepts, as described."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

import pytest

from identity_sync.engine.scoping import effective_assignments
from identity_sync.engine.sources.csv_source import CsvSource

SCRIPT = Path(__file__).resolve().parents[3] / "benchmarks" / "make_directory.py"


@pytest.fixture(scope="module")
def make_directory() -> ModuleType:
    spec = importlib.util.spec_from_file_location("make_directory", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def generate(module: ModuleType, directory: Path, seed: int = 1) -> Path:
    assert module.main([str(directory), "--users", "400", "--groups", "30", "--memberships", "1500",
                        "--seed", str(seed)]) == 0
    return directory


def test_generated_directory_reads_as_described(make_directory: ModuleType, tmp_path: Path) -> None:
    snapshot = CsvSource(generate(make_directory, tmp_path)).read()
    assert len(snapshot.users) == 400 and len(snapshot.groups) == 30
    users = list(snapshot.users.values())
    user_memberships = sum(member in snapshot.users for group in snapshot.groups.values()
                           for member in group.attributes["members"])
    assert user_memberships == 1500
    assert any(member in snapshot.groups for group in snapshot.groups.values()
               for member in group.attributes["members"]), "a few nested groups"
    assert any(user.attributes["accountEnabled"] is False for user in users)
    assert any(not user.attributes["displayName"].isascii() for user in users), "names with diacritics"
    assert all(user.attributes["userPrincipalName"].isascii() for user in users)
    assert len({user.attributes["userPrincipalName"] for user in users}) == 400
    assert any("," in user.attributes["streetAddress"] for user in users), "quoted cells"
    # Managers form a tree rooted at the first user: every chain ends there, without a cycle.
    order = {anchor: number for number, anchor in enumerate(snapshot.users)}
    assert "manager" not in users[0].attributes
    assert all(order[user.attributes["manager"]] < order[user.anchor] for user in users[1:])
    assignments = effective_assignments(snapshot)
    assert assignments.users == frozenset(snapshot.users) and assignments.groups == frozenset(snapshot.groups)


def test_generation_is_deterministic_for_a_seed(make_directory: ModuleType, tmp_path: Path) -> None:
    first = CsvSource(generate(make_directory, tmp_path / "a")).read().watermark
    assert CsvSource(generate(make_directory, tmp_path / "b")).read().watermark == first
    assert CsvSource(generate(make_directory, tmp_path / "c", seed=2)).read().watermark != first


def test_mutate_changes_exactly_the_given_share_of_users(make_directory: ModuleType, tmp_path: Path) -> None:
    before = CsvSource(generate(make_directory, tmp_path)).read()
    before_users = {anchor: user.attributes for anchor, user in before.users.items()}
    assert make_directory.main([str(tmp_path), "--mutate", "5", "--seed", "3"]) == 0
    after = CsvSource(tmp_path).read()
    changed = [anchor for anchor, user in after.users.items() if user.attributes != before_users[anchor]]
    assert len(changed) == 20
    assert list(after.users) == list(before.users)
    assert after.watermark != before.watermark
