"""Create job records and enqueue them for the worker (Celery, producer only)."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

from celery import Celery

from services.common.contract import (
    GENERATE_TASK_NAME,
    GenerationRequest,
    JobRecord,
    JobStatus,
    Webhook,
    encode_request,
    task_name,
)
from services.common.ids import new_id
from services.common.job_store import JobStore
from services.common.logs import current_request_id
from services.gateway.errors import ApiError, invalid
from services.gateway.metrics import GatewayMetrics
from services.gateway.protocol import GenerationOptions
from services.gateway.rate_limits import ImageQuota
from services.gateway.settings import GatewaySettings
from services.gateway.task_inputs import TaskInputs

logger = logging.getLogger(__name__)


def make_celery_producer(settings: GatewaySettings) -> Celery:
    """A Celery app that only sends tasks: no worker, no result backend, JSON messages."""
    app = Celery("llmga-gateway", broker=settings.effective_broker_url, set_as_current=False)
    app.conf.update(
        task_serializer="json",
        accept_content=["json"],
        task_default_queue=settings.queue_name,
        # Fail fast when the broker is down: the client gets a 503 instead of a hang.
        broker_connection_timeout=3,
        task_publish_retry_policy={
            "max_retries": 2,
            "interval_start": 0,
            "interval_step": 0.2,
            "interval_max": 0.5,
        },
    )
    return app


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


class JobSubmitter:
    """Writes the QUEUED record first, then sends the Celery task with the job id as task id.

    The record comes first so that a worker never runs a job whose record is missing; if
    sending fails, the record is marked failed and the client gets a 503.
    """

    def __init__(
        self,
        jobs: JobStore,
        producer: Celery,
        queue_name: str,
        metrics: GatewayMetrics,
        quota: ImageQuota,
    ) -> None:
        self._jobs = jobs
        self._producer = producer
        self._queue_name = queue_name
        self._metrics = metrics
        self._quota = quota

    def submit(
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
            conversation_id=conversation_id,
            request_id=request_id or current_request_id(),
        )
        if params.guidance_scale is not None:
            request.guidance_scale = params.guidance_scale
        if params.seed is not None:
            request.seed = params.seed
        if inputs is not None:
            inputs.apply_to(request)
        if webhook is not None:
            request.webhook.CopyFrom(webhook)
        record = JobRecord(request=request, status=JobStatus.JOB_STATUS_QUEUED)
        record.timings.created_at = time.time()
        if not self._jobs.create(record):  # 128 random bits: a clash means a bug
            raise RuntimeError(f"job id {request.job_id} already exists")
        try:
            self._producer.send_task(
                GENERATE_TASK_NAME,
                args=[encode_request(request)],
                task_id=request.job_id,
                queue=self._queue_name,
            )
        except Exception as exc:
            logger.error("could not enqueue job %s: %r", request.job_id, exc)

            def mark_failed(stored: JobRecord) -> None:
                stored.status = JobStatus.JOB_STATUS_FAILED
                stored.error = "could not enqueue the job: the broker is unavailable"
                stored.timings.finished_at = time.time()

            self._jobs.update(tenant, request.job_id, mark_failed)
            raise ApiError(
                503, "service_unavailable", "the job queue is unavailable; try again later"
            ) from exc
        self._quota.consume(tenant, params.n)
        self._metrics.jobs_submitted.labels(task_name(task)).inc()
        logger.info("queued job %s (%s) for tenant %s", request.job_id, task_name(task), tenant)
        return record


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
    return GenerationParams(
        negative_prompt=options.negative_prompt,
        width=options.width or 0,
        height=options.height or 0,
        steps=options.steps or 0,
        guidance_scale=options.guidance_scale,
        seed=options.seed,
        n=options.n,
    )
