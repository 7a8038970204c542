"""The worker's Prometheus metrics, served on `LLMGA_WORKER_METRICS_PORT` (0: off).

The worker is one process (its task threads and batch scheduler share it), so one
registry in this module serves everything it measures. Names and labels: docs/worker.md ("Metrics").
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server

logger = logging.getLogger(__name__)

REGISTRY = CollectorRegistry(auto_describe=True)

_JOB_BUCKETS = (0.1, 0.25, 0.5, 1, 2.5, 5, 10, 20, 30, 60, 120, 300, 600, 1800)
_STEP_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)

JOB_DURATION = Histogram(
    "llmga_worker_job_duration_seconds",
    "Wall time of a job in this worker, by task and final status.",
    ["task", "status"],
    buckets=_JOB_BUCKETS,
    registry=REGISTRY,
)
JOB_FAILURES = Counter(
    "llmga_worker_job_failures",
    "Jobs that ended failed, by task.",
    ["task"],
    registry=REGISTRY,
)
JOBS_IN_PROGRESS = Gauge(
    "llmga_worker_jobs_in_progress",
    "Jobs this worker holds now: running, or waiting for their batch (at most its max batch).",
    registry=REGISTRY,
)
STEP_DURATION = Histogram(
    "llmga_worker_denoise_step_duration_seconds",
    "Time between the ends of two denoising steps of one batch (UNet, scheduler step and "
    "the progress writes of its jobs).",
    buckets=_STEP_BUCKETS,
    registry=REGISTRY,
)
MODEL_LOAD_SECONDS = Gauge(
    "llmga_worker_model_load_seconds",
    "How long loading each pipeline took at startup, by pipeline class.",
    ["pipeline"],
    registry=REGISTRY,
)


@contextmanager
def job_in_progress() -> Iterator[None]:
    """Counts the block as a job in progress."""
    JOBS_IN_PROGRESS.inc()
    try:
        yield
    finally:
        JOBS_IN_PROGRESS.dec()


def observe_job(task: str, status: str, seconds: float) -> None:
    """Record a job that ended with `status` (`succeeded`, `failed`, `canceled`)."""
    JOB_DURATION.labels(task, status).observe(seconds)
    if status == "failed":
        JOB_FAILURES.labels(task).inc()


def step_timer() -> Callable[[], None]:
    """A function to call at the end of every denoising step of one image: from the second
    call on, it records the time since the previous call (the first step's start is not
    seen by diffusers' step-end callback)."""
    last: float | None = None

    def tick() -> None:
        nonlocal last
        now = time.perf_counter()
        if last is not None:
            STEP_DURATION.observe(now - last)
        last = now

    return tick


def register_gpu_memory(
    device_index: int, allocated: Callable[[], float], reserved: Callable[[], float]
) -> None:
    """GPU memory gauges (bytes), read at every scrape; registered only on CUDA."""
    labels = {"device": str(device_index)}
    Gauge(
        "llmga_worker_gpu_memory_allocated_bytes",
        "GPU memory held by tensors (torch.cuda.memory_allocated).",
        list(labels),
        registry=REGISTRY,
    ).labels(**labels).set_function(allocated)
    Gauge(
        "llmga_worker_gpu_memory_reserved_bytes",
        "GPU memory held by torch's caching allocator (torch.cuda.memory_reserved).",
        list(labels),
        registry=REGISTRY,
    ).labels(**labels).set_function(reserved)


def serve(port: int) -> bool:
    """Serve `/metrics` on `port` (all interfaces) from a daemon thread; 0 = off. A port
    in use is logged, not fatal: generation matters more than its metrics."""
    if port == 0:
        return False
    try:
        start_http_server(port, registry=REGISTRY)
    except OSError as error:
        logger.error("cannot serve worker metrics on port %d: %s", port, error)
        return False
    logger.info("worker metrics on :%d/metrics", port)
    return True
