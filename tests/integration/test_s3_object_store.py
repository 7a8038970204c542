"""LLMGA_BLOB_STORE=s3 end to end: a real worker and gateway keep their images in an S3
API (moto's server, on 127.0.0.1), answers carry presigned URLs that download straight
from it, and the gateway's own image route still works (307 to the store, or converted)."""

from __future__ import annotations

import asyncio
import base64
import io
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis
import redis.asyncio as aioredis
from PIL import Image

from services.common.redis_keys import RedisKeys
from services.common.s3_blob_store import S3BlobStore, S3Config, s3_client
from services.gateway.stores.conversations import ConversationStore, StoredTurn
from tests.support.http_api import wait_for_job
from tests.support.images import noise, png_b64
from tests.support.s3 import FAKE_CREDENTIALS, REGION, S3Server, start_s3_server
from tests.support.scripted_mllm import ScriptedMllm
from tests.support.services import REDIS_URL, Namespace, start_gateway, start_worker

pytestmark = [pytest.mark.integration, pytest.mark.timeout(600)]

SIZE = {"width": 64, "height": 64, "steps": 4}
PREFIX = "images/"
TENANT = "local"  # the gateway's tenant without auth


@pytest.fixture(scope="module")
def s3() -> Iterator[S3Server]:
    with start_s3_server() as server:
        yield server


@pytest.fixture(scope="module")
def bucket(s3: S3Server) -> str:
    return s3.new_bucket()


@pytest.fixture(scope="module")
def worker(
    namespace: Namespace,
    logs: Path,
    tmp_path_factory: pytest.TempPathFactory,
    s3: S3Server,
    bucket: str,
) -> Iterator[str]:
    with start_worker(
        namespace, tmp_path_factory.mktemp("models"), logs, env=s3.env(bucket, PREFIX)
    ) as name:
        yield name


@pytest.fixture(scope="module")
def api(
    namespace: Namespace, scripted: ScriptedMllm, logs: Path, s3: S3Server, bucket: str
) -> Iterator[httpx.Client]:
    env = {
        **namespace.env(),
        **s3.env(bucket, PREFIX),
        "LLMGA_MLLM_BASE_URL": scripted.base_url,
    }
    with start_gateway(env, logs) as gateway, httpx.Client(base_url=gateway.url) as client:
        yield client


def object_keys(s3: S3Server, bucket: str) -> list[str]:
    listing: dict[str, Any] = s3.client().list_objects_v2(Bucket=bucket, Prefix=PREFIX)
    return [entry["Key"] for entry in listing.get("Contents", [])]


def key_of(s3: S3Server, bucket: str, image_id: str) -> str | None:
    found = [key for key in object_keys(s3, bucket) if key.endswith(f"/{image_id}")]
    return found[0] if found else None


def png(data: bytes) -> Image.Image:
    image = Image.open(io.BytesIO(data))
    assert image.format == "PNG"
    return image


@pytest.mark.usefixtures("worker")
def test_a_t2i_job_stores_its_images_in_the_bucket(
    api: httpx.Client, s3: S3Server, bucket: str
) -> None:
    checks = api.get("/readyz").json()["checks"]
    assert checks["blob_store"] == {"ok": True, "detail": f"bucket {bucket} reachable"}
    created = api.post("/v1/images", json={"task": "t2i", "prompt": "a lighthouse", **SIZE})
    assert created.status_code == 202, created.text
    done = wait_for_job(api, created.json()["id"], timeout_s=120)
    assert done["status"] == "succeeded", done["error"]
    [image] = done["images"]
    key = key_of(s3, bucket, image["id"])
    assert key is not None and key.startswith(PREFIX)

    # The job's URL is presigned: a plain client downloads it from the store.
    url = image["url"]
    assert url.startswith(s3.endpoint_url) and "X-Amz-Signature=" in url
    direct = httpx.get(url)
    assert direct.status_code == 200, direct.text
    assert png(direct.content).size == (SIZE["width"], SIZE["height"])

    # The gateway's route redirects to the store, and a conversion is served here.
    image_id = image["id"]
    redirect = api.get(f"/v1/images/{image_id}")
    assert redirect.status_code == 307
    assert redirect.headers["location"].startswith(s3.endpoint_url)
    followed = api.get(f"/v1/images/{image_id}", follow_redirects=True)
    assert followed.status_code == 200 and followed.content == direct.content
    jpeg = api.get(f"/v1/images/{image_id}", params={"format": "jpeg"})
    assert jpeg.status_code == 200 and jpeg.headers["content-type"] == "image/jpeg"

    # Deleting the job deletes its images from the bucket.
    assert api.delete(f"/v1/jobs/{done['id']}").status_code == 204
    assert key_of(s3, bucket, image_id) is None
    assert api.get(f"/v1/images/{image_id}").status_code == 404


def test_an_upload_lands_in_the_bucket(api: httpx.Client, s3: S3Server, bucket: str) -> None:
    source = png_b64(noise(32, 48, seed=3))
    response = api.post("/v1/uploads", json={"image": source})
    assert response.status_code == 201, response.text
    body = response.json()
    key = key_of(s3, bucket, body["id"])
    assert key is not None
    stored = s3.client().get_object(Bucket=bucket, Key=key)
    assert stored["ContentType"] == "image/png"
    assert "expires-at" in stored["Metadata"]
    assert png(stored["Body"].read()).size == (48, 32)
    assert body["url"].startswith(s3.endpoint_url)
    assert httpx.get(body["url"]).content == base64.b64decode(source)

    assert api.delete(f"/v1/images/{body['id']}").status_code == 204
    assert key_of(s3, bucket, body["id"]) is None
    assert api.get(f"/v1/images/{body['id']}").status_code == 404
    assert api.delete(f"/v1/images/{body['id']}").status_code == 404


def test_deleting_a_conversation_deletes_the_uploads_only_it_used(
    api: httpx.Client,
    mllm: ScriptedMllm,
    namespace: Namespace,
    s3: S3Server,
    bucket: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for name, value in FAKE_CREDENTIALS.items():
        monkeypatch.setenv(name, value)
    config = S3Config(bucket=bucket, prefix=PREFIX, endpoint_url=s3.endpoint_url, region=REGION)
    blobs = S3BlobStore(s3_client(s3.endpoint_url, REGION), config, ttl_s=600)
    mllm.script("Nothing to draw.")
    chat = api.post("/v1/chat", json={"message": "hello"})
    assert chat.status_code == 200, chat.text
    conversation_id = chat.json()["conversation_id"]
    own_upload, shared_upload = blobs.put(TENANT, b"own"), blobs.put(TENANT, b"shared")
    turn = StoredTurn(role="user", text="x", image_ids=[own_upload, shared_upload], created_at=1)
    other = StoredTurn(role="user", text="y", image_ids=[shared_upload], created_at=1)

    async def append_turns() -> None:
        async with aioredis.Redis.from_url(REDIS_URL) as client:
            conversations = ConversationStore(client, RedisKeys(namespace.key_prefix), 60)
            await conversations.append(TENANT, conversation_id, [turn])
            await conversations.append(TENANT, "conv_other", [other])

    asyncio.run(append_turns())

    assert api.delete(f"/v1/conversations/{conversation_id}").status_code == 204
    assert key_of(s3, bucket, own_upload) is None
    assert blobs.get(TENANT, own_upload) is None
    assert blobs.get(TENANT, shared_upload) is not None
    assert api.delete("/v1/conversations/conv_other").status_code == 204
    assert key_of(s3, bucket, shared_upload) is None


def test_an_unusable_bucket_is_a_503(
    namespace: Namespace, scripted: ScriptedMllm, logs: Path, s3: S3Server
) -> None:
    env = {
        **namespace.env(),
        **s3.env("no-such-bucket", PREFIX),
        "LLMGA_MLLM_BASE_URL": scripted.base_url,
    }
    with start_gateway(env, logs) as gateway, httpx.Client(base_url=gateway.url) as client:
        response = client.post("/v1/uploads", json={"image": png_b64(noise(8, 8, seed=1))})
        assert response.status_code == 503, response.text
        assert response.json()["error"]["type"] == "service_unavailable"
        assert "Retry-After" in response.headers
        readiness = client.get("/readyz")
        assert readiness.status_code == 503
        assert readiness.json()["checks"]["blob_store"]["ok"] is False


def test_a_worker_that_cannot_use_its_bucket_fails_the_job(
    logs: Path, scripted: ScriptedMllm, tmp_path_factory: pytest.TempPathFactory, s3: S3Server
) -> None:
    # A namespace of its own: this worker must not take the module's jobs.
    namespace = Namespace.unique("s3-broken-worker")
    good, missing = s3.new_bucket(), "no-such-bucket"
    gateway_env = {
        **namespace.env(),
        **s3.env(good, PREFIX),
        "LLMGA_MLLM_BASE_URL": scripted.base_url,
    }
    models = tmp_path_factory.mktemp("models")
    with (
        start_gateway(gateway_env, logs) as gateway,
        httpx.Client(base_url=gateway.url) as api,
        start_worker(namespace, models, logs, env=s3.env(missing, PREFIX)),
    ):
        try:
            # Storing the results fails: the job fails with the store's error.
            created = api.post("/v1/images", json={"task": "t2i", "prompt": "x", **SIZE})
            done = wait_for_job(api, created.json()["id"], timeout_s=120)
            assert done["status"] == "failed"
            assert "object store put" in done["error"]
            # Reading an input image fails before the job runs: failed, not left queued.
            upload = api.post("/v1/uploads", json={"image": png_b64(noise(64, 64, seed=2))})
            edit = api.post(
                "/v1/images",
                json={
                    "task": "controlnet",
                    "prompt": "houses",
                    "image": {"id": upload.json()["id"]},
                    "steps": 4,
                },
            )
            assert edit.status_code == 202, edit.text
            done = wait_for_job(api, edit.json()["id"], timeout_s=120)
            assert done["status"] == "failed"
            assert "object store get" in done["error"]
        finally:
            namespace.cleanup(redis.Redis.from_url(REDIS_URL))
