"""Job records in Redis: one protobuf `JobRecord` per key, written by the gateway (create)
and the worker (every state change and progress step)."""

from __future__ import annotations

from collections.abc import Callable

import redis

from services.common.contract import JobRecord
from services.common.redis_keys import RedisKeys


class JobStore:
    """Reads and updates job records; updates are optimistic transactions (WATCH/MULTI)."""

    def __init__(self, client: redis.Redis, keys: RedisKeys, ttl_s: int) -> None:
        self._client = client
        self._keys = keys
        self._ttl_s = ttl_s

    def create(self, record: JobRecord) -> bool:
        """Store a new record; False if a record with this id already exists."""
        key = self._keys.job(record.request.tenant, record.request.job_id)
        return bool(self._client.set(key, record.SerializeToString(), ex=self._ttl_s, nx=True))

    def get(self, tenant: str, job_id: str) -> JobRecord | None:
        data = self._client.get(self._keys.job(tenant, job_id))
        if data is None:
            return None
        record = JobRecord()
        record.ParseFromString(data)  # type: ignore[arg-type]
        return record

    def update(
        self, tenant: str, job_id: str, mutate: Callable[[JobRecord], None]
    ) -> JobRecord | None:
        """Apply `mutate` to the stored record atomically; None if the record is gone."""
        key = self._keys.job(tenant, job_id)
        with self._client.pipeline() as pipe:
            while True:
                try:
                    pipe.watch(key)
                    data = pipe.get(key)
                    if data is None:
                        pipe.reset()
                        return None
                    record = JobRecord()
                    record.ParseFromString(data)  # type: ignore[arg-type]
                    mutate(record)
                    pipe.multi()
                    pipe.set(key, record.SerializeToString(), keepttl=True)
                    pipe.execute()
                    return record
                except redis.WatchError:
                    continue
