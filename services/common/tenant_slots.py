"""Fairness between tenants: a cap on each tenant's jobs in the queue, the rest held back.

Celery's queue is one FIFO list, so a tenant who submits 300 jobs would put all of them
ahead of the next tenant's one. Instead each tenant has at most `cap` jobs *in flight*
(admitted to the queue: waiting there or running); its further jobs wait in its own
*held* list on the broker, in order, and one is admitted each time one of its in-flight
jobs ends. Another tenant's job therefore waits behind at most `cap` jobs of each busy
tenant, not behind their whole backlog (docs/jobs.md, Fairness between tenants).

Every change is one Lua script on the broker's Redis, so admitting, holding and releasing
are atomic and exactly once:

- `admit` (the gateway, when a job is submitted; in the same MULTI as the job record when
  the broker is the state Redis): push the task message onto the queue if the tenant has
  a free slot, else hold the job (its id in the held list, its message in a hash).
- `release` (the worker, after the job's record is final, before the message is
  acknowledged; the gateway, after a cancel): a held job is simply dropped from the
  hold (it never had a slot); an in-flight one gives its slot back, and the oldest held
  jobs are pushed onto the queue while the tenant is under its cap. Releasing a job
  twice (a redelivered message, a cancel racing the worker) frees nothing the second
  time: the job id leaves the in-flight set only once.

A crash between a job's final record and its release loses nothing: the message is not
acknowledged yet, so it is delivered again, the worker finds the record final and
releases then. A cancel whose release is lost leaves the job held or queued; it is
skipped (its record is final) and released when its turn comes.
"""

from __future__ import annotations

from typing import Any

import redis
import redis.asyncio as aioredis

from services.common.redis_keys import RedisKeys

# KEYS: in-flight set, held list, held messages, tenants holding, queue.
# ARGV: job id, task message, cap, ttl, tenant. Returns 1 when queued, 0 when held.
_ADMIT = """
if redis.call('SCARD', KEYS[1]) < tonumber(ARGV[3]) then
  redis.call('SADD', KEYS[1], ARGV[1])
  redis.call('EXPIRE', KEYS[1], ARGV[4])
  redis.call('LPUSH', KEYS[5], ARGV[2])
  return 1
end
redis.call('RPUSH', KEYS[2], ARGV[1])
redis.call('HSET', KEYS[3], ARGV[1], ARGV[2])
redis.call('EXPIRE', KEYS[2], ARGV[4])
redis.call('EXPIRE', KEYS[3], ARGV[4])
redis.call('SADD', KEYS[4], ARGV[5])
return 0
"""

# KEYS: as _ADMIT. ARGV: job id, cap, ttl, tenant.
# Returns how many held jobs were queued, or -1 when the job itself was held (dropped).
_RELEASE = """
local function forget_tenant_if_empty()
  if redis.call('LLEN', KEYS[2]) == 0 then redis.call('SREM', KEYS[4], ARGV[4]) end
end
if redis.call('LREM', KEYS[2], 1, ARGV[1]) > 0 then
  redis.call('HDEL', KEYS[3], ARGV[1])
  forget_tenant_if_empty()
  return -1
end
if redis.call('SREM', KEYS[1], ARGV[1]) == 0 then
  return 0
end
local queued = 0
while redis.call('SCARD', KEYS[1]) < tonumber(ARGV[2]) do
  local job_id = redis.call('LPOP', KEYS[2])
  if not job_id then break end
  local message = redis.call('HGET', KEYS[3], job_id)
  redis.call('HDEL', KEYS[3], job_id)
  if message then
    redis.call('SADD', KEYS[1], job_id)
    redis.call('LPUSH', KEYS[5], message)
    queued = queued + 1
  end
end
if queued > 0 then redis.call('EXPIRE', KEYS[1], ARGV[3]) end
forget_tenant_if_empty()
return queued
"""


class _SlotKeys:
    """The keys and arguments both flavours of the scripts are called with."""

    def __init__(self, keys: RedisKeys, queue_name: str, cap: int, ttl_s: int) -> None:
        if cap < 1:
            raise ValueError(f"the in-flight cap must be at least 1, not {cap}")
        self.keys = keys
        self.queue_name = queue_name
        self.cap = cap
        self.ttl_s = ttl_s

    def of(self, tenant: str) -> list[str]:
        return [
            self.keys.tenant_in_flight(tenant),
            self.keys.tenant_held(tenant),
            self.keys.tenant_held_messages(tenant),
            self.keys.tenants_holding(),
            self.queue_name,
        ]

    def admit_args(self, tenant: str, job_id: str, message: bytes) -> list[Any]:
        return [job_id, message, self.cap, self.ttl_s, tenant]

    def release_args(self, tenant: str, job_id: str) -> list[Any]:
        return [job_id, self.cap, self.ttl_s, tenant]


class TenantSlots:
    """The worker's side (synchronous redis): `release` a job that has ended."""

    def __init__(
        self, broker: redis.Redis, keys: RedisKeys, queue_name: str, cap: int, ttl_s: int
    ) -> None:
        self._slots = _SlotKeys(keys, queue_name, cap, ttl_s)
        self._release = broker.register_script(_RELEASE)

    def release(self, tenant: str, job_id: str) -> int:
        """Give the job's slot back (or drop it from the hold) and queue held jobs while the
        tenant is under its cap; returns how many were queued (-1: the job was held)."""
        return int(
            self._release(
                keys=self._slots.of(tenant), args=self._slots.release_args(tenant, job_id)
            )
        )


class AsyncTenantSlots:
    """The gateway's side (redis.asyncio): admit new jobs, release canceled ones, count
    held jobs for the queue depth."""

    def __init__(
        self, broker: aioredis.Redis, keys: RedisKeys, queue_name: str, cap: int, ttl_s: int
    ) -> None:
        self._broker = broker
        self._slots = _SlotKeys(keys, queue_name, cap, ttl_s)
        self._admit = broker.register_script(_ADMIT)
        self._release = broker.register_script(_RELEASE)

    def stage_admit(self, pipe: Any, tenant: str, job_id: str, message: bytes) -> None:
        """Queue the admission on `pipe` (a pipeline of the broker's Redis); its reply is 1
        when the message was queued, 0 when the job was held."""
        # EVAL, not the registered script: an asyncio script call is a coroutine, which a
        # pipeline cannot hold; EVAL is one command in the MULTI like any other.
        keys = self._slots.of(tenant)
        pipe.eval(_ADMIT, len(keys), *keys, *self._slots.admit_args(tenant, job_id, message))

    async def admit(self, tenant: str, job_id: str, message: bytes) -> bool:
        """Queue the message, or hold the job when the tenant is at its cap; True if
        queued."""
        queued = await self._admit(
            keys=self._slots.of(tenant), args=self._slots.admit_args(tenant, job_id, message)
        )
        return bool(queued)

    async def release(self, tenant: str, job_id: str) -> int:
        """As `TenantSlots.release`."""
        queued = await self._release(
            keys=self._slots.of(tenant), args=self._slots.release_args(tenant, job_id)
        )
        return int(queued)

    async def held_positions(self, tenant: str, job_ids: list[str]) -> dict[str, int]:
        """Where each of the tenant's held jobs among `job_ids` waits: how many queued
        messages and earlier held jobs of the tenant are ahead of it (others' jobs that
        arrive meanwhile may go ahead too). Jobs not held are left out."""
        keys = self._slots.keys
        async with self._broker.pipeline(transaction=False) as pipe:
            pipe.llen(self._slots.queue_name)
            pipe.lrange(keys.tenant_held(tenant), 0, -1)
            waiting, held = await pipe.execute()
        index = {job_id.decode(): i for i, job_id in enumerate(held)}
        return {job_id: int(waiting) + index[job_id] for job_id in job_ids if job_id in index}

    async def held(self) -> int:
        """Jobs held back, all tenants together (part of the queue depth)."""
        keys = self._slots.keys
        tenants = await self._broker.smembers(keys.tenants_holding())  # type: ignore[misc]
        if not tenants:
            return 0
        async with self._broker.pipeline(transaction=False) as pipe:
            for tenant in tenants:
                name = tenant.decode() if isinstance(tenant, bytes) else tenant
                pipe.llen(keys.tenant_held(name))
            lengths = await pipe.execute()
        return sum(int(length) for length in lengths)
