"""DiffRIR in the worker's jobs: loaded once with the models, run after inpaint and
outpaint unless a request turns restoration off, and the standalone restore job (images
from a real Redis blob store, tiny models and a tiny DiffRIR checkpoint)."""

from __future__ import annotations

import dataclasses
import io
import uuid
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import redis
import torch
from PIL import Image

from services.common.blob_store import RedisBlobStore
from services.common.contract import GenerationRequest, Outpaint, Task
from services.common.redis_keys import RedisKeys
from services.worker.diffrir.checkpoint import save_checkpoint
from services.worker.diffrir.network import DiffRIR
from services.worker.diffrir.tiling import Tiling
from services.worker.diffrir.train import TINY_CONFIG
from services.worker.job_preparation import prepare_job
from services.worker.loading import LoadedModels, load_models
from services.worker.profiles import get_profile, local_sources
from services.worker.restorers import COLOR_RESTORER, choose_restorer
from services.worker.settings import WorkerSettings
from services.worker.task_table import model_revision
from services.worker.testing.tiny_models import build_tiny
from tests.support.images import noise
from tests.support.torch_threads import one_torch_thread

TINY = get_profile("tiny")
TENANT = "t1"


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LoadedModels]:
    models_dir = tmp_path_factory.mktemp("models")
    for source in (TINY.text_to_image, TINY.inpainting):
        assert source is not None and source in local_sources(TINY)
        build_tiny(source.name, models_dir)
    torch.manual_seed(0)
    weights = models_dir / "diffrir_tiny.pth"
    network = DiffRIR(TINY_CONFIG)
    save_checkpoint(weights, network, network)
    with one_torch_thread():
        yield load_models(
            TINY,
            models_dir,
            torch.device("cpu"),
            torch.float32,
            components={"inpainting"},
            diffrir_weights=weights,
            diffrir_tiling=Tiling(tile=64, overlap=32),
        )


@pytest.fixture
def blobs() -> Iterator[RedisBlobStore]:
    client = redis.Redis.from_url("redis://127.0.0.1:6379/0")
    keys = RedisKeys(f"test-diffrir-{uuid.uuid4().hex[:12]}")
    yield RedisBlobStore(client, keys, ttl_s=60)
    for key in client.scan_iter(match=f"{keys.prefix}:*"):
        client.delete(key)


def put_png(blobs: RedisBlobStore, pixels: np.ndarray) -> str:
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    return blobs.put(TENANT, buffer.getvalue())


def box(height: int, width: int) -> np.ndarray:
    mask = np.zeros((height, width), dtype=np.uint8)
    mask[height // 4 : height * 3 // 4, width // 4 : width * 3 // 4] = 255
    return mask


def test_the_restorer_is_loaded_once_with_the_models(models: LoadedModels) -> None:
    assert models.restorer is not None and models.restorer.name == "diffrir"
    assert models.restorer.tiling == Tiling(tile=64, overlap=32)
    restore = GenerationRequest(task=Task.TASK_RESTORE)
    assert model_revision(models, restore).startswith("diffrir-")
    assert model_revision(dataclasses.replace(models, restorer=None), restore) == "color"


def test_which_restorer_runs(models: LoadedModels) -> None:
    learned = models.restorer
    assert choose_restorer(None, learned, color_fallback=False) is learned
    assert choose_restorer(True, None, color_fallback=True) is COLOR_RESTORER
    assert choose_restorer(None, None, color_fallback=False) is None
    assert choose_restorer(False, learned, color_fallback=True) is None


@pytest.mark.parametrize(("restore", "used"), [(None, "diffrir"), (False, "")])
def test_inpaint_runs_diffrir_unless_the_request_turns_it_off(
    models: LoadedModels, blobs: RedisBlobStore, restore: bool | None, used: str
) -> None:
    image = noise(64, 64, seed=4)
    request = GenerationRequest(
        task=Task.TASK_INPAINT, tenant=TENANT, prompt="a cat", steps=2, seed=1
    )
    request.input_image_ids.append(put_png(blobs, image))
    request.mask_image_id = put_png(blobs, box(64, 64))
    if restore is not None:
        request.restore = restore
    result = prepare_job(request, models, blobs).run(None)
    assert result.restore_used == used
    keep = box(64, 64) == 0
    assert np.array_equal(np.asarray(result.images[0])[keep], image[keep])


def test_outpaint_is_restored_and_keeps_the_original(
    models: LoadedModels, blobs: RedisBlobStore
) -> None:
    image = noise(64, 64, seed=5)
    request = GenerationRequest(
        task=Task.TASK_OUTPAINT, tenant=TENANT, prompt="a beach", steps=2, seed=1,
        outpaint=Outpaint(left=32),
    )  # fmt: skip
    request.input_image_ids.append(put_png(blobs, image))
    result = prepare_job(request, models, blobs).run(None)
    assert result.restore_used == "diffrir"
    assert np.array_equal(np.asarray(result.images[0])[:, 32:], image)


def restore_request(
    blobs: RedisBlobStore, generated: np.ndarray, reference: np.ndarray, mask: np.ndarray
) -> GenerationRequest:
    request = GenerationRequest(task=Task.TASK_RESTORE, tenant=TENANT, seed=3)
    request.input_image_ids.extend([put_png(blobs, generated), put_png(blobs, reference)])
    request.mask_image_id = put_png(blobs, mask)
    return request


def test_a_restore_job_restores_the_masked_region_against_the_reference(
    models: LoadedModels, blobs: RedisBlobStore
) -> None:
    reference, generated, mask = noise(80, 96, 6), noise(80, 96, 7), box(80, 96)
    job = prepare_job(restore_request(blobs, generated, reference, mask), models, blobs)
    assert job.params.total_steps == 1 and job.params.seed == 3
    progress: list[tuple[int, int]] = []
    result = job.run(lambda step, total: progress.append((step, total)))
    assert progress == [(1, 1)] and result.restore_used == "diffrir"
    restored = np.asarray(result.images[0])
    assert restored.shape == (80, 96, 3)
    assert np.array_equal(restored[mask == 0], reference[mask == 0])
    # Without weights the same job falls back to the colour restorer.
    fallback = dataclasses.replace(models, restorer=None)
    job = prepare_job(restore_request(blobs, generated, reference, mask), fallback, blobs)
    assert job.run(None).restore_used == "color"


@pytest.mark.parametrize(
    ("sizes", "fields", "error"),
    [
        (((64, 64), (64, 80), (64, 64)), {}, "generated image is 64x64 but the reference is 80x64"),
        (((64, 64), (64, 64), (32, 32)), {}, "the mask is 32x32 but the image is 64x64"),
        (((16, 64), (16, 64), (16, 64)), {}, "height must be between 32 and"),
        (((64, 64), (64, 64), (64, 64)), {"restore": False}, "restore is false"),
        (((64, 64), (64, 64), (64, 64)), {"n": 2}, "n must be unset"),
    ],
)
def test_bad_restore_jobs_fail_with_a_clear_message(
    models: LoadedModels,
    blobs: RedisBlobStore,
    sizes: tuple[tuple[int, int], ...],
    fields: dict[str, object],
    error: str,
) -> None:
    (gh, gw), (rh, rw), (mh, mw) = sizes
    request = restore_request(blobs, noise(gh, gw, 1), noise(rh, rw, 2), box(mh, mw))
    for name, value in fields.items():
        setattr(request, name, value)
    with pytest.raises(ValueError, match=error):
        prepare_job(request, models, blobs)


def test_a_restore_job_needs_both_images_and_a_mask(
    models: LoadedModels, blobs: RedisBlobStore
) -> None:
    request = restore_request(blobs, noise(64, 64, 1), noise(64, 64, 2), box(64, 64))
    del request.input_image_ids[1]
    with pytest.raises(ValueError, match="restore needs two input images"):
        prepare_job(request, models, blobs)


def test_worker_settings_check_the_diffrir_options(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with pytest.raises(ValueError, match="do not exist"):
        WorkerSettings(diffrir_weights=tmp_path / "missing.pth")
    with pytest.raises(ValueError, match="multiple of 32"):
        WorkerSettings(diffrir_tile=500)
    with pytest.raises(ValueError, match="must be less than diffrir_tile"):
        WorkerSettings(diffrir_tile=64, diffrir_tile_overlap=64)
    weights = tmp_path / "w.pth"
    weights.touch()
    assert WorkerSettings(diffrir_weights=weights).diffrir_weights == weights
    monkeypatch.setenv("LLMGA_WORKER_DIFFRIR_WEIGHTS", "")  # empty, as compose passes it
    assert WorkerSettings().diffrir_weights is None
    monkeypatch.setenv("LLMGA_WORKER_DIFFRIR_WEIGHTS", str(weights))
    assert WorkerSettings().diffrir_weights == weights
