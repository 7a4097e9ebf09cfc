"""The operator service: argon2id hashes, and a verification whose cost does not depend on
whether the name exists (always exactly one argon2 verification)."""

from __future__ import annotations

from typing import Any

import pytest
from argon2 import PasswordHasher

from identity_sync.service import operators as module
from identity_sync.service.operators import OperatorError, OperatorService

PASSWORD = "twelve chars or more"


class CountingHasher:
    """The real hasher, counting its verifications."""

    def __init__(self, real: PasswordHasher) -> None:
        self.real = real
        self.verified = 0

    def verify(self, hashed: str, password: str) -> Any:
        self.verified += 1
        return self.real.verify(hashed, password)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.real, name)


@pytest.fixture
def counting(monkeypatch: pytest.MonkeyPatch) -> CountingHasher:
    hasher = CountingHasher(module._hasher)
    monkeypatch.setattr(module, "_hasher", hasher)
    return hasher


def test_every_verification_costs_one_argon2_check_whether_or_not_the_name_exists(
        operators: OperatorService, counting: CountingHasher) -> None:
    operators.create("alice", "admin", PASSWORD)
    operators.create("dora", "viewer", PASSWORD)
    operators.disable("dora")
    counting.verified = 0

    outcomes = [operators.verify("alice", PASSWORD), operators.verify("alice", "wrong password!!"),
                operators.verify("nobody", PASSWORD), operators.verify("dora", PASSWORD),
                operators.verify("alice", PASSWORD + "x" * 2_000)]

    assert counting.verified == len(outcomes)
    assert [o is not None for o in outcomes] == [True, False, False, False, False]


def test_a_hash_made_with_weaker_parameters_is_upgraded_at_the_next_login(operators: OperatorService,
                                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    real = module._hasher
    monkeypatch.setattr(module, "_hasher", PasswordHasher(time_cost=1, memory_cost=8_192, parallelism=1))
    old = operators.create("alice", "admin", PASSWORD).password_hash
    monkeypatch.setattr(module, "_hasher", real)

    operator = operators.verify("alice", PASSWORD)

    assert operator is not None and operator.password_hash != old
    assert operator.password_hash.startswith("$argon2id$v=19$m=65536,t=3,p=4$")
    assert operators.verify("alice", PASSWORD) is not None


def test_names_roles_and_passwords_are_checked(operators: OperatorService) -> None:
    for name, role, password, message in (("", "admin", PASSWORD, "operator name"),
                                          ("a" * 65, "admin", PASSWORD, "operator name"),
                                          ("alice", "owner", PASSWORD, "role"),
                                          ("alice", "admin", "short", "at least 12"),
                                          ("alice", "admin", "x" * 1_025, "at most")):
        with pytest.raises(OperatorError, match=message):
            operators.create(name, role, password)
    assert operators.list() == []
