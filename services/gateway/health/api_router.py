"""Routes of the health area: /healthz, /readyz, /metrics."""

from __future__ import annotations

from fastapi import APIRouter, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from services.gateway.deps import StateDep
from services.gateway.health.protocol import Liveness, Readiness
from services.gateway.health.serving import readiness

router = APIRouter(tags=["health"])


@router.get("/healthz", operation_id="getHealth", response_model=Liveness)
async def healthz() -> Liveness:
    """Liveness: the process answers (no I/O)."""
    return Liveness()


@router.get(
    "/readyz",
    operation_id="getReadiness",
    response_model=Readiness,
    responses={503: {"model": Readiness, "description": "A dependency is not ready."}},
)
async def readyz(state: StateDep) -> JSONResponse:
    """Readiness: Redis answers PING, the mllm lists a model, a worker heartbeats; with
    the S3 object store, its bucket answers HEAD (`blob_store`)."""
    result = await readiness(state)
    return JSONResponse(result.model_dump(), status_code=200 if result.status == "ready" else 503)


@router.get(
    "/metrics",
    operation_id="getMetrics",
    response_class=Response,
    responses={
        200: {
            "description": "Prometheus' text exposition format.",
            "content": {"text/plain": {"schema": {"type": "string"}}},
        }
    },
)
async def metrics(state: StateDep) -> Response:
    """Prometheus metrics of this process."""
    # The queue depth is read from the broker at every scrape (asyncio: no callback).
    state.metrics.queue_depth.set(await state.queue.depth_or_nan())
    return Response(generate_latest(state.metrics.registry), media_type=CONTENT_TYPE_LATEST)
