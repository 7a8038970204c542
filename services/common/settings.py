"""Settings every service that touches shared state needs; each service subclasses this."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator
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
    tenant_max_in_flight: int = Field(
        default=4,
        ge=0,
        description="Most jobs of one tenant in the generation queue at once, waiting or "
        "running; its further jobs are held back (still `queued` to clients) and admitted "
        "one per ended job, so one tenant's backlog cannot starve another's job (docs/jobs.md, "
        "Fairness between tenants). Set the same on the gateway and the workers; about the "
        "workers' total batch capacity x 2. 0: no cap (one FIFO queue).",
    )

    blob_store: Literal["redis", "s3"] = Field(
        default="redis",
        description="Where images are stored: `redis` (embedded default, in Redis RAM) or "
        "`s3` (an S3-compatible object store; docs/deploy.md, Object store).",
    )
    s3_bucket: str = Field(
        default="", description="The bucket of images when `blob_store` is `s3` (required then)."
    )
    s3_endpoint_url: str = Field(
        default="",
        description="S3 API endpoint (MinIO, GCS interoperability, ...); empty means AWS.",
    )
    s3_region: str = Field(
        default="", description="The bucket's region; empty: the AWS configuration's default."
    )
    s3_prefix: str = Field(
        default="llmga/images/",
        description="Prefix of every object key: `{prefix}{tenant}/{image id}`.",
    )
    s3_presigned_urls: bool = Field(
        default=True,
        description="With `s3`: answers carry presigned S3 URLs of images and GET "
        "/v1/images/{id} redirects (307) to one; false: the gateway proxies every download "
        "(a store clients cannot reach).",
    )
    s3_presigned_ttl_s: int = Field(
        default=3600,
        gt=0,
        le=7 * 24 * 3600,
        description="How long the presigned S3 URLs of images in answers stay valid.",
    )

    log_format: Literal["text", "json"] = Field(
        default="text",
        description="`json`: one JSON object per log line (services/common/logs.py).",
    )

    @model_validator(mode="after")
    def _s3_needs_a_bucket(self) -> StateSettings:
        if self.blob_store == "s3" and not self.s3_bucket:
            raise ValueError("LLMGA_BLOB_STORE=s3 needs LLMGA_S3_BUCKET")
        return self

    @property
    def effective_broker_url(self) -> str:
        return self.broker_url or self.redis_url
