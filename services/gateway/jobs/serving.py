"""Logic of the jobs area: turn stored job records into API views; cancel jobs; follow
them (bounded waits and server-sent events)."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import AsyncGenerator
from dataclasses import dataclass
from typing import cast

from sse_starlette import ServerSentEvent

from services.common import job_states
from services.common.contract import (
    TERMINAL_STATUSES,
    Control,
    EditMethod,
    JobRecord,
    Outpaint,
    Task,
    status_name,
    task_name,
)
from services.gateway.http.errors import conflict, not_found
from services.gateway.http.links import PLAIN, Links
from services.gateway.jobs.protocol import (
    ImageView,
    JobStatusName,
    JobView,
    ProgressView,
    TimingsView,
)
from services.gateway.protocol import ControlInput, EditMethodName, OutpaintInput, TaskName
from services.gateway.state import GatewayState


def job_view(record: JobRecord, links: Links = PLAIN) -> JobView:
    """The API view of a job record; its URLs written by `links` (the caller's tenant's:
    absolute and signed as configured; default: plain paths)."""
    request = record.request
    timings = record.timings
    edit = _edit_view(record)
    return JobView(
        id=request.job_id,
        task=cast(TaskName, task_name(request.task)),
        status=cast(JobStatusName, status_name(record.status)),
        progress=ProgressView(step=record.progress.step, total=record.progress.total),
        events_url=links.events(request.job_id),
        images=[
            ImageView(
                id=image.image_id,
                url=links.image(image.image_id),
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
        input_image_ids=list(request.input_image_ids),
        mask_image_id=request.mask_image_id or None,
        outpaint=_outpaint_view(request.outpaint) if request.HasField("outpaint") else None,
        strength=request.strength if request.HasField("strength") else None,
        restore=request.restore if request.HasField("restore") else None,
        restore_used=record.restore_used or None,
        source_caption=edit.source_caption if edit else None,
        target_caption=edit.target_caption if edit else None,
        instruction=edit.instruction if edit else None,
        edit_method=edit.method if edit else None,
        control=_control_view(request.control) if request.HasField("control") else None,
    )


@dataclass(frozen=True)
class _EditView:
    source_caption: str
    target_caption: str
    instruction: str | None
    method: EditMethodName | None


def _edit_view(record: JobRecord) -> _EditView | None:
    """An edit job's captions, instruction and method (what the worker used once it ran,
    else what was asked for); None for other tasks."""
    request = record.request
    if request.task != Task.TASK_EDIT:
        return None
    method = record.edit_method_used or None
    if method is None and request.edit.method != EditMethod.EDIT_METHOD_UNSPECIFIED:
        method = EditMethod.Name(request.edit.method).removeprefix("EDIT_METHOD_").lower()
    return _EditView(
        source_caption=record.source_prompt_used or request.edit.source_caption,
        target_caption=record.prompt_used or request.prompt,
        instruction=request.edit.instruction or None,
        method=cast(EditMethodName | None, method),
    )


def _control_view(control: Control) -> ControlInput:
    """The API view of a job's control options, as recorded (0 thresholds: defaults)."""
    return ControlInput.model_construct(
        type="canny",
        preprocessed=control.preprocessed,
        conditioning_scale=(
            round(control.conditioning_scale, 6) if control.HasField("conditioning_scale") else None
        ),
        low_threshold=control.low_threshold or None,
        high_threshold=control.high_threshold or None,
    )


def _outpaint_view(outpaint: Outpaint) -> OutpaintInput:
    """The API view of a job's canvas extension, as recorded (not re-validated: a record
    is shown as it is). A ratio is a float32 in the record: rounded to 6 digits."""
    if outpaint.ratio:
        return OutpaintInput.model_construct(ratio=round(outpaint.ratio, 6))
    return OutpaintInput.model_construct(
        left=outpaint.left, top=outpaint.top, right=outpaint.right, bottom=outpaint.bottom
    )


async def get_job(state: GatewayState, tenant: str, job_id: str) -> JobView:
    """The job's view; 404 if it is unknown (or expired)."""
    record = await state.jobs.get(tenant, job_id)
    if record is None:
        raise not_found(f"job {job_id!r} not found")
    return job_view(record, state.links(tenant))


async def get_job_waiting(
    state: GatewayState, tenant: str, job_id: str, wait_s: int | None
) -> JobView:
    """The job's view, after waiting up to `wait_s` seconds for it to end; 404 if unknown."""
    if not wait_s:
        return await get_job(state, tenant, job_id)
    record = await state.events.wait_until_done(tenant, job_id, wait_s)
    if record is None:
        raise not_found(f"job {job_id!r} not found")
    return job_view(record, state.links(tenant))


CANCELED_ERROR = "canceled by the client"


async def cancel_job(state: GatewayState, tenant: str, job_id: str) -> JobView:
    """queued/running -> canceled in one atomic update; 404 if unknown, 409 if it already
    ended. The worker never starts a canceled queued job and stops a running one at its
    next denoising step (it re-reads the status there), so the client is never blocked."""
    ended_as: list[str] = []

    def mutate(record: JobRecord) -> None:
        if job_states.is_terminal(record):
            ended_as.append(status_name(record.status))
            return
        job_states.cancel(record, CANCELED_ERROR)

    record = await state.jobs.update(tenant, job_id, mutate)
    if record is None:
        raise not_found(f"job {job_id!r} not found")
    if ended_as:
        raise conflict("job_finished", f"job {job_id!r} has already ended: {ended_as[0]}")
    return job_view(record, state.links(tenant))


async def job_event_stream(
    state: GatewayState, tenant: str, job_id: str
) -> AsyncGenerator[ServerSentEvent, None]:
    """Server-sent events of one job: its current view (`status`), then one event per
    change (`status` when the status changed, else `progress`), ending after a terminal
    state or when the record is gone (keep-alives and bounds: event_streams.py)."""
    async with state.events.subscribe(tenant, job_id) as subscription:
        last_status, last_data = "", ""
        links = dataclasses.replace(state.links(tenant), at=time.time())
        while True:
            record = await subscription.read()
            if record is None:
                return
            view = job_view(record, links)
            data = view.model_dump_json()
            if data != last_data:
                event = "status" if view.status != last_status else "progress"
                yield ServerSentEvent(data=data, event=event, sep="\n")
                last_status, last_data = view.status, data
            if record.status in TERMINAL_STATUSES:
                return
            await subscription.wait_for_change(state.events.poll_s)
