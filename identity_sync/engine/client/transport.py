"""HTTP for the SCIM client: one connection pool, bounded concurrency, retries, Retry-After.

One ``httpx2.AsyncClient`` per :class:`Transport`, its pool sized to ``max_in_flight`` and an
``asyncio.Semaphore(max_in_flight)`` in front of it, so a cycle that fires thousands of exports at
once never has more than ``max_in_flight`` requests on the wire.

Retries follow what Entra does (provisioning-engine.md §1.7, entra-scim-requests.md §3.4):

* ``429`` is retried after its ``Retry-After`` (seconds or an HTTP-date, capped at
  :data:`MAX_RETRY_AFTER_SECONDS`), or after an exponential backoff with jitter when it has none;
  like Entra, the whole client pauses for that time, not only the request that was throttled;
* timeouts, broken connections and ``5xx`` (except ``501 Not Implemented``, which will not change)
  are retried with exponential backoff and jitter, up to ``max_retries`` times;
* a ``401`` makes an OAuth credential fetch a new token once before giving up;
* every other ``4xx`` is final: sending it again would get the same answer.

A request whose answer never came (a read timeout, a connection lost after sending) may have been
applied. PATCH, DELETE and GET are safe to send again (the engine's replaces, member changes and
deletes are idempotent), so they are retried; a POST is not — a second create could duplicate a
group on a target that does not keep display names unique — and fails at once with
``maybe_applied``, so that the caller matches the object again by its matching attribute
(provisioning-engine.md §1.7: Entra re-POSTs a timed-out create and then loops on 409). A create
retried after a 5xx and answered ``409`` is ``EntryConflict`` with ``maybe_applied`` for the same
reason.

Why a small loop and not tenacity: the decision to retry looks at responses as well as exceptions,
the wait comes from a header, a 401 refresh must not count as a retry, and a 429 pauses every
request of the client — tenacity would need a custom predicate, wait and stop for each, which is
more code than the loop and hides the rules above.
"""

from __future__ import annotations

import asyncio
import email.utils
import importlib.metadata
import random
import ssl
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Collection, Mapping
from datetime import UTC, datetime
from typing import Any

import httpx2
import orjson
import structlog

from identity_sync.engine.client import errors
from identity_sync.engine.client.auth import Auth

__all__ = ["MAX_RETRY_AFTER_SECONDS", "SCIM_JSON", "Transport", "retry_after_seconds"]

SCIM_JSON = "application/scim+json"
#: A target asking for a longer pause still gets retried after this long (Entra's cycles are 40 min).
MAX_RETRY_AFTER_SECONDS = 120.0
_BACKOFF_BASE_SECONDS = 0.5
_BACKOFF_CAP_SECONDS = 30.0
#: Characters of a target's error text kept in messages (the rest is noise, or someone's data).
_DETAIL_CHARS = 200
#: Token endpoint answers handed to the OAuth code as they are (RFC 6749 §5.2 errors); 429 and 5xx
#: are retried like any request first. A token request is a POST that creates nothing: retrying it is safe.
_OAUTH_ANSWERS = frozenset(range(300, 500)) - {429}

log = structlog.get_logger("identity_sync.engine.client")

Sleep = Callable[[float], Awaitable[None]]


def _user_agent() -> str:
    try:
        version = importlib.metadata.version("identity-sync")
    except importlib.metadata.PackageNotFoundError:  # running from a source tree that was not installed
        version = "0"
    return f"identity-sync/{version}"


class _Failure(Exception):
    """One attempt failed in a way that may be retried (internal to the loop)."""

    def __init__(self, error: errors.TargetError, *, retryable: bool, wait: float | None = None) -> None:
        super().__init__(str(error))
        self.error = error
        self.retryable = retryable
        self.wait = wait


class Transport:
    """Requests to one Tenant URL; paths are relative to it (``Users``, ``Groups/<id>``)."""

    def __init__(self, base_url: str, auth: Auth, *, max_in_flight: int = 8, timeout: float = 30.0,
                 max_retries: int = 5, verify: ssl.SSLContext | bool = True, sleep: Sleep = asyncio.sleep,
                 clock: Callable[[], float] = time.monotonic, jitter: Callable[[], float] = random.random) -> None:
        if max_in_flight < 1:
            raise ValueError("max_in_flight: must be at least 1")
        if max_retries < 0:
            raise ValueError("max_retries: must not be negative")
        if timeout <= 0:
            raise ValueError("timeout: must be positive")
        url = httpx2.URL(base_url)
        if url.scheme not in ("http", "https") or not url.host:
            raise ValueError(f"tenant URL {base_url!r}: expected an http(s) URL")
        # Entra's behaviour flags ride on the Tenant URL as a query string (`?aadOptscim062020`,
        # entra-scim-requests.md §1.1); they choose our dialect, they are not sent to the target.
        path = url.path if url.path.endswith("/") else url.path + "/"
        self.base_url = str(url.copy_with(path=path, query=None, fragment=None))
        self.auth = auth
        self.max_retries = max_retries
        self.requests_sent: Counter[str] = Counter()
        self._sleep = sleep
        self._clock = clock
        self._jitter = jitter
        self._slots = asyncio.Semaphore(max_in_flight)
        self._paused_until = 0.0
        self._client = httpx2.AsyncClient(
            verify=verify, timeout=timeout, follow_redirects=False,
            limits=httpx2.Limits(max_connections=max_in_flight, max_keepalive_connections=max_in_flight),
            headers={"User-Agent": _user_agent(), "Accept": f"{SCIM_JSON}, application/json"})

    async def aclose(self) -> None:
        """Close the connection pool."""
        await self._client.aclose()

    def scrub(self, text: str) -> str:
        """``text`` without any secret the credential holds (a target may echo our headers)."""
        for secret in self.auth.secrets:
            if secret:
                text = text.replace(secret, "[redacted]")
        return text

    async def request(self, method: str, path: str, *, params: Mapping[str, str] | None = None,
                      body: Any = None, allow: Collection[int] = (), retries: int | None = None,
                      one_object: bool = False) -> httpx2.Response:
        """Send one SCIM request, retried as the module docstring says.

        Returns the response when its status is below 300 or in ``allow`` (e.g. 404 for a GET by
        id); raises :class:`~identity_sync.engine.client.errors.TargetError` otherwise.
        ``one_object`` says the URL names one resource (a 404 there is ``InvalidAnchor``).
        """
        content = orjson.dumps(body) if body is not None else None
        headers = {"Content-Type": SCIM_JSON} if content is not None else {}
        url = self.base_url + path

        async def send(authorization: str | None) -> httpx2.Response:
            self.requests_sent[method] += 1
            return await self._client.request(method, url, params=params, content=content,
                                              headers={**headers, "Authorization": authorization or ""})

        return await self._attempts(method, "/" + path, send, authorized=True, allow=allow,
                                    retries=self.max_retries if retries is None else retries, one_object=one_object,
                                    idempotent=method != "POST")

    async def post_form(self, url: str, form: dict[str, str], headers: dict[str, str]) -> httpx2.Response:
        """POST a form outside the Tenant URL (the OAuth token endpoint), with the same TLS
        settings and retries; any status comes back (the caller reads OAuth errors)."""

        async def send(_: str | None) -> httpx2.Response:
            return await self._client.post(url, data=form, headers=headers)

        try:
            return await self._attempts("POST", "token endpoint", send, authorized=False, allow=_OAUTH_ANSWERS,
                                        retries=self.max_retries, one_object=False, idempotent=True)
        except errors.TargetError as exc:
            exc.job_level = True  # without a token no request of the job can succeed
            raise

    async def _attempts(self, method: str, path: str, send: Callable[[str | None], Awaitable[httpx2.Response]], *,
                        authorized: bool, allow: Collection[int], retries: int, one_object: bool,
                        idempotent: bool) -> httpx2.Response:
        maybe_applied = False
        refreshed = False
        attempt = 0
        while True:
            authorization = await self.auth.authorization(self.post_form) if authorized else None
            try:
                async with self._slots:
                    await self._wait_while_paused()
                    try:
                        response = await send(authorization)
                        await response.aread()  # the body too, inside the slot and the timeout
                    except httpx2.TransportError as exc:
                        raise self._transport_failure(method, path, exc, maybe_applied, idempotent) from None
            except _Failure as failure:
                maybe_applied = failure.error.maybe_applied
                if not failure.retryable or attempt >= retries:
                    raise failure.error from None
                wait = self._backoff(attempt)
                self._log_retry(method, path, failure.error.error_code, attempt, wait)
                attempt += 1
                await self._sleep(wait)
                continue
            status = response.status_code
            if status < 300 or status in allow:
                return response
            if status == 401 and authorization is not None and not refreshed and self.auth.invalidate(authorization):
                refreshed = True  # one new token (entra-scim-requests.md §4.4), not counted as a retry
                continue
            error = self._status_error(method, path, response, one_object, maybe_applied)
            retryable = status == 429 or (status >= 500 and status != 501)
            if not retryable or attempt >= retries:
                raise error
            # A 5xx may have done part of the work before failing (a 429 did nothing).
            maybe_applied = maybe_applied or (status >= 500 and method != "GET")
            advised = retry_after_seconds(response.headers.get("Retry-After"))  # 503 may carry one too
            wait = self._backoff(attempt) if advised is None else advised
            self._log_retry(method, path, error.error_code, attempt, wait)
            if status == 429:
                # Entra pauses the job for the Retry-After period (provisioning-engine.md §1.7):
                # every request of this client waits, the throttled one included.
                self._paused_until = max(self._paused_until, self._clock() + wait)
            else:
                await self._sleep(wait)
            attempt += 1

    async def _wait_while_paused(self) -> None:
        delay = self._paused_until - self._clock()
        if delay > 0:
            await self._sleep(delay)

    def _backoff(self, attempt: int) -> float:
        # "Full jitter" between half and all of the exponential step: spread, but never instant.
        step = min(_BACKOFF_CAP_SECONDS, _BACKOFF_BASE_SECONDS * 2**attempt)
        return step * (0.5 + 0.5 * self._jitter())

    def _log_retry(self, method: str, path: str, error_code: str, attempt: int, wait: float) -> None:
        # Path without query string: filters carry personal data (identity_sync/logs.py).
        log.warning("scim.retry", method=method, path=path.split("?")[0], error_code=error_code,
                    attempt=attempt + 1, wait_seconds=round(wait, 3))

    def _transport_failure(self, method: str, path: str, exc: httpx2.TransportError, maybe_applied: bool,
                           idempotent: bool) -> _Failure:
        where = f"{method} {path.split('?')[0]}"
        if _is_tls_failure(exc):
            error = errors.TargetError(f"{where}: TLS handshake failed ({self.scrub(_tls_reason(exc))})",
                                       status=None, error_code=errors.TLS_FAILURE, job_level=True)
            return _Failure(error, retryable=False)
        not_sent = isinstance(exc, (httpx2.ConnectError, httpx2.ConnectTimeout, httpx2.PoolTimeout))
        # A request that left may have been applied even though no answer came back.
        applied = maybe_applied or (not not_sent and method != "GET")
        retryable = not_sent or idempotent
        if isinstance(exc, httpx2.TimeoutException):
            error = errors.TargetError(f"{where}: timed out ({type(exc).__name__})", status=None,
                                       error_code=errors.TIMEOUT, job_level=False, maybe_applied=applied)
        else:
            reason = self.scrub(str(exc))[:_DETAIL_CHARS] or type(exc).__name__
            error = errors.TargetError(f"{where}: connection failed ({reason})", status=None,
                                       error_code=errors.UNREACHABLE, job_level=not_sent, maybe_applied=applied)
        return _Failure(error, retryable=retryable)

    def _status_error(self, method: str, path: str, response: httpx2.Response, one_object: bool,
                      maybe_applied: bool) -> errors.TargetError:
        raw_scim_type, detail = _scim_error(response)
        status = response.status_code
        if 300 <= status < 400:
            code, job_level = errors.SERVICE_INCOMPATIBLE, True
            detail = detail or "a redirect: check the Tenant URL (scheme, host, path)"
        else:
            code, job_level = errors.classify_status(status, raw_scim_type, addresses_one_object=one_object)
        # Classified on the target's own words, shown only once scrubbed of our secrets.
        scim_type = self.scrub(raw_scim_type)[:60] if raw_scim_type else None
        detail = self.scrub(detail)[:_DETAIL_CHARS]
        text = f"{method} {path.split('?')[0]}: {status}" + (f" {scim_type}" if scim_type else "")
        text += (f": {detail}" if detail else "") + f" ({code})"
        return errors.TargetError(text, status=status, scim_type=scim_type, detail=detail, error_code=code,
                                  job_level=job_level, maybe_applied=maybe_applied)

    def json_object(self, method: str, path: str, response: httpx2.Response) -> dict[str, Any]:
        """The JSON object ``response`` carries; a job-level error when it is not SCIM JSON (an
        HTML page from a proxy, a WAF or a wrong URL fails every request of the job alike)."""
        try:
            body = orjson.loads(response.content)
        except orjson.JSONDecodeError:
            body = None
        if not isinstance(body, dict):
            kind = response.headers.get("Content-Type", "no content type").split(";")[0][:60]
            raise errors.TargetError(
                f"{method} /{path.split('?')[0]}: {response.status_code} answer is not SCIM JSON ({kind}) "
                f"({errors.SERVICE_INCOMPATIBLE})", status=response.status_code,
                error_code=errors.SERVICE_INCOMPATIBLE, job_level=True, detail=kind)
        return body


def retry_after_seconds(value: str | None, *, now: datetime | None = None) -> float | None:
    """Seconds to wait for a ``Retry-After`` header (RFC 9110 §10.2.3: delay-seconds or an
    HTTP-date), between 0 and :data:`MAX_RETRY_AFTER_SECONDS`; ``None`` when absent or unreadable."""
    if value is None or not value.strip():
        return None
    text = value.strip()
    if text.isdigit():
        return min(float(text), MAX_RETRY_AFTER_SECONDS)
    try:
        when = email.utils.parsedate_to_datetime(text)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    seconds = (when - (now or datetime.now(UTC))).total_seconds()
    return min(max(seconds, 0.0), MAX_RETRY_AFTER_SECONDS)


def _scim_error(response: httpx2.Response) -> tuple[str | None, str]:
    """``(scimType, detail)`` of a SCIM error body (RFC 7644 §3.12), or of whatever came instead."""
    try:
        body = orjson.loads(response.content) if response.content else None
    except orjson.JSONDecodeError:
        kind = response.headers.get("Content-Type", "").split(";")[0]
        return None, f"not SCIM JSON ({kind or 'no content type'})"
    if not isinstance(body, dict):
        return None, ""
    scim_type = body.get("scimType")
    detail = body.get("detail") or body.get("error_description") or body.get("error") or ""
    return (str(scim_type) if scim_type else None), " ".join(str(detail).split())


def _is_tls_failure(exc: BaseException) -> bool:
    seen: BaseException | None = exc
    for _ in range(10):
        if seen is None:
            return False
        if isinstance(seen, ssl.SSLError):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


def _tls_reason(exc: BaseException) -> str:
    seen: BaseException | None = exc
    while seen is not None and not isinstance(seen, ssl.SSLError):
        seen = seen.__cause__ or seen.__context__
    if isinstance(seen, ssl.SSLCertVerificationError):
        return seen.verify_message or "certificate verification failed"
    return (seen.reason or str(seen)) if isinstance(seen, ssl.SSLError) else str(exc)
