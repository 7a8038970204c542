"""The resources one app instance shares across requests, created once in the lifespan."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

import redis.asyncio as aioredis
from celery import Celery

from services.common.blob_store import AsyncBlobStore
from services.common.blob_stores import open_async_blob_store
from services.common.job_store import AsyncJobStore
from services.common.redis_keys import RedisKeys
from services.common.tenant_slots import AsyncTenantSlots
from services.common.workers import AsyncWorkerRegistry
from services.gateway.http.backpressure import QueueDepth
from services.gateway.http.idempotency import IdempotencyStore
from services.gateway.http.links import Links, url_signer
from services.gateway.http.rate_limits import ImageQuota, RequestRateLimiter
from services.gateway.http.signed_urls import UrlSigner
from services.gateway.metrics import GatewayMetrics
from services.gateway.mllm.client import MllmClient
from services.gateway.routing.classifier import MODEL_PATH, NaiveBayes, load_model
from services.gateway.settings import GatewaySettings
from services.gateway.stores.conversations import ConversationStore
from services.gateway.stores.job_events import JobEvents
from services.gateway.stores.job_submitter import JobSubmitter, TaskPublisher, make_celery_producer
from services.gateway.uploads import ImageLimits


def _redis(url: str, max_connections: int, wait_s: float | None = None) -> aioredis.Redis:
    """An asyncio client whose pool opens at most `max_connections`. With `wait_s`, a
    request finding them all busy waits that long for one (a burst queues instead of
    failing); without, it fails at once (MaxConnectionsError: 503)."""
    options: dict[str, Any] = {
        "max_connections": max_connections,
        "decode_responses": False,  # the common stores read and write bytes
        "socket_connect_timeout": 3,
        "socket_timeout": 10,
        "health_check_interval": 30,
    }
    if wait_s is None:
        pool = aioredis.ConnectionPool.from_url(url, **options)
    else:
        pool = aioredis.BlockingConnectionPool.from_url(url, timeout=wait_s, **options)
    return aioredis.Redis.from_pool(pool)


@dataclass
class GatewayState:
    """Clients and stores; stored on `app.state.gateway`. Every one is asyncio: a request
    waiting on Redis or the mllm holds no thread."""

    settings: GatewaySettings
    metrics: GatewayMetrics
    redis: aioredis.Redis
    broker: aioredis.Redis
    keys: RedisKeys
    producer: Celery
    mllm: MllmClient
    jobs: AsyncJobStore
    blobs: AsyncBlobStore
    conversations: ConversationStore
    workers: AsyncWorkerRegistry
    submitter: JobSubmitter
    events: JobEvents
    idempotency: IdempotencyStore
    queue: QueueDepth
    rate_limiter: RequestRateLimiter
    quota: ImageQuota
    # says whether a chat turn asks for an image (docs/router.md)
    router: NaiveBayes
    # The per-tenant in-flight cap (LLMGA_TENANT_MAX_IN_FLIGHT); None when off.
    slots: AsyncTenantSlots | None = None

    @property
    def image_limits(self) -> ImageLimits:
        """Upload limits from the settings."""
        s = self.settings
        return ImageLimits(
            max_bytes=s.max_upload_bytes, max_pixels=s.max_image_pixels, max_side=s.max_image_side
        )

    @cached_property
    def url_signer(self) -> UrlSigner | None:
        """The signer of image URLs and event tokens; None without LLMGA_URL_SIGNING_SECRET."""
        return url_signer(self.settings)

    def links(self, tenant: str) -> Links:
        """How the tenant's image and event URLs are written in answers."""
        return Links.for_tenant(
            self.settings, self.url_signer, tenant, presign=self.blobs.presigned_url
        )

    @classmethod
    def open(cls, settings: GatewaySettings, metrics: GatewayMetrics) -> GatewayState:
        """Create the clients (they connect lazily, so a missing Redis or mllm does not
        stop the gateway from starting; /readyz reports it)."""
        client = _redis(
            settings.redis_url, settings.redis_max_connections, settings.redis_pool_timeout_s
        )
        # Pub/sub holds a connection for as long as a subscriber listens (an event stream
        # for minutes): its own pool, so open streams never starve commands.
        subscriptions = _redis(settings.redis_url, settings.max_event_subscriptions)
        keys = RedisKeys(settings.key_prefix)
        producer = make_celery_producer(settings)
        jobs = AsyncJobStore(client, keys, settings.job_ttl_s)
        # The broker may be another Redis than the state store (LLMGA_BROKER_URL); when it
        # is the same, one client serves both and a job is queued in one MULTI.
        shared_broker = settings.effective_broker_url == settings.redis_url
        broker = (
            client
            if shared_broker
            else _redis(
                settings.effective_broker_url,
                settings.redis_max_connections,
                settings.redis_pool_timeout_s,
            )
        )
        quota = ImageQuota(client, keys, settings.quota_images_per_day, metrics)
        # On the broker: admission and the queue push are one script there.
        slots = (
            AsyncTenantSlots(
                broker, keys, settings.queue_name, settings.tenant_max_in_flight, settings.job_ttl_s
            )
            if settings.tenant_max_in_flight
            else None
        )
        publisher = TaskPublisher(producer, broker, settings.queue_name, slots)
        return cls(
            settings=settings,
            metrics=metrics,
            redis=client,
            broker=broker,
            keys=keys,
            producer=producer,
            router=load_model(Path(settings.router_model_path or MODEL_PATH)),
            mllm=MllmClient(
                settings.mllm_base_url,
                model=settings.mllm_model,
                api_key=settings.mllm_api_key,
                connect_timeout_s=settings.mllm_connect_timeout_s,
                timeout_s=settings.mllm_timeout_s,
            ),
            jobs=jobs,
            blobs=open_async_blob_store(settings, client, keys),
            conversations=ConversationStore(client, keys, settings.conversation_ttl_s),
            workers=AsyncWorkerRegistry(client, keys),
            submitter=JobSubmitter(
                client, keys, jobs, publisher, metrics, quota, shared_broker=shared_broker
            ),
            events=JobEvents(subscriptions, keys, jobs, settings.job_events_poll_s),
            idempotency=IdempotencyStore(
                client,
                keys,
                settings.idempotency_ttl_s,
                # A claim outlives the longest request (mllm call + wait), then lapses.
                pending_ttl_s=int(settings.mllm_timeout_s + settings.max_wait_s) + 60,
            ),
            queue=QueueDepth(broker, settings.queue_name, settings.queue_depth_refresh_s, slots),
            rate_limiter=RequestRateLimiter(
                client, keys, settings.rate_limit_requests, settings.rate_limit_window_s
            ),
            quota=quota,
            slots=slots,
        )

    async def close(self) -> None:
        """Release connections."""
        await self.mllm.aclose()
        self.producer.close()
        if self.broker is not self.redis:
            await self.broker.aclose()
        await self.events.aclose()
        await self.redis.aclose()
