"""Create job records and enqueue them for the worker (Celery, producer only).

The gateway never runs Celery's (blocking) producer on the request path. The task message
is built by Celery itself (`app.amqp.as_task_v2`), serialised as kombu's Redis transport
writes it, and pushed onto the queue's Redis list with redis.asyncio, so a stock Celery
worker consumes it (the broker is always a Redis: the queue depth is read from it too,
backpressure.py). Where the broker is the state Redis (the default), the record, the
message and the quota count go in one MULTI: one round trip, and a message never exists
without its record. A broker on another Redis gets the record first, then the push.
"""

from __future__ import annotations

import base64
import logging
import uuid
from dataclasses import dataclass
from functools import partial
from typing import Any

import redis.asyncio as aioredis
from celery import Celery
from kombu.serialization import dumps as serialize
from kombu.utils.json import dumps as json_dumps

from services.common import job_states
from services.common.contract import (
    GENERATE_TASK_NAME,
    GenerationRequest,
    JobRecord,
    Webhook,
    encode_request,
    task_name,
)
from services.common.ids import new_id
from services.common.job_store import AsyncJobStore, stage_create
from services.common.logs import current_request_id
from services.common.redis_keys import RedisKeys
from services.common.tenant_slots import AsyncTenantSlots
from services.gateway.http.errors import ApiError, invalid
from services.gateway.http.rate_limits import ImageQuota
from services.gateway.metrics import GatewayMetrics
from services.gateway.protocol import GenerationOptions
from services.gateway.settings import GatewaySettings
from services.gateway.tasks.inputs import TaskInputs

logger = logging.getLogger(__name__)

# kombu's Redis transport: messages are JSON with a base64 body; delivery_mode 2 is
# "persistent", what kombu's Producer sets by default.
_BODY_ENCODING = "base64"
_PERSISTENT = 2


def make_celery_producer(settings: GatewaySettings) -> Celery:
    """A Celery app that only builds task messages (`TaskPublisher`): it never connects,
    runs no worker and has no result backend."""
    app = Celery("llmga-gateway", broker=settings.effective_broker_url, set_as_current=False)
    app.conf.update(
        task_serializer="json",
        accept_content=["json"],
        task_default_queue=settings.queue_name,
    )
    return app


def task_argsrepr(request: GenerationRequest) -> str:
    """What monitoring tools (Flower, `celery inspect`, worker logs) show as the task's
    arguments: the job, not Celery's repr of the encoded request (long, and costly to
    build on every submission)."""
    return f"[GenerationRequest {request.job_id} ({task_name(request.task)})]"


class TaskPublisher:
    """Puts generate tasks on the queue: built by Celery, pushed with redis.asyncio onto
    the Redis broker (`stage` in a caller's MULTI on the same Redis, or `send`).

    With `slots` (a per-tenant cap, services/common/tenant_slots.py) a message is pushed
    only while its tenant is under the cap; otherwise the job is held back on the broker
    and pushed when one of the tenant's jobs ends."""

    def __init__(
        self,
        producer: Celery,
        broker: aioredis.Redis,
        queue_name: str,
        slots: AsyncTenantSlots | None = None,
    ) -> None:
        self._producer = producer
        self._broker = broker
        self._queue_name = queue_name
        self._slots = slots

    def message(self, request: GenerationRequest) -> bytes:
        """The task message as kombu's Redis transport stores it in the queue's list
        (`Channel.prepare_message` + `_inplace_augment_message`, anonymous exchange)."""
        task = self._producer.amqp.as_task_v2(
            request.job_id,
            GENERATE_TASK_NAME,
            args=[encode_request(request)],
            kwargs={},
            root_id=request.job_id,
            reply_to=self._producer.thread_oid,
            ignore_result=None,  # as `send_task` leaves it: the worker's setting decides
            argsrepr=task_argsrepr(request),
            kwargsrepr="{}",
        )
        content_type, content_encoding, body = serialize(task.body, serializer="json")
        raw = body.encode(content_encoding) if isinstance(body, str) else body
        message = {
            "body": base64.b64encode(raw).decode("ascii"),
            "content-encoding": content_encoding,
            "content-type": content_type,
            "headers": task.headers,
            "properties": {
                **task.properties,
                "delivery_mode": _PERSISTENT,
                "delivery_info": {"exchange": "", "routing_key": self._queue_name},
                "priority": 0,
                "body_encoding": _BODY_ENCODING,
                "delivery_tag": str(uuid.uuid4()),
            },
        }
        return json_dumps(message).encode()

    def stage(self, pipe: Any, request: GenerationRequest) -> None:
        """Queue the push (or the hold) on `pipe` (a pipeline of the broker's Redis)."""
        if self._slots is not None:
            self._slots.stage_admit(pipe, request.tenant, request.job_id, self.message(request))
            return
        # Priority 0: kombu's list for it is the queue's own name.
        pipe.lpush(self._queue_name, self.message(request))

    async def send(self, request: GenerationRequest) -> None:
        """Push the task onto the broker, or hold it (raises on failure)."""
        if self._slots is not None:
            await self._slots.admit(request.tenant, request.job_id, self.message(request))
            return
        await self._broker.lpush(self._queue_name, self.message(request))


@dataclass(frozen=True)
class GenerationParams:
    """Optional generation settings shared by chat and images (0 / None = profile default)."""

    negative_prompt: str = ""
    width: int = 0
    height: int = 0
    steps: int = 0
    guidance_scale: float | None = None
    seed: int | None = None
    n: int = 1
    output_format: str = ""  # "" or "png": as stored
    output_quality: int | None = None


class JobSubmitter:
    """Writes the QUEUED record first, then enqueues the task with the job id as task id.

    The record comes first so that a worker never runs a job whose record is missing; if
    enqueueing fails, the record is marked failed and the client gets a 503 (in one MULTI
    with a shared Redis: neither lands, and the client gets the state store's 503).
    """

    def __init__(
        self,
        client: aioredis.Redis,
        keys: RedisKeys,
        jobs: AsyncJobStore,
        publisher: TaskPublisher,
        metrics: GatewayMetrics,
        quota: ImageQuota,
        *,
        shared_broker: bool,
    ) -> None:
        self._client = client
        self._keys = keys
        self._jobs = jobs
        self._publisher = publisher
        self._metrics = metrics
        self._quota = quota
        self._shared_broker = shared_broker

    async def submit(
        self,
        *,
        tenant: str,
        task: int,
        prompt: str,
        params: GenerationParams,
        conversation_id: str = "",
        request_id: str = "",
        inputs: TaskInputs | None = None,
        webhook: Webhook | None = None,
    ) -> JobRecord:
        """Create and enqueue one job; returns its record as stored. `inputs`: the input
        images (by id) and options of an inpaint or outpaint job. `request_id` defaults to
        the HTTP request's (request_context.py), so the worker's logs carry it too.
        `webhook`: an accepted (allow-listed) webhook of the job. A queued job's images
        count against the tenant's daily quota."""
        request = GenerationRequest(
            job_id=new_id("job"),
            tenant=tenant,
            task=task,  # type: ignore[arg-type]
            prompt=prompt,
            negative_prompt=params.negative_prompt,
            width=params.width,
            height=params.height,
            steps=params.steps,
            n=params.n,
            output_format=params.output_format,
            conversation_id=conversation_id,
            request_id=request_id or current_request_id(),
        )
        if params.guidance_scale is not None:
            request.guidance_scale = params.guidance_scale
        if params.seed is not None:
            request.seed = params.seed
        if params.output_quality is not None:
            request.output_quality = params.output_quality
        if inputs is not None:
            inputs.apply_to(request)
        if webhook is not None:
            request.webhook.CopyFrom(webhook)
        record = job_states.new_record(request)
        if self._shared_broker:
            await self._create_and_enqueue(record)
        else:
            await self._create_then_enqueue(record)
        self._metrics.jobs_submitted.labels(task_name(task)).inc()
        logger.info("queued job %s (%s) for tenant %s", request.job_id, task_name(task), tenant)
        return record

    async def _create_and_enqueue(self, record: JobRecord) -> None:
        """Record (first), message and quota count in one MULTI on the shared Redis. If it
        fails nothing was written, and the RedisError is the state store's outage (503)."""
        request = record.request
        async with self._client.pipeline(transaction=True) as pipe:
            stage_create(pipe, self._keys, record, self._jobs.ttl_s)
            self._publisher.stage(pipe, request)
            self._quota.stage_consume(pipe, request.tenant, request.n)
            created, *_ = await pipe.execute()
        if not created:  # 128 random bits: a clash means a bug
            raise RuntimeError(f"job id {request.job_id} already exists")

    async def _create_then_enqueue(self, record: JobRecord) -> None:
        """Record, then the message on the other broker; a failed push fails the job."""
        request = record.request
        if not await self._jobs.create(record):  # 128 random bits: a clash means a bug
            raise RuntimeError(f"job id {request.job_id} already exists")
        try:
            await self._publisher.send(request)
        except Exception as exc:
            logger.error("could not enqueue job %s: %r", request.job_id, exc)
            await self._jobs.update(
                request.tenant,
                request.job_id,
                partial(
                    job_states.fail, error="could not enqueue the job: the broker is unavailable"
                ),
            )
            raise ApiError(
                503, "service_unavailable", "the job queue is unavailable; try again later"
            ) from exc
        await self._quota.consume(request.tenant, request.n)


def checked_params(options: GenerationOptions, settings: GatewaySettings) -> GenerationParams:
    """Apply the configurable limits to generation options (422 naming the field)."""
    if len(options.negative_prompt) > settings.max_prompt_chars:
        raise invalid(
            f"negative_prompt is longer than {settings.max_prompt_chars} characters",
            "negative_prompt",
        )
    for name in ("width", "height"):
        value = getattr(options, name)
        if value is not None and not settings.min_size <= value <= settings.max_size:
            raise invalid(
                f"{name} must be between {settings.min_size} and {settings.max_size}, not {value}",
                name,
            )
    if options.steps is not None and options.steps > settings.max_steps:
        raise invalid(f"steps must be at most {settings.max_steps}, not {options.steps}", "steps")
    if options.n > settings.max_n:
        raise invalid(f"n must be at most {settings.max_n}, not {options.n}", "n")
    if options.output_quality is not None and options.output_format == "png":
        raise invalid("output_quality is for jpeg and webp, not png", "output_quality")
    return GenerationParams(
        negative_prompt=options.negative_prompt,
        width=options.width or 0,
        height=options.height or 0,
        steps=options.steps or 0,
        guidance_scale=options.guidance_scale,
        seed=options.seed,
        n=options.n,
        output_format="" if options.output_format == "png" else options.output_format,
        output_quality=options.output_quality,
    )
