"""The real gateway (uvicorn subprocess) against real Redis and the scripted mllm.

No worker runs here: jobs are checked as records in Redis and messages in the Celery
queue (end-to-end tests with the real worker live elsewhere).
"""

from __future__ import annotations

import base64
import io
import json
import struct
import threading
import time
import zlib
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import redis
from fastapi.testclient import TestClient
from PIL import Image

from services.common.contract import (
    GENERATE_TASK_NAME,
    JobStatus,
    Task,
    decode_request,
)
from services.common.job_store import JobStore
from services.common.redis_keys import RedisKeys
from services.common.workers import WorkerRegistry
from services.gateway.app import create_app
from services.gateway.mllm.generation_tags import tidy_text
from services.gateway.settings import GatewaySettings
from tests.support.http_api import assert_error, server_sent_events
from tests.support.images import png_b64
from tests.support.scripted_mllm import ScriptedMllm
from tests.support.services import REDIS_URL, HttpService, Namespace, start_gateway

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

MAX_UPLOAD_BYTES = 256 * 1024
MAX_REQUEST_BYTES = 1024 * 1024
MLLM_TIMEOUT_S = 1.5


# --------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def gateway(
    namespace: Namespace, scripted: ScriptedMllm, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[HttpService]:
    env = {
        **namespace.env(),
        "LLMGA_MLLM_BASE_URL": scripted.base_url,
        "LLMGA_MLLM_TIMEOUT_S": str(MLLM_TIMEOUT_S),
        "LLMGA_MAX_UPLOAD_BYTES": str(MAX_UPLOAD_BYTES),
        "LLMGA_MAX_REQUEST_BYTES": str(MAX_REQUEST_BYTES),
        # No worker ends (and releases) jobs here, and these tests read every job's message
        # from the queue: no per-tenant cap holding messages back (test_tenant_fairness.py).
        "LLMGA_TENANT_MAX_IN_FLIGHT": "0",
    }
    with start_gateway(env, tmp_path_factory.mktemp("logs")) as process:
        yield process


@pytest.fixture
def api(gateway: HttpService) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=gateway.url, timeout=30) as client:
        yield client


# --------------------------------------------------------------------------- helpers


def _bomb_b64(width: int, height: int) -> str:
    """A PNG header declaring width x height, with almost no data."""

    def chunk(kind: bytes, payload: bytes) -> bytes:
        crc = struct.pack(">I", zlib.crc32(kind + payload) & 0xFFFFFFFF)
        return struct.pack(">I", len(payload)) + kind + payload + crc

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    png = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0"))
    return base64.b64encode(png + chunk(b"IEND", b"")).decode()


def _queued_messages(client: redis.Redis, queue: str) -> dict[str, dict[str, Any]]:
    """Celery messages in the Redis list `queue`, by task id."""
    messages = {}
    for raw in client.lrange(queue, 0, -1):
        message = json.loads(raw)
        messages[message["headers"]["id"]] = message
    return messages


def _message_request(message: dict[str, Any]) -> Any:
    args, _kwargs, _embed = json.loads(base64.b64decode(message["body"]))
    assert len(args) == 1
    return decode_request(args[0])


# --------------------------------------------------------------------------- chat


def test_chat_creates_conversation_and_one_job_per_prompt(
    api: httpx.Client,
    mllm: ScriptedMllm,
    jobs: JobStore,
    redis_client: redis.Redis,
    namespace: Namespace,
) -> None:
    mllm.script(
        "Here are two takes.\n<gen_image> a red fox in fresh snow, golden hour </gen_image>\n"
        "and <gen_img>a fox cub asleep in a burrow</gen_img> Enjoy!"
    )
    response = api.post("/v1/chat", json={"message": "draw a fox", "seed": 7, "n": 2})
    assert response.status_code == 200, response.text
    body = response.json()

    assert body["reply"] == "Here are two takes.\n\nand Enjoy!"
    assert "<gen" not in body["reply"]
    assert body["generation_prompts"] == [
        "a red fox in fresh snow, golden hour",
        "a fox cub asleep in a burrow",
    ]
    assert len(body["jobs"]) == 2
    conversation_id = body["conversation_id"]

    queued = _queued_messages(redis_client, namespace.queue_name)
    for view, prompt in zip(body["jobs"], body["generation_prompts"], strict=True):
        assert view["status"] == "queued" and view["task"] == "t2i"
        assert view["prompt"] == prompt and view["conversation_id"] == conversation_id
        record = jobs.get("local", view["id"])
        assert record is not None and record.status == JobStatus.JOB_STATUS_QUEUED
        assert record.request.prompt == prompt and record.request.task == Task.TASK_T2I
        assert record.request.seed == 7 and record.request.n == 2
        assert record.timings.created_at > 0
        message = queued[view["id"]]
        assert message["headers"]["task"] == GENERATE_TASK_NAME
        assert _message_request(message) == record.request

    conversation = api.get(f"/v1/conversations/{conversation_id}").json()
    assert [t["role"] for t in conversation["turns"]] == ["user", "assistant"]
    assert conversation["turns"][0]["text"] == "draw a fox"
    assert conversation["turns"][1]["text"] == body["reply"]
    assert conversation["turns"][1]["job_ids"] == [j["id"] for j in body["jobs"]]
    assert conversation["turns"][1]["generation_prompts"] == body["generation_prompts"]

    job = api.get(f"/v1/jobs/{body['jobs'][0]['id']}")
    assert job.status_code == 200 and job.json()["status"] == "queued"
    assert job.json()["progress"] == {"step": 0, "total": 0}


def test_second_turn_sends_the_first_to_the_mllm(api: httpx.Client, mllm: ScriptedMllm) -> None:
    first_reply = "A lighthouse! <gen_image>a lighthouse in a storm</gen_image>"
    mllm.script(first_reply, "Now at night. <gen_image>a lighthouse at night</gen_image>")
    first = api.post("/v1/chat", json={"message": "a lighthouse please"}).json()
    second = api.post(
        "/v1/chat",
        json={"message": "now make it night", "conversation_id": first["conversation_id"]},
    )
    assert second.status_code == 200, second.text
    assert second.json()["conversation_id"] == first["conversation_id"]

    sent = mllm.requests()
    assert [m["role"] for m in sent[1]["messages"]] == ["user", "assistant", "user"]
    # The model sees its own raw reply, tags included.
    assert sent[1]["messages"][0]["content"] == "a lighthouse please"
    assert sent[1]["messages"][1]["content"] == first_reply
    assert sent[1]["messages"][2]["content"] == "now make it night"
    assert sent[1]["model"] == "scripted-llmga"

    turns = api.get(f"/v1/conversations/{first['conversation_id']}").json()["turns"]
    assert len(turns) == 4


def test_reply_without_tags_starts_no_job(api: httpx.Client, mllm: ScriptedMllm) -> None:
    mllm.script("Hello! How can I help?")
    body = api.post("/v1/chat", json={"message": "hi"}).json()
    assert body["reply"] == "Hello! How can I help?"
    assert body["jobs"] == [] and body["generation_prompts"] == []


def test_concurrent_turns_both_land(api: httpx.Client, mllm: ScriptedMllm) -> None:
    conversation_id = api.post("/v1/chat", json={"message": "start"}).json()["conversation_id"]
    mllm.script(delay_s=0.3)
    results: list[int] = []

    def turn(text: str) -> None:
        response = api.post("/v1/chat", json={"message": text, "conversation_id": conversation_id})
        results.append(response.status_code)

    threads = [threading.Thread(target=turn, args=(f"turn {i}",)) for i in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert results == [200, 200]
    turns = api.get(f"/v1/conversations/{conversation_id}").json()["turns"]
    assert sorted(t["text"] for t in turns if t["role"] == "user") == ["start", "turn 0", "turn 1"]


def test_unknown_conversation_is_404_and_mllm_not_called(
    api: httpx.Client, mllm: ScriptedMllm
) -> None:
    response = api.post("/v1/chat", json={"message": "hi", "conversation_id": "conv_nope"})
    assert "conv_nope" in assert_error(response, 404)
    assert mllm.requests() == []


def test_mllm_error_status_is_502_and_nothing_is_stored(
    api: httpx.Client, mllm: ScriptedMllm
) -> None:
    conversation_id = api.post("/v1/chat", json={"message": "start"}).json()["conversation_id"]
    mllm.script(status=500)
    response = api.post("/v1/chat", json={"message": "again", "conversation_id": conversation_id})
    assert_error(response, 502)
    assert len(api.get(f"/v1/conversations/{conversation_id}").json()["turns"]) == 2


def test_mllm_timeout_is_504_with_retry_after_and_nothing_is_stored(
    api: httpx.Client, mllm: ScriptedMllm
) -> None:
    conversation_id = api.post("/v1/chat", json={"message": "start"}).json()["conversation_id"]
    mllm.script(delay_s=MLLM_TIMEOUT_S + 1)
    response = api.post("/v1/chat", json={"message": "slow", "conversation_id": conversation_id})
    assert_error(response, 504)
    assert int(response.headers["Retry-After"]) > 0
    # The turn is not half-written: the conversation is as it was, the client retries.
    assert len(api.get(f"/v1/conversations/{conversation_id}").json()["turns"]) == 2


def test_mllm_unreachable_is_503(namespace: Namespace) -> None:
    # In-process app pointed at a closed port: a connection error, not a timeout.
    settings = GatewaySettings(
        redis_url=REDIS_URL,
        key_prefix=namespace.key_prefix,
        queue_name=namespace.queue_name,
        mllm_base_url="http://127.0.0.1:9/v1",
        mllm_model="any",
    )
    with TestClient(create_app(settings)) as client:
        response = client.post("/v1/chat", json={"message": "hello"})
        assert response.status_code == 503 and response.json()["error"]["message"]
        assert int(response.headers["Retry-After"]) > 0


def test_redis_down_is_503_without_internals() -> None:
    settings = GatewaySettings(
        redis_url="redis://127.0.0.1:9/0", mllm_base_url="http://127.0.0.1:9/v1"
    )
    with TestClient(create_app(settings), raise_server_exceptions=False) as client:
        response = client.get("/v1/jobs/job_x")
        assert response.status_code == 503 and int(response.headers["Retry-After"]) > 0
        assert response.json()["error"]["message"] == (
            "the state store is unavailable; try again later"
        )
        readiness = client.get("/readyz").json()
        assert readiness["checks"]["redis"]["ok"] is False


@pytest.mark.parametrize(
    ("payload", "field", "needle"),
    [
        ({"message": "edit it", "task": "edit"}, "images", "edit needs an input image"),
        ({"message": "fix it", "task": "restore"}, "task", "POST /v1/images only"),
        ({"message": "x", "edit_method": "p2p"}, "images", "edit needs an input image"),
        ({"message": "x", "control": {}}, "images", "controlnet needs an input image"),
    ],
)
def test_chat_image_tasks_without_their_inputs_are_422_before_the_mllm_is_asked(
    api: httpx.Client, mllm: ScriptedMllm, payload: dict[str, Any], field: str, needle: str
) -> None:
    message = assert_error(api.post("/v1/chat", json=payload), 422, field)
    assert needle in message
    assert mllm.requests() == []


# --------------------------------------------------------------------------- chat streaming


def _stream_chat(api: httpx.Client, payload: dict[str, Any]) -> list[tuple[str, str]]:
    """POST /v1/chat with stream=true; all (event, data) pairs, comments left out."""
    with api.stream("POST", "/v1/chat", json={**payload, "stream": True}) as response:
        assert response.status_code == 200, response.read()
        assert response.headers["content-type"].startswith("text/event-stream")
        return [(event, data) for event, data in server_sent_events(response) if event]


def test_chat_stream_sends_the_visible_reply_then_the_jobs_then_done(
    api: httpx.Client, mllm: ScriptedMllm, jobs: JobStore
) -> None:
    mllm.script("Here you go! <gen_image> a SECRET red fox </gen_image> Enjoy the <b>fox</b>.")
    events = _stream_chat(api, {"message": "a fox", "seed": 4})

    assert events[-1] == ("message", "[DONE]")
    name, data = events[-2]
    assert name == "chat.result"
    result = json.loads(data)
    chunks = [json.loads(data) for name, data in events[:-2]]
    assert {name for name, _ in events[:-2]} == {"message"}
    assert all(
        c["object"] == "chat.completion.chunk" and c["id"] == chunks[0]["id"] for c in chunks
    )
    assert chunks[0]["choices"][0]["delta"]["role"] == "assistant"
    assert chunks[-1]["choices"][0]["finish_reason"] == "stop"
    text = "".join(c["choices"][0]["delta"]["content"] or "" for c in chunks)
    assert len(chunks) > 5, "the reply should arrive in pieces"
    assert "SECRET" not in text and "gen_image" not in text
    assert tidy_text(text) == result["reply"] == "Here you go! Enjoy the <b>fox</b>."

    # The same turn as without streaming: one job per prompt, both turns stored.
    assert result["generation_prompts"] == ["a SECRET red fox"]
    [job] = result["jobs"]
    record = jobs.get("local", job["id"])
    assert record is not None and record.request.prompt == "a SECRET red fox"
    assert record.request.seed == 4
    conversation = api.get(f"/v1/conversations/{result['conversation_id']}").json()
    assert [t["job_ids"] for t in conversation["turns"]] == [[], [job["id"]]]
    assert mllm.requests()[-1]["stream"] is True


def test_chat_stream_failures_before_the_stream_are_http_errors(
    api: httpx.Client, mllm: ScriptedMllm
) -> None:
    mllm.script(status=500)
    assert_error(api.post("/v1/chat", json={"message": "hi", "stream": True}), 502)
    response = api.post(
        "/v1/chat", json={"message": "hi", "stream": True, "conversation_id": "conv_x"}
    )
    assert_error(response, 404)
    response = api.post(
        "/v1/chat",
        json={"message": "hi", "stream": True},
        headers={"Idempotency-Key": "stream-key"},
    )
    assert_error(response, 422, "Idempotency-Key")


# --------------------------------------------------------------------------- bad input


@pytest.mark.parametrize(
    ("payload", "status", "field"),
    [
        ({"message": ""}, 422, "message"),
        ({"message": "   \n "}, 422, "message"),
        ({}, 422, "message"),
        ({"message": "x" * 4001}, 422, "message"),
        ({"message": "x", "n": 0}, 422, "n"),
        ({"message": "x", "n": 5}, 422, "n"),
        ({"message": "x", "steps": 151}, 422, "steps"),
        ({"message": "x", "steps": 0}, 422, "steps"),
        ({"message": "x", "width": 4096}, 422, "width"),
        ({"message": "x", "width": 32}, 422, "width"),
        ({"message": "x", "height": 515}, 422, "height"),
        ({"message": "x", "guidance_scale": -1}, 422, "guidance_scale"),
        ({"message": "x", "seed": -5}, 422, "seed"),
        ({"message": "x", "task": "paint"}, 422, "task"),
        ({"message": "x", "surprise": True}, 422, "surprise"),
        ({"message": 5}, 422, "message"),
    ],
)
def test_chat_bad_input_is_4xx_naming_the_field(
    api: httpx.Client, mllm: ScriptedMllm, payload: dict[str, Any], status: int, field: str
) -> None:
    assert_error(api.post("/v1/chat", json=payload), status, field)
    assert mllm.requests() == []


@pytest.mark.parametrize(
    ("content", "content_type"),
    [
        (b"{not json", "application/json"),
        (b"", "application/json"),
        (b"[1, 2]", "application/json"),
        (b'{"message": "hi"}', "text/plain"),
        (b"\xff\xfe", "application/json"),
    ],
)
def test_malformed_body_is_400(api: httpx.Client, content: bytes, content_type: str) -> None:
    response = api.post("/v1/chat", content=content, headers={"content-type": content_type})
    assert_error(response, 400)


def test_request_body_over_limit_is_413(api: httpx.Client) -> None:
    response = api.post(
        "/v1/uploads",
        content=b'{"image": "' + b"A" * MAX_REQUEST_BYTES + b'"}',
        headers={"content-type": "application/json"},
    )
    assert_error(response, 413)


def test_chunked_body_over_limit_is_413(api: httpx.Client) -> None:
    def chunks() -> Iterator[bytes]:
        yield b'{"image": "'
        for _ in range(MAX_REQUEST_BYTES // 10_000 + 2):
            yield b"A" * 10_000
        yield b'"}'

    # A generator body is sent chunked, without Content-Length.
    response = api.post(
        "/v1/uploads", content=chunks(), headers={"content-type": "application/json"}
    )
    assert_error(response, 413)


def test_broker_down_is_503_and_the_job_is_marked_failed(
    namespace: Namespace, jobs: JobStore, redis_client: redis.Redis
) -> None:
    settings = GatewaySettings(
        redis_url=REDIS_URL,
        broker_url="redis://127.0.0.1:9/0",
        key_prefix=namespace.key_prefix,
        queue_name=namespace.queue_name,
    )
    before = set(redis_client.scan_iter(match=f"{namespace.key_prefix}:local:job:*"))
    with TestClient(create_app(settings)) as client:
        response = client.post("/v1/images", json={"prompt": "x"})
    assert response.status_code == 503
    assert "queue" in response.json()["error"]["message"]
    (key,) = set(redis_client.scan_iter(match=f"{namespace.key_prefix}:local:job:*")) - before
    record = jobs.get("local", key.decode().rsplit(":", 1)[1])
    assert record is not None and record.status == JobStatus.JOB_STATUS_FAILED


@pytest.mark.parametrize(
    ("payload", "status"),
    [
        ({"prompt": "x", "n": 9}, 422),
        ({"prompt": "x", "width": 100}, 422),
        ({"prompt": "x", "height": 4000}, 422),
        ({"prompt": "x", "steps": 1000}, 422),
        ({"prompt": ""}, 422),
        ({"prompt": "x" * 4001}, 422),
        ({"prompt": "x", "negative_prompt": "y" * 4001}, 422),
        ({"task": "t2i"}, 422),
    ],
)
def test_images_bad_input_is_422(api: httpx.Client, payload: dict[str, Any], status: int) -> None:
    assert_error(api.post("/v1/images", json=payload), status)


# --------------------------------------------------------------------------- images & jobs


def test_images_t2i_is_queued(
    api: httpx.Client, jobs: JobStore, redis_client: redis.Redis, namespace: Namespace
) -> None:
    payload = {
        "prompt": "a watercolor owl",
        "negative_prompt": "blurry",
        "width": 512,
        "height": 768,
        "steps": 20,
        "guidance_scale": 0,
        "seed": 123,
    }
    response = api.post("/v1/images", json=payload)
    assert response.status_code == 202, response.text
    body = response.json()
    assert response.headers["location"] == f"/v1/jobs/{body['id']}"
    assert body["status"] == "queued" and body["refined_prompt"] is None

    record = jobs.get("local", body["id"])
    assert record is not None
    request = record.request
    assert (request.prompt, request.negative_prompt) == ("a watercolor owl", "blurry")
    assert (request.width, request.height, request.steps, request.n) == (512, 768, 20, 1)
    assert request.HasField("guidance_scale") and request.guidance_scale == 0
    assert request.seed == 123
    assert body["id"] in _queued_messages(redis_client, namespace.queue_name)


def test_images_defaults_leave_profile_values_unset(api: httpx.Client, jobs: JobStore) -> None:
    body = api.post("/v1/images", json={"prompt": "a cat"}).json()
    record = jobs.get("local", body["id"])
    assert record is not None
    request = record.request
    assert (request.width, request.height, request.steps, request.n) == (0, 0, 0, 1)
    assert not request.HasField("guidance_scale") and not request.HasField("seed")


def test_images_refine_uses_the_mllm_prompt(
    api: httpx.Client, mllm: ScriptedMllm, jobs: JobStore
) -> None:
    mllm.script("Sure. <gen_image>a majestic snowy owl, watercolor, soft light</gen_image>")
    body = api.post("/v1/images", json={"prompt": "owl", "refine": True}).json()
    assert body["refined_prompt"] == "a majestic snowy owl, watercolor, soft light"
    assert body["prompt"] == body["refined_prompt"] and body["refine_note"] is None
    assert "owl" in mllm.requests()[0]["messages"][-1]["content"]
    record = jobs.get("local", body["id"])
    assert record is not None and record.request.prompt == body["refined_prompt"]


def test_images_refine_without_a_prompt_keeps_the_original(
    api: httpx.Client, mllm: ScriptedMllm
) -> None:
    mllm.script("I would rather chat.")
    body = api.post("/v1/images", json={"prompt": "owl", "refine": True}).json()
    assert body["prompt"] == "owl" and body["refined_prompt"] is None
    assert body["refine_note"]


@pytest.mark.parametrize(
    ("task", "field", "message"),
    [
        ("edit", "image", "edit needs an input image"),
        ("controlnet", "image", "controlnet needs an input image"),
        ("restore", "prompt", "restore takes no prompt"),
    ],
)
def test_images_image_tasks_without_an_image_are_422(
    api: httpx.Client, task: str, field: str, message: str
) -> None:
    response = api.post("/v1/images", json={"prompt": "x", "task": task})
    assert assert_error(response, 422, field) == message


def test_unknown_ids_are_404(api: httpx.Client) -> None:
    for path in ("/v1/jobs/job_nope", "/v1/conversations/conv_nope", "/v1/images/img_nope"):
        assert "nope" in assert_error(api.get(path), 404)
    assert_error(api.get("/v1/nothing-here"), 404)


# --------------------------------------------------------------------------- uploads


def test_upload_round_trip(api: httpx.Client) -> None:
    response = api.post(
        "/v1/uploads",
        json={"image": "data:image/png;base64," + png_b64(Image.new("RGB", (40, 24), "green"))},
    )
    assert response.status_code == 201, response.text
    body = response.json()
    assert (body["width"], body["height"]) == (40, 24)
    assert body["url"] == f"/v1/images/{body['id']}"
    image = api.get(body["url"])
    assert image.status_code == 200 and image.headers["content-type"] == "image/png"
    with Image.open(io.BytesIO(image.content)) as png:
        assert png.format == "PNG" and png.size == (40, 24)


@pytest.mark.parametrize(
    ("image", "status", "needle"),
    [
        ("%%% not base64 %%%", 422, "base64"),
        (base64.b64encode(b"just some text").decode(), 422, "not an image"),
        (_bomb_b64(20000, 20000), 422, "20000x20000"),
        ("A" * (MAX_UPLOAD_BYTES * 4 // 3 + 100), 413, "limit"),
    ],
)
def test_upload_limits(api: httpx.Client, image: str, status: int, needle: str) -> None:
    message = assert_error(api.post("/v1/uploads", json={"image": image}), status, "image")
    assert needle in message


@pytest.mark.parametrize(
    ("image", "status", "needle"),
    [
        ({"b64": "%%% not base64 %%%"}, 422, "base64"),
        ({"b64": _bomb_b64(20000, 20000)}, 422, "20000x20000"),
        ({"id": "img_nope"}, 404, "not found"),
    ],
)
def test_chat_images_are_checked_before_the_mllm_is_asked(
    api: httpx.Client, mllm: ScriptedMllm, image: dict[str, str], status: int, needle: str
) -> None:
    """Bad input is a 4xx naming the image, before the mllm is asked."""
    response = api.post("/v1/chat", json={"message": "look", "images": [image]})
    assert needle in assert_error(response, status)
    error = response.json()["error"]
    assert "images[0]" in f"{error['field']} {error['message']}"
    assert mllm.requests() == []


# --------------------------------------------------------------------------- health & metrics


def test_healthz(api: httpx.Client) -> None:
    assert api.get("/healthz").json() == {"status": "ok"}


def test_readyz_reports_each_dependency(
    api: httpx.Client, redis_client: redis.Redis, namespace: Namespace
) -> None:
    response = api.get("/readyz")
    assert response.status_code == 503
    body = response.json()
    assert body["status"] == "not_ready"
    assert body["checks"]["redis"]["ok"] is True
    assert body["checks"]["mllm"]["ok"] is True
    assert body["checks"]["workers"]["ok"] is False

    registry = WorkerRegistry(redis_client, RedisKeys(namespace.key_prefix))
    registry.heartbeat("test-worker", {"profile": "tiny"}, ttl_s=30)
    try:
        response = api.get("/readyz")
        assert response.status_code == 200, response.text
        assert response.json()["checks"]["workers"] == {"ok": True, "detail": "1 live: test-worker"}
    finally:
        registry.remove("test-worker")


def test_metrics_expose_request_histogram(api: httpx.Client, mllm: ScriptedMllm) -> None:
    mllm.script("ok <gen_image>a tree</gen_image>")
    assert api.post("/v1/chat", json={"message": "a tree"}).status_code == 200
    api.get("/v1/jobs/job_missing")
    text = api.get("/metrics").text
    assert (
        'llmga_gateway_http_request_duration_seconds_bucket{le="0.005",method="POST",'
        'route="/v1/chat",status="200"}' in text
    )
    assert 'route="/v1/jobs/{job_id}",status="404"' in text
    assert 'llmga_gateway_jobs_submitted_total{task="t2i"}' in text
    assert 'llmga_gateway_mllm_tokens_total{kind="completion"}' in text
    assert 'llmga_gateway_mllm_request_duration_seconds_count{outcome="ok"}' in text


def test_openapi_documents_the_limits(api: httpx.Client) -> None:
    spec = json.dumps(api.get("/openapi.json").json())
    for needle in ("LLMGA_MAX_N", "LLMGA_MAX_STEPS", "LLMGA_MAX_UPLOAD_BYTES", "multipleOf"):
        assert needle in spec


def test_job_view_reflects_worker_updates(api: httpx.Client, jobs: JobStore) -> None:
    """The worker writes the record; the API shows progress, images and timings."""
    job_id = api.post("/v1/images", json={"prompt": "a boat"}).json()["id"]

    def finish(record: Any) -> None:
        record.status = JobStatus.JOB_STATUS_SUCCEEDED
        record.progress.step = record.progress.total = 20
        image = record.images.add()
        image.image_id, image.seed, image.width, image.height = "img_x", 99, 512, 512
        record.prompt_used = "a boat, refined"
        record.model_profile = "tiny"
        record.timings.started_at = time.time()
        record.timings.finished_at = time.time()
        record.timings.denoise_s = 1.5

    jobs.update("local", job_id, finish)
    view = api.get(f"/v1/jobs/{job_id}").json()
    assert view["status"] == "succeeded" and view["progress"] == {"step": 20, "total": 20}
    assert view["images"] == [
        {"id": "img_x", "url": "/v1/images/img_x", "seed": 99, "width": 512, "height": 512}
    ]
    assert view["events_url"] == f"/v1/jobs/{job_id}/events"
    assert view["prompt"] == "a boat, refined" and view["model_profile"] == "tiny"
    assert view["timings"]["denoise_s"] == 1.5 and view["finished_at"] is not None
