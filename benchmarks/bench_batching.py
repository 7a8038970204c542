"""Batching across jobs on one CPU worker, tiny profile: 16 one-image text-to-image jobs
submitted together vs. the same 16 submitted one after another, in the same run, through
a real gateway and one real worker process (docs/batching.md).

- one after another: `POST /v1/images`, wait for the job to end, then the next: every job
  runs alone (batch size 1), and waits out the batch window first.
- together: all 16 posted at once, then waited for: the worker gathers compatible jobs
  into batches of up to `LLMGA_WORKER_MAX_BATCH` images.

At each of `--sizes` (default: 64² and the profile's 256²), the profile's steps, distinct
seeds, one torch thread in the worker (`LLMGA_WORKER_TORCH_THREADS=1`, as
bench_serving.py). The two sizes show the two regimes: at 64² a UNet call on one image
leaves the CPU mostly to fixed per-call costs (as a GPU at batch 1), which a batch shares;
at 256² the tiny UNet already keeps one CPU thread busy on one image, so a batch costs
about as much per image as one image alone. The worker's batch settings are its defaults
unless given. Prints the wall times, the ratio (goal: >= 2x) and the batch sizes the jobs
recorded. On a shared machine wall times vary: compare the ratios of one run.

    make bench    # or: python -m benchmarks.bench_batching --jobs 16 --max-batch 8 --sizes 64
"""

from __future__ import annotations

import argparse
import collections
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import redis

from benchmarks.bench_serving import run_job
from services.worker.profiles import get_profile
from services.worker.settings import WorkerSettings
from tests.support.http_api import wait_for_job
from tests.support.services import REDIS_URL, Namespace, start_gateway, start_worker

TENANT = "bench"
PROMPT = "a lighthouse on a cliff at dusk"


def body(seed: int, size: int) -> dict[str, Any]:
    """A one-image t2i job of `size`², at the profile's steps."""
    prompt = f"{PROMPT}, variation {seed}"
    return {"task": "t2i", "prompt": prompt, "seed": seed, "width": size, "height": size}


def one_after_another(api: httpx.Client, seeds: list[int], size: int) -> tuple[float, list[str]]:
    """Each job posted once the previous one has ended; wall time and job ids."""
    started = time.perf_counter()
    ids = [run_job(api, body(seed, size)) for seed in seeds]
    return time.perf_counter() - started, ids


def together(api: httpx.Client, seeds: list[int], size: int) -> tuple[float, list[str]]:
    """Every job posted at once, then each waited for; wall time and job ids."""
    started = time.perf_counter()
    ids = []
    for seed in seeds:
        response = api.post("/v1/images", json=body(seed, size))
        response.raise_for_status()
        ids.append(str(response.json()["id"]))
    for job_id in ids:
        job = wait_for_job(api, job_id, timeout_s=600, wait_s=30)
        if job["status"] != "succeeded":
            raise RuntimeError(f"job {job_id} {job['status']}: {job['error']}")
    return time.perf_counter() - started, ids


def batch_sizes(api: httpx.Client, ids: list[str]) -> str:
    """'16 jobs at batch 4': how many jobs ran in batches of each size."""
    counts = collections.Counter(
        api.get(f"/v1/jobs/{job_id}").json()["batch_size"] for job_id in ids
    )
    return ", ".join(f"{count} jobs at batch {size}" for size, count in sorted(counts.items()))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--jobs", type=int, default=16)
    parser.add_argument(
        "--max-batch", type=int, help="LLMGA_WORKER_MAX_BATCH (default: its default)"
    )
    parser.add_argument(
        "--window-ms", type=float, help="LLMGA_WORKER_BATCH_WINDOW_MS (default: its default)"
    )
    parser.add_argument("--sizes", default="64,256", help="image sides, comma-separated")
    args = parser.parse_args()
    if args.jobs < 1:
        parser.error("--jobs must be at least 1")
    sizes = [int(size) for size in args.sizes.split(",")]

    logs = Path(tempfile.mkdtemp(prefix="llmga-bench-batching-"))
    namespace = Namespace.unique("bench-batching")
    worker_env = {"LLMGA_WORKER_PROFILE": "tiny", "LLMGA_WORKER_TORCH_THREADS": "1"}
    if args.max_batch is not None:
        worker_env["LLMGA_WORKER_MAX_BATCH"] = str(args.max_batch)
    if args.window_ms is not None:
        worker_env["LLMGA_WORKER_BATCH_WINDOW_MS"] = str(args.window_ms)
    settings = WorkerSettings(**{"max_batch": args.max_batch} if args.max_batch else {})
    window = args.window_ms if args.window_ms is not None else settings.batch_window_s("cpu") * 1000
    client = redis.Redis.from_url(REDIS_URL)
    try:
        env = {**namespace.env(), "LLMGA_DEFAULT_TENANT": TENANT}
        with (
            start_gateway(env, logs) as gateway,
            httpx.Client(base_url=gateway.url, timeout=300) as api,
            start_worker(namespace, settings.models_dir, logs, "tiny", worker_env),
        ):
            tiny = get_profile("tiny")
            print(
                f"{args.jobs} one-image t2i jobs, tiny profile ({tiny.steps} steps), one CPU "
                f"worker, max batch {settings.max_batch}, window {window:g} ms"
            )
            print(f"{'size':>8} {'one after another':>18} {'together':>9}  ratio  batch sizes")
            seeds = list(range(1, args.jobs + 1))
            for size in sizes:
                run_job(api, body(0, size))  # warm-up: first-call costs are no one's
                alone_s, alone_ids = one_after_another(api, seeds, size)
                batched_s, batched_ids = together(api, seeds, size)
                print(
                    f"{size:>4}x{size:<4}{alone_s:17.2f}s {batched_s:8.2f}s  "
                    f"x{alone_s / batched_s:.2f}  {batch_sizes(api, alone_ids)}; "
                    f"{batch_sizes(api, batched_ids)}"
                )
            print("goal: together at least x2 faster")
    finally:
        namespace.cleanup(client)
    print(f"(service logs: {logs})")


if __name__ == "__main__":
    main()
