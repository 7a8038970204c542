"""Fairness between tenants on the local stack: how long tenant B's one job waits behind
tenant A's backlog, with the per-tenant in-flight cap and without it (one FIFO queue),
measured in one run on this machine.

For each mode a fresh Redis namespace, gateway and worker (tiny profile, one torch thread)
start; tenant A submits `--backlog` one-step 64² jobs, then tenant B submits one. Printed:
B's wait (its record's started_at - created_at), the median duration of A's jobs, B's wait
in A-job durations, how many of A's jobs started between B's submission and B's start, and
the ratio of the FIFO wait to the capped one.

    make bench-fairness   # or: python -m benchmarks.bench_fairness --backlog 300 --cap 2
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import httpx
import redis

from services.common.contract import JobStatus
from services.common.job_store import JobStore
from services.common.redis_keys import RedisKeys
from services.worker.settings import WorkerSettings
from tests.support.http_api import wait_for_job
from tests.support.services import (
    REDIS_URL,
    Namespace,
    create_api_key,
    start_gateway,
    start_worker,
)

ONE_STEP = {"prompt": "a fox", "width": 64, "height": 64, "steps": 1}


@dataclass(frozen=True)
class Wait:
    """What tenant B saw in one mode."""

    cap: int
    wait_s: float
    a_job_s: float
    a_started_meanwhile: int

    @property
    def in_job_durations(self) -> float:
        return self.wait_s / self.a_job_s


def measure(cap: int, backlog: int, models_dir: Path, logs: Path) -> Wait:
    """B's wait behind A's `backlog` with LLMGA_TENANT_MAX_IN_FLIGHT=`cap` (0: no cap)."""
    client = redis.Redis.from_url(REDIS_URL)
    namespace = Namespace.unique("bench-fairness")
    env = {"LLMGA_TENANT_MAX_IN_FLIGHT": str(cap)}
    try:
        with (
            start_worker(namespace, models_dir, logs, env=env),
            start_gateway(
                {**namespace.env(), **env, "LLMGA_AUTH_REQUIRED": "true"}, logs
            ) as gateway,
        ):
            tenants = {}
            for tenant in ("tenant-a", "tenant-b"):
                key = create_api_key(namespace, tenant)
                tenants[tenant] = httpx.Client(
                    base_url=gateway.url, headers={"Authorization": f"Bearer {key}"}, timeout=60
                )
            a, b = tenants["tenant-a"], tenants["tenant-b"]
            backlog_ids = [a.post("/v1/images", json=ONE_STEP).json()["id"] for _ in range(backlog)]
            mine = b.post("/v1/images", json=ONE_STEP).json()["id"]
            wait_for_job(b, mine, timeout_s=3600, wait_s=30)
            for api in tenants.values():
                api.close()
        jobs = JobStore(client, RedisKeys(namespace.key_prefix), ttl_s=600)
        record = jobs.get("tenant-b", mine)
        assert record is not None and record.status == JobStatus.JOB_STATUS_SUCCEEDED
        created, started = record.timings.created_at, record.timings.started_at
        a_records = [r for r in (jobs.get("tenant-a", i) for i in backlog_ids) if r is not None]
        durations = [
            r.timings.finished_at - r.timings.started_at
            for r in a_records
            if r.status == JobStatus.JOB_STATUS_SUCCEEDED
        ]
        meanwhile = sum(1 for r in a_records if created < r.timings.started_at < started)
        return Wait(cap, started - created, statistics.median(durations), meanwhile)
    finally:
        namespace.cleanup(client)
        client.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backlog", type=int, default=300, help="tenant A's queued jobs")
    parser.add_argument("--cap", type=int, default=2, help="LLMGA_TENANT_MAX_IN_FLIGHT")
    args = parser.parse_args()
    logs = Path(tempfile.mkdtemp(prefix="llmga-bench-fairness-"))
    models_dir = WorkerSettings().models_dir
    print(f"tenant A: {args.backlog} one-step 64x64 jobs, then tenant B: one; logs in {logs}")
    print(f"{'mode':<16} {'B waited s':>10} {'A job s':>8} {'in A jobs':>9} {'A started':>9}")
    results = []
    for cap in (0, args.cap):
        started = time.perf_counter()
        wait = measure(cap, args.backlog, models_dir, logs)
        results.append(wait)
        mode = "FIFO (no cap)" if cap == 0 else f"cap {cap}"
        print(
            f"{mode:<16} {wait.wait_s:>10.3f} {wait.a_job_s:>8.3f} {wait.in_job_durations:>9.1f} "
            f"{wait.a_started_meanwhile:>9}   ({time.perf_counter() - started:.0f} s)",
            flush=True,
        )
    fifo, capped = results
    print(f"B's wait: FIFO / capped = {fifo.wait_s / capped.wait_s:.1f}x")


if __name__ == "__main__":
    main()
