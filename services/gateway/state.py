"""The resources one app instance shares across requests, created once in the lifespan."""

from __future__ import annotations

from dataclasses import dataclass

import redis
from celery import Celery
from fastapi import Request

from services.common.blob_store import RedisBlobStore
from services.common.job_store import JobStore
from services.common.redis_keys import RedisKeys
from services.common.workers import WorkerRegistry
from services.gateway.apikeys import TENANT_SCOPE_KEY
from services.gateway.backpressure import QueueDepth
from services.gateway.conversation_store import ConversationStore
from services.gateway.errors import ApiError
from services.gateway.idempotency import IdempotencyStore
from services.gateway.job_events import JobEvents
from services.gateway.job_submitter import JobSubmitter, make_celery_producer
from services.gateway.metrics import GatewayMetrics
from services.gateway.mllm_client import MllmClient
from services.gateway.rate_limits import ImageQuota, RequestRateLimiter
from services.gateway.settings import GatewaySettings
from services.gateway.uploads import ImageLimits


@dataclass
class GatewayState:
    """Clients and stores; stored on `app.state.gateway`."""

    settings: GatewaySettings
    metrics: GatewayMetrics
    redis: redis.Redis
    keys: RedisKeys
    producer: Celery
    mllm: MllmClient
    jobs: JobStore
    blobs: RedisBlobStore
    conversations: ConversationStore
    workers: WorkerRegistry
    submitter: JobSubmitter
    events: JobEvents
    idempotency: IdempotencyStore
    queue: QueueDepth
    rate_limiter: RequestRateLimiter
    quota: ImageQuota

    @property
    def image_limits(self) -> ImageLimits:
        """Upload limits from the settings."""
        s = self.settings
        return ImageLimits(
            max_bytes=s.max_upload_bytes, max_pixels=s.max_image_pixels, max_side=s.max_image_side
        )

    @classmethod
    def open(cls, settings: GatewaySettings, metrics: GatewayMetrics) -> GatewayState:
        """Create the clients (they connect lazily, so a missing Redis or mllm does not
        stop the gateway from starting; /readyz reports it)."""
        client = redis.Redis.from_url(
            settings.redis_url,
            decode_responses=False,  # the common stores read and write bytes
            socket_connect_timeout=3,
            socket_timeout=10,
            health_check_interval=30,
        )
        keys = RedisKeys(settings.key_prefix)
        producer = make_celery_producer(settings)
        jobs = JobStore(client, keys, settings.job_ttl_s)
        # The broker may be another Redis than the state store (LLMGA_BROKER_URL).
        broker = redis.Redis.from_url(
            settings.effective_broker_url, socket_connect_timeout=3, socket_timeout=10
        )
        queue = QueueDepth(broker, settings.queue_name)
        metrics.queue_depth.set_function(queue.depth_or_nan)
        quota = ImageQuota(client, keys, settings.quota_images_per_day, metrics)
        return cls(
            settings=settings,
            metrics=metrics,
            redis=client,
            keys=keys,
            producer=producer,
            mllm=MllmClient(
                settings.mllm_base_url,
                model=settings.mllm_model,
                api_key=settings.mllm_api_key,
                connect_timeout_s=settings.mllm_connect_timeout_s,
                timeout_s=settings.mllm_timeout_s,
            ),
            jobs=jobs,
            blobs=RedisBlobStore(client, keys, settings.image_ttl_s),
            conversations=ConversationStore(client, keys, settings.conversation_ttl_s),
            workers=WorkerRegistry(client, keys),
            submitter=JobSubmitter(jobs, producer, settings.queue_name, metrics, quota),
            events=JobEvents(settings.redis_url, keys, jobs, settings.job_events_poll_s),
            idempotency=IdempotencyStore(
                client,
                keys,
                settings.idempotency_ttl_s,
                # A claim outlives the longest request (mllm call + wait), then lapses.
                pending_ttl_s=int(settings.mllm_timeout_s + settings.max_wait_s) + 60,
            ),
            queue=queue,
            rate_limiter=RequestRateLimiter(
                client, keys, settings.rate_limit_requests, settings.rate_limit_window_s
            ),
            quota=quota,
        )

    async def close(self) -> None:
        """Release connections."""
        self.mllm.close()
        self.producer.close()
        self.redis.close()
        self.queue.close()
        await self.events.aclose()


def get_state(request: Request) -> GatewayState:
    """FastAPI dependency: the app's GatewayState."""
    state = request.app.state.gateway
    assert isinstance(state, GatewayState)
    return state


def get_tenant(request: Request) -> str:
    """FastAPI dependency: the caller's tenant: its API key's when auth is required (set
    by `ApiKeyMiddleware`, which answered 401 without a valid key), else the default."""
    settings = get_state(request).settings
    if settings.auth_required:
        tenant = request.scope.get(TENANT_SCOPE_KEY)
        if not isinstance(tenant, str):  # a route the middleware let through as public
            raise ApiError(401, "unauthorized", "this route needs an API key")
        return tenant
    return settings.default_tenant
