"""Logic of the jobs area: turn stored job records into API views."""

from __future__ import annotations

from typing import cast

from services.common.contract import JobRecord, status_name, task_name
from services.gateway.errors import not_found
from services.gateway.jobs.protocol import (
    ImageView,
    JobStatusName,
    JobView,
    ProgressView,
    TimingsView,
)
from services.gateway.protocol import TaskName
from services.gateway.state import GatewayState


def image_url(image_id: str) -> str:
    """The API path of an image."""
    return f"/v1/images/{image_id}"


def job_view(record: JobRecord) -> JobView:
    """The API view of a job record."""
    request = record.request
    timings = record.timings
    return JobView(
        id=request.job_id,
        task=cast(TaskName, task_name(request.task)),
        status=cast(JobStatusName, status_name(record.status)),
        progress=ProgressView(step=record.progress.step, total=record.progress.total),
        images=[
            ImageView(
                id=image.image_id,
                url=image_url(image.image_id),
                seed=image.seed,
                width=image.width,
                height=image.height,
            )
            for image in record.images
        ],
        prompt=record.prompt_used or request.prompt,
        negative_prompt=record.negative_prompt_used or request.negative_prompt,
        error=record.error or None,
        created_at=timings.created_at,
        started_at=timings.started_at or None,
        finished_at=timings.finished_at or None,
        timings=TimingsView(
            encode_s=timings.encode_s, denoise_s=timings.denoise_s, decode_s=timings.decode_s
        ),
        model_profile=record.model_profile or None,
        conversation_id=request.conversation_id or None,
    )


def get_job(state: GatewayState, tenant: str, job_id: str) -> JobView:
    """The job's view; 404 if it is unknown (or expired)."""
    record = state.jobs.get(tenant, job_id)
    if record is None:
        raise not_found(f"job {job_id!r} not found")
    return job_view(record)
