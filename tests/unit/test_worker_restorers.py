"""The colour fallback restore removes a brightness/contrast seam, keeps what was drawn in the
hole, and touches nothing outside it."""

from __future__ import annotations

import numpy as np

from services.worker.restorers import match_colors, ring_px_for, seam_bands


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


def test_an_object_drawn_in_a_hole_on_a_flat_background_keeps_its_colour() -> None:
    # A 64 px inpainting: a yellow square drawn in a hole of a plain blue image, the
    # generated background a little off. Only that offset is a seam; the square is content.
    blue, yellow = np.array([30, 60, 220]), np.array([245, 220, 30])
    image = np.broadcast_to(blue, (64, 64, 3)).copy()
    mask = np.zeros((64, 64), dtype=bool)
    mask[20:44, 20:44] = True
    image[mask] = blue + [12, -9, 15]  # the generated background's colour shift
    image[26:38, 26:38] = yellow
    restored = match_colors(image.astype(np.uint8), mask)
    assert np.abs(restored[mask & ~_square(26, 38)].astype(int) - blue).max() <= 1
    assert np.abs(restored[_square(26, 38)].astype(int) - (yellow - [12, -9, 15])).max() <= 1


def _square(start: int, stop: int) -> np.ndarray:
    square = np.zeros((64, 64), dtype=bool)
    square[start:stop, start:stop] = True
    return square


def test_the_bands_stay_local_to_the_seam_at_any_size() -> None:
    assert [ring_px_for(np.zeros((side, side))) for side in (32, 64, 512, 1024)] == [2, 2, 16, 32]
