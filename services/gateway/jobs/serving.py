"""Logic of the jobs area: turn stored job records into API views; cancel jobs; follow
them (bounded waits and server-sent events)."""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import AsyncGenerator
from dataclasses import dataclass
from typing import cast

import redis
from sse_starlette import ServerSentEvent

from services.common import job_states
from services.common.contract import (
    TERMINAL_STATUSES,
    Control,
    EditMethod,
    JobRecord,
    JobStatus,
    Outpaint,
    Task,
    status_name,
    task_name,
)
from services.common.job_previews import PreviewEntry, read_previews
from services.common.job_store import parse_record
from services.gateway.http.errors import conflict, not_found
from services.gateway.http.links import PLAIN, Links
from services.gateway.images.formats import ImageFormat
from services.gateway.jobs.protocol import (
    ImageView,
    JobList,
    JobStatusName,
    JobView,
    PreviewView,
    ProgressView,
    TimingsView,
)
from services.gateway.protocol import ControlInput, EditMethodName, OutpaintInput, TaskName
from services.gateway.state import GatewayState
from services.gateway.stores.listing import read_page

logger = logging.getLogger(__name__)


def job_view(record: JobRecord, links: Links = PLAIN) -> JobView:
    """The API view of a job record; its URLs written by `links` (the caller's tenant's:
    absolute and signed as configured; default: plain paths)."""
    request = record.request
    timings = record.timings
    edit = _edit_view(record)
    # The requested download format (POST /v1/images' output_format): the URL converts.
    output_format = cast(ImageFormat, request.output_format) if request.output_format else None
    quality = request.output_quality if request.HasField("output_quality") else None
    return JobView(
        id=request.job_id,
        task=cast(TaskName, task_name(request.task)),
        status=cast(JobStatusName, status_name(record.status)),
        progress=ProgressView(step=record.progress.step, total=record.progress.total),
        events_url=links.events(request.job_id),
        images=[
            ImageView(
                id=image.image_id,
                url=links.image(image.image_id, output_format, quality),
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
        batch_size=record.batch_size or None,
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


CANCELED_ERROR = "canceled by the client"

# Succeeded jobs the estimate of a queued job's start averages over, and how many of the
# tenant's newest jobs are looked at to find them.
RECENT_RUNS = 20
_RECENT_SCANNED = 100


async def mean_run_s(state: GatewayState, tenant: str) -> float:
    """The mean run time (finished_at - started_at) of the tenant's most recent succeeded
    jobs (up to RECENT_RUNS of its newest _RECENT_SCANNED), else the configured guess."""
    ids = await state.redis.zrevrange(state.keys.job_index(tenant), 0, _RECENT_SCANNED - 1)
    runs: list[float] = []
    if ids:
        records = await state.redis.mget(
            [state.keys.job(tenant, raw.decode()) for raw in cast(list[bytes], ids)]
        )
        for data in records:
            if data is None:
                continue
            record = parse_record(data)
            timings = record.timings
            if (
                record.status == JobStatus.JOB_STATUS_SUCCEEDED
                and timings.started_at
                and timings.finished_at >= timings.started_at
            ):
                runs.append(timings.finished_at - timings.started_at)
                if len(runs) == RECENT_RUNS:
                    break
    return sum(runs) / len(runs) if runs else state.settings.job_duration_estimate_s


async def with_queue_positions(
    state: GatewayState, tenant: str, views: list[JobView]
) -> list[JobView]:
    """`views` with the queue position and estimated start of the queued ones (one read
    of the queue and, when there is one, of the tenant's recent jobs)."""
    queued = [view for view in views if view.status == "queued"]
    if not queued:
        return views
    try:
        ids = [view.id for view in queued]
        positions = await state.queue.positions(ids)
        if state.slots is not None:  # held back by the tenant's cap: not in the queue yet
            positions |= await state.slots.held_positions(tenant, ids)
        # Nothing ahead: the estimate is 0 whatever the run time.
        run_s = await mean_run_s(state, tenant) if any(positions.values()) else 0.0
    except redis.RedisError as exc:
        # The broker may be another Redis: its outage leaves the fields null, it does not
        # fail the read of the job.
        logger.warning("queue positions unavailable: %r", exc)
        return views
    for view in queued:
        position = positions.get(view.id, 0)  # not in the list: handed to a worker
        view.queue_position = position
        view.estimated_start_s = round(position * run_s, 3)
    return views


async def require_job(state: GatewayState, tenant: str, job_id: str) -> None:
    """404 if the job is unknown (or expired)."""
    if not await state.redis.exists(state.keys.job(tenant, job_id)):
        raise not_found(f"job {job_id!r} not found")


async def get_job(state: GatewayState, tenant: str, job_id: str) -> JobView:
    """The job's view (a queued one with its queue position); 404 if it is unknown (or
    expired)."""
    record = await state.jobs.get(tenant, job_id)
    if record is None:
        raise not_found(f"job {job_id!r} not found")
    (view,) = await with_queue_positions(state, tenant, [job_view(record, state.links(tenant))])
    return view


async def list_jobs(
    state: GatewayState,
    tenant: str,
    *,
    limit: int,
    cursor: str | None,
    status: JobStatusName | None = None,
    task: TaskName | None = None,
    conversation_id: str | None = None,
) -> JobList:
    """A page of the tenant's jobs, newest first, filtered (stores/listing.py)."""

    links = state.links(tenant)

    def parse(data: bytes) -> JobView | None:
        record = parse_record(data)
        if status is not None and status_name(record.status) != status:
            return None
        if task is not None and task_name(record.request.task) != task:
            return None
        if conversation_id is not None and record.request.conversation_id != conversation_id:
            return None
        return job_view(record, links)

    page = await read_page(
        state.redis,
        kind="jobs",
        index=state.keys.job_index(tenant),
        record_key=lambda job_id: state.keys.job(tenant, job_id),
        parse=parse,
        limit=limit,
        cursor=cursor,
    )
    views = await with_queue_positions(state, tenant, page.items)
    return JobList(data=views, next_cursor=page.next_cursor)


async def delete_job(state: GatewayState, tenant: str, job_id: str) -> None:
    """Cancel the job if it is queued or running (the canceled transition, with its
    webhook event), then delete its record (and index entry) and its result images; 404
    if unknown. A queued job is never started and a running one stops at its next step."""

    def mutate(record: JobRecord) -> None:
        if not job_states.is_terminal(record):
            job_states.cancel(record, CANCELED_ERROR)

    if await state.jobs.update(tenant, job_id, mutate) is None:
        raise not_found(f"job {job_id!r} not found")
    await release_slot(state, tenant, job_id)
    record = await state.jobs.delete(tenant, job_id)
    if record is not None and record.images:
        # Result images belong to their job alone (the worker stores them per job).
        await state.blobs.delete_many(tenant, [image.image_id for image in record.images])


async def get_job_waiting(
    state: GatewayState, tenant: str, job_id: str, wait_s: int | None
) -> JobView:
    """The job's view, after waiting up to `wait_s` seconds for it to end; 404 if unknown."""
    if not wait_s:
        return await get_job(state, tenant, job_id)
    record = await state.events.wait_until_done(tenant, job_id, wait_s)
    if record is None:
        raise not_found(f"job {job_id!r} not found")
    (view,) = await with_queue_positions(state, tenant, [job_view(record, state.links(tenant))])
    return view


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
    await release_slot(state, tenant, job_id)
    return job_view(record, state.links(tenant))


async def release_slot(state: GatewayState, tenant: str, job_id: str) -> None:
    """After a cancel: drop a held job from the hold, or give a queued or running job's
    in-flight slot to the tenant's next held job now rather than when the worker skips or
    stops it. If this is lost (a crash, an outage), the worker releases the job when its
    message comes up (services/common/tenant_slots.py), so the cancel still stands."""
    if state.slots is None:
        return
    try:
        await state.slots.release(tenant, job_id)
    except redis.RedisError as exc:
        logger.warning("could not release job %s's slot now: %r", job_id, exc)


async def job_event_stream(
    state: GatewayState, tenant: str, job_id: str
) -> AsyncGenerator[ServerSentEvent, None]:
    """Server-sent events of one job: its current view (`status`), then one event per
    change (`status` when the status changed, else `progress`), ending after a terminal
    state or when the record is gone (keep-alives and bounds: event_streams.py).

    `preview` events carry the previews the worker stored while denoising, oldest first:
    those already stored follow the first event (none when the job has already ended),
    later ones come before the change read with them, so every preview precedes the
    job's terminal status."""
    async with state.events.subscribe(tenant, job_id) as subscription:
        last_status, last_data = "", ""
        links = dataclasses.replace(state.links(tenant), at=time.time())
        seen = 0  # previews sent
        first = True
        while True:
            record = await subscription.read()
            if record is None:
                return
            terminal = record.status in TERMINAL_STATUSES
            previews: list[ServerSentEvent] = []
            if not (first and terminal):
                entries = await read_previews(state.redis, state.keys, tenant, job_id, seen)
                seen += len(entries)
                previews = [preview_event(entry, links) for entry in entries]
            if not first:
                for preview in previews:
                    yield preview
            view = job_view(record, links)
            data = view.model_dump_json()
            if data != last_data:
                event = "status" if view.status != last_status else "progress"
                yield ServerSentEvent(data=data, event=event, sep="\n")
                last_status, last_data = view.status, data
            if first:
                for preview in previews:
                    yield preview
                first = False
            if terminal:
                return
            await subscription.wait_for_change(state.events.poll_s)


def preview_view(entry: PreviewEntry, links: Links) -> PreviewView:
    """The API's view of a stored preview."""
    return PreviewView(
        step=entry.step,
        total=entry.total,
        image_index=entry.image_index,
        image_id=entry.image_id,
        url=links.image(entry.image_id),
        width=entry.width,
        height=entry.height,
    )


def preview_event(entry: PreviewEntry, links: Links) -> ServerSentEvent:
    """`event: preview` with the preview's view."""
    data = preview_view(entry, links).model_dump_json()
    return ServerSentEvent(data=data, event="preview", sep="\n")
