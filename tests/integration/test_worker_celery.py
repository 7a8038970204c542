"""A real worker process (`python -m services.worker`) runs jobs sent as the gateway sends
them (text-to-image, inpaint, outpaint), against real Redis, on tiny models it builds
itself; compatible jobs sent together denoise as one batch."""

from __future__ import annotations

import io
import time
from collections.abc import Iterator

import numpy as np
import pytest
import redis
from PIL import Image

from services.common import job_states
from services.common.blob_store import RedisBlobStore
from services.common.contract import (
    GENERATE_TASK_NAME,
    TERMINAL_STATUSES,
    GenerationRequest,
    JobRecord,
    JobStatus,
    Outpaint,
    Task,
    encode_request,
)
from services.common.ids import new_id
from services.common.job_store import JobStore
from services.common.redis_keys import RedisKeys
from services.common.workers import WorkerRegistry
from services.worker.celery_app import create_app
from services.worker.settings import WorkerSettings
from tests.support.services import REDIS_URL, Namespace, start_worker

pytestmark = pytest.mark.integration

TENANT = "tenant-a"
MAX_BATCH = 4
# Pixels of an image denoised in a batch differ from the same image denoised alone by at
# most this (of 255): the arithmetic of a larger batch rounds differently (docs/batching.md).
BATCH_TOLERANCE = 2


class Harness:
    """The worker subprocess plus the producer side the gateway would have."""

    def __init__(self, namespace: Namespace, worker_name: str) -> None:
        self.settings = WorkerSettings(
            redis_url=REDIS_URL,
            key_prefix=namespace.key_prefix,
            queue_name=namespace.queue_name,
            name=worker_name,
        )
        self.client = redis.Redis.from_url(REDIS_URL, decode_responses=False)
        self.keys = RedisKeys(namespace.key_prefix)
        self.jobs = JobStore(self.client, self.keys, 600)
        self.blobs = RedisBlobStore(self.client, self.keys, 600)
        self.registry = WorkerRegistry(self.client, self.keys)
        self.app = create_app(self.settings)

    def submit(self, request: GenerationRequest) -> None:
        """Create the record, then send the task: the gateway's order."""
        record = JobRecord(request=request, status=JobStatus.JOB_STATUS_QUEUED)
        record.timings.created_at = time.time()
        assert self.jobs.create(record)
        self.send(request)

    def send(self, request: GenerationRequest) -> None:
        self.app.send_task(
            GENERATE_TASK_NAME,
            args=[encode_request(request)],
            task_id=request.job_id,
            queue=self.settings.queue_name,
        )

    def watch(self, job_id: str, timeout_s: float = 60) -> list[JobRecord]:
        """Every distinct record state seen until the job is terminal."""
        key = self.keys.job(TENANT, job_id)
        seen: list[JobRecord] = []
        last = b""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            data = self.client.get(key)
            assert isinstance(data, bytes)
            if data != last:
                last = data
                record = JobRecord()
                record.ParseFromString(data)
                seen.append(record)
                if record.status in TERMINAL_STATUSES:
                    return seen
            time.sleep(0.002)
        raise TimeoutError(f"job {job_id} not finished; last state {seen[-1] if seen else None}")


def t2i_request(**fields: object) -> GenerationRequest:
    return GenerationRequest(
        job_id=new_id("job"),
        tenant=TENANT,
        task=Task.TASK_T2I,
        **fields,  # type: ignore[arg-type]
    )


@pytest.fixture(scope="module")
def harness(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Harness]:
    namespace = Namespace.unique("test-worker")
    models_dir = tmp_path_factory.mktemp("models")
    logs = tmp_path_factory.mktemp("logs")
    # Batches of up to 4 images; a window long enough that jobs sent together on a busy
    # CPU are gathered into one batch.
    env = {"LLMGA_WORKER_MAX_BATCH": str(MAX_BATCH), "LLMGA_WORKER_BATCH_WINDOW_MS": "500"}
    with start_worker(namespace, models_dir, logs, env=env) as worker_name:
        h = Harness(namespace, worker_name)
        yield h
    try:
        assert worker_name not in h.registry.live(30), (
            "the worker did not remove itself from the registry on shutdown"
        )
    finally:
        namespace.cleanup(h.client)


def png_size(h: Harness, image_id: str) -> tuple[int, int]:
    blob = h.blobs.get(TENANT, image_id)
    assert blob is not None and blob.content_type == "image/png"
    return Image.open(io.BytesIO(blob.data)).size


def test_job_runs_through_its_states_and_is_reproducible(harness: Harness) -> None:
    h = harness
    prompt = "a watercolor painting of a quiet harbor with small fishing boats " * 4
    first = t2i_request(
        prompt=prompt, negative_prompt="blurry", width=64, height=96, steps=10, seed=1234, n=2
    )
    h.submit(first)
    states = h.watch(first.job_id)

    statuses = [s.status for s in states]
    # The harness wrote it queued; an idle worker may start it before the first read, so
    # the first state seen is queued or running, and running is always seen.
    assert statuses[0] in (JobStatus.JOB_STATUS_QUEUED, JobStatus.JOB_STATUS_RUNNING)
    assert JobStatus.JOB_STATUS_RUNNING in statuses
    assert statuses[-1] == JobStatus.JOB_STATUS_SUCCEEDED, states[-1].error
    steps_seen = [s.progress.step for s in states if s.status == JobStatus.JOB_STATUS_RUNNING]
    assert steps_seen == sorted(steps_seen) and max(steps_seen) >= 1
    done = states[-1]
    assert done.progress.total == 20 and done.progress.step == 20  # steps x n
    assert [image.seed for image in done.images] == [1234, 1235]
    assert all((i.width, i.height) == (64, 96) for i in done.images)
    assert [png_size(h, i.image_id) for i in done.images] == [(64, 96), (64, 96)]
    assert done.prompt_used == prompt and done.negative_prompt_used == "blurry"
    assert done.model_profile == "tiny" and done.model_revision.startswith("tiny-")
    assert done.worker == h.settings.worker_name and done.attempts == 1
    t = done.timings
    assert t.created_at <= t.started_at <= t.finished_at
    assert t.encode_s > 0 and t.denoise_s > 0 and t.decode_s > 0

    # The message is delivered again (a lost acknowledgement): nothing runs.
    h.send(first)
    again = t2i_request(
        prompt=prompt, negative_prompt="blurry", width=64, height=96, steps=10, seed=1235
    )
    h.submit(again)
    assert h.watch(again.job_id)[-1].status == JobStatus.JOB_STATUS_SUCCEEDED
    assert h.jobs.get(TENANT, first.job_id) == done

    # Image i of a job uses seed + i and equals a one-image job with that seed (the job's
    # two images denoised as one batch: within the batch tolerance).
    second = h.jobs.get(TENANT, again.job_id)
    assert second is not None and done.batch_size == 2 and second.batch_size == 1
    assert np.abs(pixels(h, second, 0) - pixels(h, done, 1)).max() <= BATCH_TOLERANCE
    assert np.abs(pixels(h, done, 0) - pixels(h, done, 1)).max() > 10 * BATCH_TOLERANCE


def pixels(h: Harness, record: JobRecord, index: int) -> np.ndarray:
    """Image `index` of the job, as signed integers."""
    blob = h.blobs.get(TENANT, record.images[index].image_id)
    assert blob is not None
    return np.asarray(Image.open(io.BytesIO(blob.data)), dtype=np.int16)


def test_compatible_jobs_denoise_together_and_each_ends_on_its_own(harness: Harness) -> None:
    h = harness
    # Three jobs of one batch key (size, steps, guidance), sent together; one of another
    # size (its own batch); one with a bad width (fails before it could join).
    # Four images in all (one job has two): a full batch, so it starts without waiting
    # out the window.
    together = [
        t2i_request(prompt=f"a lighthouse {i}", width=64, height=64, steps=60, seed=10 + i, n=n)
        for i, n in enumerate([2, 1, 1])
    ]
    other = t2i_request(prompt="a fox", width=64, height=96, steps=4, seed=7)
    bad = t2i_request(prompt="a cat", width=65, steps=4)
    for request in [*together, other, bad]:
        h.submit(request)
    first, canceled, third = together

    # Cancel one job of the batch while it runs: its rows leave, the others go on.
    def running(job_id: str) -> bool:
        record = h.jobs.get(TENANT, job_id)
        return record is not None and record.progress.step >= 2

    deadline = time.monotonic() + 120
    while not all(running(r.job_id) for r in together) and time.monotonic() < deadline:
        time.sleep(0.01)
    h.jobs.update(TENANT, canceled.job_id, lambda r: job_states.cancel(r, "canceled"))

    ended = {r.job_id: h.watch(r.job_id, timeout_s=180)[-1] for r in [*together, other, bad]}
    for request in (first, third):
        done = ended[request.job_id]
        assert done.status == JobStatus.JOB_STATUS_SUCCEEDED, done.error
        n = request.n
        assert done.batch_size == MAX_BATCH and done.progress.step == done.progress.total == 60 * n
        assert done.timings.denoise_s > 0 and len(done.images) == n
    stopped = ended[canceled.job_id]
    assert stopped.status == JobStatus.JOB_STATUS_CANCELED and not stopped.images
    # The worker stopped writing its progress at the next step.
    assert 2 <= stopped.progress.step < 60
    assert ended[other.job_id].status == JobStatus.JOB_STATUS_SUCCEEDED
    assert ended[other.job_id].batch_size == 1
    assert ended[bad.job_id].status == JobStatus.JOB_STATUS_FAILED
    assert "width must be a multiple of 8" in ended[bad.job_id].error


def test_seed_is_drawn_and_recorded_when_unset(harness: Harness) -> None:
    h = harness
    request = t2i_request(prompt="a red fox", width=64, height=64, steps=2)
    h.submit(request)
    done = h.watch(request.job_id)[-1]
    assert done.status == JobStatus.JOB_STATUS_SUCCEEDED, done.error
    assert len(done.images) == 1 and 0 <= done.images[0].seed < 2**32
    assert not done.request.HasField("seed")  # the request is kept as received


@pytest.mark.parametrize(
    ("fields", "error"),
    [
        ({"task": Task.TASK_SIMILAR}, "task similar is not implemented"),
        ({"task": Task.TASK_EDIT}, "edit needs an input image"),
        ({"width": 100}, "width must be a multiple of 8, got 100"),
    ],
)
def test_unrunnable_jobs_fail_with_a_clear_error(
    harness: Harness, fields: dict[str, object], error: str
) -> None:
    h = harness
    request = t2i_request(prompt="a cat", steps=2)
    for name, value in fields.items():
        setattr(request, name, value)
    h.submit(request)
    done = h.watch(request.job_id)[-1]
    assert done.status == JobStatus.JOB_STATUS_FAILED
    assert done.error == error
    assert done.attempts == 1 and not done.images


def test_worker_heartbeats_while_alive(harness: Harness) -> None:
    info = harness.client.get(harness.keys.worker_info(harness.settings.worker_name))
    assert info is not None and b'"profile": "tiny"' in info


# -- inpaint and outpaint -------------------------------------------------------------------


def put_png(h: Harness, pixels: np.ndarray) -> str:
    """Store an image as the gateway's upload does; returns its blob id."""
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    return h.blobs.put(TENANT, buffer.getvalue(), "image/png")


def stored_pixels(h: Harness, image_id: str) -> np.ndarray:
    blob = h.blobs.get(TENANT, image_id)
    assert blob is not None and blob.content_type == "image/png"
    return np.asarray(Image.open(io.BytesIO(blob.data)).convert("RGB"))


def test_inpaint_job_regenerates_only_the_masked_region(harness: Harness) -> None:
    h = harness
    rng = np.random.default_rng(3)
    image = rng.integers(0, 256, size=(72, 96, 3), dtype=np.uint8)
    # An RGBA mask, transparent where to regenerate (OpenAI's edit semantics).
    mask = np.full((72, 96, 4), 255, dtype=np.uint8)
    mask[20:50, 30:70, 3] = 0
    request = GenerationRequest(
        job_id=new_id("job"),
        tenant=TENANT,
        task=Task.TASK_INPAINT,
        prompt="a red apple on the table",
        input_image_ids=[put_png(h, image)],
        mask_image_id=put_png(h, mask),
        steps=4,
        seed=11,
        n=2,
    )
    h.submit(request)
    states = h.watch(request.job_id)
    done = states[-1]
    assert done.status == JobStatus.JOB_STATUS_SUCCEEDED, done.error
    assert done.progress.total == 8 and done.progress.step == 8
    assert done.prompt_used == "a red apple on the table"
    # The inpainting model's revision, not the text-to-image one the heartbeat names.
    info = h.client.get(h.keys.worker_info(h.settings.worker_name))
    assert info is not None and done.model_revision.encode() not in info
    assert done.model_revision.startswith("tiny-")
    assert [(i.seed, i.width, i.height) for i in done.images] == [(11, 96, 72), (12, 96, 72)]
    keep = mask[..., 3] == 255
    for stored in done.images:
        pixels = stored_pixels(h, stored.image_id)
        assert pixels.shape == image.shape
        assert np.array_equal(pixels[keep], image[keep])
        assert not np.array_equal(pixels[~keep], image[~keep])


def test_outpaint_job_extends_the_canvas_and_keeps_the_original(harness: Harness) -> None:
    h = harness
    rng = np.random.default_rng(4)
    image = rng.integers(0, 256, size=(64, 64, 3), dtype=np.uint8)
    request = GenerationRequest(
        job_id=new_id("job"),
        tenant=TENANT,
        task=Task.TASK_OUTPAINT,
        prompt="a wide mountain valley",
        input_image_ids=[put_png(h, image)],
        outpaint=Outpaint(left=32, right=32, top=0, bottom=16),
        steps=4,
        seed=2,
    )
    h.submit(request)
    done = h.watch(request.job_id)[-1]
    assert done.status == JobStatus.JOB_STATUS_SUCCEEDED, done.error
    (stored,) = done.images
    assert (stored.width, stored.height) == (128, 80)
    pixels = stored_pixels(h, stored.image_id)
    assert pixels.shape == (80, 128, 3)
    assert np.array_equal(pixels[0:64, 32:96], image)


@pytest.mark.parametrize(
    ("case", "error"),
    [
        ("missing image", "input image img_missing not found (expired or never uploaded)"),
        ("mask of another size", "the mask is 32x64 but the image is 64x64"),
        ("outpaint by nothing", "outpaint must extend at least one side"),
    ],
)
def test_bad_inpaint_and_outpaint_jobs_fail_clearly(
    harness: Harness, case: str, error: str
) -> None:
    h = harness
    image_id = put_png(h, np.zeros((64, 64, 3), dtype=np.uint8))
    request = GenerationRequest(
        job_id=new_id("job"), tenant=TENANT, task=Task.TASK_INPAINT, prompt="a cat", steps=2
    )
    if case == "missing image":
        request.input_image_ids.append("img_missing")
        request.mask_image_id = image_id
    elif case == "mask of another size":
        request.input_image_ids.append(image_id)
        request.mask_image_id = put_png(h, np.full((64, 32), 255, dtype=np.uint8))
    else:
        request.task = Task.TASK_OUTPAINT
        request.input_image_ids.append(image_id)
    h.submit(request)
    done = h.watch(request.job_id)[-1]
    assert done.status == JobStatus.JOB_STATUS_FAILED
    assert error in done.error
    assert done.attempts == 1 and not done.images
