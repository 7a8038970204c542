"""Job control with the real worker process (tiny models, real Celery, real Redis) behind
the real gateway: cancel stops exactly one job at its next step and the worker goes on;
a canceled queued job never starts; events and waits follow real jobs; deleting a
conversation stops its running job."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis

from services.common.contract import JobStatus
from services.common.job_store import JobStore
from services.common.redis_keys import RedisKeys
from tests.support.http_api import job_events, wait_for_job
from tests.support.scripted_mllm import ScriptedMllm
from tests.support.services import Namespace, start_gateway, start_worker

pytestmark = [pytest.mark.integration, pytest.mark.timeout(600)]

# Several seconds on tiny models: long enough to cancel mid-run.
LONG = {"width": 256, "height": 256, "steps": 150, "seed": 1}
SHORT = {"width": 64, "height": 64, "steps": 4, "seed": 2}


@pytest.fixture(scope="module")
def api(
    namespace: Namespace,
    scripted: ScriptedMllm,
    logs: Path,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[httpx.Client]:
    env = {**namespace.env(), "LLMGA_MLLM_BASE_URL": scripted.base_url}
    # One job at a time (no batching across jobs), so that a job sent behind a running
    # one stays queued; cancel within a batch: tests/integration/test_worker_celery.py.
    one_at_a_time = {"LLMGA_WORKER_MAX_BATCH": "1"}
    with (
        start_worker(namespace, tmp_path_factory.mktemp("models"), logs, env=one_at_a_time),
        start_gateway(env, logs) as gateway,
        httpx.Client(base_url=gateway.url, timeout=90) as client,
    ):
        yield client


@pytest.fixture
def jobs(redis_client: redis.Redis, namespace: Namespace) -> JobStore:
    return JobStore(redis_client, RedisKeys(namespace.key_prefix), ttl_s=600)


def _create(api: httpx.Client, prompt: str, options: dict[str, Any]) -> str:
    response = api.post("/v1/images", json={"prompt": prompt, **options})
    assert response.status_code == 202, response.text
    return str(response.json()["id"])


def _poll(
    api: httpx.Client, job_id: str, done: Callable[[dict[str, Any]], bool], timeout_s: float = 120
) -> dict[str, Any]:
    """Poll the job until `done(view)`; return that view."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        view: dict[str, Any] = api.get(f"/v1/jobs/{job_id}").json()
        if done(view):
            return view
        time.sleep(0.05)
    raise TimeoutError(f"job {job_id}: condition not met in {timeout_s}s ({view})")


def _running(view: dict[str, Any]) -> bool:
    return view["status"] == "running" and view["progress"]["step"] >= 1


def _assert_stopped_early(
    stopped_at: float, running: dict[str, Any], next_job: dict[str, Any]
) -> None:
    """The next job started long before the stopped one could have ended: the worker
    stopped it at a step instead of running its remaining steps."""
    step, total = running["progress"]["step"], running["progress"]["total"]
    seconds_per_step = (stopped_at - running["started_at"]) / step
    remaining_s = seconds_per_step * (total - step)
    assert next_job["started_at"] - stopped_at < remaining_s / 2, (remaining_s, next_job)


def test_cancel_stops_the_running_job_skips_the_queued_one_and_the_worker_goes_on(
    api: httpx.Client, jobs: JobStore
) -> None:
    running_id = _create(api, "a long job", LONG)
    queued_id = _create(api, "queued behind it", LONG)
    running = _poll(api, running_id, _running)

    canceled_queued = api.post(f"/v1/jobs/{queued_id}/cancel")
    assert canceled_queued.status_code == 200 and canceled_queued.json()["status"] == "canceled"
    canceled_at = time.time()
    canceled = api.post(f"/v1/jobs/{running_id}/cancel")
    assert canceled.status_code == 200, canceled.text
    assert canceled.json()["status"] == "canceled"

    next_id = _create(api, "the next job", SHORT)
    after = wait_for_job(api, next_id, timeout_s=120)
    assert after["status"] == "succeeded", after["error"]
    assert len(after["images"]) == 1

    stopped = api.get(f"/v1/jobs/{running_id}").json()
    assert stopped["status"] == "canceled" and stopped["images"] == []
    assert stopped["error"] == "canceled by the client"
    assert stopped["progress"]["step"] < stopped["progress"]["total"]
    _assert_stopped_early(canceled_at, running, after)

    # The queued job was taken off the queue without ever starting.
    record = jobs.get("local", queued_id)
    assert record is not None and record.status == JobStatus.JOB_STATUS_CANCELED
    assert record.attempts == 0 and record.timings.started_at == 0 and record.worker == ""
    assert api.get(f"/v1/jobs/{queued_id}").json()["started_at"] is None


def test_events_follow_a_real_job_to_its_end(api: httpx.Client) -> None:
    job_id = _create(api, "a lighthouse", {**SHORT, "steps": 6})
    followed = list(job_events(api, job_id))
    # The worker's default preview every 5 steps: one `preview` event, before the end.
    previews = [view for name, view in followed if name == "preview"]
    assert [(p["step"], p["total"]) for p in previews] == [(5, 6)]
    assert followed[-1][0] == "status"
    events = [(name, view) for name, view in followed if name != "preview"]
    statuses = [view["status"] for _, view in events]
    assert statuses[0] in ("queued", "running") and statuses[-1] == "succeeded"
    assert "running" in statuses
    steps = [view["progress"]["step"] for name, view in events if name == "progress"]
    assert steps and steps == sorted(steps) and steps[-1] == 6, events
    assert len(events[-1][1]["images"]) == 1


def test_wait_returns_the_finished_job(api: httpx.Client) -> None:
    created = api.post(
        "/v1/images", json={"prompt": "a tree", **SHORT}, headers={"Prefer": "wait=60"}
    )
    assert created.status_code == 202, created.text
    assert created.headers["Preference-Applied"] == "wait=60"
    body = created.json()
    assert body["status"] == "succeeded" and len(body["images"]) == 1
    assert api.get(body["images"][0]["url"]).status_code == 200


def test_deleting_a_conversation_stops_its_running_job(
    api: httpx.Client, scripted: ScriptedMllm
) -> None:
    scripted.reset()
    scripted.script("Sure. <gen_image>a castle on a hill</gen_image>")
    chat = api.post("/v1/chat", json={"message": "a castle", **LONG})
    assert chat.status_code == 200, chat.text
    [job] = chat.json()["jobs"]
    running = _poll(api, job["id"], _running)

    deleted_at = time.time()
    assert api.delete(f"/v1/conversations/{chat.json()['conversation_id']}").status_code == 204
    assert api.get(f"/v1/jobs/{job['id']}").status_code == 404

    after = wait_for_job(api, _create(api, "after the delete", SHORT), timeout_s=120)
    assert after["status"] == "succeeded", after["error"]
    _assert_stopped_early(deleted_at, running, after)
