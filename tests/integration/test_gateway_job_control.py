"""Job control over the real gateway (uvicorn subprocess), real Redis and the scripted mllm:
cancel, server-sent events, bounded waits, idempotent creates, conversation deletion.

No worker runs here: the test plays the worker by writing job records through the same
`JobStore` the worker uses (test_job_control.py runs the real worker).
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
import redis
import redis.asyncio as aioredis

from services.common.blob_store import RedisBlobStore
from services.common.contract import JobRecord, JobStatus
from services.common.job_store import JobStore
from services.common.redis_keys import RedisKeys
from services.gateway.stores.conversations import ConversationStore, StoredTurn
from tests.support.http_api import assert_error, job_events, server_sent_events
from tests.support.scripted_mllm import ScriptedMllm
from tests.support.services import REDIS_URL, HttpService, Namespace, start_gateway

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

MAX_WAIT_S = 5
KEEPALIVE_S = 0.3
TENANT = "local"


# --------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def keys(namespace: Namespace) -> RedisKeys:
    return RedisKeys(namespace.key_prefix)


@pytest.fixture(scope="module")
def gateway(
    namespace: Namespace, scripted: ScriptedMllm, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[HttpService]:
    env = {
        **namespace.env(),
        "LLMGA_MLLM_BASE_URL": scripted.base_url,
        "LLMGA_MAX_WAIT_S": str(MAX_WAIT_S),
        "LLMGA_JOB_EVENTS_KEEPALIVE_S": str(KEEPALIVE_S),
    }
    with start_gateway(env, tmp_path_factory.mktemp("logs")) as process:
        yield process


@pytest.fixture
def api(gateway: HttpService) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=gateway.url, timeout=30) as client:
        yield client


# --------------------------------------------------------------------------- helpers


def _new_job(api: httpx.Client, prompt: str = "an owl", **fields: Any) -> str:
    response = api.post("/v1/images", json={"prompt": prompt, **fields})
    assert response.status_code == 202, response.text
    return str(response.json()["id"])


def _run(job: JobStore, job_id: str, steps: int = 3, delay_s: float = 0.1) -> None:
    """Play the worker: running, `steps` progress steps, then succeeded."""

    def update(mutate: Callable[[JobRecord], None]) -> None:
        time.sleep(delay_s)
        job.update(TENANT, job_id, mutate)

    def start(record: JobRecord) -> None:
        record.status = JobStatus.JOB_STATUS_RUNNING
        record.timings.started_at = time.time()
        record.progress.total = steps

    update(start)
    for step in range(1, steps + 1):

        def advance(record: JobRecord, step: int = step) -> None:
            record.progress.step = step

        update(advance)

    def finish(record: JobRecord) -> None:
        record.status = JobStatus.JOB_STATUS_SUCCEEDED
        record.timings.finished_at = time.time()

    update(finish)


def _in_background(target: Callable[[], None]) -> threading.Thread:
    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    return thread


# --------------------------------------------------------------------------- cancel


def test_cancel_a_queued_job(api: httpx.Client, jobs: JobStore) -> None:
    job_id = _new_job(api)
    response = api.post(f"/v1/jobs/{job_id}/cancel")
    assert response.status_code == 200, response.text
    view = response.json()
    assert view["status"] == "canceled" and view["error"] == "canceled by the client"
    assert view["finished_at"] is not None and view["started_at"] is None
    record = jobs.get(TENANT, job_id)
    assert record is not None and record.status == JobStatus.JOB_STATUS_CANCELED
    assert api.get(f"/v1/jobs/{job_id}").json()["status"] == "canceled"


def test_cancel_a_terminal_job_is_409_naming_its_status(api: httpx.Client, jobs: JobStore) -> None:
    job_id = _new_job(api)
    _run(jobs, job_id, steps=1, delay_s=0)
    assert "succeeded" in assert_error(api.post(f"/v1/jobs/{job_id}/cancel"), 409)
    canceled = _new_job(api)
    api.post(f"/v1/jobs/{canceled}/cancel")
    assert "canceled" in assert_error(api.post(f"/v1/jobs/{canceled}/cancel"), 409)


def test_cancel_unknown_job_is_404(api: httpx.Client) -> None:
    assert "job_nope" in assert_error(api.post("/v1/jobs/job_nope/cancel"), 404)


# --------------------------------------------------------------------------- events


def test_events_stream_status_and_progress_until_terminal(
    api: httpx.Client, jobs: JobStore
) -> None:
    job_id = _new_job(api)
    worker = _in_background(lambda: _run(jobs, job_id, steps=3, delay_s=0.2))
    events = list(job_events(api, job_id))  # returns only when the stream closes
    worker.join()

    names = [name for name, _ in events]
    statuses = [view["status"] for _, view in events]
    assert names[0] == "status" and statuses[0] in ("queued", "running")
    assert statuses[-1] == "succeeded" and names[-1] == "status"
    assert "running" in statuses
    steps = [view["progress"]["step"] for name, view in events if name == "progress"]
    assert steps == sorted(steps) and steps[-1] == 3, events
    assert all(view["id"] == job_id for _, view in events)


def test_events_of_a_terminal_job_is_one_event(api: httpx.Client) -> None:
    job_id = _new_job(api)
    api.post(f"/v1/jobs/{job_id}/cancel")
    [(name, view)] = list(job_events(api, job_id))
    assert name == "status" and view["status"] == "canceled"


def test_events_survive_a_missed_notification_and_send_keepalives(
    api: httpx.Client, jobs: JobStore, redis_client: redis.Redis, keys: RedisKeys
) -> None:
    """A record written without a notification is still seen at the next periodic
    re-read; an idle stream carries keep-alive comments meanwhile."""
    job_id = _new_job(api)
    record = jobs.get(TENANT, job_id)
    assert record is not None
    record.status = JobStatus.JOB_STATUS_FAILED
    record.error = "written behind the store's back"

    seen: list[tuple[str, str]] = []
    with api.stream("GET", f"/v1/jobs/{job_id}/events") as response:
        for event, data in server_sent_events(response):
            seen.append((event, data))
            if sum(1 for name, _ in seen if name == "") == 2:  # two keep-alives: idle
                redis_client.set(keys.job(TENANT, job_id), record.SerializeToString(), keepttl=True)
    assert seen[0][0] == "status" and '"queued"' in seen[0][1]
    assert any(event == "" and data.startswith(": keep-alive") for event, data in seen)
    assert seen[-1][0] == "status" and '"failed"' in seen[-1][1]


def test_events_unknown_job_is_404(api: httpx.Client) -> None:
    assert_error(api.get("/v1/jobs/job_nope/events"), 404)


# --------------------------------------------------------------------------- waits


@pytest.mark.parametrize("how", ["query", "header"])
def test_wait_answers_when_the_job_ends(api: httpx.Client, jobs: JobStore, how: str) -> None:
    job_id = _new_job(api)
    _in_background(lambda: _run(jobs, job_id, steps=2, delay_s=0.2))
    started = time.monotonic()
    if how == "query":
        response = api.get(f"/v1/jobs/{job_id}", params={"wait": MAX_WAIT_S})
    else:
        response = api.get(f"/v1/jobs/{job_id}", headers={"Prefer": f"wait={MAX_WAIT_S}"})
    elapsed = time.monotonic() - started
    assert response.status_code == 200, response.text
    assert response.json()["status"] == "succeeded"
    assert response.headers["Preference-Applied"] == f"wait={MAX_WAIT_S}"
    assert elapsed < MAX_WAIT_S - 1, elapsed


def test_wait_gives_up_after_n_seconds(api: httpx.Client) -> None:
    job_id = _new_job(api)
    started = time.monotonic()
    response = api.get(f"/v1/jobs/{job_id}", headers={"Prefer": "respond-async, wait=1"})
    elapsed = time.monotonic() - started
    assert response.status_code == 200 and response.json()["status"] == "queued"
    assert response.headers["Preference-Applied"] == "wait=1"
    assert 0.9 <= elapsed < 3, elapsed


def test_no_wait_preference_answers_at_once(api: httpx.Client) -> None:
    job_id = _new_job(api)
    response = api.get(f"/v1/jobs/{job_id}", headers={"Prefer": "respond-async"})
    assert response.status_code == 200 and "Preference-Applied" not in response.headers


def test_post_images_with_wait_answers_the_ended_job(
    api: httpx.Client, jobs: JobStore, redis_client: redis.Redis, keys: RedisKeys
) -> None:
    """The job is finished by the fake worker as soon as it appears in Redis."""
    stop = threading.Event()
    finished: list[str] = []

    def finish_new_jobs() -> None:
        while not stop.is_set():
            for key in redis_client.scan_iter(match=keys.job(TENANT, "*")):
                job_id = key.decode().rsplit(":", 1)[1]
                record = jobs.get(TENANT, job_id)
                mine = record is not None and record.request.prompt == "wait for me"
                if mine and job_id not in finished:
                    finished.append(job_id)
                    _run(jobs, job_id, steps=1, delay_s=0.1)
            time.sleep(0.05)

    _in_background(finish_new_jobs)
    try:
        response = api.post(
            "/v1/images", json={"prompt": "wait for me"}, headers={"Prefer": "wait=5"}
        )
    finally:
        stop.set()
    assert response.status_code == 202, response.text
    body = response.json()
    assert body["status"] == "succeeded" and body["id"] == finished[0]
    assert response.headers["Location"] == f"/v1/jobs/{body['id']}"
    assert response.headers["Preference-Applied"] == "wait=5"


@pytest.mark.parametrize(
    ("params", "headers", "field"),
    [
        ({"wait": MAX_WAIT_S + 1}, {}, "wait"),
        ({"wait": -1}, {}, "wait"),
        ({"wait": "soon"}, {}, "wait"),
        ({}, {"Prefer": f"wait={MAX_WAIT_S + 1}"}, "Prefer"),
        ({}, {"Prefer": "wait=abc"}, "Prefer"),
        ({}, {"Prefer": "wait=-2"}, "Prefer"),
    ],
)
def test_bad_waits_are_422_naming_the_field(
    api: httpx.Client, params: dict[str, Any], headers: dict[str, str], field: str
) -> None:
    job_id = _new_job(api)
    assert_error(api.get(f"/v1/jobs/{job_id}", params=params, headers=headers), 422, field)
    response = api.post("/v1/images", json={"prompt": "x"}, params=params, headers=headers)
    assert_error(response, 422, field)


def test_wait_on_an_unknown_job_is_404(api: httpx.Client) -> None:
    assert_error(api.get("/v1/jobs/job_nope", params={"wait": 1}), 404)


# --------------------------------------------------------------------------- idempotency


def test_same_key_same_body_replays_the_first_answer(api: httpx.Client) -> None:
    body = {"prompt": "a heron", "seed": 3}
    first = api.post("/v1/images", json=body, headers={"Idempotency-Key": "key-images-1"})
    # Same request in another key order: the same fingerprint.
    again = api.post(
        "/v1/images",
        json={"seed": 3, "prompt": "a heron"},
        headers={"Idempotency-Key": "key-images-1"},
    )
    assert first.status_code == again.status_code == 202
    assert again.json()["id"] == first.json()["id"]
    assert again.json() == first.json()
    assert again.headers["Location"] == first.headers["Location"]
    assert again.headers["Idempotent-Replayed"] == "true"
    assert "Idempotent-Replayed" not in first.headers
    other = api.post("/v1/images", json=body, headers={"Idempotency-Key": "key-images-2"})
    assert other.json()["id"] != first.json()["id"]


def test_same_key_other_body_or_route_is_409(api: httpx.Client, mllm: ScriptedMllm) -> None:
    headers = {"Idempotency-Key": "key-reused"}
    assert api.post("/v1/images", json={"prompt": "one"}, headers=headers).status_code == 202
    response = api.post("/v1/images", json={"prompt": "two"}, headers=headers)
    assert "different request" in assert_error(response, 409)
    assert response.json()["error"]["type"] == "idempotency_key_reused"
    assert_error(api.post("/v1/chat", json={"message": "one"}, headers=headers), 409)
    assert mllm.requests() == []


def test_concurrent_requests_with_one_key_make_one_turn(
    api: httpx.Client, mllm: ScriptedMllm
) -> None:
    mllm.script("A fox. <gen_image>a fox</gen_image>", delay_s=1.0)
    headers = {"Idempotency-Key": "key-concurrent-chat"}
    results: list[httpx.Response] = []

    def turn() -> None:
        results.append(api.post("/v1/chat", json={"message": "a fox"}, headers=headers))

    threads = [threading.Thread(target=turn) for _ in range(2)]
    for thread in threads:
        thread.start()
        time.sleep(0.2)  # the first claims the key; the second finds it in progress
    for thread in threads:
        thread.join()
    ok, busy = sorted(results, key=lambda r: r.status_code)
    assert ok.status_code == 200, ok.text
    assert_error(busy, 409)
    assert busy.json()["error"]["type"] == "idempotency_in_progress"
    assert busy.headers["Retry-After"] == "1"

    retry = api.post("/v1/chat", json={"message": "a fox"}, headers=headers)
    assert retry.status_code == 200 and retry.headers["Idempotent-Replayed"] == "true"
    assert retry.json() == ok.json()
    assert len(mllm.requests()) == 1  # one turn, one job
    conversation = api.get(f"/v1/conversations/{ok.json()['conversation_id']}").json()
    assert len(conversation["turns"]) == 2


def test_failed_requests_release_the_key(api: httpx.Client, mllm: ScriptedMllm) -> None:
    headers = {"Idempotency-Key": "key-after-502"}
    mllm.script(status=500)
    assert_error(api.post("/v1/chat", json={"message": "hi"}, headers=headers), 502)
    mllm.script(status=200)
    response = api.post("/v1/chat", json={"message": "hi"}, headers=headers)
    assert response.status_code == 200 and "Idempotent-Replayed" not in response.headers


@pytest.mark.parametrize("key", ["", "x" * 256, "has space", "ünïcode", "semi;colon"])
def test_bad_idempotency_keys_are_422(api: httpx.Client, key: str) -> None:
    response = api.post(
        "/v1/images", json={"prompt": "x"}, headers=[(b"Idempotency-Key", key.encode())]
    )
    assert_error(response, 422, "Idempotency-Key")


# --------------------------------------------------------------------------- delete


def test_delete_conversation_removes_what_only_it_uses(
    api: httpx.Client,
    mllm: ScriptedMllm,
    jobs: JobStore,
    redis_client: redis.Redis,
    keys: RedisKeys,
) -> None:
    blobs = RedisBlobStore(redis_client, keys, ttl_s=60)
    mllm.script("Two. <gen_image>a cat</gen_image><gen_image>a dog</gen_image>")
    chat = api.post("/v1/chat", json={"message": "pets"}).json()
    conversation_id = chat["conversation_id"]
    done_id, queued_id = (job["id"] for job in chat["jobs"])

    result_image = blobs.put(TENANT, b"png")

    def succeed(record: JobRecord) -> None:
        record.status = JobStatus.JOB_STATUS_SUCCEEDED
        record.images.add(image_id=result_image, seed=1, width=8, height=8)

    jobs.update(TENANT, done_id, succeed)
    # Turns with uploads (chat with input images is not served yet, so write them directly):
    # one upload only this conversation uses, one another conversation uses too.
    own_upload, shared_upload = blobs.put(TENANT, b"own"), blobs.put(TENANT, b"shared")
    turn = StoredTurn(role="user", text="x", image_ids=[own_upload, shared_upload], created_at=1)
    other = StoredTurn(role="user", text="y", image_ids=[shared_upload], created_at=1)

    async def append_turns() -> None:
        # The gateway's own store (asyncio), so the references are kept as it keeps them.
        async with aioredis.Redis.from_url(REDIS_URL) as client:
            conversations = ConversationStore(client, keys, ttl_s=60)
            await conversations.append(TENANT, conversation_id, [turn])
            await conversations.append(TENANT, "conv_other", [other])

    asyncio.run(append_turns())

    response = api.delete(f"/v1/conversations/{conversation_id}")
    assert response.status_code == 204 and response.content == b""

    assert_error(api.get(f"/v1/conversations/{conversation_id}"), 404)
    for job_id in (done_id, queued_id):
        assert_error(api.get(f"/v1/jobs/{job_id}"), 404)
    assert_error(api.get(f"/v1/images/{result_image}"), 404)
    assert_error(api.get(f"/v1/images/{own_upload}"), 404)
    assert api.get(f"/v1/images/{shared_upload}").status_code == 200
    assert not redis_client.exists(keys.blob_refs(TENANT, own_upload))
    assert redis_client.smembers(keys.blob_refs(TENANT, shared_upload)) == {b"conv_other"}

    assert_error(api.delete(f"/v1/conversations/{conversation_id}"), 404)
    # The last conversation using the shared upload takes it along.
    assert api.delete("/v1/conversations/conv_other").status_code == 204
    assert_error(api.get(f"/v1/images/{shared_upload}"), 404)


def test_delete_unknown_conversation_is_404(api: httpx.Client) -> None:
    assert "conv_nope" in assert_error(api.delete("/v1/conversations/conv_nope"), 404)
