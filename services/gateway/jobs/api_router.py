"""Routes of the jobs area."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Response, status
from sse_starlette import EventSourceResponse

from services.gateway.deps import StateDep, TenantDep
from services.gateway.http.event_streams import event_stream
from services.gateway.http.openapi_responses import error, protected
from services.gateway.http.waiting import WaitSeconds, mark_applied
from services.gateway.jobs.protocol import JobList, JobStatusName, JobView
from services.gateway.jobs.serving import (
    cancel_job,
    delete_job,
    get_job_waiting,
    job_event_stream,
    list_jobs,
    require_job,
)
from services.gateway.protocol import DEFAULT_PAGE, Cursor, PageLimit, TaskName

router = APIRouter(tags=["jobs"])

_NOT_FOUND = error("Unknown or expired job.")
_INVALID = error("Invalid parameter (named in `field`).")


@router.get(
    "/v1/jobs",
    operation_id="listJobs",
    response_model=JobList,
    responses={
        **protected(),
        422: error("A malformed cursor, or a bad filter or limit (named in `field`)."),
    },
)
async def read_jobs(
    state: StateDep,
    tenant: TenantDep,
    limit: PageLimit = DEFAULT_PAGE,
    cursor: Cursor = None,
    status: Annotated[JobStatusName | None, Query(description="Only jobs in this status.")] = None,
    task: Annotated[TaskName | None, Query(description="Only jobs of this task.")] = None,
    conversation_id: Annotated[
        str | None, Query(description="Only the jobs this conversation started.")
    ] = None,
) -> JobList:
    """The tenant's jobs (until they expire, LLMGA_JOB_TTL_S), newest first, `limit` per
    page; follow `next_cursor` for the next page (cursors stay valid while new jobs are
    created: a new job never shifts or repeats items of later pages). Queued jobs carry
    `queue_position` and `estimated_start_s`."""
    return await list_jobs(
        state,
        tenant,
        limit=limit,
        cursor=cursor,
        status=status,
        task=task,
        conversation_id=conversation_id,
    )


@router.get(
    "/v1/jobs/{job_id}",
    operation_id="getJob",
    response_model=JobView,
    responses={
        **protected(),
        404: _NOT_FOUND,
        422: error("wait over LLMGA_MAX_WAIT_S."),
    },
)
async def read_job(
    job_id: str,
    response: Response,
    state: StateDep,
    tenant: TenantDep,
    wait: WaitSeconds,
) -> JobView:
    """Status, progress and results of a generation job (a queued one with its
    `queue_position` and `estimated_start_s`). With `Prefer: wait=N` or
    `?wait=N` the answer comes as soon as the job ends, or after N seconds."""
    view = await get_job_waiting(state, tenant, job_id, wait)
    mark_applied(response, wait)
    return view


@router.post(
    "/v1/jobs/{job_id}/cancel",
    operation_id="cancelJob",
    response_model=JobView,
    responses={
        **protected(),
        404: _NOT_FOUND,
        409: error("The job has already ended."),
        422: _INVALID,
    },
)
async def cancel(
    job_id: str,
    state: StateDep,
    tenant: TenantDep,
) -> JobView:
    """Cancel a queued or running job: a queued job is never started, a running one stops
    at its next denoising step (the worker keeps running other jobs). Answers the job,
    now `canceled`."""
    return await cancel_job(state, tenant, job_id)


@router.delete(
    "/v1/jobs/{job_id}",
    operation_id="deleteJob",
    status_code=status.HTTP_204_NO_CONTENT,
    response_class=Response,
    responses={**protected(), 404: _NOT_FOUND, 422: _INVALID},
)
async def remove_job(
    job_id: str,
    state: StateDep,
    tenant: TenantDep,
) -> Response:
    """Delete a job: cancel it first if it is queued or running (a queued job is never
    started, a running one stops at its next step; a webhook asking for `canceled` gets
    it), then delete its record and its result images."""
    await delete_job(state, tenant, job_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.get(
    "/v1/jobs/{job_id}/events",
    operation_id="getJobEvents",
    response_class=EventSourceResponse,
    responses={
        **protected(),
        200: {
            "content": {"text/event-stream": {}},
            "description": "Server-sent events; each `data` is a Job (JSON), or a "
            "Preview for `event: preview`.",
        },
        403: error("A `token` that does not match or has expired."),
        404: _NOT_FOUND,
        422: _INVALID,
    },
)
async def job_events(
    job_id: str,
    state: StateDep,
    tenant: TenantDep,
    token: Annotated[
        str | None,
        Query(
            description="The short-lived token of the job's `events_url` (with "
            "LLMGA_URL_SIGNING_SECRET set): lets an EventSource connect without an API key."
        ),
    ] = None,
) -> EventSourceResponse:
    """Follow a job: first its current state (`event: status`), then one event per change
    (`status` when the status changed, `progress` per denoising step), and `preview`
    events (a small JPEG every LLMGA_WORKER_PREVIEW_EVERY steps of each image: step,
    total, image_index, image_id, url, width, height) before the terminal state, after
    which the stream ends. Streams carry `: keep-alive` comments every
    LLMGA_JOB_EVENTS_KEEPALIVE_S and end after LLMGA_EVENT_STREAM_MAX_S or at shutdown
    with a comment saying why (reconnect: the first event is the job as it is then)."""
    await require_job(state, tenant, job_id)  # 404 before the stream starts
    return event_stream(job_event_stream(state, tenant, job_id), state.settings)
