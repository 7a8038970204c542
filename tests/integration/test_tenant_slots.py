"""The per-tenant in-flight cap's scripts on real Redis (services/common/tenant_slots.py):
admission, holding, exactly-once release, and the worker's release after a crash.

No processes: the gateway's side (`AsyncTenantSlots`) and the worker's (`TenantSlots`,
called by `GenerationRunner.run`) are driven directly against the namespace's Redis.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import cast

import pytest
import redis
import redis.asyncio as aioredis

from services.common import job_states
from services.common.blob_store import RedisBlobStore
from services.common.contract import GenerationRequest, Task, encode_request
from services.common.ids import new_id
from services.common.job_store import JobStore
from services.common.redis_keys import RedisKeys
from services.common.tenant_slots import AsyncTenantSlots, TenantSlots
from services.worker.loading import LoadedModels
from services.worker.tasks import GenerationRunner
from tests.support.services import Namespace

pytestmark = [pytest.mark.integration, pytest.mark.timeout(30)]

CAP = 2
TENANT = "acme"


@pytest.fixture
def keys(namespace: Namespace) -> RedisKeys:
    return RedisKeys(namespace.key_prefix)


@pytest.fixture
def worker_slots(
    redis_client: redis.Redis, keys: RedisKeys, namespace: Namespace
) -> Iterator[TenantSlots]:
    yield TenantSlots(redis_client, keys, namespace.queue_name, CAP, ttl_s=60)
    namespace.cleanup(redis_client)


def _queued_ids(client: redis.Redis, namespace: Namespace) -> list[str]:
    """Job ids of the messages in the queue, oldest first (the gateway pushes whole
    messages; here each test message is its job id)."""
    messages = cast(list[bytes], client.lrange(namespace.queue_name, 0, -1))
    return [message.decode() for message in reversed(messages)]


def _admit_all(namespace: Namespace, keys: RedisKeys, job_ids: list[str]) -> list[bool]:
    async def admit() -> list[bool]:
        client = aioredis.Redis.from_url(namespace.redis_url)
        try:
            slots = AsyncTenantSlots(client, keys, namespace.queue_name, CAP, ttl_s=60)
            return [await slots.admit(TENANT, job_id, job_id.encode()) for job_id in job_ids]
        finally:
            await client.aclose()

    return asyncio.run(admit())


def test_cap_holds_jobs_and_each_release_admits_the_next_once(
    redis_client: redis.Redis, keys: RedisKeys, namespace: Namespace, worker_slots: TenantSlots
) -> None:
    job_ids = [f"job_{i}" for i in range(5)]
    assert _admit_all(namespace, keys, job_ids) == [True, True, False, False, False]
    assert _queued_ids(redis_client, namespace) == job_ids[:2]

    # A job ending frees its slot for the oldest held job; a second release of the same
    # job (a redelivered message, a cancel racing the worker) frees nothing more.
    assert worker_slots.release(TENANT, "job_0") == 1
    assert worker_slots.release(TENANT, "job_0") == 0
    assert _queued_ids(redis_client, namespace) == job_ids[:3]

    # A held job that ends (canceled) leaves the hold and is never queued.
    assert worker_slots.release(TENANT, "job_3") == -1
    assert worker_slots.release(TENANT, "job_1") == 1
    assert _queued_ids(redis_client, namespace) == ["job_0", "job_1", "job_2", "job_4"]
    assert redis_client.llen(keys.tenant_held(TENANT)) == 0
    assert not redis_client.sismember(keys.tenants_holding(), TENANT)


def test_worker_releases_on_redelivery_after_dying_before_the_release(
    redis_client: redis.Redis, keys: RedisKeys, namespace: Namespace, worker_slots: TenantSlots
) -> None:
    """A worker that recorded the job's end but died before releasing its slot (and before
    acknowledging the message) gets the message again; the next run finds the record final
    and releases then, so the tenant's held job is admitted."""
    jobs = JobStore(redis_client, keys, ttl_s=60)
    requests = [
        GenerationRequest(job_id=new_id("job"), tenant=TENANT, task=Task.TASK_T2I, prompt="owl")
        for _ in range(CAP + 1)
    ]
    for request in requests:
        jobs.create(job_states.new_record(request))
    ids = [request.job_id for request in requests]
    _admit_all(namespace, keys, ids)
    # The first job ran and its record is final; then the worker died.
    jobs.update(TENANT, ids[0], lambda record: job_states.cancel(record, "gone"))
    assert _queued_ids(redis_client, namespace) == ids[:CAP]

    runner = GenerationRunner(
        # A job whose record is final never reaches the models.
        models=cast(LoadedModels, None),
        jobs=jobs,
        blobs=RedisBlobStore(redis_client, keys, ttl_s=60),
        worker_name="redelivered",
        max_job_s=10,
        slots=worker_slots,
    )
    summary = runner.run(encode_request(requests[0]))
    assert summary["status"] == "canceled"
    assert _queued_ids(redis_client, namespace) == ids
