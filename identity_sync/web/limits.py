"""The per-tenant rate limit as the HTTP layer applies it: after authentication (so that nobody
can spend another tenant's budget without its credentials), keyed by the tenant's id, answered
with 429 and an integer ``Retry-After`` (Entra pauses for that long and retries)."""

from __future__ import annotations

from identity_sync.auth.ratelimit import Limiter, create_limiter, retry_after
from identity_sync.config import Settings
from identity_sync.errors import ScimError


class TooManyRequests(ScimError):
    status = 429

    def __init__(self, wait: float) -> None:
        seconds = retry_after(wait)
        super().__init__(f"Too many requests for this tenant; retry after {seconds} s.",
                         headers={"Retry-After": str(seconds)})


def scim_limiter(settings: Settings) -> Limiter:
    return create_limiter(settings.rate_limit_per_second, settings.rate_limit_burst)


def token_limiter(settings: Settings) -> Limiter:
    return create_limiter(settings.token_rate_limit_per_second, settings.token_rate_limit_burst)


def check(limiter: Limiter, key: str) -> None:
    wait = limiter.take(key)
    if wait > 0:
        raise TooManyRequests(wait)
