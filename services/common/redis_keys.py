"""The Redis key schema (docs/redis.md). Every key of tenant data carries the tenant."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class RedisKeys:
    """Builds keys under one prefix, so deployments and test runs never collide."""

    prefix: str = "llmga"

    def job(self, tenant: str, job_id: str) -> str:
        return f"{self.prefix}:{tenant}:job:{job_id}"

    def conversation(self, tenant: str, conversation_id: str) -> str:
        return f"{self.prefix}:{tenant}:conv:{conversation_id}"

    def blob(self, tenant: str, blob_id: str) -> str:
        return f"{self.prefix}:{tenant}:blob:{blob_id}"

    def blob_meta(self, tenant: str, blob_id: str) -> str:
        return f"{self.prefix}:{tenant}:blobmeta:{blob_id}"

    def workers(self) -> str:
        """Sorted set: worker name -> last heartbeat (Unix seconds)."""
        return f"{self.prefix}:workers"

    def worker_info(self, worker: str) -> str:
        return f"{self.prefix}:worker:{worker}"
