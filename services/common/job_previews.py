"""Previews of a job while it denoises: the worker stores each one as a small JPEG blob
(a short TTL) and appends its entry to the job's preview list (`RedisKeys.job_previews`),
then publishes `preview` on the job's channel; event streams read the list from where they
left off (a missed notification only delays them until their next re-read).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from typing import Any

from services.common.redis_keys import RedisKeys

PREVIEW_NOTIFICATION = b"preview"


@dataclass(frozen=True)
class PreviewEntry:
    """One preview: job-wide `step` of `total`, of image `image_index` (0-based), stored as
    the JPEG blob `image_id` of `width` x `height` pixels."""

    step: int
    total: int
    image_index: int
    image_id: str
    width: int
    height: int

    def encode(self) -> bytes:
        return json.dumps(asdict(self), separators=(",", ":")).encode()

    @classmethod
    def decode(cls, data: bytes) -> PreviewEntry:
        fields = json.loads(data)
        return cls(**{name: fields[name] for name in cls.__dataclass_fields__})


def stage_preview(
    pipe: Any, keys: RedisKeys, tenant: str, job_id: str, entry: PreviewEntry, ttl_s: int
) -> None:
    """Queue the append of `entry` to the job's list (its TTL renewed) and the
    notification on `pipe` (sync or asyncio)."""
    key = keys.job_previews(tenant, job_id)
    pipe.rpush(key, entry.encode())
    pipe.expire(key, ttl_s)
    pipe.publish(keys.job_events(tenant, job_id), PREVIEW_NOTIFICATION)


async def read_previews(
    client: Any, keys: RedisKeys, tenant: str, job_id: str, start: int
) -> list[PreviewEntry]:
    """The job's previews from index `start` on (an asyncio client); [] when none."""
    items = await client.lrange(keys.job_previews(tenant, job_id), start, -1)
    return [PreviewEntry.decode(item) for item in items]
