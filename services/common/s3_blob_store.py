"""Blobs in an S3-compatible object store (LLMGA_BLOB_STORE=s3), with the interface of the
Redis stores: one object per blob under `{prefix}{tenant}/{id}`, its content type as the
object's, and its expiry as user metadata `expires-at` (Unix seconds).

S3 has no per-object TTL: a bucket lifecycle rule deletes old objects (docs/deploy.md,
Object store) and a read refuses an object past its `expires-at`, so an image is never
served longer than LLMGA_IMAGE_TTL_S, whatever the rule's granularity (whole days).

boto3 is synchronous: `S3BlobStore` calls it directly (the worker), `AsyncS3BlobStore` in
a worker thread (`anyio.to_thread.run_sync`: the gateway's event loop never blocks). One
client per process and configuration (`s3_client`), shared by both: boto3 clients are
thread-safe. Credentials come from the standard AWS chain (environment, shared files,
instance or pod roles).
"""

from __future__ import annotations

import functools
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ParamSpec, TypeVar

import anyio.to_thread
from botocore.exceptions import BotoCoreError, ClientError

from services.common.blob_store import Blob, BlobStoreUnavailable
from services.common.ids import new_id

# Ids are `new_id` tokens; anything else (a "/" or "..") could never name a stored blob
# and must not reach an object key.
_ID = re.compile(r"[A-Za-z0-9_-]{1,128}")
EXPIRES_AT = "expires-at"
_PRESIGNED_CACHE_SIZE = 10_000


@dataclass(frozen=True)
class S3Config:
    """Where the blobs live (from StateSettings' `s3_*`)."""

    bucket: str
    prefix: str = ""
    endpoint_url: str = ""
    region: str = ""
    presigned_ttl_s: int = 3600
    # False: no presigned URLs (`presigned_url` is None), the gateway proxies downloads.
    presigned_urls: bool = True


@functools.cache
def s3_client(endpoint_url: str, region: str) -> Any:
    """The process's boto3 S3 client for this endpoint and region, created once."""
    import boto3  # noqa: PLC0415 - imported when a store is opened, not with the module
    from botocore.config import Config  # noqa: PLC0415

    return boto3.session.Session().client(
        "s3",
        endpoint_url=endpoint_url or None,
        region_name=region or None,
        config=Config(
            signature_version="s3v4",
            retries={"max_attempts": 3, "mode": "standard"},
            connect_timeout=5,
            read_timeout=30,
            # The gateway's worker threads share the client: one pooled connection each.
            max_pool_connections=64,
            # Another S3 API (MinIO, GCS, ...): bucket in the path, no per-bucket DNS names.
            s3={"addressing_style": "path"} if endpoint_url else None,
        ),
    )


_P = ParamSpec("_P")
_R = TypeVar("_R")


def _unavailable_on_errors(method: Callable[_P, _R]) -> Callable[_P, _R]:
    """S3's and botocore's errors (other than a missing object, handled by the method) as
    `BlobStoreUnavailable`, naming the operation: the services treat them alike."""

    @functools.wraps(method)
    def wrapper(*args: _P.args, **kwargs: _P.kwargs) -> _R:
        try:
            return method(*args, **kwargs)
        except (BotoCoreError, ClientError) as error:
            raise BlobStoreUnavailable(f"object store {method.__name__}: {error}") from error

    return wrapper


def _not_found(error: Exception) -> bool:
    response = getattr(error, "response", None)
    if not isinstance(response, dict):
        return False
    code = str(response.get("Error", {}).get("Code", ""))
    return code in ("NoSuchKey", "404", "NotFound")


class S3BlobStore:
    """Blobs as S3 objects (synchronous: the worker's; the gateway uses `AsyncS3BlobStore`)."""

    def __init__(self, client: Any, config: S3Config, ttl_s: int) -> None:
        self._client = client
        self._config = config
        self._ttl_s = ttl_s
        # key -> (when signed, presigned URL): repeated reads of a job get the same URL
        # for a while, so browsers' caches keep the image (signed_urls.py rounds the same
        # way). Reused for a tenth of the TTL, at most 5 minutes; bounded in size.
        self._presigned: dict[str, tuple[float, str]] = {}
        self._reuse_s = min(config.presigned_ttl_s / 10, 300.0)

    def key(self, tenant: str, blob_id: str) -> str | None:
        """The object key of a blob; None if `blob_id` cannot name one."""
        if not _ID.fullmatch(blob_id) or not tenant or "/" in tenant:
            return None
        return f"{self._config.prefix}{tenant}/{blob_id}"

    @_unavailable_on_errors
    def put(self, tenant: str, data: bytes, content_type: str = "image/png") -> str:
        """Store `data` and return its new id."""
        blob_id = new_id("img")
        key = self.key(tenant, blob_id)
        if key is None:
            raise ValueError(f"tenant {tenant!r} cannot be part of an object key")
        self._client.put_object(
            Bucket=self._config.bucket,
            Key=key,
            Body=data,
            ContentType=content_type,
            Metadata={EXPIRES_AT: str(int(time.time()) + self._ttl_s)},
        )
        return blob_id

    @_unavailable_on_errors
    def get(self, tenant: str, blob_id: str) -> Blob | None:
        """The blob, or None if it is unknown or expired."""
        key = self.key(tenant, blob_id)
        if key is None:
            return None
        try:
            reply = self._client.get_object(Bucket=self._config.bucket, Key=key)
        except Exception as error:
            if _not_found(error):
                return None
            raise
        body = reply["Body"]
        try:
            if _expired(reply.get("Metadata", {})):
                return None
            data = body.read()
        finally:
            body.close()
        return Blob(data=data, content_type=reply.get("ContentType") or "application/octet-stream")

    @_unavailable_on_errors
    def exists(self, tenant: str, blob_id: str) -> bool:
        """Whether the blob is stored and not expired (a HEAD: no body)."""
        key = self.key(tenant, blob_id)
        if key is None:
            return False
        try:
            reply = self._client.head_object(Bucket=self._config.bucket, Key=key)
        except Exception as error:
            if _not_found(error):
                return False
            raise
        return not _expired(reply.get("Metadata", {}))

    @_unavailable_on_errors
    def delete(self, tenant: str, blob_id: str) -> bool:
        """Remove the blob; False if it was unknown or expired (an expired object is
        removed all the same)."""
        key = self.key(tenant, blob_id)
        if key is None:
            return False
        existed = self.exists(tenant, blob_id)
        self._client.delete_object(Bucket=self._config.bucket, Key=key)
        return existed

    @_unavailable_on_errors
    def probe(self) -> str:
        """Readiness: the bucket answers HEAD with our credentials."""
        self._client.head_bucket(Bucket=self._config.bucket)
        return f"bucket {self._config.bucket} reachable"

    def presigned_url(self, tenant: str, blob_id: str) -> str | None:
        """A GET URL of the object, valid LLMGA_S3_PRESIGNED_TTL_S, that anyone holding it
        can use (signed locally: no request to the store)."""
        key = self.key(tenant, blob_id)
        if key is None or not self._config.presigned_urls:
            return None
        now = time.monotonic()
        cached = self._presigned.get(key)
        if cached is not None and now - cached[0] < self._reuse_s:
            return cached[1]
        url: str = self._client.generate_presigned_url(
            "get_object",
            Params={"Bucket": self._config.bucket, "Key": key},
            ExpiresIn=self._config.presigned_ttl_s,
        )
        if len(self._presigned) >= _PRESIGNED_CACHE_SIZE:
            self._presigned.clear()
        self._presigned[key] = (now, url)
        return url


def _expired(metadata: dict[str, str]) -> bool:
    """Past the object's `expires-at` (an object without one never expires here: the
    bucket's lifecycle rule still removes it)."""
    value = metadata.get(EXPIRES_AT)
    if value is None:
        return False
    try:
        return float(value) <= time.time()
    except ValueError:
        return False


class AsyncS3BlobStore:
    """`S3BlobStore` for the gateway: each boto3 call runs in a worker thread."""

    def __init__(self, client: Any, config: S3Config, ttl_s: int) -> None:
        self._store = S3BlobStore(client, config, ttl_s)

    async def put(self, tenant: str, data: bytes, content_type: str = "image/png") -> str:
        """Store `data` and return its new id."""
        return await anyio.to_thread.run_sync(self._store.put, tenant, data, content_type)

    async def get(self, tenant: str, blob_id: str) -> Blob | None:
        """The blob, or None if it is unknown or expired."""
        return await anyio.to_thread.run_sync(self._store.get, tenant, blob_id)

    async def delete(self, tenant: str, blob_id: str) -> bool:
        """Remove the blob; False if it was unknown or expired."""
        return await anyio.to_thread.run_sync(self._store.delete, tenant, blob_id)

    async def delete_many(self, tenant: str, blob_ids: list[str]) -> None:
        """Remove blobs (result images of a deleted job), unknown ones included."""
        for blob_id in blob_ids:
            await self.delete(tenant, blob_id)

    async def exists(self, tenant: str, blob_id: str) -> bool:
        """Whether the blob is stored and not expired."""
        return await anyio.to_thread.run_sync(self._store.exists, tenant, blob_id)

    async def probe(self) -> str:
        """Readiness: the bucket answers HEAD with our credentials."""
        return await anyio.to_thread.run_sync(self._store.probe)

    def presigned_url(self, tenant: str, blob_id: str) -> str | None:
        """A presigned GET URL (computed locally, so synchronous)."""
        return self._store.presigned_url(tenant, blob_id)
