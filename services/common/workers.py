"""Worker liveness: each worker process heartbeats into a sorted set that readiness reads."""

from __future__ import annotations

import json
import time
from collections.abc import Iterable
from typing import Any

import redis
import redis.asyncio as aioredis

from services.common.redis_keys import RedisKeys


class WorkerRegistry:
    """Heartbeats of the workers (sync: the worker's side)."""

    def __init__(self, client: redis.Redis, keys: RedisKeys) -> None:
        self._client = client
        self._keys = keys

    def heartbeat(self, worker: str, info: dict[str, str], ttl_s: int) -> None:
        """Record that `worker` is alive and ready, with what it serves (profile, device)."""
        with self._client.pipeline() as pipe:
            pipe.zadd(self._keys.workers(), {worker: time.time()})
            pipe.set(self._keys.worker_info(worker), json.dumps(info), ex=ttl_s)
            pipe.execute()

    def remove(self, worker: str) -> None:
        with self._client.pipeline() as pipe:
            pipe.zrem(self._keys.workers(), worker)
            pipe.delete(self._keys.worker_info(worker))
            pipe.execute()

    def live(self, max_age_s: float) -> list[str]:
        """Workers whose last heartbeat is at most `max_age_s` old."""
        members = self._client.zrangebyscore(self._keys.workers(), time.time() - max_age_s, "+inf")
        return _names(members)


class AsyncWorkerRegistry:
    """The gateway's read side of `WorkerRegistry`, over redis.asyncio (for /readyz)."""

    def __init__(self, client: aioredis.Redis, keys: RedisKeys) -> None:
        self._client = client
        self._keys = keys

    async def live(self, max_age_s: float) -> list[str]:
        """Workers whose last heartbeat is at most `max_age_s` old."""
        members = await self._client.zrangebyscore(
            self._keys.workers(), time.time() - max_age_s, "+inf"
        )
        return _names(members)


def _names(members: Iterable[Any]) -> list[str]:
    return [m.decode() if isinstance(m, bytes) else str(m) for m in members]
