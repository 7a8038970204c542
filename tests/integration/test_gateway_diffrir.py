"""DiffRIR end to end: a tiny checkpoint trained by the real training command
(`python -m services.worker.diffrir.train --tiny`), a real worker process that loads it
(`LLMGA_WORKER_DIFFRIR_WEIGHTS`, 64-pixel tiles), the real gateway. Restore jobs and
inpaint results are restored by that network: each served image equals what the same
checkpoint computes in this process, pixels outside the mask are the reference's bit for
bit, and an image larger than a tile goes through the tiled path."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
import torch

from services.common.job_store import JobStore
from services.worker.diffrir.checkpoint import file_sha256
from services.worker.diffrir.restorer import DiffRIRRestorer
from services.worker.diffrir.tiling import Tiling
from tests.support.http_api import wait_for_job
from tests.support.images import fetch_pixels, noise, png_b64
from tests.support.processes import REPO_ROOT
from tests.support.services import Namespace, start_worker
from tests.support.torch_threads import one_torch_thread

pytestmark = [pytest.mark.integration, pytest.mark.timeout(600)]

# The worker's DiffRIR tiling: 64x64 images fit one tile, the 96x128 image below needs six.
TILING = Tiling(tile=64, overlap=32)
TENANT = "local"  # the gateway's tenant without API keys


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny DiffRIR checkpoint written by the training command (2 CPU steps, ~5 s)."""
    output = tmp_path_factory.mktemp("diffrir") / "diffrir_tiny.pth"
    command = [
        sys.executable, "-m", "services.worker.diffrir.train", "--tiny", "--steps", "2",
        "--batch-size", "1", "--crop", "64", "--colour-only", "--output", str(output),
    ]  # fmt: skip
    subprocess.run(command, cwd=REPO_ROOT, check=True, timeout=120, capture_output=True)
    return output


@pytest.fixture(scope="module")
def worker(
    namespace: Namespace, logs: Path, tmp_path_factory: pytest.TempPathFactory, checkpoint: Path
) -> Iterator[str]:
    """A real worker process on the tiny models with the trained DiffRIR loaded."""
    env = {
        "LLMGA_WORKER_DIFFRIR_WEIGHTS": str(checkpoint),
        "LLMGA_WORKER_DIFFRIR_TILE": str(TILING.tile),
        "LLMGA_WORKER_DIFFRIR_TILE_OVERLAP": str(TILING.overlap),
    }
    with start_worker(namespace, tmp_path_factory.mktemp("models"), logs, env=env) as name:
        yield name


def local_restore(
    checkpoint: Path,
    tiling: Tiling,
    generated: np.ndarray,
    reference: np.ndarray,
    mask: np.ndarray,
    seed: int,
) -> np.ndarray:
    """What the checkpoint computes in this process (one torch thread, as the worker)."""
    with one_torch_thread():
        restorer = DiffRIRRestorer.load(checkpoint, torch.device("cpu"), tiling)
        return restorer.restore(generated, reference, mask, seed)


def mismatch(served: np.ndarray, expected: np.ndarray, where: np.ndarray) -> float:
    """The fraction of channel values inside `where` that differ; asserts none differs by
    more than one level (another process may round a value on the other side of .5)."""
    difference = np.abs(served[where].astype(int) - expected[where].astype(int))
    assert difference.max() <= 1, difference.max()
    return float((difference > 0).mean())


def box_mask(height: int, width: int, top: int, left: int, bottom: int, right: int) -> np.ndarray:
    """Bool (height, width): True in the box (the generated region)."""
    mask = np.zeros((height, width), dtype=bool)
    mask[top:bottom, left:right] = True
    return mask


def submit_restore(
    api: httpx.Client, generated: np.ndarray, reference: np.ndarray, mask: np.ndarray, seed: int
) -> dict[str, Any]:
    """`POST /v1/images` task restore; the finished job's view."""
    response = api.post(
        "/v1/images",
        json={
            "task": "restore",
            "image": {"b64": png_b64(generated)},
            "reference": {"b64": png_b64(reference)},
            "mask": {"b64": png_b64(mask.astype(np.uint8) * 255)},
            "seed": seed,
        },
    )
    assert response.status_code == 202, response.text
    done = wait_for_job(api, response.json()["id"])
    assert done["status"] == "succeeded", done["error"]
    return done


def too_bright(reference: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """The reference with its masked region brightened (what DiffRIR is trained to undo)
    and black outside it: the served image's outside can only come from the reference."""
    generated = np.zeros_like(reference)
    generated[mask] = np.clip(reference[mask].astype(int) + 50, 0, 255).astype(np.uint8)
    return generated


def test_a_restore_job_runs_the_trained_diffrir(
    api: httpx.Client, worker: str, jobs: JobStore, checkpoint: Path
) -> None:
    reference = noise(64, 64, 21)
    mask = box_mask(64, 64, 16, 12, 48, 52)
    generated = too_bright(reference, mask)

    done = submit_restore(api, generated, reference, mask, seed=7)
    assert done["restore_used"] == "diffrir"
    assert done["model_profile"] == "tiny"
    assert done["progress"] == {"step": 1, "total": 1}
    # The job view has no revision; the record names the checkpoint file by its hash.
    record = jobs.get(TENANT, done["id"])
    assert record is not None and record.worker == worker
    assert record.model_revision == f"diffrir-{file_sha256(checkpoint)[:12]}"

    [image] = done["images"]
    assert (image["width"], image["height"], image["seed"]) == (64, 64, 7)
    served = fetch_pixels(api, image["url"])
    assert np.array_equal(served[~mask], reference[~mask])
    assert not np.array_equal(served[mask], generated[mask])
    # The served pixels are the checkpoint's: not a label on the colour fallback.
    expected = local_restore(checkpoint, TILING, generated, reference, mask, seed=7)
    assert mismatch(served, expected, mask) < 0.001


def test_inpaint_results_are_restored_by_diffrir_unless_restore_is_false(
    api: httpx.Client, worker: str, jobs: JobStore, checkpoint: Path
) -> None:
    image = noise(64, 64, 22)
    mask = box_mask(64, 64, 16, 16, 48, 40)
    common = {
        "task": "inpaint",
        "prompt": "a red apple",
        "image": {"b64": png_b64(image)},
        "mask": {"b64": png_b64(mask.astype(np.uint8) * 255)},
        "steps": 2,
        "seed": 9,
    }
    payloads = (common, {**common, "restore": False})
    submitted = [api.post("/v1/images", json=payload) for payload in payloads]
    assert all(response.status_code == 202 for response in submitted), submitted
    on, off = (wait_for_job(api, response.json()["id"]) for response in submitted)
    assert on["status"] == off["status"] == "succeeded", (on["error"], off["error"])

    assert on["restore"] is None and on["restore_used"] == "diffrir"
    assert off["restore"] is False and off["restore_used"] is None  # the view's null for ""
    on_record, off_record = jobs.get(TENANT, on["id"]), jobs.get(TENANT, off["id"])
    assert on_record is not None and off_record is not None
    assert off_record.restore_used == ""
    # Both weights that shaped the restored image are on its record, DiffRIR's by hash.
    digest = file_sha256(checkpoint)[:12]
    assert on_record.model_revision == f"{off_record.model_revision}+diffrir-{digest}"

    restored = fetch_pixels(api, on["images"][0]["url"])
    unrestored = fetch_pixels(api, off["images"][0]["url"])
    for pixels in (restored, unrestored):
        assert np.array_equal(pixels[~mask], image[~mask])
    # Same seed, same generation: the restored result is DiffRIR applied to the
    # unrestored one, with the job's seed, against the input image.
    assert not np.array_equal(restored[mask], unrestored[mask])
    expected = local_restore(checkpoint, TILING, unrestored, image, mask, seed=9)
    assert mismatch(restored, expected, mask) < 0.001


def test_an_image_larger_than_a_tile_is_restored_tile_by_tile(
    api: httpx.Client, worker: str, checkpoint: Path
) -> None:
    reference = noise(96, 128, 23)  # 2 x 3 tiles of 64 overlapping by at least 32
    mask = box_mask(96, 128, 20, 24, 76, 104)  # across every tile border
    generated = too_bright(reference, mask)

    done = submit_restore(api, generated, reference, mask, seed=3)
    assert done["restore_used"] == "diffrir"
    [image] = done["images"]
    assert (image["width"], image["height"]) == (128, 96)
    served = fetch_pixels(api, image["url"])
    assert np.array_equal(served[~mask], reference[~mask])
    assert not np.array_equal(served[mask], generated[mask])
    # Tiles see their own channel-attention statistics, so tiled and whole-image runs
    # differ slightly (docs/worker.md, "Tiling"): the served image is the tiled one.
    tiled = local_restore(checkpoint, TILING, generated, reference, mask, seed=3)
    whole = local_restore(checkpoint, Tiling(tile=512), generated, reference, mask, seed=3)
    assert mismatch(served, tiled, mask) < 0.001
    assert np.abs(served[mask].astype(int) - whole[mask].astype(int)).max() <= 4
    assert np.mean(served[mask] != whole[mask]) > 0.05
