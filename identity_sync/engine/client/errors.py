"""What can go wrong when the engine talks to a SCIM target, named as Entra names it.

::

    Exception
    ├── TargetError          one request failed for good (after the retries it deserved)
    │                        .status .scim_type .detail .error_code .job_level .maybe_applied
    └── ConnectionProblem    test_connection's verdict: .kind in CONNECTION_PROBLEM_KINDS, .reason

``error_code`` uses the codes of Entra's provisioning logs (docs provisioning-engine.md §1.7), so
the engine's logs read like Entra's. ``job_level`` separates what stops the whole cycle (the target
cannot be reached, refuses our credentials, or is not speaking SCIM: every other request would
fail the same way) from what only fails one object (a conflict, a bad value, a gone id).

No message ever carries a credential: the transport scrubs every secret it holds from the texts
the target sends back before they reach an exception (a misbehaving target may echo headers).
"""

from __future__ import annotations

#: The kinds of :class:`ConnectionProblem`, in the order test_connection can meet them.
CONNECTION_PROBLEM_KINDS = ("unreachable", "tls", "unauthorized", "forbidden", "not_scim", "not_found")

# Error codes (provisioning-engine.md §1.7; entra-scim-requests.md §1.6).
ENTRY_CONFLICT = "EntryConflict"
SCHEMA_ATTRIBUTE_NOT_FOUND = "SchemaAttributeNotFound"
UNPROCESSABLE_ENTITY = "UnprocessableEntity"
INVALID_ANCHOR = "InvalidAnchor"
UNAUTHORIZED = "Unauthorized"
INSUFFICIENT_RIGHTS = "InsufficientRights"
METHOD_NOT_ALLOWED = "MethodNotAllowed"
NOT_IMPLEMENTED = "NotImplemented"
TOO_MANY_REQUESTS = "TooManyRequests"
INTERNAL_SERVER_ERROR = "InternalServerError"
TIMEOUT = "Timeout"
#: Not in Entra's list: the connection could not be made or broke (Entra quarantines the job).
UNREACHABLE = "Unreachable"
#: Not in Entra's list: the TLS handshake failed (untrusted or invalid certificate, old protocol).
TLS_FAILURE = "TlsFailure"
#: The answer is not SCIM (HTML from a proxy or WAF, a non-JSON body, a list that is not a ListResponse).
SERVICE_INCOMPATIBLE = "SystemForCrossDomainIdentityManagementServiceIncompatible"

#: SCIM ``scimType`` values (RFC 7644 §3.12) that mean "the target has no such attribute or element".
_PATH_SCIM_TYPES = frozenset({"invalidpath", "notarget"})


class TargetError(Exception):
    """A request to the target failed for good.

    ``status`` is the HTTP status, or ``None`` when no answer came (timeout, connection lost).
    ``maybe_applied`` is true when an attempt of this request was sent but its answer never came
    (a timeout or a broken connection): a POST may then have created the object even if this error
    says otherwise, e.g. a retried create answering 409 — the caller should match again by the
    matching attribute instead of trusting the error (provisioning-engine.md §1.7: Entra loops on
    409 after a timed-out create; we re-match).
    """

    def __init__(self, message: str, *, status: int | None, error_code: str, job_level: bool,
                 scim_type: str | None = None, detail: str = "", maybe_applied: bool = False) -> None:
        super().__init__(message)
        self.status = status
        self.scim_type = scim_type
        self.detail = detail
        self.error_code = error_code
        self.job_level = job_level
        self.maybe_applied = maybe_applied


class ConnectionProblem(Exception):
    """Test Connection failed: ``kind`` is one of :data:`CONNECTION_PROBLEM_KINDS`, ``reason`` one
    line for the operator."""

    def __init__(self, kind: str, reason: str) -> None:
        if kind not in CONNECTION_PROBLEM_KINDS:
            raise ValueError(f"unknown connection problem kind {kind!r}")
        super().__init__(f"{kind}: {reason}")
        self.kind = kind
        self.reason = reason


def classify_status(status: int, scim_type: str | None, *, addresses_one_object: bool) -> tuple[str, bool]:
    """``(error_code, job_level)`` for a final HTTP error status.

    ``addresses_one_object`` is true for ``/Users/{id}``-style URLs: a 404 there means the linked
    object is gone (``InvalidAnchor``, one object), while a 404 on ``/Users`` itself means the
    Tenant URL is wrong, which fails every request of the job.
    """
    kind = (scim_type or "").lower()
    if status == 401:
        return UNAUTHORIZED, True
    if status == 403:
        return INSUFFICIENT_RIGHTS, True
    if status == 409 or kind == "uniqueness":
        return ENTRY_CONFLICT, False
    if status == 404:
        return (INVALID_ANCHOR, False) if addresses_one_object else (SERVICE_INCOMPATIBLE, True)
    if status == 405:
        return METHOD_NOT_ALLOWED, False
    if status == 429:
        return TOO_MANY_REQUESTS, False
    if status == 501:
        return NOT_IMPLEMENTED, False
    if status >= 500:
        return INTERNAL_SERVER_ERROR, False
    if kind in _PATH_SCIM_TYPES:
        return SCHEMA_ATTRIBUTE_NOT_FOUND, False
    return UNPROCESSABLE_ENTITY, False
