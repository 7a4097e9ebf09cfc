"""Entra's error codes for each final answer (provisioning-engine.md §1.7), and which stop the job."""

from __future__ import annotations

import pytest

from identity_sync.engine.client import ConnectionProblem
from identity_sync.engine.client.errors import CONNECTION_PROBLEM_KINDS, classify_status


@pytest.mark.parametrize(("status", "scim_type", "one_object", "expected"), [
    (401, None, True, ("Unauthorized", True)),
    (403, None, False, ("InsufficientRights", True)),
    (409, "uniqueness", False, ("EntryConflict", False)),
    (400, "uniqueness", False, ("EntryConflict", False)),
    (400, "noTarget", True, ("SchemaAttributeNotFound", False)),
    (400, "invalidPath", True, ("SchemaAttributeNotFound", False)),
    (400, "invalidValue", True, ("UnprocessableEntity", False)),
    (422, None, True, ("UnprocessableEntity", False)),
    (404, None, True, ("InvalidAnchor", False)),
    (404, None, False, ("SystemForCrossDomainIdentityManagementServiceIncompatible", True)),
    (405, None, True, ("MethodNotAllowed", False)),
    (429, None, True, ("TooManyRequests", False)),
    (500, None, True, ("InternalServerError", False)),
    (503, None, False, ("InternalServerError", False)),
    (501, None, True, ("NotImplemented", False)),
])
def test_each_status_has_entras_code_and_job_level(status: int, scim_type: str | None, one_object: bool,
                                                   expected: tuple[str, bool]) -> None:
    assert classify_status(status, scim_type, addresses_one_object=one_object) == expected


def test_connection_problem_kinds_are_a_closed_list() -> None:
    problem = ConnectionProblem("tls", "certificate verify failed")
    assert (problem.kind, problem.reason, str(problem)) == ("tls", "certificate verify failed",
                                                            "tls: certificate verify failed")
    assert CONNECTION_PROBLEM_KINDS == ("unreachable", "tls", "unauthorized", "forbidden", "not_scim", "not_found")
    with pytest.raises(ValueError, match="unknown connection problem kind"):
        ConnectionProblem("flaky", "x")
