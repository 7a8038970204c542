"""Per-tenant webhook settings in Redis (docs/redis.md): the secret that signs the tenant's
deliveries, and the hosts the tenant's webhook URLs may use on top of the deployment's.

A secret is `whsec_` + base64 of 32 random bytes, created on first use (the first
delivery, or `llmga-keys webhook-secret --tenant T`). A rotation makes a new `current`
and keeps the old one as `previous`: deliveries are signed with both for
`LLMGA_WEBHOOK_ROTATION_GRACE_S` after `rotated_at`, so receivers can switch secrets
without dropping events. A second rotation within the grace period drops the oldest
secret at once.

The CLI uses the synchronous `WebhookTenantStore`; the gateway (job creation, the
dispatcher) the async functions.
"""

from __future__ import annotations

import base64
import re
import secrets
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import redis
import redis.asyncio as aioredis

from services.common.redis_keys import RedisKeys
from services.gateway.webhooks.signing import SECRET_PREFIX

SECRET_BYTES = 32
# A host (DNS name, IPv4, or IPv6 without brackets) or `*.domain` for its subdomains.
HOST_PATTERN = re.compile(r"^(\*\.)?[a-z0-9:]([a-z0-9.:-]{0,251}[a-z0-9])?$")

# Rotation in one step: the current secret (if any) becomes `previous`.
_ROTATE = """
local current = redis.call('HGET', KEYS[1], 'current')
if current then
  redis.call('HSET', KEYS[1], 'previous', current, 'rotated_at', ARGV[2])
end
redis.call('HSET', KEYS[1], 'current', ARGV[1])
return 1
"""


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _sorted_texts(members: Iterable[bytes | str]) -> list[str]:
    return sorted(_text(member) for member in members)


def new_secret() -> str:
    """A fresh `whsec_<base64 of 32 random bytes>`."""
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(SECRET_BYTES)).decode()


def normalize_host(host: str) -> str:
    """`host` as stored (lower case, no trailing dot); ValueError if it is no host or
    `*.domain` pattern."""
    normalized = host.strip().lower().rstrip(".")
    if not HOST_PATTERN.match(normalized):
        raise ValueError(f"{host!r} is not a host name or '*.domain' pattern")
    return normalized


@dataclass(frozen=True)
class TenantSecrets:
    current: str
    previous: str | None = None
    rotated_at: float | None = None

    @classmethod
    def parse(cls, stored: Mapping[Any, Any]) -> TenantSecrets | None:
        """From the hash's fields (HGETALL); None without a current secret."""
        fields = {_text(key): _text(value) for key, value in stored.items()}
        if "current" not in fields:
            return None
        rotated_at = fields.get("rotated_at")
        return cls(
            current=fields["current"],
            previous=fields.get("previous") or None,
            rotated_at=float(rotated_at) if rotated_at else None,
        )

    def signing(self, grace_s: float, now: float | None = None) -> list[str]:
        """The secrets a delivery is signed with now: the current one, and the previous
        one within `grace_s` of the rotation."""
        current_time = time.time() if now is None else now
        if (
            self.previous is not None
            and self.rotated_at is not None
            and current_time < self.rotated_at + grace_s
        ):
            return [self.current, self.previous]
        return [self.current]


class WebhookTenantStore:
    """The CLI's view (synchronous Redis)."""

    def __init__(self, client: redis.Redis, keys: RedisKeys) -> None:
        self._client = client
        self._keys = keys

    def secrets(self, tenant: str) -> TenantSecrets:
        """The tenant's secrets, creating the first one if it has none."""
        key = self._keys.webhook_secret(tenant)
        self._client.hsetnx(key, "current", new_secret())
        parsed = TenantSecrets.parse(self._client.hgetall(key))  # type: ignore[arg-type]
        assert parsed is not None  # created above if missing
        return parsed

    def rotate(self, tenant: str) -> TenantSecrets:
        """A new current secret; the old one becomes `previous` (valid for the grace)."""
        key = self._keys.webhook_secret(tenant)
        self._client.eval(_ROTATE, 1, key, new_secret(), repr(time.time()))
        parsed = TenantSecrets.parse(self._client.hgetall(key))  # type: ignore[arg-type]
        assert parsed is not None
        return parsed

    def hosts(self, tenant: str) -> list[str]:
        members = self._client.smembers(self._keys.webhook_hosts(tenant))
        return _sorted_texts(members)  # type: ignore[arg-type]

    def add_host(self, tenant: str, host: str) -> bool:
        """Allow `host` for the tenant; False if it already was."""
        added = self._client.sadd(self._keys.webhook_hosts(tenant), normalize_host(host))
        return bool(added)

    def remove_host(self, tenant: str, host: str) -> bool:
        """Take `host` off the tenant's list; False if it was not on it."""
        removed = self._client.srem(self._keys.webhook_hosts(tenant), normalize_host(host))
        return bool(removed)


async def tenant_secrets(client: aioredis.Redis, keys: RedisKeys, tenant: str) -> TenantSecrets:
    """The tenant's secrets (the dispatcher, before each attempt), creating the first one
    if it has none."""
    key = keys.webhook_secret(tenant)
    parsed = TenantSecrets.parse(await client.hgetall(key))
    if parsed is None:
        await client.hsetnx(key, "current", new_secret())
        parsed = TenantSecrets.parse(await client.hgetall(key))
        assert parsed is not None
    return parsed


async def tenant_hosts(client: aioredis.Redis, keys: RedisKeys, tenant: str) -> tuple[str, ...]:
    """The tenant's own allowed host patterns."""
    return tuple(_sorted_texts(await client.smembers(keys.webhook_hosts(tenant))))
