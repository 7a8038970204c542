"""Routes of the jobs area."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends

from services.gateway.jobs.protocol import JobView
from services.gateway.jobs.serving import get_job
from services.gateway.protocol import ErrorResponse
from services.gateway.state import GatewayState, get_state, get_tenant

router = APIRouter(tags=["jobs"])


@router.get(
    "/v1/jobs/{job_id}",
    response_model=JobView,
    responses={404: {"model": ErrorResponse, "description": "Unknown or expired job."}},
)
def read_job(
    job_id: str,
    state: Annotated[GatewayState, Depends(get_state)],
    tenant: Annotated[str, Depends(get_tenant)],
) -> JobView:
    """Status, progress and results of a generation job; poll until it is terminal."""
    return get_job(state, tenant, job_id)
