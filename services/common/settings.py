"""Settings every service that touches shared state needs; each service subclasses this."""

from __future__ import annotations

from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class StateSettings(BaseSettings):
    """Where state lives (Redis) and how long it is kept. Environment prefix `LLMGA_`."""

    model_config = SettingsConfigDict(env_prefix="LLMGA_", extra="ignore")

    redis_url: str = Field(
        default="redis://127.0.0.1:6379/0", description="Redis for state and blobs."
    )
    broker_url: str = Field(
        default="", description="Celery broker; empty means the same Redis as `redis_url`."
    )
    key_prefix: str = Field(
        default="llmga", description="Prefix of every Redis key (docs/redis.md)."
    )
    queue_name: str = Field(
        default="llmga.generate", description="Celery queue of generation jobs."
    )
    job_ttl_s: int = Field(
        default=7 * 24 * 3600, gt=0, description="How long job records are kept."
    )
    image_ttl_s: int = Field(default=7 * 24 * 3600, gt=0, description="How long images are kept.")
    conversation_ttl_s: int = Field(
        default=7 * 24 * 3600,
        gt=0,
        description="How long conversations are kept after their last turn.",
    )

    log_format: Literal["text", "json"] = Field(
        default="text",
        description="`json`: one JSON object per log line (services/common/logs.py).",
    )

    @property
    def effective_broker_url(self) -> str:
        return self.broker_url or self.redis_url
