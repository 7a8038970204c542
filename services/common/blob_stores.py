"""The one place the blob store is chosen from the settings (LLMGA_BLOB_STORE): the
worker's (`open_blob_store`, synchronous) and the gateway's (`open_async_blob_store`).
The S3 store (boto3) is imported only when chosen: Redis deployments run without it."""

from __future__ import annotations

from typing import TYPE_CHECKING

import redis
import redis.asyncio as aioredis

from services.common.blob_store import (
    AsyncBlobStore,
    AsyncRedisBlobStore,
    BlobStore,
    RedisBlobStore,
)
from services.common.redis_keys import RedisKeys
from services.common.settings import StateSettings

if TYPE_CHECKING:
    from services.common.s3_blob_store import S3Config


def _s3_config(settings: StateSettings) -> S3Config:
    from services.common.s3_blob_store import S3Config  # noqa: PLC0415 - boto3 only for s3

    return S3Config(
        bucket=settings.s3_bucket,
        prefix=settings.s3_prefix,
        endpoint_url=settings.s3_endpoint_url,
        region=settings.s3_region,
        presigned_ttl_s=settings.s3_presigned_ttl_s,
        presigned_urls=settings.s3_presigned_urls,
    )


def open_blob_store(
    settings: StateSettings, client: redis.Redis, keys: RedisKeys, ttl_s: int | None = None
) -> BlobStore:
    """The worker's blob store, as LLMGA_BLOB_STORE says (`client`: its Redis), keeping
    what it stores for `ttl_s` (default LLMGA_IMAGE_TTL_S; previews keep theirs shorter)."""
    ttl_s = settings.image_ttl_s if ttl_s is None else ttl_s
    if settings.blob_store == "s3":
        from services.common.s3_blob_store import S3BlobStore, s3_client  # noqa: PLC0415

        config = _s3_config(settings)
        return S3BlobStore(s3_client(config.endpoint_url, config.region), config, ttl_s)
    return RedisBlobStore(client, keys, ttl_s)


def open_async_blob_store(
    settings: StateSettings, client: aioredis.Redis, keys: RedisKeys
) -> AsyncBlobStore:
    """The gateway's blob store, as LLMGA_BLOB_STORE says (`client`: its Redis)."""
    if settings.blob_store == "s3":
        from services.common.s3_blob_store import AsyncS3BlobStore, s3_client  # noqa: PLC0415

        config = _s3_config(settings)
        return AsyncS3BlobStore(
            s3_client(config.endpoint_url, config.region), config, settings.image_ttl_s
        )
    return AsyncRedisBlobStore(client, keys, settings.image_ttl_s)
