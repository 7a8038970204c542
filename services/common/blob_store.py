"""Images are stored once and passed by id (never through the broker or the MLLM).

Two backends with one interface (`BlobStore`, `AsyncBlobStore`), chosen by
LLMGA_BLOB_STORE in blob_stores.py: Redis hashes (the embedded default, below) or objects
in an S3-compatible store (s3_blob_store.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

import redis
import redis.asyncio as aioredis

from services.common.ids import new_id
from services.common.redis_keys import RedisKeys

_FIELDS = ("data", "content_type")


class BlobStoreUnavailable(Exception):
    """The blob store could not be reached or refused a request (not: a missing blob).
    The gateway answers 503; a worker fails the job with the message."""


@dataclass(frozen=True)
class Blob:
    data: bytes
    content_type: str


class BlobStore(Protocol):
    """The worker's (synchronous) blob store."""

    def put(self, tenant: str, data: bytes, content_type: str = "image/png") -> str: ...

    def get(self, tenant: str, blob_id: str) -> Blob | None: ...

    def delete(self, tenant: str, blob_id: str) -> bool: ...


class AsyncBlobStore(Protocol):
    """The gateway's blob store."""

    async def put(self, tenant: str, data: bytes, content_type: str = "image/png") -> str: ...

    async def get(self, tenant: str, blob_id: str) -> Blob | None: ...

    async def delete(self, tenant: str, blob_id: str) -> bool: ...

    async def delete_many(self, tenant: str, blob_ids: list[str]) -> None: ...

    async def exists(self, tenant: str, blob_id: str) -> bool: ...

    async def probe(self) -> str | None:
        """Readiness: what was checked (BlobStoreUnavailable if it failed); None when the
        store has nothing of its own to probe (Redis: the gateway's Redis check)."""
        ...

    def presigned_url(self, tenant: str, blob_id: str) -> str | None:
        """A URL to download the blob straight from the store; None when the store has
        none (Redis: images are downloaded through the gateway)."""
        ...


def stage_put(
    pipe: Any, keys: RedisKeys, tenant: str, data: bytes, content_type: str, ttl_s: int
) -> str:
    """Queue the writes of a new blob on `pipe` (sync or asyncio); returns its new id."""
    blob_id = new_id("img")
    key = keys.blob(tenant, blob_id)
    pipe.hset(key, mapping={"data": data, "content_type": content_type})
    pipe.expire(key, ttl_s)
    return blob_id


def blob_from_fields(data: object, content_type: object) -> Blob | None:
    """The blob of an HMGET reply (`_FIELDS`); None if it is gone."""
    if not isinstance(data, bytes):
        return None
    kind = content_type.decode() if isinstance(content_type, bytes) else "application/octet-stream"
    return Blob(data=data, content_type=kind)


class RedisBlobStore:
    """Blobs as Redis hashes {data, content_type} with a TTL, under the tenant's keys.
    Synchronous: the worker's; the gateway uses `AsyncRedisBlobStore`."""

    def __init__(self, client: redis.Redis, keys: RedisKeys, ttl_s: int) -> None:
        self._client = client
        self._keys = keys
        self._ttl_s = ttl_s

    def put(self, tenant: str, data: bytes, content_type: str = "image/png") -> str:
        """Store `data` and return its new id."""
        with self._client.pipeline() as pipe:
            blob_id = stage_put(pipe, self._keys, tenant, data, content_type, self._ttl_s)
            pipe.execute()
        return blob_id

    def get(self, tenant: str, blob_id: str) -> Blob | None:
        """The blob, or None if it is unknown or expired."""
        return blob_from_fields(*self._client.hmget(self._keys.blob(tenant, blob_id), *_FIELDS))

    def delete(self, tenant: str, blob_id: str) -> bool:
        """Remove the blob and its conversation references; False if it was unknown."""
        with self._client.pipeline() as pipe:
            pipe.delete(self._keys.blob(tenant, blob_id))
            pipe.delete(self._keys.blob_refs(tenant, blob_id))
            removed, _ = pipe.execute()
        return bool(removed)


class AsyncRedisBlobStore:
    """`RedisBlobStore` over redis.asyncio (the gateway's)."""

    def __init__(self, client: aioredis.Redis, keys: RedisKeys, ttl_s: int) -> None:
        self._client = client
        self._keys = keys
        self._ttl_s = ttl_s

    async def put(self, tenant: str, data: bytes, content_type: str = "image/png") -> str:
        """Store `data` and return its new id."""
        async with self._client.pipeline() as pipe:
            blob_id = stage_put(pipe, self._keys, tenant, data, content_type, self._ttl_s)
            await pipe.execute()
        return blob_id

    async def get(self, tenant: str, blob_id: str) -> Blob | None:
        """The blob, or None if it is unknown or expired."""
        fields = await self._client.hmget(self._keys.blob(tenant, blob_id), *_FIELDS)
        return blob_from_fields(*fields)

    async def delete(self, tenant: str, blob_id: str) -> bool:
        """Remove the blob and its conversation references; False if it was unknown."""
        async with self._client.pipeline() as pipe:
            pipe.delete(self._keys.blob(tenant, blob_id))
            pipe.delete(self._keys.blob_refs(tenant, blob_id))
            removed, _ = await pipe.execute()
        return bool(removed)

    async def delete_many(self, tenant: str, blob_ids: list[str]) -> None:
        """Remove blobs (result images of a deleted job) in one command."""
        if blob_ids:
            await self._client.delete(*(self._keys.blob(tenant, i) for i in blob_ids))

    async def exists(self, tenant: str, blob_id: str) -> bool:
        """Whether the blob is stored (not expired)."""
        return bool(await self._client.exists(self._keys.blob(tenant, blob_id)))

    async def probe(self) -> str | None:
        """None: the gateway's Redis check covers it."""
        return None

    def presigned_url(self, tenant: str, blob_id: str) -> str | None:
        """None: Redis blobs are downloaded through the gateway."""
        return None
