"""Logic of the health area: the readiness probes."""

from __future__ import annotations

import redis

from services.gateway.health.protocol import DependencyCheck, Readiness
from services.gateway.mllm_client import MllmError
from services.gateway.state import GatewayState


def _check_redis(state: GatewayState) -> DependencyCheck:
    try:
        state.redis.ping()
    except redis.RedisError as exc:
        return DependencyCheck(ok=False, detail=f"PING failed: {type(exc).__name__}")
    return DependencyCheck(ok=True, detail="PING ok")


def _check_mllm(state: GatewayState) -> DependencyCheck:
    # /health only says the process lives; /models says the model is loaded and served.
    try:
        models = state.mllm.list_models(timeout_s=state.settings.mllm_probe_timeout_s)
    except MllmError as exc:
        return DependencyCheck(ok=False, detail=str(exc))
    if not models:
        return DependencyCheck(ok=False, detail="the mllm serves no model")
    return DependencyCheck(ok=True, detail=f"serves {', '.join(models)}")


def _check_workers(state: GatewayState) -> DependencyCheck:
    max_age = state.settings.worker_max_age_s
    try:
        live = state.workers.live(max_age)
    except redis.RedisError as exc:
        return DependencyCheck(ok=False, detail=f"cannot read heartbeats: {type(exc).__name__}")
    if not live:
        return DependencyCheck(ok=False, detail=f"no worker heartbeat in the last {max_age:g} s")
    return DependencyCheck(ok=True, detail=f"{len(live)} live: {', '.join(sorted(live))}")


def readiness(state: GatewayState) -> Readiness:
    """Probe every dependency (each bounded by its client's timeouts)."""
    checks = {
        "redis": _check_redis(state),
        "mllm": _check_mllm(state),
        "workers": _check_workers(state),
    }
    ready = all(check.ok for check in checks.values())
    return Readiness(status="ready" if ready else "not_ready", checks=checks)
