"""Images are stored once and passed by id (never through the broker or the MLLM)."""

from __future__ import annotations

from dataclasses import dataclass

import redis

from services.common.ids import new_id
from services.common.redis_keys import RedisKeys


@dataclass(frozen=True)
class Blob:
    data: bytes
    content_type: str


class RedisBlobStore:
    """Blobs as Redis hashes {data, content_type} with a TTL, under the tenant's keys."""

    def __init__(self, client: redis.Redis, keys: RedisKeys, ttl_s: int) -> None:
        self._client = client
        self._keys = keys
        self._ttl_s = ttl_s

    def put(self, tenant: str, data: bytes, content_type: str = "image/png") -> str:
        """Store `data` and return its new id."""
        blob_id = new_id("img")
        key = self._keys.blob(tenant, blob_id)
        with self._client.pipeline() as pipe:
            pipe.hset(key, mapping={"data": data, "content_type": content_type})
            pipe.expire(key, self._ttl_s)
            pipe.execute()
        return blob_id

    def get(self, tenant: str, blob_id: str) -> Blob | None:
        data, content_type = self._client.hmget(
            self._keys.blob(tenant, blob_id), "data", "content_type"
        )
        if not isinstance(data, bytes):
            return None
        kind = (
            content_type.decode() if isinstance(content_type, bytes) else "application/octet-stream"
        )
        return Blob(data=data, content_type=kind)
