"""Fairness between tenants, end to end: a real gateway, real Redis and a real worker on the
tiny profile, with a per-tenant in-flight cap (LLMGA_TENANT_MAX_IN_FLIGHT).

Tenant A queues a backlog of 300 one-step jobs; tenant B's one job must start after at
most `CAP` of A's jobs, not after A's whole backlog. Held jobs look `queued`, count in the
queue depth, and a canceled held job is dropped from the hold and never runs.
"""

from __future__ import annotations

import statistics
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import redis

from services.common.contract import JobStatus
from services.common.job_store import JobStore
from services.common.redis_keys import RedisKeys
from tests.support.services import (
    HttpService,
    Namespace,
    create_api_key,
    start_gateway,
    start_worker,
)

pytestmark = [pytest.mark.integration, pytest.mark.timeout(150)]

CAP = 2
BACKLOG = 300
# The smallest, fastest job the gateway accepts: the backlog is about jobs, not pixels.
ONE_STEP = {"prompt": "a fox", "width": 64, "height": 64, "steps": 1}
FAIR_ENV = {"LLMGA_TENANT_MAX_IN_FLIGHT": str(CAP)}


@pytest.fixture(scope="module")
def gateway(namespace: Namespace, logs: Path) -> Iterator[HttpService]:
    env = {**namespace.env(), **FAIR_ENV, "LLMGA_AUTH_REQUIRED": "true"}
    with start_gateway(env, logs) as service:
        yield service


@pytest.fixture(scope="module")
def fair_worker(
    namespace: Namespace, logs: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    with start_worker(namespace, tmp_path_factory.mktemp("models"), logs, env=FAIR_ENV) as name:
        yield name


def _client(gateway: HttpService, namespace: Namespace, tenant: str) -> httpx.Client:
    key = create_api_key(namespace, tenant)
    return httpx.Client(
        base_url=gateway.url, headers={"Authorization": f"Bearer {key}"}, timeout=30
    )


def _submit(api: httpx.Client) -> str:
    response = api.post("/v1/images", json=ONE_STEP)
    assert response.status_code == 202, response.text
    return str(response.json()["id"])


def _queue_depth(api: httpx.Client) -> float:
    for line in api.get("/metrics").text.splitlines():
        if line.startswith("llmga_gateway_queue_depth "):
            return float(line.split()[1])
    raise AssertionError("no queue depth in /metrics")


def test_one_tenants_backlog_does_not_starve_another(
    gateway: HttpService,
    fair_worker: str,
    namespace: Namespace,
    redis_client: redis.Redis,
) -> None:
    keys = RedisKeys(namespace.key_prefix)
    jobs = JobStore(redis_client, keys, ttl_s=600)
    with _client(gateway, namespace, "tenant-a") as a, _client(gateway, namespace, "tenant-b") as b:
        backlog = [_submit(a) for _ in range(BACKLOG)]

        # Beyond the cap, A's jobs are held back, yet queued to A and counted as waiting.
        held = redis_client.llen(keys.tenant_held("tenant-a"))
        assert held >= BACKLOG - CAP - 100  # the worker ran some meanwhile, not ~100
        assert redis_client.scard(keys.tenant_in_flight("tenant-a")) <= CAP
        last = a.get(f"/v1/jobs/{backlog[-1]}").json()
        assert last["status"] == "queued"
        assert last["queue_position"] > CAP  # behind A's queued and earlier held jobs
        assert _queue_depth(a) >= held

        # Canceling a held job drops it from the hold: it never runs.
        canceled = a.post(f"/v1/jobs/{backlog[-1]}/cancel")
        assert canceled.status_code == 200 and canceled.json()["status"] == "canceled"
        assert backlog[-1].encode() not in redis_client.lrange(keys.tenant_held("tenant-a"), 0, -1)

        mine = _submit(b)
        done = b.get(f"/v1/jobs/{mine}", params={"wait": 60}).json()
        assert done["status"] == "succeeded", done

    b_record = jobs.get("tenant-b", mine)
    assert b_record is not None
    b_created, b_started = b_record.timings.created_at, b_record.timings.started_at
    a_records = [r for r in (jobs.get("tenant-a", job_id) for job_id in backlog) if r]
    ran_before_b = [r for r in a_records if b_created < r.timings.started_at < b_started]
    # B waited behind at most A's in-flight jobs, not behind A's backlog.
    assert len(ran_before_b) <= CAP, len(ran_before_b)
    durations = [
        r.timings.finished_at - r.timings.started_at
        for r in a_records
        if r.status == JobStatus.JOB_STATUS_SUCCEEDED
    ]
    still_waiting = sum(1 for r in a_records if r.status == JobStatus.JOB_STATUS_QUEUED)
    assert still_waiting > 0  # A's backlog was really still there when B's job ran
    median_s = statistics.median(durations)
    print(
        f"\nB waited {b_started - b_created:.3f} s; A's jobs took {median_s:.3f} s"
        f" (median of {len(durations)}); {len(ran_before_b)} of A's started meanwhile; "
        f"{still_waiting} of A's still queued"
    )
    canceled_record = jobs.get("tenant-a", backlog[-1])
    assert canceled_record is not None and canceled_record.attempts == 0
