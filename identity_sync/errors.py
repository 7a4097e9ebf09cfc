"""The one error type of the SCIM protocol layer, and its shape on the wire.

Every failure a client can cause is a :class:`ScimError`; the HTTP layer renders it as an
RFC 7644 §3.12 body. Nothing else is allowed to reach a client: unexpected exceptions become a
generic 500 without details (the traceback only goes to the log).

    ScimError(status, scim_type, detail)
    ├── BadRequest         400, with a scimType (invalidFilter, invalidSyntax, invalidPath,
    │                      invalidValue, noTarget, mutability, tooMany, invalidVers)
    ├── Unauthorized       401
    ├── Forbidden          403
    ├── NotFound           404
    ├── Conflict           409 (scimType uniqueness)
    ├── PreconditionFailed 412
    ├── PayloadTooLarge    413
    └── ServiceUnavailable 503
"""

from __future__ import annotations

from typing import Any

ERROR_SCHEMA = "urn:ietf:params:scim:api:messages:2.0:Error"


class ScimError(Exception):
    status: int = 500

    def __init__(
        self,
        detail: str,
        *,
        scim_type: str | None = None,
        status: int | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(detail)
        self.detail = detail
        self.scim_type = scim_type
        if status is not None:
            self.status = status
        self.headers = headers or {}

    def to_body(self) -> dict[str, Any]:
        body: dict[str, Any] = {"schemas": [ERROR_SCHEMA], "status": str(self.status), "detail": self.detail}
        if self.scim_type:
            body["scimType"] = self.scim_type
        return body


class BadRequest(ScimError):
    status = 400

    def __init__(self, detail: str, scim_type: str = "invalidValue") -> None:
        super().__init__(detail, scim_type=scim_type)


class Unauthorized(ScimError):
    status = 401

    def __init__(self, detail: str = "Authentication is required.", *, reason: str = "missing",
                 credential_id: str | None = None) -> None:
        super().__init__(detail, headers={"WWW-Authenticate": 'Bearer realm="identity-sync"'})
        #: Why, for the log and the metrics only (docs/observability.md): the client always gets
        #: the same answer, so that it learns nothing about credentials it does not hold.
        self.reason = reason
        self.credential_id = credential_id


class Forbidden(ScimError):
    status = 403

    def __init__(self, detail: str, *, reason: str = "insufficient_scope") -> None:
        super().__init__(detail)
        self.reason = reason


class NotFound(ScimError):
    status = 404


class Conflict(ScimError):
    status = 409

    def __init__(self, detail: str, scim_type: str = "uniqueness") -> None:
        super().__init__(detail, scim_type=scim_type)


class PreconditionFailed(ScimError):
    status = 412


class PayloadTooLarge(ScimError):
    status = 413


class ServiceUnavailable(ScimError):
    status = 503

    def __init__(self, detail: str = "The service is temporarily unavailable.", retry_after: int = 1) -> None:
        super().__init__(detail, headers={"Retry-After": str(retry_after)})
