"""The colour fallback restore removes a brightness/contrast seam and touches nothing else."""

from __future__ import annotations

import numpy as np

from services.worker.restorers import match_colors, seam_bands


def planted_seam() -> tuple[np.ndarray, np.ndarray]:
    """A textured image whose masked square got DiffRIR's degradation x * c1 + c2."""
    rng = np.random.default_rng(7)
    base = np.clip(rng.normal([120, 100, 80], 30, size=(96, 96, 3)), 0, 255)
    mask = np.zeros((96, 96), dtype=bool)
    mask[24:72, 24:72] = True
    degraded = base.copy()
    degraded[mask] = degraded[mask] * [1.3, 0.7, 1.2] + [25, -20, 10]
    return np.clip(np.rint(degraded), 0, 255).astype(np.uint8), mask


def channel_offsets(image: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Per channel |mean difference| + |std difference| between the two sides of the seam."""
    inner, outer = seam_bands(mask)
    pixels = image.astype(np.float64)
    inside, outside = pixels[inner], pixels[outer]
    return np.abs(inside.mean(0) - outside.mean(0)) + np.abs(inside.std(0) - outside.std(0))


def test_a_planted_offset_is_reduced_by_at_least_80_percent() -> None:
    image, mask = planted_seam()
    before = channel_offsets(image, mask)
    assert (before > 10).all()  # the plant is really there
    after = channel_offsets(match_colors(image, mask), mask)
    assert (after <= 0.2 * before).all(), (before, after)


def test_pixels_outside_the_mask_are_unchanged() -> None:
    image, mask = planted_seam()
    restored = match_colors(image, mask)
    assert np.array_equal(restored[~mask], image[~mask])
    assert not np.array_equal(restored[mask], image[mask])


def test_without_a_seam_there_is_nothing_to_match() -> None:
    image, _ = planted_seam()
    everything = np.ones(image.shape[:2], dtype=bool)
    assert np.array_equal(match_colors(image, everything), image)
