"""Follow a job's changes: the JobStore publishes a notification on the job's channel after
every write; a subscriber re-reads the record on each notification, and also every
`poll_s` seconds, so a lost message (pub/sub is fire-and-forget) only delays it.

Used by `GET /v1/jobs/{id}/events` (SSE) and by bounded waits (`Prefer: wait=N`).
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import anyio
import redis.asyncio as aioredis

from services.common.contract import TERMINAL_STATUSES, JobRecord
from services.common.job_store import AsyncJobStore
from services.common.redis_keys import RedisKeys


class JobSubscription:
    """A subscription to one job's channel; read the record with `read`, block until the
    next notification (or a timeout) with `wait_for_change`."""

    def __init__(
        self, pubsub: aioredis.client.PubSub, jobs: AsyncJobStore, tenant: str, job_id: str
    ) -> None:
        self._pubsub = pubsub
        self._jobs = jobs
        self._tenant = tenant
        self._job_id = job_id

    async def read(self) -> JobRecord | None:
        """The record as stored now (None once it is gone)."""
        return await self._jobs.get(self._tenant, self._job_id)

    async def wait_for_change(self, timeout_s: float) -> bool:
        """Block until a notification arrives or `timeout_s` passes; True if one arrived.
        Notifications queued meanwhile are drained: one re-read covers them all."""
        message = await self._pubsub.get_message(
            ignore_subscribe_messages=True, timeout=max(timeout_s, 0.0)
        )
        if message is None:
            return False
        while await self._pubsub.get_message(ignore_subscribe_messages=True, timeout=0):
            pass
        return True


class JobEvents:
    """Subscriptions to job channels over an asyncio Redis client of their own (pub/sub
    needs a connection per subscriber, held while it listens: a pool apart from the
    commands', bounded by LLMGA_MAX_EVENT_SUBSCRIPTIONS)."""

    def __init__(
        self, client: aioredis.Redis, keys: RedisKeys, jobs: AsyncJobStore, poll_s: float
    ) -> None:
        self._client = client
        self._keys = keys
        self._jobs = jobs
        self.poll_s = poll_s

    async def aclose(self) -> None:
        """Close the subscriptions' connections."""
        await self._client.aclose()

    @asynccontextmanager
    async def subscribe(self, tenant: str, job_id: str) -> AsyncIterator[JobSubscription]:
        """Subscribe to the job's channel for the block. Subscribe *before* the first read,
        so no change between that read and the first wait can be missed."""
        pubsub = self._client.pubsub()
        try:
            await pubsub.subscribe(self._keys.job_events(tenant, job_id))
            yield JobSubscription(pubsub, self._jobs, tenant, job_id)
        finally:
            # Shielded: on a client disconnect the stream is cancelled, and the connection
            # must still go back to the pool unsubscribed.
            with anyio.CancelScope(shield=True):
                await pubsub.aclose()

    async def wait_until_done(self, tenant: str, job_id: str, timeout_s: float) -> JobRecord | None:
        """The record once it is terminal, or as it is after `timeout_s`; None if unknown."""
        deadline = time.monotonic() + timeout_s
        async with self.subscribe(tenant, job_id) as subscription:
            while True:
                record = await subscription.read()
                remaining = deadline - time.monotonic()
                if record is None or record.status in TERMINAL_STATUSES or remaining <= 0:
                    return record
                await subscription.wait_for_change(min(self.poll_s, remaining))
