"""Reliability with the real processes: backpressure (429 while the queue is full), a
worker killed mid-batch (its jobs are redelivered and each succeeds once), graceful shutdown of
the worker (SIGTERM finishes the running job) and of the gateway (in-flight requests
complete). Every wait is bounded; no assertion depends on timing."""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis
import redis.asyncio as aioredis

from deploy.local.stack import ManagedProcess
from services.common.contract import JobStatus
from services.common.job_store import JobStore
from services.common.redis_keys import RedisKeys
from services.gateway.http.backpressure import QueueDepth
from tests.support.http_api import assert_error, wait_for_job
from tests.support.processes import free_port, http_ok, python_module, running
from tests.support.scripted_mllm import ScriptedMllm
from tests.support.services import Namespace, start_gateway, start_worker_process

pytestmark = [pytest.mark.integration, pytest.mark.timeout(600)]

# Several seconds on tiny models: long enough to be caught running.
LONG = {"width": 128, "height": 128, "steps": 150, "seed": 3, "n": 2}
# A few seconds (~4 s unloaded): far below the time limit of a worker whose short
# visibility timeout makes redelivery fast (the limit per job must stay below it).
CRASHED = {"width": 64, "height": 64, "steps": 150, "seed": 4, "n": 2}
SHORT_VISIBILITY = {"LLMGA_WORKER_VISIBILITY_TIMEOUT_S": "30", "LLMGA_WORKER_MAX_JOB_S": "29"}


@pytest.fixture
def namespace(redis_client: redis.Redis) -> Iterator[Namespace]:
    ns = Namespace.unique("test-reliability")
    yield ns
    ns.cleanup(redis_client)


@pytest.fixture(scope="module")
def models_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Shared by every worker of the module: the tiny models are built once."""
    return tmp_path_factory.mktemp("models")


@pytest.fixture
def jobs(redis_client: redis.Redis, namespace: Namespace) -> JobStore:
    return JobStore(redis_client, RedisKeys(namespace.key_prefix), ttl_s=600)


def _popen(process: ManagedProcess) -> subprocess.Popen[bytes]:
    assert process.process is not None
    return process.process


def _wait_for(condition: Callable[[], bool], what: str, timeout_s: float = 120) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.05)
    raise TimeoutError(f"{what}: not within {timeout_s}s")


def _running(api: httpx.Client, job_id: str) -> Callable[[], bool]:
    def check() -> bool:
        view: dict[str, Any] = api.get(f"/v1/jobs/{job_id}").json()
        return view["status"] == "running" and view["progress"]["step"] >= 1

    return check


def _create(api: httpx.Client, prompt: str, options: dict[str, Any]) -> str:
    response = api.post("/v1/images", json={"prompt": prompt, **options})
    assert response.status_code == 202, response.text
    return str(response.json()["id"])


def _queued_ids(client: redis.Redis, queue: str) -> set[str]:
    return {json.loads(raw)["headers"]["id"] for raw in client.lrange(queue, 0, -1)}


# --------------------------------------------------------------------------- backpressure


def test_full_queue_is_429_with_retry_after_and_accepted_jobs_stay_queued(
    namespace: Namespace,
    mllm: ScriptedMllm,
    logs: Path,
    jobs: JobStore,
    redis_client: redis.Redis,
) -> None:
    limit = 3
    env = {
        **namespace.env(),
        "LLMGA_MLLM_BASE_URL": mllm.base_url,
        "LLMGA_MAX_QUEUED_JOBS": str(limit),
        "LLMGA_QUEUE_FULL_RETRY_AFTER_S": "7",
    }
    # No worker: every accepted job stays queued.
    with start_gateway(env, logs) as gateway, httpx.Client(base_url=gateway.url, timeout=60) as api:
        accepted = [_create(api, f"job {i}", {"steps": 2}) for i in range(limit)]

        refused = api.post("/v1/images", json={"prompt": "one too many"})
        assert "queue is full" in assert_error(refused, 429)
        assert refused.headers["Retry-After"] == "7"
        # A chat turn may create jobs: refused before the mllm is asked.
        chat = api.post("/v1/chat", json={"message": "draw a cat"})
        assert_error(chat, 429)
        assert chat.headers["Retry-After"] == "7"
        assert mllm.requests() == []
        # Routes that create no job still answer.
        assert api.get(f"/v1/jobs/{accepted[0]}").status_code == 200

        metrics = api.get("/metrics").text
        assert f"llmga_gateway_queue_depth {float(limit)}" in metrics

    # Nothing accepted was lost: every job has its queued record and its message.
    for job_id in accepted:
        record = jobs.get("local", job_id)
        assert record is not None and record.status == JobStatus.JOB_STATUS_QUEUED
    assert _queued_ids(redis_client, namespace.queue_name) == set(accepted)


# --------------------------------------------------------------------------- worker crash


def _queue_depth(namespace: Namespace) -> int:
    """The queue depth as the gateway reads it (`QueueDepth`, asyncio)."""

    async def read() -> int:
        async with aioredis.Redis.from_url(namespace.redis_url) as client:
            return await QueueDepth(client, namespace.queue_name).depth()

    return asyncio.run(read())


def test_jobs_of_a_batch_whose_worker_was_killed_are_run_again_and_succeed_once(
    namespace: Namespace,
    mllm: ScriptedMllm,
    logs: Path,
    models_dir: Path,
    jobs: JobStore,
    redis_client: redis.Redis,
) -> None:
    env = {**namespace.env(), "LLMGA_MLLM_BASE_URL": mllm.base_url}
    # A window long enough to gather both jobs into one batch on a busy CPU.
    batching = {**SHORT_VISIBILITY, "LLMGA_WORKER_BATCH_WINDOW_MS": "1000"}
    with (
        start_gateway(env, logs) as gateway,
        httpx.Client(base_url=gateway.url, timeout=60) as api,
    ):
        with start_worker_process(namespace, models_dir, logs, "worker-a", batching) as worker_a:
            # Two compatible jobs: one batch of 4 images (n = 2 each).
            job_ids = [_create(api, f"a job that outlives its worker {i}", CRASHED) for i in (0, 1)]
            for job_id in job_ids:
                _wait_for(_running(api, job_id), "both jobs of the batch running on worker A")
            # Delivered but not acknowledged: still counted by the queue depth.
            assert _queue_depth(namespace) == 2
            _popen(worker_a).send_signal(signal.SIGKILL)
            _popen(worker_a).wait(timeout=60)

        for job_id in job_ids:
            first = jobs.get("local", job_id)
            assert first is not None and first.status == JobStatus.JOB_STATUS_RUNNING
            assert first.attempts == 1 and first.worker.endswith("worker-a")

        with start_worker_process(namespace, models_dir, logs, "worker-b", batching):
            # Redelivered once the visibility timeout has passed (30 s), then run.
            views = [wait_for_job(api, job_id, timeout_s=300) for job_id in job_ids]

        # None lost, none run twice: each succeeded once, on its second attempt.
        for job_id, view in zip(job_ids, views, strict=True):
            assert view["status"] == "succeeded", view["error"]
            assert len(view["images"]) == CRASHED["n"]
            for image in view["images"]:
                assert api.get(image["url"]).status_code == 200
            record = jobs.get("local", job_id)
            assert record is not None and record.attempts == 2
            assert record.worker.endswith("worker-b")
        _wait_for(lambda: _queue_depth(namespace) == 0, "the messages acknowledged", timeout_s=60)


# --------------------------------------------------------------------------- shutdown


def test_worker_sigterm_finishes_the_running_job_then_exits_0(
    namespace: Namespace,
    mllm: ScriptedMllm,
    logs: Path,
    models_dir: Path,
    jobs: JobStore,
) -> None:
    env = {**namespace.env(), "LLMGA_MLLM_BASE_URL": mllm.base_url}
    with (
        start_gateway(env, logs) as gateway,
        httpx.Client(base_url=gateway.url, timeout=60) as api,
        start_worker_process(namespace, models_dir, logs, "worker-term") as worker,
    ):
        job_id = _create(api, "a job during shutdown", LONG)
        _wait_for(_running(api, job_id), "job running")
        _popen(worker).send_signal(signal.SIGTERM)
        assert _popen(worker).wait(timeout=300) == 0, worker.log_tail()

        view = api.get(f"/v1/jobs/{job_id}").json()
        assert view["status"] == "succeeded", (view, worker.log_tail())
        assert len(view["images"]) == LONG["n"]
        record = jobs.get("local", job_id)
        assert record is not None and record.attempts == 1


def test_gateway_sigterm_lets_an_in_flight_chat_finish(
    namespace: Namespace, mllm: ScriptedMllm, logs: Path
) -> None:
    port = free_port()
    env = {
        **namespace.env(),
        "LLMGA_MLLM_BASE_URL": mllm.base_url,
        "LLMGA_GATEWAY_HOST": "127.0.0.1",
        "LLMGA_GATEWAY_PORT": str(port),
    }
    url = f"http://127.0.0.1:{port}"
    mllm.script("a slow but complete reply", delay_s=3)
    answers: list[httpx.Response] = []

    def chat() -> None:
        with httpx.Client(base_url=url, timeout=120) as client:
            answers.append(client.post("/v1/chat", json={"message": "take your time"}))

    with running(
        "gateway-term", python_module("services.gateway"), env, http_ok(f"{url}/healthz"), logs
    ) as gateway:
        thread = threading.Thread(target=chat)
        thread.start()
        _wait_for(lambda: len(mllm.requests()) == 1, "the chat reached the mllm")
        _popen(gateway).send_signal(signal.SIGTERM)
        thread.join(timeout=120)
        assert not thread.is_alive()
        # uvicorn drains, runs the lifespan shutdown, then re-raises the signal it caught.
        assert _popen(gateway).wait(timeout=60) in (0, -signal.SIGTERM), gateway.log_tail()
        assert "Application shutdown complete" in gateway.log_tail()

    assert len(answers) == 1 and answers[0].status_code == 200, answers
    assert answers[0].json()["reply"] == "a slow but complete reply"
