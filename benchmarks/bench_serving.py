"""Serving overhead on the local stack, per task: what the gateway, Redis, Celery and the
worker add on top of the model work itself, measured in one run on this machine.

- Every image task, one tiny job at the profile's defaults (size, steps) from 256² inputs:
  t2i, inpaint, outpaint, edit with p2p and with DiffEdit, restore (the colour fallback: no
  DiffRIR weights), ControlNet (Canny edges computed by the worker) on `tiny`; t2i and
  inpaint on `tiny-sdxl`.
  baseline: `prepare_job(request, ...).run(None)`, the worker's own job code, in this
  process on the same profile's models, for the very request the gateway queued (read back
  from the job record).
  served: `POST /v1/images` -> `GET /v1/jobs/{id}?wait=30` until the job ends, through a
  real gateway and worker process. Inputs are uploaded once; the jobs name them by id.
  Edit jobs carry both captions, so the MLLM is not asked. `similar` is not measured: the
  MLLM writes its prompt, and the job it queues is a t2i job (the t2i row).
- chat: `POST /v1/chat/completions` straight to the local mllm (baseline: the body the
  gateway sends, one user message and the engine's greedy decoding) vs. `POST /v1/chat`
  through the gateway (which also queues the job; its time is not counted).

Both sides run torch on one thread (`torch.set_num_threads(1)` here,
`LLMGA_WORKER_TORCH_THREADS=1` for the worker), so they measure the same work: on a small
shared CPU, two threads fighting other processes are many times slower than one. One
worker runs at a time (one per profile), and nothing else runs while a figure is taken.
Each figure is the median of `--repeats` runs after one warm-up; `--tasks` picks rows.

    make bench      # or: python -m benchmarks.bench_serving --repeats 5 --tasks t2i,chat
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import redis
import torch
from diffusers.utils import logging as diffusers_logging
from transformers.utils import logging as transformers_logging

from services.common.blob_store import RedisBlobStore
from services.common.contract import GenerationRequest, JobRecord, Task
from services.common.job_store import JobStore
from services.common.redis_keys import RedisKeys
from services.worker import task_table
from services.worker.job_preparation import prepare_job
from services.worker.loading import LoadedModels, load_models
from services.worker.profiles import get_profile, local_sources
from services.worker.settings import WorkerSettings
from services.worker.testing.tiny_models import build_tiny
from tests.support.http_api import wait_for_job
from tests.support.images import noise, png_b64
from tests.support.services import (
    REDIS_URL,
    HttpService,
    Namespace,
    start_gateway,
    start_local_mllm,
    start_worker,
)

SIZE = 256
SEED = 1
MESSAGE = "a husky astronaut"
CHAT_JOB = {"width": SIZE, "height": SIZE, "steps": 20, "seed": SEED}
TENANT = "bench"  # every request's tenant: the gateway runs with auth off
WAIT_S = 30  # each GET /v1/jobs/{id} answers as soon as the job ends, or after this


@dataclass(frozen=True)
class TaskCase:
    """A row of the table: the profile whose worker runs it and its `POST /v1/images` body,
    where an image field names one of `input_images()` (replaced by its upload's id)."""

    profile: str
    body: dict[str, Any]


IMAGE_FIELDS = ("image", "mask", "reference")
EDIT = {
    "task": "edit",
    "image": "photo",
    "prompt": "make the husky a wolf",
    "source_caption": "a husky astronaut",
    "target_caption": "a wolf astronaut",
}
INPAINT = {"task": "inpaint", "prompt": "a red hat", "image": "photo", "mask": "centre"}
TASKS: dict[str, TaskCase] = {
    "t2i": TaskCase("tiny", {"task": "t2i", "prompt": MESSAGE}),
    "inpaint": TaskCase("tiny", INPAINT),
    "outpaint": TaskCase(
        "tiny",
        {"task": "outpaint", "prompt": "a wide beach", "image": "photo", "outpaint": {"left": 128}},
    ),
    "edit-p2p": TaskCase("tiny", {**EDIT, "edit_method": "p2p"}),
    "edit-diffedit": TaskCase("tiny", {**EDIT, "edit_method": "diffedit"}),
    "restore": TaskCase(
        "tiny", {"task": "restore", "image": "generated", "reference": "photo", "mask": "centre"}
    ),
    "controlnet": TaskCase(
        "tiny", {"task": "controlnet", "prompt": "two houses in a field", "image": "photo"}
    ),
    "sdxl-t2i": TaskCase("tiny-sdxl", {"task": "t2i", "prompt": MESSAGE}),
    "sdxl-inpaint": TaskCase("tiny-sdxl", INPAINT),
}
CHAT = "chat"  # runs its jobs on the tiny worker


@dataclass(frozen=True)
class Row:
    """One measured line of the table."""

    name: str
    profile: str
    shape: str  # output size and denoising steps, or what was sent
    baseline_s: float
    served_s: float


def input_images() -> dict[str, np.ndarray]:
    """The 256² inputs: a photo, a 'generated' image for restore, a mask white in the
    centre quarter (the region to regenerate / that was generated)."""
    centre = np.zeros((SIZE, SIZE), dtype=np.uint8)
    centre[SIZE // 4 : 3 * SIZE // 4, SIZE // 4 : 3 * SIZE // 4] = 255
    return {"photo": noise(SIZE, SIZE, 1), "generated": noise(SIZE, SIZE, 2), "centre": centre}


def upload_inputs(api: httpx.Client) -> dict[str, str]:
    """Upload `input_images()` once (`POST /v1/uploads`); their ids by name."""
    ids = {}
    for name, pixels in input_images().items():
        response = api.post("/v1/uploads", json={"image": png_b64(pixels)})
        response.raise_for_status()
        ids[name] = response.json()["id"]
    return ids


def request_body(case: TaskCase, uploads: dict[str, str]) -> dict[str, Any]:
    """The case's body, seeded, with its image fields naming the uploads by id."""
    body = {**case.body, "seed": SEED}
    for field in IMAGE_FIELDS:
        if field in body:
            body[field] = {"id": uploads[body[field]]}
    return body


def timed(run: Callable[[], object]) -> Callable[[], float]:
    """`run` as a measurement: returns its wall time in seconds."""

    def measure() -> float:
        started = time.perf_counter()
        run()
        return time.perf_counter() - started

    return measure


def median_s(measure: Callable[[], float], repeats: int, warm_up: bool = True) -> float:
    """Median of `repeats` measurements, after one warm-up run unless it already ran."""
    if warm_up:
        measure()
    return statistics.median(measure() for _ in range(repeats))


# -- the measurements ----------------------------------------------------------------------


def run_job(api: httpx.Client, body: dict[str, Any]) -> str:
    """`POST /v1/images`, then `GET /v1/jobs/{id}?wait=N` until the job ends; the job's id.
    RuntimeError unless it succeeded."""
    response = api.post("/v1/images", json=body)
    if response.status_code != 202:
        raise RuntimeError(f"{body['task']}: {response.status_code} {response.text}")
    job = wait_for_job(api, response.json()["id"], timeout_s=300, wait_s=WAIT_S)
    if job["status"] != "succeeded":
        raise RuntimeError(f"{body['task']} job {job['id']} {job['status']}: {job['error']}")
    return str(job["id"])


def served_job(api: httpx.Client, body: dict[str, Any]) -> Callable[[], float]:
    """One job through gateway, Redis, Celery and the worker process."""
    return timed(lambda: run_job(api, body))


def baseline_job(
    models: LoadedModels, blobs: RedisBlobStore, request: GenerationRequest
) -> Callable[[], float]:
    """The same job as the worker runs it (inputs fetched from the blob store, checked,
    run), in this process, without the progress reports the worker writes to Redis."""
    return timed(lambda: prepare_job(request, models, blobs).run(None))


def served_chat(api: httpx.Client) -> Callable[[], float]:
    """The chat turn's latency; the jobs it queued are then waited for, untimed, so they do
    not compete with the next turn for the CPU."""

    def measure() -> float:
        started = time.perf_counter()
        response = api.post("/v1/chat", json={"message": MESSAGE, **CHAT_JOB})
        elapsed = time.perf_counter() - started
        response.raise_for_status()
        for job in response.json()["jobs"]:
            wait_for_job(api, job["id"], timeout_s=300, wait_s=WAIT_S)
        return elapsed

    return measure


def baseline_chat(llm: httpx.Client) -> Callable[[], float]:
    """The same message straight to the mllm's OpenAI-compatible endpoint."""
    body = {"model": "gemma3-270m", "messages": [{"role": "user", "content": MESSAGE}]}
    return timed(lambda: llm.post("/v1/chat/completions", json=body).raise_for_status())


# -- one run -------------------------------------------------------------------------------


@dataclass
class Bench:
    """The running stack and what every measurement needs."""

    api: httpx.Client
    llm: httpx.Client | None  # None: chat is not measured
    namespace: Namespace
    models_dir: Path
    logs: Path
    jobs: JobStore
    blobs: RedisBlobStore
    uploads: dict[str, str]
    repeats: int

    def measure_profile(self, profile: str, names: list[str]) -> list[Row]:
        """Load the profile's models here and start a worker on it; measure `names`
        (TASKS keys, and CHAT on the tiny profile)."""
        for source in local_sources(get_profile(profile)):  # built once, before the worker
            build_tiny(source.name, self.models_dir)
        models = load_models(
            get_profile(profile),
            self.models_dir,
            torch.device("cpu"),
            torch.float32,
            components=task_table.models_needed(task_table.TASKS),
        )
        env = {"LLMGA_WORKER_PROFILE": profile, "LLMGA_WORKER_TORCH_THREADS": "1"}
        with start_worker(self.namespace, self.models_dir, self.logs, profile, env):
            return [
                self.measure_chat() if name == CHAT else self.measure_task(name, models)
                for name in names
            ]

    def measure_task(self, name: str, models: LoadedModels) -> Row:
        """Served and baseline latency of one task's job."""
        body = request_body(TASKS[name], self.uploads)
        # The served warm-up is also the job whose request the baseline runs again.
        record = self.jobs.get(TENANT, run_job(self.api, body))
        assert record is not None
        served = median_s(served_job(self.api, body), self.repeats, warm_up=False)
        baseline = median_s(baseline_job(models, self.blobs, record.request), self.repeats)
        return Row(name, TASKS[name].profile, job_shape(record), baseline, served)

    def measure_chat(self) -> Row:
        """Chat turn latency through the gateway vs. straight to the mllm."""
        assert self.llm is not None
        baseline = median_s(baseline_chat(self.llm), self.repeats)
        served = median_s(served_chat(self.api), self.repeats)
        return Row(CHAT, "local mllm", f"{MESSAGE!r}", baseline, served)


def job_shape(record: JobRecord) -> str:
    """'256x256, 20 steps + color': the job's output size, its denoising steps (restore has
    none) and the restorer its result went through, if any."""
    image = record.images[0]
    parts = [f"{image.width}x{image.height}"]
    if record.request.task != Task.TASK_RESTORE:
        parts.append(f"{record.progress.total} steps")
    shape = ", ".join(parts)
    return f"{shape} + {record.restore_used}" if record.restore_used else shape


def print_table(rows: list[Row], repeats: int) -> None:
    """The rows as a table, and what is not measured."""
    print(f"one tiny job per task from {SIZE}² inputs, profile defaults; median of {repeats}")
    print(f"{'task':<14} {'profile':<10} {'job':<26} {'baseline':>9} {'served':>9} served/baseline")
    for row in rows:
        print(
            f"{row.name:<14} {row.profile:<10} {row.shape:<26} {row.baseline_s:8.2f}s "
            f"{row.served_s:8.2f}s   x{row.served_s / row.baseline_s:.2f}"
        )
    print(
        "similar: not measured (the MLLM writes its prompt; the job it queues is a t2i job, "
        "row t2i)"
    )


def main() -> None:
    choices = [*TASKS, CHAT]
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument(
        "--tasks",
        default=",".join(choices),
        help=f"comma-separated rows to measure, of {','.join(choices)} (default: all)",
    )
    args = parser.parse_args()
    if args.repeats < 1:
        parser.error("--repeats must be at least 1")
    names = args.tasks.split(",")
    if unknown := set(names) - set(choices):
        parser.error(f"unknown --tasks {sorted(unknown)}; known: {choices}")
    names = [name for name in choices if name in names]  # table order
    by_profile: dict[str, list[str]] = {}
    for name in names:
        by_profile.setdefault("tiny" if name == CHAT else TASKS[name].profile, []).append(name)

    torch.set_num_threads(1)  # as the worker (LLMGA_WORKER_TORCH_THREADS=1)
    for library in (diffusers_logging, transformers_logging):  # no loading bars or notes
        library.set_verbosity_error()
        library.disable_progress_bar()
    logs = Path(tempfile.mkdtemp(prefix="llmga-bench-"))
    namespace = Namespace.unique("bench")
    client = redis.Redis.from_url(REDIS_URL)
    keys = RedisKeys(namespace.key_prefix)
    rows: list[Row] = []
    try:
        with ExitStack() as stack:
            env = {**namespace.env(), "LLMGA_DEFAULT_TENANT": TENANT}
            llm = None
            if CHAT in names:
                mllm: HttpService = stack.enter_context(start_local_mllm(logs))
                env["LLMGA_MLLM_BASE_URL"] = f"{mllm.url}/v1"
                llm = stack.enter_context(httpx.Client(base_url=mllm.url, timeout=300))
            gateway = stack.enter_context(start_gateway(env, logs))
            api = stack.enter_context(httpx.Client(base_url=gateway.url, timeout=300))
            bench = Bench(
                api=api,
                llm=llm,
                namespace=namespace,
                models_dir=WorkerSettings().models_dir,
                logs=logs,
                jobs=JobStore(client, keys, ttl_s=3600),
                blobs=RedisBlobStore(client, keys, ttl_s=3600),
                uploads=upload_inputs(api),
                repeats=args.repeats,
            )
            for profile, profile_names in by_profile.items():
                rows += bench.measure_profile(profile, profile_names)
    finally:
        namespace.cleanup(client)
    print_table(sorted(rows, key=lambda row: names.index(row.name)), args.repeats)
    print(f"(service logs: {logs})")


if __name__ == "__main__":
    main()
