"""DiffRIR on images: exact preservation outside the mask, reflect padding to the network's
stride, tiled runs that agree with untiled ones, and seeded determinism (a tiny network with
random weights: these properties hold for any weights)."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from services.worker.diffrir.network import STRIDE, DiffRIR
from services.worker.diffrir.restorer import DiffRIRRestorer
from services.worker.diffrir.tiling import Tiling, run_tiled, tile_starts
from services.worker.diffrir.train import TINY_CONFIG
from tests.support.torch_threads import one_torch_thread

CPU = torch.device("cpu")
UNTILED = Tiling(tile=1024, overlap=0)


@pytest.fixture(autouse=True, scope="module")
def _one_thread() -> Iterator[None]:
    with one_torch_thread():
        yield


@pytest.fixture(scope="module")
def network() -> DiffRIR:
    torch.manual_seed(0)
    return DiffRIR(TINY_CONFIG)


def scene(height: int, width: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(generated, reference, mask): a textured reference, a box mask, and the generated
    image = the reference with a colour seam (x * 1.1 + 10) inside the mask."""
    rng = np.random.default_rng(3)
    y, x = np.mgrid[0:height, 0:width]
    reference = np.stack(
        [128 + 60 * np.sin(x / 17), 100 + 50 * np.cos(y / 23), 90 + 40 * np.sin((x + y) / 31)], -1
    )
    reference = np.clip(reference + rng.normal(0, 8, reference.shape), 0, 255).astype(np.uint8)
    mask = np.zeros((height, width), dtype=bool)
    mask[height // 5 : height * 4 // 5, width // 5 : width * 5 // 6] = True
    generated = reference.copy()
    generated[mask] = np.clip(generated[mask] * 1.1 + 10, 0, 255).astype(np.uint8)
    return generated, reference, mask


def test_tiles_cover_the_image_on_the_network_grid() -> None:
    assert tile_starts(96, 128, 32) == [0]
    starts = tile_starts(320, 128, 64)
    assert starts == [0, 64, 128, 192]
    assert all(start % STRIDE == 0 for start in starts)
    assert starts[-1] + 128 == 320
    assert all(b - a <= 128 - 64 for a, b in zip(starts, starts[1:], strict=False))
    with pytest.raises(ValueError, match="multiple of 32"):
        Tiling(tile=100, overlap=32)
    with pytest.raises(ValueError, match="overlap"):
        Tiling(tile=128, overlap=128)


def test_blending_weights_sum_to_one_so_a_local_operation_is_unchanged_by_tiling() -> None:
    # A 3x3 blur only looks 1 px away, less than any overlap: tiling must give the same
    # result wherever tiles are blended, i.e. the blend weights are a partition of unity.
    torch.manual_seed(1)
    image = torch.rand(1, 3, 192, 256)

    def blur(x: torch.Tensor) -> torch.Tensor:
        return F.avg_pool2d(F.pad(x, (1, 1, 1, 1), mode="replicate"), 3, stride=1)

    whole = blur(image)
    tiled = run_tiled(blur, image, Tiling(tile=96, overlap=32))
    # Tile borders differ (padding instead of neighbours), but only within 1 px of them,
    # where the other tile's ramp weight takes over; away from tile seams it is exact.
    assert torch.allclose(tiled[..., 2:-2, 2:-2], whole[..., 2:-2, 2:-2], atol=0.02)
    interior = torch.ones(192, 256, dtype=torch.bool)
    for start in tile_starts(256, 96, 32):
        interior[:, max(start - 2, 0) : start + 2] = False
        interior[:, start + 94 : start + 98] = False
    for start in tile_starts(192, 96, 32):
        interior[max(start - 2, 0) : start + 2] = False
        interior[start + 94 : start + 98] = False
    assert torch.allclose(tiled[..., interior], whole[..., interior], atol=1e-6)


def test_pixels_outside_the_mask_come_back_as_the_reference(network: DiffRIR) -> None:
    generated, reference, mask = scene(100, 150)  # not multiples of 32: reflect padding
    restored = DiffRIRRestorer(network, CPU, UNTILED).restore(generated, reference, mask, seed=1)
    assert restored.shape == generated.shape and restored.dtype == np.uint8
    assert np.array_equal(restored[~mask], reference[~mask])
    assert not np.array_equal(restored[mask], generated[mask])  # it did change the region


def test_a_seed_gives_the_same_restoration(network: DiffRIR) -> None:
    generated, reference, mask = scene(64, 64)
    restorer = DiffRIRRestorer(network, CPU, UNTILED)
    first = restorer.restore(generated, reference, mask, seed=5)
    assert np.array_equal(first, restorer.restore(generated, reference, mask, seed=5))


def test_tiled_and_untiled_runs_agree(network: DiffRIR) -> None:
    """Tolerance: the prior is shared and tiles lie on the network's 32 px grid, so the only
    difference is the channel attention, whose per-head Gram matrices are computed over a
    tile instead of the whole image (tiling.py). With these weights the network moves the
    masked pixels by ~12 levels on average; tiling may move the result by at most 4 levels
    of 255 at any pixel and by at most 5 % of the network's own correction on average."""
    generated, reference, mask = scene(200, 300)
    whole = DiffRIRRestorer(network, CPU, UNTILED).restore(generated, reference, mask, seed=2)
    tiled = DiffRIRRestorer(network, CPU, Tiling(tile=128, overlap=64)).restore(
        generated, reference, mask, seed=2
    )
    assert np.array_equal(tiled[~mask], reference[~mask])
    difference = np.abs(tiled.astype(int) - whole.astype(int))[mask]
    correction = np.abs(whole.astype(int) - generated.astype(int))[mask]
    assert correction.mean() > 2  # the network does change the region: a real comparison
    assert difference.max() <= 4, difference.max()
    assert difference.mean() <= 0.05 * correction.mean(), (difference.mean(), correction.mean())
