"""Job records in Redis: one protobuf `JobRecord` per key, written by the gateway (create,
cancel) and the worker (every state change and progress step).

A write that changes the status of a job with a webhook also appends the event to the
webhook outbox stream, in the same transaction (services/common/webhook_outbox.py).

After every successful write the store publishes the record's status name on the job's
channel (`RedisKeys.job_events`), so readers can wait for changes instead of polling. The
notification carries no state: subscribers re-read the record, and a missed message only
delays them until their next periodic re-read.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import redis
import redis.asyncio as aioredis

from services.common.contract import JobRecord, status_name
from services.common.redis_keys import RedisKeys
from services.common.webhook_outbox import OutboxEntry, transition_event


def parse_record(data: object) -> JobRecord:
    """A stored record from its bytes (the clients read bytes: decode_responses is off)."""
    assert isinstance(data, bytes), type(data)
    record = JobRecord()
    record.ParseFromString(data)
    return record


def stage_create(pipe: Any, keys: RedisKeys, record: JobRecord, ttl_s: int) -> None:
    """Queue the writes of a new record on `pipe` (sync or asyncio, in MULTI): SET NX, the
    notification, and the entry of the tenant's job index (`RedisKeys.job_index`, scored
    by `created_at`, its TTL renewed to the job TTL: it outlives no job it lists). Their
    replies are [created, receivers, added, renewed]."""
    tenant, job_id = record.request.tenant, record.request.job_id
    pipe.set(keys.job(tenant, job_id), record.SerializeToString(), ex=ttl_s, nx=True)
    pipe.publish(keys.job_events(tenant, job_id), _notification(record))
    index = keys.job_index(tenant)
    pipe.zadd(index, {job_id: record.timings.created_at})
    pipe.expire(index, ttl_s)


def stage_update(pipe: Any, keys: RedisKeys, before: int, record: JobRecord) -> None:
    """Queue the writes of a changed record on `pipe` (sync or asyncio, after MULTI): the
    record, its webhook event if the change has one, and the notification."""
    tenant, job_id = record.request.tenant, record.request.job_id
    pipe.set(keys.job(tenant, job_id), record.SerializeToString(), keepttl=True)
    event = transition_event(before, record)
    if event is not None:
        # In the same transaction: the event exists iff the change does.
        pipe.xadd(keys.webhook_outbox(), OutboxEntry.new(event, record).fields())
    # In the transaction: subscribers are told exactly when the write lands.
    pipe.publish(keys.job_events(tenant, job_id), _notification(record))


def stage_delete(pipe: Any, keys: RedisKeys, tenant: str, job_id: str) -> None:
    """Queue the removal of a record, its notification and its job index entry; replies
    [data, receivers, removed]."""
    pipe.getdel(keys.job(tenant, job_id))
    pipe.publish(keys.job_events(tenant, job_id), b"deleted")
    pipe.zrem(keys.job_index(tenant), job_id)


class JobStore:
    """Reads and updates job records; updates are optimistic transactions (WATCH/MULTI).
    Synchronous: the worker's; the gateway uses `AsyncJobStore`."""

    def __init__(self, client: redis.Redis, keys: RedisKeys, ttl_s: int) -> None:
        self._client = client
        self._keys = keys
        self._ttl_s = ttl_s

    def create(self, record: JobRecord) -> bool:
        """Store a new record; False if a record with this id already exists."""
        with self._client.pipeline() as pipe:
            stage_create(pipe, self._keys, record, self._ttl_s)
            created, *_ = pipe.execute()
        return bool(created)

    def get(self, tenant: str, job_id: str) -> JobRecord | None:
        """The record, or None if it is unknown or expired."""
        data = self._client.get(self._keys.job(tenant, job_id))
        return None if data is None else parse_record(data)

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
                    record = parse_record(data)
                    before = record.status
                    mutate(record)
                    pipe.multi()
                    stage_update(pipe, self._keys, before, record)
                    pipe.execute()
                    return record
                except redis.WatchError:
                    continue

    def delete(self, tenant: str, job_id: str) -> JobRecord | None:
        """Remove the record and return it as it was (None if unknown); subscribers are
        notified and find it gone. A worker running the job stops at its next step."""
        with self._client.pipeline() as pipe:
            stage_delete(pipe, self._keys, tenant, job_id)
            data, *_ = pipe.execute()
        return None if data is None else parse_record(data)


class AsyncJobStore:
    """`JobStore` over redis.asyncio, for the gateway's event loop: the same keys,
    encoding and transactions (the `stage_*` functions), only the I/O differs."""

    def __init__(self, client: aioredis.Redis, keys: RedisKeys, ttl_s: int) -> None:
        self._client = client
        self._keys = keys
        self.ttl_s = ttl_s

    async def create(self, record: JobRecord) -> bool:
        """Store a new record; False if a record with this id already exists."""
        async with self._client.pipeline() as pipe:
            stage_create(pipe, self._keys, record, self.ttl_s)
            created, *_ = await pipe.execute()
        return bool(created)

    async def get(self, tenant: str, job_id: str) -> JobRecord | None:
        """The record, or None if it is unknown or expired."""
        data = await self._client.get(self._keys.job(tenant, job_id))
        return None if data is None else parse_record(data)

    async def update(
        self, tenant: str, job_id: str, mutate: Callable[[JobRecord], None]
    ) -> JobRecord | None:
        """Apply `mutate` to the stored record atomically; None if the record is gone."""
        key = self._keys.job(tenant, job_id)
        async with self._client.pipeline() as pipe:
            while True:
                try:
                    await pipe.watch(key)
                    data = await pipe.get(key)
                    if data is None:
                        await pipe.reset()
                        return None
                    record = parse_record(data)
                    before = record.status
                    mutate(record)
                    pipe.multi()
                    stage_update(pipe, self._keys, before, record)
                    await pipe.execute()
                    return record
                except redis.WatchError:
                    continue

    async def delete(self, tenant: str, job_id: str) -> JobRecord | None:
        """Remove the record and return it as it was (None if unknown); see JobStore."""
        async with self._client.pipeline() as pipe:
            stage_delete(pipe, self._keys, tenant, job_id)
            data, *_ = await pipe.execute()
        return None if data is None else parse_record(data)


def _notification(record: JobRecord) -> bytes:
    """The message published after a write: only a hint (the status name) for debugging
    with `redis-cli subscribe`; readers always re-read the record."""
    return status_name(record.status).encode()
