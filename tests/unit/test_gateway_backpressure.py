"""The queue depth that admits jobs: read from the broker at most every `refresh_s`, one read
shared by the requests checking meanwhile, plus what this process admitted since."""

from __future__ import annotations

import asyncio
import uuid

import redis.asyncio as aioredis

from services.gateway.http.backpressure import QueueDepth
from tests.support.services import REDIS_URL


class CountingDepth(QueueDepth):
    """QueueDepth that counts its reads of the broker."""

    reads = 0

    async def depth(self) -> int:
        self.reads += 1
        return await super().depth()


async def _with_queue(refresh_s: float) -> tuple[list[int], int]:
    queue = f"test-backpressure-{uuid.uuid4().hex}"
    async with aioredis.Redis.from_url(REDIS_URL) as client:
        try:
            await client.lpush(queue, "a", "b")
            depth = CountingDepth(client, queue, refresh_s)
            # 20 requests check at once: one read of the broker serves them all.
            first = await asyncio.gather(*(depth.estimate() for _ in range(20)))
            depth.admitted()
            depth.admitted()
            await client.lpush(queue, "c")  # another process's job
            later = await depth.estimate()
            return [*set(first), later], depth.reads
        finally:
            await client.delete(queue)


def test_a_burst_shares_one_read_and_counts_its_own_admissions() -> None:
    (first, later), reads = asyncio.run(_with_queue(refresh_s=60))
    assert reads == 1
    assert first == 2  # the two messages in the list
    assert later == 4  # as read, plus the two admitted here; the third message not yet seen


def test_refresh_zero_reads_the_broker_for_every_check() -> None:
    (first, later), reads = asyncio.run(_with_queue(refresh_s=0))
    assert first == 2
    assert later == 3  # read again: the admissions are in the list now, or not at all
    assert reads >= 2


async def _positions(job_ids: list[str]) -> dict[str, int]:
    queue = f"test-backpressure-{uuid.uuid4().hex}"
    async with aioredis.Redis.from_url(REDIS_URL) as client:
        try:
            # Pushed oldest first on the left, as the gateway does; consumed from the right.
            for job_id in ("job_first", "job_second", "job_third"):
                await client.lpush(queue, f'{{"headers": {{"id": "{job_id}"}}}}')
            return await QueueDepth(client, queue).positions(job_ids)
        finally:
            await client.delete(queue)


def test_queue_positions_count_the_messages_ahead() -> None:
    found = asyncio.run(_positions(["job_third", "job_first", "job_gone", "job_second"]))
    assert found == {"job_first": 0, "job_second": 1, "job_third": 2}
    assert asyncio.run(_positions([])) == {}
