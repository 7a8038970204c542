"""Batched denoising on the tiny models, in process: a job's n images start from the noise
of the one-image jobs of seeds seed..seed+n-1 and end as their images (within the batch
tolerance); several jobs share a batch, a stopped one leaves it while the others go on;
the batch scheduler gathers compatible jobs and runs the others after them."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
import redis
import torch
from PIL import Image
from pydantic import ValidationError

from services.common.blob_store import RedisBlobStore
from services.common.contract import GenerationRequest, Task
from services.common.redis_keys import RedisKeys
from services.worker.__main__ import pool_options
from services.worker.batching import BatchScheduler, JobNotStarted
from services.worker.job_preparation import prepare_job
from services.worker.loading import LoadedModels, load_models
from services.worker.pipelines.batching import BatchMember
from services.worker.pipelines.common import GenerationResult, ResolvedParams
from services.worker.pipelines.inpainting import (
    InpaintParams,
    resolve_inpaint_params,
    run_inpainting,
    run_inpainting_batch,
)
from services.worker.pipelines.text_to_image import run_text_to_image, run_text_to_image_batch
from services.worker.profiles import get_profile
from services.worker.restorers import COLOR_RESTORER
from services.worker.settings import WorkerSettings
from services.worker.testing.tiny_models import build_profile_models
from tests.support.services import REDIS_URL
from tests.support.torch_threads import one_torch_thread

PROFILE = get_profile("tiny")
# Of 255: an image denoised in a batch against the same image denoised alone (float32 on
# the CPU; a larger batch only rounds differently). docs/batching.md states it.
TOLERANCE = 2
STEPS = 6


@pytest.fixture(scope="module", autouse=True)
def _one_thread() -> Iterator[None]:
    with one_torch_thread():
        yield


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> LoadedModels:
    models_dir = tmp_path_factory.mktemp("models")
    build_profile_models(PROFILE, models_dir)
    return load_models(
        PROFILE, models_dir, torch.device("cpu"), torch.float32, components={"inpainting"}
    )


def t2i(seed: int, n: int = 1, prompt: str = "a lighthouse at dusk") -> ResolvedParams:
    return ResolvedParams(prompt, "blurry", 64, 64, STEPS, 7.5, seed, n)


def photo(seed: int) -> Image.Image:
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, size=(60, 64, 3), dtype=np.uint8))


def inpaint(seed: int, n: int = 1, image_seed: int = 1) -> InpaintParams:
    """An inpaint job on a 64x60 image (padded to 64x64), its centre masked."""
    mask = np.zeros((60, 64), dtype=bool)
    mask[15:45, 16:48] = True
    request = GenerationRequest(prompt="a red hat", seed=seed, n=n, steps=STEPS)
    return resolve_inpaint_params(request, PROFILE, photo(image_seed), mask)


def pixels(image: Image.Image) -> np.ndarray:
    return np.asarray(image, dtype=np.int16)


def assert_same_image(batched: Image.Image, alone: Image.Image) -> None:
    difference = np.abs(pixels(batched) - pixels(alone)).max()
    assert difference <= TOLERANCE, difference


class InitialLatents:
    """Records the initial latents a pipeline call starts from (its `prepare_latents`)."""

    def __init__(self, pipeline: Any, monkeypatch: pytest.MonkeyPatch) -> None:
        self.calls: list[torch.Tensor] = []
        prepare = pipeline.prepare_latents

        def record(*args: Any, **kwargs: Any) -> Any:
            prepared = prepare(*args, **kwargs)
            self.calls.append((prepared[0] if isinstance(prepared, tuple) else prepared).clone())
            return prepared

        monkeypatch.setattr(pipeline, "prepare_latents", record)


@pytest.mark.parametrize("task", ["t2i", "inpaint"])
def test_a_jobs_images_start_from_the_one_image_jobs_noise_and_end_as_their_images(
    models: LoadedModels, monkeypatch: pytest.MonkeyPatch, task: str
) -> None:
    pipeline: Any = models.text_to_image if task == "t2i" else models.inpainting

    def run(seed: int, n: int) -> GenerationResult:
        if task == "t2i":
            return run_text_to_image(pipeline, t2i(seed, n))
        return run_inpainting(pipeline, inpaint(seed, n), restorer=COLOR_RESTORER)

    latents = InitialLatents(pipeline, monkeypatch)
    job = run(40, 3)
    alone = [run(40 + i, 1) for i in range(3)]

    batched_start, *alone_starts = latents.calls
    assert batched_start.shape[0] == 3  # one denoising call for the job's three images
    for i, start in enumerate(alone_starts):
        assert torch.equal(batched_start[i : i + 1], start)  # identical, bit for bit
    assert job.seeds == [40, 41, 42] and job.batch_size == 3
    for batched, single in zip(job.images, alone, strict=True):
        assert_same_image(batched, single.images[0])
    assert np.abs(pixels(job.images[0]) - pixels(job.images[1])).max() > 10 * TOLERANCE


class StopAt:
    """A job's progress callback that records progress and stops the job at `step`."""

    def __init__(self, step: int | None = None) -> None:
        self.step = step
        self.seen: list[tuple[int, int]] = []

    def __call__(self, done: int, total: int) -> None:
        self.seen.append((done, total))
        if self.step is not None and done >= self.step:
            raise InterruptedError(f"stopped at {done}")


def test_jobs_share_a_batch_and_a_stopped_one_leaves_it(models: LoadedModels) -> None:
    pipeline = models.text_to_image
    long_prompt = "a very long prompt about a lighthouse " * 12  # two 75-token chunks
    jobs = [
        t2i(1),
        t2i(2, n=2, prompt="a fox"),
        t2i(4, prompt="a boat"),
        t2i(5, prompt=long_prompt),
    ]
    progress = [StopAt(), StopAt(step=2 * 2), StopAt(), StopAt()]  # job 1 stops at step 2

    outcomes = run_text_to_image_batch(
        pipeline, [BatchMember(p, cb) for p, cb in zip(jobs, progress, strict=True)]
    )

    stopped = outcomes[1]
    assert isinstance(stopped, InterruptedError)
    assert progress[1].seen[-1] == (4, 2 * STEPS)  # no progress after it stopped
    results = [outcome for outcome in outcomes if isinstance(outcome, GenerationResult)]
    assert len(results) == 3
    # Jobs 0 and 2 ran with job 1's two rows (4 images), then on without them; the long
    # prompt's embeddings are longer: it ran in a call of its own.
    assert [r.batch_size for r in results] == [4, 4, 1]
    for index in (0, 2, 3):
        assert progress[index].seen[-1] == (STEPS, STEPS)
        result = outcomes[index]
        assert isinstance(result, GenerationResult)
        assert_same_image(result.images[0], run_text_to_image(pipeline, jobs[index]).images[0])


def test_inpaint_jobs_of_different_images_share_a_batch(models: LoadedModels) -> None:
    pipeline = models.inpainting
    assert pipeline is not None
    jobs = [inpaint(3, image_seed=1), inpaint(4, n=2, image_seed=2)]
    outcomes = run_inpainting_batch(
        pipeline, [BatchMember(p, StopAt()) for p in jobs], [COLOR_RESTORER, None]
    )
    for params, outcome, restorer in zip(jobs, outcomes, [COLOR_RESTORER, None], strict=True):
        assert isinstance(outcome, GenerationResult) and outcome.batch_size == 3
        alone = run_inpainting(pipeline, params, restorer=restorer)
        for batched, single in zip(outcome.images, alone.images, strict=True):
            assert_same_image(batched, single)
        # The input's pixels are kept outside the mask, exactly.
        kept = ~params.mask
        assert np.array_equal(pixels(outcome.images[0])[kept], pixels(params.image)[kept])


@pytest.fixture
def blobs() -> Iterator[RedisBlobStore]:
    client = redis.Redis.from_url(REDIS_URL)
    keys = RedisKeys(f"test-batching-{uuid.uuid4().hex[:12]}")
    yield RedisBlobStore(client, keys, ttl_s=60)
    stored = list(client.scan_iter(match=f"{keys.prefix}:*"))
    if stored:
        client.delete(*stored)


def test_the_scheduler_gathers_compatible_jobs_and_runs_the_others_after(
    models: LoadedModels, blobs: RedisBlobStore
) -> None:
    # Every batch below fills up, so none waits out the window: the order in which the
    # threads' jobs arrive does not change the batches.
    scheduler = BatchScheduler(window_s=10.0, max_images=3)
    scheduler.start()

    def request(seed: int, height: int = 64, n: int = 1) -> GenerationRequest:
        return GenerationRequest(
            task=Task.TASK_T2I,
            prompt=f"job {seed}",
            seed=seed,
            width=64,
            height=height,
            steps=3,
            n=n,
        )

    requests = {
        "a": request(1),
        "b": request(2),
        "tall": request(3, height=96, n=3),  # another size: another batch key
        "triple": request(4, n=3),  # with a or b: more images than the batch holds
        "canceled": request(5),
    }
    outcomes: dict[str, GenerationResult | BaseException] = {}
    started: list[str] = []

    jobs = {name: prepare_job(request, models, blobs) for name, request in requests.items()}

    def submit(name: str) -> None:
        job = jobs[name]

        def start() -> bool:
            started.append(name)
            return name != "canceled"  # as if canceled while it waited

        try:
            outcomes[name] = scheduler.submit(job, StopAt(), start)
        except Exception as error:
            outcomes[name] = error

    threads = [threading.Thread(target=submit, args=(name,)) for name in requests]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)

    sizes = {
        name: outcome.batch_size
        for name, outcome in outcomes.items()
        if isinstance(outcome, GenerationResult)
    }
    # a, b and the canceled one (which never started) share a batch; the others each
    # fill one of their own.
    assert sizes == {"a": 2, "b": 2, "tall": 3, "triple": 3}
    assert isinstance(outcomes["canceled"], JobNotStarted)
    assert set(started) == set(requests)


def test_batch_settings_default_by_device_and_refuse_an_empty_batch(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("LLMGA_WORKER_BATCH_WINDOW_MS", raising=False)
    monkeypatch.delenv("LLMGA_WORKER_MAX_BATCH", raising=False)
    settings = WorkerSettings()
    assert settings.max_batch == 4
    assert settings.batch_window_s("cuda") == 0.005 and settings.batch_window_s("cpu") == 0.05
    assert pool_options(settings.max_batch) == ["--pool=threads", "--concurrency=4"]
    assert pool_options(1) == ["--pool=solo", "--concurrency=1"]  # one job at a time

    monkeypatch.setenv("LLMGA_WORKER_BATCH_WINDOW_MS", "20")
    monkeypatch.setenv("LLMGA_WORKER_MAX_BATCH", "16")
    settings = WorkerSettings()
    assert settings.max_batch == 16 and settings.batch_window_s("cuda") == 0.02
    monkeypatch.setenv("LLMGA_WORKER_MAX_BATCH", "0")
    with pytest.raises(ValidationError, match="LLMGA_WORKER_MAX_BATCH"):
        WorkerSettings()
