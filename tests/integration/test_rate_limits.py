"""Per-key rate limits and per-tenant image quotas on a real gateway with API keys (made by
the real CLI) and a real worker: 429 with Retry-After naming the limit, other keys
unaffected, the budget back after the window, health exempt, no accepted job lost."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import redis

from services.common.contract import TERMINAL_STATUSES, JobStatus
from services.common.job_store import JobStore
from services.common.redis_keys import RedisKeys
from tests.support.http_api import assert_error
from tests.support.scripted_mllm import ScriptedMllm
from tests.support.services import (
    HttpService,
    Namespace,
    apikeys_cli,
    create_api_key,
    start_gateway,
)

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]

REQUESTS = 5
WINDOW_S = 2
IMAGES_PER_DAY = 3
TINY = {"prompt": "a lighthouse", "width": 64, "height": 64, "steps": 2, "seed": 1}


@pytest.fixture(scope="module")
def gateway(
    namespace: Namespace, scripted: ScriptedMllm, worker: str, logs: Path
) -> Iterator[HttpService]:
    env = {
        **namespace.env(),
        "LLMGA_MLLM_BASE_URL": scripted.base_url,
        "LLMGA_AUTH_REQUIRED": "true",
        "LLMGA_RATE_LIMIT_REQUESTS": str(REQUESTS),
        "LLMGA_RATE_LIMIT_WINDOW_S": str(WINDOW_S),
        "LLMGA_QUOTA_IMAGES_PER_DAY": str(IMAGES_PER_DAY),
    }
    with start_gateway(env, logs) as service:
        yield service


def _client(gateway: HttpService, namespace: Namespace, tenant: str, *options: str) -> httpx.Client:
    """A client with a fresh key of `tenant` (a fresh request budget); `options` go to
    the CLI's `create`."""
    key = create_api_key(namespace, tenant, *options)
    return httpx.Client(
        base_url=gateway.url, timeout=60, headers={"Authorization": f"Bearer {key}"}
    )


def _statuses(api: httpx.Client, count: int) -> list[int]:
    return [api.get("/v1/jobs/job_unknown").status_code for _ in range(count)]


def _wait_until_terminal(jobs: JobStore, tenant: str, job_ids: list[str]) -> list[int]:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        records = [jobs.get(tenant, job_id) for job_id in job_ids]
        if all(r is not None and r.status in TERMINAL_STATUSES for r in records):
            return [r.status for r in records if r is not None]
        time.sleep(0.2)
    raise TimeoutError("jobs did not end")


def test_the_request_after_the_budget_is_429_until_the_window_passes(
    gateway: HttpService, namespace: Namespace
) -> None:
    with (
        _client(gateway, namespace, "acme") as first,
        _client(gateway, namespace, "acme") as second,
    ):
        assert _statuses(first, REQUESTS) == [404] * REQUESTS  # counted, whatever the answer
        refused = first.get("/v1/jobs/job_unknown")
        message = assert_error(refused, 429)
        assert refused.json()["error"]["type"] == "rate_limited"
        assert refused.json()["error"]["limit"] == "requests"
        assert f"{REQUESTS} requests per {WINDOW_S} s per API key" in message
        # GCRA: the next request passes one emission interval (window / requests) later.
        retry_after = int(refused.headers["Retry-After"])
        assert 1 <= retry_after <= WINDOW_S

        # Another key of the same tenant has its own budget; health and metrics are exempt.
        assert _statuses(second, REQUESTS) == [404] * REQUESTS
        assert [first.get(path).status_code for path in ("/healthz", "/metrics") * 5] == [200] * 10

        time.sleep(retry_after)
        assert first.get("/v1/jobs/job_unknown").status_code == 404
        time.sleep(WINDOW_S)  # a whole window later: the whole burst again
        assert _statuses(first, REQUESTS + 1) == [404] * REQUESTS + [429]

        metrics = first.get("/metrics").text
        assert 'llmga_gateway_rate_limited_requests_total{limit="requests"}' in metrics


def test_rate_limited_submissions_lose_no_accepted_job(
    gateway: HttpService, namespace: Namespace, redis_client: redis.Redis
) -> None:
    tenant = "burst"
    with _client(gateway, namespace, tenant) as api:
        answers = [api.post("/v1/images", json={**TINY, "n": 1}) for _ in range(REQUESTS + 2)]
    accepted = [a.json()["id"] for a in answers if a.status_code == 202]
    refused = [a for a in answers if a.status_code != 202]
    assert len(accepted) == IMAGES_PER_DAY  # the quota is the tighter limit here
    assert {a.json()["error"]["type"] for a in refused} == {"quota_exceeded", "rate_limited"}
    jobs = JobStore(redis_client, RedisKeys(namespace.key_prefix), ttl_s=60)
    assert _wait_until_terminal(jobs, tenant, accepted) == [JobStatus.JOB_STATUS_SUCCEEDED] * len(
        accepted
    )
    # A refused request created nothing.
    stored = list(redis_client.scan_iter(match=f"{namespace.key_prefix}:{tenant}:job:*"))
    assert len(stored) == len(accepted)


def test_the_daily_image_quota_counts_images_per_tenant(
    gateway: HttpService, namespace: Namespace, mllm: ScriptedMllm
) -> None:
    with (
        _client(gateway, namespace, "quota") as api,
        _client(gateway, namespace, "other") as other,
    ):
        assert api.post("/v1/images", json={**TINY, "n": 2}).status_code == 202
        refused = api.post("/v1/images", json={**TINY, "n": 2})  # 2 + 2 > 3
        message = assert_error(refused, 429)
        assert refused.json()["error"]["type"] == "quota_exceeded"
        assert f"2 of {IMAGES_PER_DAY} images per day" in message
        assert 0 < int(refused.headers["Retry-After"]) <= 24 * 3600  # next midnight UTC
        assert api.post("/v1/images", json={**TINY, "n": 1}).status_code == 202  # exactly 3

        # Chat turns are refused before the mllm is asked; another tenant is unaffected.
        mllm.script("Sure. <gen_image>a fox</gen_image>")
        assert_error(api.post("/v1/chat", json={"message": "a fox"}), 429)
        assert mllm.requests() == []
        assert other.post("/v1/images", json={**TINY, "n": 3}).status_code == 202

        metrics = api.get("/metrics").text
        assert 'llmga_gateway_rate_limited_requests_total{limit="images_per_day"}' in metrics


def test_a_key_with_its_own_limit_set_by_the_cli(
    gateway: HttpService, namespace: Namespace
) -> None:
    with _client(gateway, namespace, "acme", "--rate-limit", "2/60") as api:
        key = api.headers["Authorization"].removeprefix("Bearer ")
        assert _statuses(api, 3) == [404, 404, 429]
        refused = api.get("/v1/jobs/job_unknown")
        assert "2 requests per 60 s" in assert_error(refused, 429)
        assert 1 <= int(refused.headers["Retry-After"]) <= 30  # one request per 30 s

        apikeys_cli(namespace, "rate-limit", "--key", key, "--set", "0/60")  # unlimited
        assert _statuses(api, 3 * REQUESTS) == [404] * 3 * REQUESTS

        # Back to the defaults: a changed limit starts with its budget spent (not with the
        # old limit's 30 s debt), refilled within its own window.
        apikeys_cli(namespace, "rate-limit", "--key", key, "--clear")
        assert _statuses(api, 1) == [429]
        time.sleep(WINDOW_S)
        assert _statuses(api, REQUESTS + 1) == [404] * REQUESTS + [429]
