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

import redis

from services.common.contract import JobRecord, status_name
from services.common.redis_keys import RedisKeys
from services.common.webhook_outbox import OutboxEntry, transition_event


class JobStore:
    """Reads and updates job records; updates are optimistic transactions (WATCH/MULTI)."""

    def __init__(self, client: redis.Redis, keys: RedisKeys, ttl_s: int) -> None:
        self._client = client
        self._keys = keys
        self._ttl_s = ttl_s

    def create(self, record: JobRecord) -> bool:
        """Store a new record; False if a record with this id already exists."""
        tenant, job_id = record.request.tenant, record.request.job_id
        key = self._keys.job(tenant, job_id)
        created = bool(self._client.set(key, record.SerializeToString(), ex=self._ttl_s, nx=True))
        if created:
            self._client.publish(self._keys.job_events(tenant, job_id), _notification(record))
        return created

    def get(self, tenant: str, job_id: str) -> JobRecord | None:
        """The record, or None if it is unknown or expired."""
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
                    before = record.status
                    mutate(record)
                    event = transition_event(before, record)
                    pipe.multi()
                    pipe.set(key, record.SerializeToString(), keepttl=True)
                    if event is not None:
                        # In the same transaction: the event exists iff the change does.
                        entry = OutboxEntry.new(event, record)
                        pipe.xadd(self._keys.webhook_outbox(), entry.fields())  # type: ignore[arg-type]
                    # In the transaction: subscribers are told exactly when the write lands.
                    pipe.publish(self._keys.job_events(tenant, job_id), _notification(record))
                    pipe.execute()
                    return record
                except redis.WatchError:
                    continue

    def delete(self, tenant: str, job_id: str) -> JobRecord | None:
        """Remove the record and return it as it was (None if unknown); subscribers are
        notified and find it gone. A worker running the job stops at its next step."""
        with self._client.pipeline() as pipe:
            pipe.getdel(self._keys.job(tenant, job_id))
            pipe.publish(self._keys.job_events(tenant, job_id), b"deleted")
            data, _ = pipe.execute()
        if data is None:
            return None
        record = JobRecord()
        record.ParseFromString(data)
        return record


def _notification(record: JobRecord) -> bytes:
    """The message published after a write: only a hint (the status name) for debugging
    with `redis-cli subscribe`; readers always re-read the record."""
    return status_name(record.status).encode()
