"""The S3 blob store against a real S3 API (moto's server on 127.0.0.1): put/get/delete,
tenants kept apart, expiry enforced on read, presigned URLs any HTTP client can fetch,
and the factory that picks the store from the settings."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import anyio
import httpx
import pytest
import redis

from services.common.blob_store import AsyncRedisBlobStore, BlobStoreUnavailable, RedisBlobStore
from services.common.blob_stores import open_async_blob_store, open_blob_store
from services.common.redis_keys import RedisKeys
from services.common.s3_blob_store import (
    EXPIRES_AT,
    AsyncS3BlobStore,
    S3BlobStore,
    S3Config,
    s3_client,
)
from services.common.settings import StateSettings
from tests.support.s3 import FAKE_CREDENTIALS, REGION, S3Server, start_s3_server

PNG = b"\x89PNG\r\n\x1a\n-not-really-pixels"


@pytest.fixture(scope="module")
def server() -> Iterator[S3Server]:
    with pytest.MonkeyPatch.context() as patch:
        for name, value in FAKE_CREDENTIALS.items():
            patch.setenv(name, value)
        with start_s3_server() as server:
            yield server


@pytest.fixture
def bucket(server: S3Server) -> str:
    return server.new_bucket()


@pytest.fixture
def config(server: S3Server, bucket: str) -> S3Config:
    return S3Config(bucket=bucket, prefix="imgs/", endpoint_url=server.endpoint_url, region=REGION)


@pytest.fixture
def client(server: S3Server) -> Any:
    return s3_client(server.endpoint_url, REGION)


@pytest.fixture
def store(client: Any, config: S3Config) -> S3BlobStore:
    return S3BlobStore(client, config, ttl_s=600)


def test_put_get_delete(store: S3BlobStore, server: S3Server, config: S3Config) -> None:
    blob_id = store.put("acme", PNG, "image/png")
    assert blob_id.startswith("img_")
    blob = store.get("acme", blob_id)
    assert blob is not None
    assert (blob.data, blob.content_type) == (PNG, "image/png")
    # One object under {prefix}{tenant}/{id}, with its expiry as metadata.
    head = server.client().head_object(Bucket=config.bucket, Key=f"imgs/acme/{blob_id}")
    expires_at = int(head["Metadata"][EXPIRES_AT])
    assert time.time() + 590 < expires_at <= time.time() + 601
    assert store.delete("acme", blob_id) is True
    assert store.get("acme", blob_id) is None
    assert store.delete("acme", blob_id) is False


def test_tenants_are_kept_apart(store: S3BlobStore) -> None:
    blob_id = store.put("acme", PNG)
    assert store.get("other", blob_id) is None
    assert store.delete("other", blob_id) is False
    assert store.get("acme", blob_id) is not None
    # An id that is not one of ours never reaches a key (no path games).
    assert store.get("other", f"../acme/{blob_id}") is None
    assert store.presigned_url("other", f"../acme/{blob_id}") is None


def test_unknown_ids_are_none(store: S3BlobStore) -> None:
    assert store.get("acme", "img_0123456789abcdef") is None
    assert store.exists("acme", "img_0123456789abcdef") is False


def test_an_expired_object_is_not_served(
    store: S3BlobStore, server: S3Server, config: S3Config
) -> None:
    blob_id = store.put("acme", PNG)
    key = f"imgs/acme/{blob_id}"
    # As if written long ago: the lifecycle rule has not removed it yet.
    server.client().put_object(
        Bucket=config.bucket,
        Key=key,
        Body=PNG,
        ContentType="image/png",
        Metadata={EXPIRES_AT: str(int(time.time()) - 1)},
    )
    assert store.get("acme", blob_id) is None
    assert store.exists("acme", blob_id) is False
    assert store.delete("acme", blob_id) is False  # removed all the same
    with pytest.raises(Exception, match="404|Not Found"):
        server.client().head_object(Bucket=config.bucket, Key=key)


def test_a_presigned_url_downloads_with_plain_http(store: S3BlobStore) -> None:
    blob_id = store.put("acme", PNG, "image/png")
    url = store.presigned_url("acme", blob_id)
    assert url is not None and "X-Amz-Signature=" in url
    response = httpx.get(url)
    assert response.status_code == 200
    assert response.content == PNG
    assert response.headers["content-type"] == "image/png"
    assert "X-Amz-Expires=3600" in url  # LLMGA_S3_PRESIGNED_TTL_S
    assert f"/imgs/acme/{blob_id}?" in url


def test_repeated_reads_get_the_same_presigned_url(store: S3BlobStore) -> None:
    # Browsers cache by URL: a job read twice in a row names its image the same way.
    blob_id = store.put("acme", PNG)
    assert store.presigned_url("acme", blob_id) == store.presigned_url("acme", blob_id)
    assert store.presigned_url("acme", blob_id) != store.presigned_url("other", blob_id)


def test_presigned_urls_can_be_turned_off(client: Any, config: S3Config) -> None:
    off = S3BlobStore(client, S3Config(bucket=config.bucket, presigned_urls=False), ttl_s=60)
    assert off.presigned_url("acme", off.put("acme", PNG)) is None


def test_the_async_store_is_the_same_store(client: Any, config: S3Config) -> None:
    store = AsyncS3BlobStore(client, config, ttl_s=600)

    async def scenario() -> None:
        blob_id = await store.put("acme", PNG)
        blob = await store.get("acme", blob_id)
        assert blob is not None and blob.data == PNG
        assert await store.exists("acme", blob_id)
        assert await store.get("other", blob_id) is None
        assert store.presigned_url("acme", blob_id) is not None
        second = await store.put("acme", PNG)
        await store.delete_many("acme", [blob_id, second, "img_unknown"])
        assert await store.get("acme", blob_id) is None
        assert await store.get("acme", second) is None
        assert await store.delete("acme", blob_id) is False

    anyio.run(scenario)


def test_store_errors_are_unavailable_not_missing(client: Any, config: S3Config) -> None:
    # A missing bucket (or refused credentials, an unreachable endpoint) is an outage
    # the services report (503, a failed job), never an image that does not exist.
    gone = S3BlobStore(client, S3Config(bucket="no-such-bucket-here", prefix="x/"), ttl_s=60)
    with pytest.raises(BlobStoreUnavailable, match="object store put"):
        gone.put("acme", PNG)
    with pytest.raises(BlobStoreUnavailable, match="object store get"):
        gone.get("acme", "img_0123")
    with pytest.raises(BlobStoreUnavailable, match="object store probe"):
        gone.probe()


def test_one_client_per_process(server: S3Server) -> None:
    assert s3_client(server.endpoint_url, REGION) is s3_client(server.endpoint_url, REGION)


def test_the_settings_choose_the_store(server: S3Server, bucket: str) -> None:
    keys = RedisKeys("unused")
    sync_redis = redis.Redis()
    async_redis: Any = object()  # never used: nothing is stored
    default = StateSettings()
    assert default.blob_store == "redis"
    assert isinstance(open_blob_store(default, sync_redis, keys), RedisBlobStore)
    assert isinstance(open_async_blob_store(default, async_redis, keys), AsyncRedisBlobStore)

    s3 = StateSettings(
        blob_store="s3", s3_bucket=bucket, s3_endpoint_url=server.endpoint_url, s3_region=REGION
    )
    worker_store = open_blob_store(s3, sync_redis, keys)
    gateway_store = open_async_blob_store(s3, async_redis, keys)
    assert isinstance(worker_store, S3BlobStore)
    assert isinstance(gateway_store, AsyncS3BlobStore)
    # What the worker stores, the gateway reads.
    blob_id = worker_store.put("acme", PNG)
    blob = anyio.run(gateway_store.get, "acme", blob_id)
    assert blob is not None and blob.data == PNG


def test_s3_needs_a_bucket() -> None:
    with pytest.raises(ValueError, match="LLMGA_S3_BUCKET"):
        StateSettings(blob_store="s3")


def test_the_settings_are_read_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LLMGA_BLOB_STORE", "s3")
    monkeypatch.setenv("LLMGA_S3_BUCKET", "images")
    monkeypatch.setenv("LLMGA_S3_ENDPOINT_URL", "http://minio:9000")
    monkeypatch.setenv("LLMGA_S3_PRESIGNED_TTL_S", "600")
    settings = StateSettings()
    assert (settings.blob_store, settings.s3_bucket, settings.s3_endpoint_url) == (
        "s3",
        "images",
        "http://minio:9000",
    )
    assert settings.s3_presigned_ttl_s == 600
    assert settings.s3_prefix == "llmga/images/"
