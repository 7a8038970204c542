"""Per-key request rate limits and per-tenant image quotas, kept in Redis so that every
gateway replica counts against the same numbers (docs/api.md "Rate limits and quotas").

- **Requests**: at most `LLMGA_RATE_LIMIT_REQUESTS` per `LLMGA_RATE_LIMIT_WINDOW_S` per API
  key (with auth off: per tenant, i.e. one budget for the whole local stack), on every
  route but /healthz, /readyz, /metrics, the API's documentation and the studio's static
  files. A key may carry its own limit instead
  (`python -m services.gateway.http.apikeys rate-limit --key K --set N/S`). The limiter is
  GCRA (a token bucket of `requests` tokens refilled evenly over the window), run as one
  Lua script on Redis' clock: a full burst of `requests` passes at once, and after that
  one request per window/requests seconds. A refusal is 429 `rate_limited` with `Retry-After`: the
  seconds until the next request passes.
- **Quota**: at most `LLMGA_QUOTA_IMAGES_PER_DAY` images (a job counts its `n`) queued per
  tenant per UTC day. A job-creating request is refused with 429 `quota_exceeded` (and
  `Retry-After`: the seconds until midnight UTC) when the tenant's images today plus the
  request's `n` exceed the quota; the images count once the job is queued. Like the
  queue limit it is checked when the request arrives, so concurrent requests, or a chat
  turn whose reply holds several prompts, can end the day over the quota by what they
  were admitted with; the next request is then refused. An accepted job always runs.

Both are off (0) by default (a key's own limit applies all the same). When Redis cannot
be read, the limits let the request through (it then meets the outage itself: 503).
"""

from __future__ import annotations

import datetime as dt
import logging
import math
from dataclasses import dataclass
from typing import Any

import redis
import redis.asyncio as aioredis
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Receive, Scope, Send

from services.common.redis_keys import RedisKeys
from services.gateway.http.apikeys import (
    TENANT_SCOPE_KEY,
    bearer_token,
    is_public_path,
    key_hash,
)
from services.gateway.http.errors import ApiError, error_body
from services.gateway.metrics import GatewayMetrics

logger = logging.getLogger(__name__)

# GCRA on Redis' clock (milliseconds, integers: Lua prints big floats in exponent form).
# KEYS[1]: the theoretical arrival time (TAT) of the next request; KEYS[2]: the API key's
# own limit (hash {requests, window_ms}; absent: ARGV[1] requests per ARGV[2] ms).
# The emission interval is window / requests, the burst tolerance the window.
# Returns {wait, requests, window}: wait 0 when the request passes (and is recorded),
# else the milliseconds until one would; requests 0 means unlimited.
_GCRA_SCRIPT = """
local requests = tonumber(ARGV[1])
local window = tonumber(ARGV[2])
local own = redis.call('HMGET', KEYS[2], 'requests', 'window_ms')
if own[1] and own[2] then
  requests = tonumber(own[1])
  window = tonumber(own[2])
end
if requests <= 0 then
  return {0, 0, window}
end
local time = redis.call('TIME')
local now = tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)
local interval = math.ceil(window / requests)
local tat = tonumber(redis.call('GET', KEYS[1]) or now)
if tat < now then tat = now end
-- Only after the key's limit was lowered can the TAT lie beyond one window: start the new
-- limit with its budget spent, not with the old limit's debt.
if tat > now + window then
  tat = now + window
  redis.call('SET', KEYS[1], tat, 'PX', window)
end
local new_tat = tat + interval
local allowed_at = new_tat - window
if allowed_at > now then
  return {allowed_at - now, requests, window}
end
redis.call('SET', KEYS[1], new_tat, 'PX', new_tat - now)
return {0, requests, window}
"""


def retry_after_header(seconds: float) -> dict[str, str]:
    """`Retry-After` in whole seconds, rounded up, at least 1."""
    return {"Retry-After": str(max(1, math.ceil(seconds)))}


@dataclass(frozen=True)
class RateDecision:
    """Whether a request passes: `wait_s` 0, else the seconds until one would; and the
    limit that applied (`requests` per `window_s`)."""

    wait_s: float
    requests: int
    window_s: float

    def describe(self) -> str:
        return f"{self.requests} requests per {self.window_s:g} s"


class RequestRateLimiter:
    """`requests` per `window_s` per identity (an API key's hash, or a tenant), unless
    the key has its own limit."""

    def __init__(
        self, client: aioredis.Redis, keys: RedisKeys, requests: int, window_s: float
    ) -> None:
        self._client = client
        self._keys = keys
        self.requests = requests
        self.window_s = window_s
        self._script = client.register_script(_GCRA_SCRIPT)

    async def check(self, identity: str, key_digest: str | None) -> RateDecision:
        """Count a request of `identity` if it may pass now; `key_digest`: its API key's
        hash, whose own limit (if any) replaces the defaults."""
        own_limit = self._keys.apikey_limits(key_digest or "-")
        window_ms = max(1, round(self.window_s * 1000))
        wait_ms, requests, window = await self._script(
            keys=[self._keys.rate_limit(identity), own_limit], args=[self.requests, window_ms]
        )
        return RateDecision(int(wait_ms) / 1000, int(requests), int(window) / 1000)


def _api_key_digest(scope: Scope) -> str | None:
    """The hash of the request's API key, if the auth middleware accepted one (it put
    the key's tenant in the scope)."""
    if not isinstance(scope.get(TENANT_SCOPE_KEY), str):
        return None
    raw = dict(scope.get("headers") or []).get(b"authorization")
    token = bearer_token(raw.decode("latin-1") if raw is not None else None)
    return key_hash(token) if token is not None else None


def _identity(key_digest: str | None, tenant: str) -> str:
    """Whom a request counts against: its API key, else the tenant it is served as (auth
    off, or a signed URL's)."""
    return "key:" + key_digest if key_digest else "tenant:" + tenant


class RateLimitMiddleware:
    """429 `rate_limited` with Retry-After when the caller's request budget is spent.
    Installed inside `ApiKeyMiddleware`, so a request without a valid key is a 401 that
    costs nothing."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or is_public_path(scope["path"]):
            await self.app(scope, receive, send)
            return
        state = scope["app"].state.gateway
        limiter: RequestRateLimiter = state.rate_limiter
        key_digest = _api_key_digest(scope)
        if key_digest is None and not limiter.requests:  # no key of its own, no default
            await self.app(scope, receive, send)
            return
        signed_as = scope.get(TENANT_SCOPE_KEY)
        tenant = signed_as if isinstance(signed_as, str) else state.settings.default_tenant
        identity = _identity(key_digest, tenant)
        try:
            decision = await limiter.check(identity, key_digest)
        except redis.RedisError as exc:
            logger.warning("rate limit unavailable; not limiting: %r", exc)
            decision = RateDecision(0.0, 0, 0.0)
        if decision.wait_s > 0:
            state.metrics.rate_limited.labels("requests").inc()
            headers = retry_after_header(decision.wait_s)
            message = (
                f"rate limit exceeded: {decision.describe()} per "
                f"{'API key' if key_digest else 'tenant'}; "
                f"retry after {headers['Retry-After']} s"
            )
            response = JSONResponse(
                error_body("rate_limited", message, limit="requests"),
                status_code=429,
                headers=headers,
            )
            await response(scope, receive, send)
            return
        await self.app(scope, receive, send)


def _utc_day(now: dt.datetime) -> str:
    return now.strftime("%Y%m%d")


def _seconds_to_utc_midnight(now: dt.datetime) -> float:
    tomorrow = (now + dt.timedelta(days=1)).replace(hour=0, minute=0, second=0, microsecond=0)
    return (tomorrow - now).total_seconds()


class ImageQuota:
    """Images queued per tenant per UTC day, against `per_day` (0: unlimited)."""

    def __init__(
        self, client: aioredis.Redis, keys: RedisKeys, per_day: int, metrics: GatewayMetrics
    ) -> None:
        self._client = client
        self._keys = keys
        self.per_day = per_day
        self._metrics = metrics

    def _today(self, tenant: str) -> str:
        """The key of the tenant's counter of today (UTC)."""
        return self._keys.image_quota(tenant, _utc_day(dt.datetime.now(dt.UTC)))

    async def used(self, tenant: str) -> int:
        """Images the tenant queued today (UTC)."""
        value = await self._client.get(self._today(tenant))
        return int(value) if value is not None else 0

    async def admit(self, tenant: str, n: int) -> None:
        """429 `quota_exceeded` if `n` more images would exceed today's quota."""
        if not self.per_day:
            return
        try:
            used = await self.used(tenant)
        except redis.RedisError as exc:
            logger.warning("image quota unavailable; not limiting: %r", exc)
            return
        if used + n <= self.per_day:
            return
        self._metrics.rate_limited.labels("images_per_day").inc()
        wait_s = _seconds_to_utc_midnight(dt.datetime.now(dt.UTC))
        raise ApiError(
            429,
            "quota_exceeded",
            f"image quota exceeded: {used} of {self.per_day} images per day (UTC) used, "
            f"this request needs {n}; it resets at midnight UTC",
            headers=retry_after_header(wait_s),
        )

    def stage_consume(self, pipe: Any, tenant: str, n: int) -> None:
        """Queue the count of `n` images of a job on `pipe` (nothing when unlimited)."""
        if not self.per_day:
            return
        key = self._today(tenant)
        pipe.incrby(key, n)
        pipe.expire(key, 2 * 24 * 3600)  # a day's counter outlives its day

    async def consume(self, tenant: str, n: int) -> None:
        """Count `n` images of a queued job. Never refuses: the job is already accepted;
        an unreachable Redis leaves them uncounted (logged)."""
        if not self.per_day:
            return
        try:
            async with self._client.pipeline() as pipe:
                self.stage_consume(pipe, tenant, n)
                await pipe.execute()
        except redis.RedisError as exc:
            logger.warning("could not count %d images against the quota: %r", n, exc)
