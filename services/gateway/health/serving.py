"""Logic of the health area: the readiness probes."""

from __future__ import annotations

import asyncio

import redis

from services.common.blob_store import BlobStoreUnavailable
from services.gateway.health.protocol import DependencyCheck, Readiness
from services.gateway.mllm.client import MllmError
from services.gateway.state import GatewayState


async def _check_redis(state: GatewayState) -> DependencyCheck:
    try:
        await state.redis.ping()
    except redis.RedisError as exc:
        return DependencyCheck(ok=False, detail=f"PING failed: {type(exc).__name__}")
    return DependencyCheck(ok=True, detail="PING ok")


async def _check_mllm(state: GatewayState) -> DependencyCheck:
    # /health only says the process lives; /models says the model is loaded and served.
    try:
        models = await state.mllm.list_models(timeout_s=state.settings.mllm_probe_timeout_s)
    except MllmError as exc:
        return DependencyCheck(ok=False, detail=str(exc))
    if not models:
        return DependencyCheck(ok=False, detail="the mllm serves no model")
    return DependencyCheck(ok=True, detail=f"serves {', '.join(models)}")


async def _check_workers(state: GatewayState) -> DependencyCheck:
    max_age = state.settings.worker_max_age_s
    try:
        live = await state.workers.live(max_age)
    except redis.RedisError as exc:
        return DependencyCheck(ok=False, detail=f"cannot read heartbeats: {type(exc).__name__}")
    if not live:
        return DependencyCheck(ok=False, detail=f"no worker heartbeat in the last {max_age:g} s")
    return DependencyCheck(ok=True, detail=f"{len(live)} live: {', '.join(sorted(live))}")


async def _check_blob_store(state: GatewayState) -> DependencyCheck | None:
    # Only a store of its own (S3): Redis blobs are covered by the redis check.
    try:
        detail = await state.blobs.probe()
    except BlobStoreUnavailable as exc:
        return DependencyCheck(ok=False, detail=str(exc))
    return None if detail is None else DependencyCheck(ok=True, detail=detail)


async def readiness(state: GatewayState) -> Readiness:
    """Probe every dependency at once (each bounded by its client's timeouts)."""
    redis_check, mllm_check, workers_check, blob_store_check = await asyncio.gather(
        _check_redis(state), _check_mllm(state), _check_workers(state), _check_blob_store(state)
    )
    checks = {"redis": redis_check, "mllm": mllm_check, "workers": workers_check}
    if blob_store_check is not None:  # LLMGA_BLOB_STORE=s3
        checks["blob_store"] = blob_store_check
    ready = all(check.ok for check in checks.values())
    return Readiness(status="ready" if ready else "not_ready", checks=checks)
