"""Listing and lifecycle over the real gateway (uvicorn subprocess), real Redis and the
scripted mllm, with API keys of several tenants: GET /v1/jobs (order, filters, cursor
pages), GET /v1/conversations, DELETE /v1/jobs/{id}, DELETE /v1/images/{id}, and the
queue position of queued jobs.

No worker runs here, so submitted jobs stay queued; where a job must have run, the test
plays the worker through the same stores the worker uses.
"""

from __future__ import annotations

import io
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis
from PIL import Image

from services.common import job_states
from services.common.blob_store import RedisBlobStore
from services.common.contract import GenerationRequest, JobRecord, JobStatus, Task
from services.common.job_store import JobStore
from services.common.redis_keys import RedisKeys
from tests.support.http_api import assert_error
from tests.support.images import png_b64
from tests.support.scripted_mllm import ScriptedMllm
from tests.support.services import HttpService, Namespace, create_api_key, start_gateway

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]

TENANTS = ("acme", "globex", "initech", "umbrella")


@pytest.fixture(scope="module")
def gateway(auth_gateway: HttpService) -> HttpService:
    """The module's gateway: API keys required (conftest.py)."""
    return auth_gateway


@pytest.fixture(scope="module")
def clients(gateway: HttpService, namespace: Namespace) -> Iterator[dict[str, httpx.Client]]:
    made = {
        tenant: httpx.Client(
            base_url=gateway.url,
            timeout=60,
            headers={"Authorization": f"Bearer {create_api_key(namespace, tenant)}"},
        )
        for tenant in TENANTS
    }
    yield made
    for client in made.values():
        client.close()


@pytest.fixture(scope="module")
def keys(namespace: Namespace) -> RedisKeys:
    return RedisKeys(namespace.key_prefix)


def _submit(api: httpx.Client, prompt: str, **fields: Any) -> str:
    response = api.post("/v1/images", json={"prompt": prompt, **fields})
    assert response.status_code == 202, response.text
    return str(response.json()["id"])


def _all_pages(api: httpx.Client, path: str, **params: Any) -> list[list[dict[str, Any]]]:
    pages: list[list[dict[str, Any]]] = []
    cursor: str | None = None
    while True:
        query = {**params, **({"cursor": cursor} if cursor else {})}
        response = api.get(path, params=query)
        assert response.status_code == 200, response.text
        body = response.json()
        pages.append(body["data"])
        cursor = body["next_cursor"]
        if cursor is None:
            return pages
        assert len(pages) < 50, "pagination does not end"


def _ids(items: list[dict[str, Any]]) -> list[str]:
    return [item["id"] for item in items]


# --------------------------------------------------------------------------- jobs


def test_jobs_are_listed_newest_first_across_pages(clients: dict[str, httpx.Client]) -> None:
    api = clients["acme"]
    created = [_submit(api, f"owl {i}") for i in range(5)]

    first = api.get("/v1/jobs", params={"limit": 2}).json()
    assert _ids(first["data"]) == created[::-1][:2]
    assert first["next_cursor"] is not None
    assert all(job["status"] == "queued" for job in first["data"])

    # A job created while the client pages through neither repeats nor shifts items.
    newer = _submit(api, "a newer owl")
    rest = _all_pages(api, "/v1/jobs", limit=2, cursor=first["next_cursor"])
    assert [len(page) for page in rest] == [2, 1]
    assert _ids(first["data"]) + [i for page in rest for i in _ids(page)] == created[::-1]

    everything = api.get("/v1/jobs", params={"limit": 100}).json()
    assert _ids(everything["data"]) == [newer, *created[::-1]]
    assert everything["next_cursor"] is None

    # The default page is 20 jobs.
    for i in range(20):
        _submit(api, f"bulk {i}")
    default = api.get("/v1/jobs").json()
    assert len(default["data"]) == 20 and default["next_cursor"] is not None


def test_jobs_are_filtered(clients: dict[str, httpx.Client], namespace: Namespace) -> None:
    api = clients["globex"]
    first = _submit(api, "a fox")
    second = _submit(api, "a fox at night")
    assert api.post(f"/v1/jobs/{first}/cancel").status_code == 200

    canceled = api.get("/v1/jobs", params={"status": "canceled"}).json()
    assert _ids(canceled["data"]) == [first]
    queued = api.get("/v1/jobs", params={"status": "queued"}).json()
    assert first not in _ids(queued["data"]) and second in _ids(queued["data"])
    assert api.get("/v1/jobs", params={"task": "inpaint"}).json()["data"] == []
    assert {first, second} <= set(_ids(api.get("/v1/jobs", params={"task": "t2i"}).json()["data"]))

    # Filtered pages follow the cursor too.
    pages = _all_pages(api, "/v1/jobs", limit=1, status="queued")
    assert [_ids(page) for page in pages if page] == [[second]]


def test_jobs_are_filtered_by_conversation(
    clients: dict[str, httpx.Client], mllm: ScriptedMllm
) -> None:
    api = clients["globex"]
    mllm.script("Here. <gen_image>a heron</gen_image>", "Again. <gen_image>a heron</gen_image>")
    chat = api.post("/v1/chat", json={"message": "draw a heron"}).json()
    conversation_id = chat["conversation_id"]
    api.post("/v1/chat", json={"message": "another heron"})  # another conversation
    _submit(api, "not from a chat")

    listed = api.get("/v1/jobs", params={"conversation_id": conversation_id}).json()
    assert _ids(listed["data"]) == _ids(chat["jobs"])
    assert all(job["conversation_id"] == conversation_id for job in listed["data"])


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"cursor": "not-a-cursor"}, "cursor"),
        ({"cursor": "eyJ4Ijox"}, "cursor"),  # base64 of broken JSON
        ({"status": "sleeping"}, "status"),
        ({"task": "paint"}, "task"),
        ({"limit": 0}, "limit"),
        ({"limit": 101}, "limit"),
    ],
)
def test_bad_listing_parameters_are_422(
    clients: dict[str, httpx.Client], params: dict[str, Any], field: str
) -> None:
    assert_error(clients["acme"].get("/v1/jobs", params=params), 422, field)


def test_a_cursor_of_another_listing_is_422(
    clients: dict[str, httpx.Client], mllm: ScriptedMllm
) -> None:
    api = clients["umbrella"]
    mllm.script("One.", "Two.")
    api.post("/v1/chat", json={"message": "hello"})
    api.post("/v1/chat", json={"message": "hello again"})
    cursor = api.get("/v1/conversations", params={"limit": 1}).json()["next_cursor"]
    assert cursor is not None
    assert_error(api.get("/v1/jobs", params={"cursor": cursor}), 422, "cursor")


def test_listings_are_tenant_scoped(clients: dict[str, httpx.Client]) -> None:
    acme, globex = clients["acme"], clients["globex"]
    job_id = _submit(acme, "acme's secret owl")
    assert job_id not in _ids(globex.get("/v1/jobs", params={"limit": 100}).json()["data"])
    assert job_id in _ids(acme.get("/v1/jobs", params={"limit": 100}).json()["data"])
    assert_error(globex.get(f"/v1/jobs/{job_id}"), 404)
    assert_error(globex.delete(f"/v1/jobs/{job_id}"), 404)
    assert acme.get(f"/v1/jobs/{job_id}").status_code == 200


def test_expired_jobs_are_left_out(
    clients: dict[str, httpx.Client], redis_client: redis.Redis, keys: RedisKeys
) -> None:
    api = clients["initech"]
    kept, expired = _submit(api, "kept"), _submit(api, "expired")
    redis_client.delete(keys.job("initech", expired))  # as when its TTL ran out
    listed = _ids(api.get("/v1/jobs", params={"limit": 100}).json()["data"])
    assert kept in listed and expired not in listed


# --------------------------------------------------------------------------- deletes


def _play_worker_success(
    redis_client: redis.Redis, keys: RedisKeys, tenant: str, job_id: str, run_s: float
) -> str:
    """Mark the job succeeded with one stored result image, as the worker would."""
    blobs = RedisBlobStore(redis_client, keys, ttl_s=600)
    out = Image.new("RGB", (8, 8), (200, 10, 10))
    buffer = io.BytesIO()
    out.save(buffer, format="PNG")
    image_id = blobs.put(tenant, buffer.getvalue())

    def finish(record: JobRecord) -> None:
        now = time.time()
        record.status = JobStatus.JOB_STATUS_SUCCEEDED
        record.timings.started_at = now - run_s
        record.timings.finished_at = now
        image = record.images.add()
        image.image_id, image.seed, image.width, image.height = image_id, 1, 8, 8

    assert JobStore(redis_client, keys, ttl_s=600).update(tenant, job_id, finish) is not None
    return image_id


def test_delete_a_finished_job_and_its_images(
    clients: dict[str, httpx.Client], redis_client: redis.Redis, keys: RedisKeys
) -> None:
    api = clients["acme"]
    job_id = _submit(api, "an owl to delete")
    image_id = _play_worker_success(redis_client, keys, "acme", job_id, run_s=1.0)
    assert api.get(f"/v1/images/{image_id}").status_code == 200

    response = api.delete(f"/v1/jobs/{job_id}")
    assert response.status_code == 204 and response.content == b""
    assert_error(api.get(f"/v1/jobs/{job_id}"), 404)
    assert_error(api.get(f"/v1/images/{image_id}"), 404)
    assert_error(api.delete(f"/v1/jobs/{job_id}"), 404)
    assert job_id not in _ids(api.get("/v1/jobs", params={"limit": 100}).json()["data"])


def test_delete_a_queued_job_cancels_it(
    clients: dict[str, httpx.Client], redis_client: redis.Redis, keys: RedisKeys
) -> None:
    api = clients["acme"]
    job_id = _submit(api, "an owl never made")
    assert api.delete(f"/v1/jobs/{job_id}").status_code == 204
    assert_error(api.get(f"/v1/jobs/{job_id}"), 404)
    assert redis_client.exists(keys.job("acme", job_id)) == 0
    assert_error(api.delete("/v1/jobs/job_unknown"), 404)


def test_delete_a_running_job_stops_it(
    clients: dict[str, httpx.Client], redis_client: redis.Redis, keys: RedisKeys
) -> None:
    api = clients["acme"]
    job_id = _submit(api, "an owl half made")
    store = JobStore(redis_client, keys, ttl_s=600)

    def start(record: JobRecord) -> None:
        record.status = JobStatus.JOB_STATUS_RUNNING
        record.timings.started_at = time.time()

    assert store.update("acme", job_id, start) is not None
    assert api.get(f"/v1/jobs/{job_id}").json()["queue_position"] is None  # running
    assert api.delete(f"/v1/jobs/{job_id}").status_code == 204
    # The worker's next progress write finds the record gone, and so stops the job.
    assert store.update("acme", job_id, lambda record: None) is None
    assert_error(api.get(f"/v1/jobs/{job_id}"), 404)


def test_delete_an_upload_and_a_generated_image(
    clients: dict[str, httpx.Client], redis_client: redis.Redis, keys: RedisKeys
) -> None:
    acme, globex = clients["acme"], clients["globex"]
    upload = acme.post(
        "/v1/uploads", json={"image": png_b64(Image.new("RGB", (64, 64), (0, 90, 200)))}
    )
    assert upload.status_code == 201, upload.text
    upload_id = upload.json()["id"]
    generated_id = _play_worker_success(
        redis_client, keys, "acme", _submit(acme, "an owl"), run_s=1.0
    )

    for image_id in (upload_id, generated_id):
        assert_error(globex.delete(f"/v1/images/{image_id}"), 404)  # another tenant's
        assert acme.get(f"/v1/images/{image_id}").status_code == 200
        response = acme.delete(f"/v1/images/{image_id}")
        assert response.status_code == 204 and response.content == b""
        assert_error(acme.get(f"/v1/images/{image_id}"), 404)
        assert redis_client.exists(keys.blob("acme", image_id)) == 0
        assert_error(acme.delete(f"/v1/images/{image_id}"), 404)


# --------------------------------------------------------------------------- queue


def test_queued_jobs_show_their_queue_position(
    clients: dict[str, httpx.Client], redis_client: redis.Redis, keys: RedisKeys
) -> None:
    api = clients["umbrella"]
    default_run_s = 10.0  # LLMGA_JOB_DURATION_ESTIMATE_S: umbrella has no finished job
    queued = [_submit(api, f"a queued owl {i}") for i in range(3)]
    views = [api.get(f"/v1/jobs/{job_id}").json() for job_id in queued]
    positions = [view["queue_position"] for view in views]
    # Earlier jobs (of every tenant) are ahead; each later job is one further back.
    assert positions[0] >= 0 and positions == [positions[0] + i for i in range(3)]
    for view in views:
        assert view["estimated_start_s"] == pytest.approx(view["queue_position"] * default_run_s)

    # The listing shows the same.
    listed = {j["id"]: j for j in api.get("/v1/jobs", params={"limit": 100}).json()["data"]}
    assert [listed[job_id]["queue_position"] for job_id in queued] == positions

    # The estimate follows the tenant's measured run times.
    done = _submit(api, "a finished owl")
    _play_worker_success(redis_client, keys, "umbrella", done, run_s=4.0)
    finished = api.get(f"/v1/jobs/{done}").json()
    assert finished["queue_position"] is None and finished["estimated_start_s"] is None
    last = api.get(f"/v1/jobs/{queued[-1]}").json()
    assert last["estimated_start_s"] == pytest.approx(last["queue_position"] * 4.0, abs=0.01)

    # A canceled job leaves the estimate; the jobs behind it keep their place.
    assert api.post(f"/v1/jobs/{queued[0]}/cancel").status_code == 200
    assert api.get(f"/v1/jobs/{queued[0]}").json()["queue_position"] is None


# --------------------------------------------------------------------------- conversations


def test_conversations_are_listed_by_latest_update(
    clients: dict[str, httpx.Client], mllm: ScriptedMllm
) -> None:
    api = clients["initech"]
    mllm.script("One.", "Two.", "Three.", "Four.")
    ids = [
        api.post("/v1/chat", json={"message": f"conversation {i}"}).json()["conversation_id"]
        for i in range(3)
    ]
    pages = _all_pages(api, "/v1/conversations", limit=2)
    assert [_ids(page) for page in pages] == [ids[::-1][:2], ids[::-1][2:]]
    assert pages[0][0]["title"] == "conversation 2" and pages[0][0]["turn_count"] == 2

    # A new turn moves the conversation to the front.
    api.post("/v1/chat", json={"message": "more", "conversation_id": ids[0]})
    listed = api.get("/v1/conversations").json()
    assert _ids(listed["data"]) == [ids[0], ids[2], ids[1]]
    assert listed["data"][0]["turn_count"] == 4

    # Deleted ones leave the listing; other tenants see none of them.
    assert api.delete(f"/v1/conversations/{ids[1]}").status_code == 204
    assert _ids(api.get("/v1/conversations").json()["data"]) == [ids[0], ids[2]]
    others = clients["acme"].get("/v1/conversations").json()["data"]
    assert not set(ids) & set(_ids(others))
    assert_error(api.get("/v1/conversations", params={"cursor": "%%%"}), 422, "cursor")


def test_an_unreadable_broker_leaves_the_queue_fields_null(
    namespace: Namespace,
    scripted: ScriptedMllm,
    redis_client: redis.Redis,
    keys: RedisKeys,
    tmp_path: Path,
) -> None:
    """With the broker on another Redis that is down, a queued job is still answered."""
    env = {
        **namespace.env(),
        "LLMGA_MLLM_BASE_URL": scripted.base_url,
        "LLMGA_BROKER_URL": "redis://127.0.0.1:1/0",  # nothing listens there
    }
    request = GenerationRequest(
        job_id=f"job_{uuid.uuid4().hex}", tenant="local", task=Task.TASK_T2I
    )
    assert JobStore(redis_client, keys, ttl_s=600).create(job_states.new_record(request))
    with start_gateway(env, tmp_path) as service, httpx.Client(base_url=service.url) as api:
        response = api.get(f"/v1/jobs/{request.job_id}")
        assert response.status_code == 200, response.text
        view = response.json()
        assert view["status"] == "queued"
        assert view["queue_position"] is None and view["estimated_start_s"] is None
        assert _ids(api.get("/v1/jobs").json()["data"]) == [request.job_id]
