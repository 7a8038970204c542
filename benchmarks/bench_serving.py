"""Serving overhead on the local stack: what the gateway, Redis, Celery and the worker add
on top of the model work itself, measured in one run on this machine.

- t2i: the tiny pipeline called in-process (baseline) vs. `POST /v1/images` -> poll
  `GET /v1/jobs/{id}` -> succeeded through a real worker process, same parameters.
- chat: `POST /v1/chat/completions` straight to the local mllm (baseline) vs.
  `POST /v1/chat` through the gateway (which also queues the job), same message.

    make bench      # or: python -m benchmarks.bench_serving --repeats 5
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import redis
import torch

from services.common.contract import GenerationRequest, Task
from services.worker.loading import load_models
from services.worker.pipelines.text_to_image import resolve_params, run_text_to_image
from services.worker.profiles import get_profile
from services.worker.tiny_models import build_tiny_sd15
from tests.support.services import (
    REDIS_URL,
    Namespace,
    start_gateway,
    start_local_mllm,
    start_worker,
)

JOB = {"width": 256, "height": 256, "steps": 20, "seed": 1}
MESSAGE = "a husky astronaut"


def timed(run: Callable[[], object]) -> Callable[[], float]:
    """`run` as a measurement: returns its wall time in seconds."""

    def measure() -> float:
        started = time.perf_counter()
        run()
        return time.perf_counter() - started

    return measure


def median_s(measure: Callable[[], float], repeats: int) -> float:
    """Median of `repeats` measurements after one warm-up run."""
    measure()
    return statistics.median(measure() for _ in range(repeats))


def wait_for_job(api: httpx.Client, job_id: str) -> None:
    while (status := api.get(f"/v1/jobs/{job_id}").json()["status"]) in {"queued", "running"}:
        time.sleep(0.02)
    assert status == "succeeded", status


def direct_t2i(models_dir: Path) -> Callable[[], float]:
    """The baseline: the worker's pipeline code in this process, one torch thread as the
    benchmarked worker uses."""
    torch.set_num_threads(1)
    models = load_models(get_profile("tiny"), models_dir, torch.device("cpu"), torch.float32)
    request = GenerationRequest(
        task=Task.TASK_T2I,
        prompt=MESSAGE,
        width=JOB["width"],
        height=JOB["height"],
        steps=JOB["steps"],
        seed=JOB["seed"],
    )
    params = resolve_params(request, models.profile)
    return timed(lambda: run_text_to_image(models.text_to_image, params))


def served_t2i(api: httpx.Client) -> None:
    job = api.post("/v1/images", json={"task": "t2i", "prompt": MESSAGE, **JOB}).json()
    wait_for_job(api, job["id"])


def served_chat(api: httpx.Client) -> Callable[[], float]:
    """The chat turn's latency; the jobs it queued are then waited for, untimed, so they do
    not compete with the next turn for the CPU."""

    def measure() -> float:
        started = time.perf_counter()
        reply = api.post("/v1/chat", json={"message": MESSAGE, **JOB}).json()
        elapsed = time.perf_counter() - started
        for job in reply["jobs"]:
            wait_for_job(api, job["id"])
        return elapsed

    return measure


def report(name: str, baseline_s: float, served_s: float) -> None:
    print(
        f"{name:<6} baseline {baseline_s * 1000:8.0f} ms   served {served_s * 1000:8.0f} ms   "
        f"served/baseline x{served_s / baseline_s:.2f}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="llmga-bench-"))
    models_dir, logs = work / "models", work / "logs"
    build_tiny_sd15(models_dir / "tiny-sd15")
    namespace = Namespace.unique("bench")
    client = redis.Redis.from_url(REDIS_URL)
    try:
        with (
            start_local_mllm(logs) as mllm,
            start_worker(namespace, models_dir, logs),
            start_gateway(
                {**namespace.env(), "LLMGA_MLLM_BASE_URL": f"{mllm.url}/v1"}, logs
            ) as gateway,
            httpx.Client(base_url=gateway.url, timeout=300) as api,
            httpx.Client(base_url=mllm.url, timeout=300) as llm,
        ):
            t2i_base = median_s(direct_t2i(models_dir), args.repeats)
            t2i_served = median_s(timed(lambda: served_t2i(api)), args.repeats)
            body = {"model": "gemma3-270m", "messages": [{"role": "user", "content": MESSAGE}]}
            chat_base = median_s(
                timed(lambda: llm.post("/v1/chat/completions", json=body)), args.repeats
            )
            chat_served = median_s(served_chat(api), args.repeats)
    finally:
        namespace.cleanup(client)
    print(
        f"tiny t2i {JOB['width']}x{JOB['height']}, {JOB['steps']} steps; chat {MESSAGE!r}; "
        f"median of {args.repeats}"
    )
    report("t2i", t2i_base, t2i_served)
    report("chat", chat_base, chat_served)


if __name__ == "__main__":
    main()
