"""Mask images become one boolean array: white (or transparent) = regenerate."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from services.worker.masks import binarize_mask, load_mask, mask_to_image


def grey(values: list[list[int]]) -> Image.Image:
    return Image.fromarray(np.array(values, dtype=np.uint8), mode="L")


def test_white_regenerates_and_grey_is_binarized_at_half() -> None:
    mask = binarize_mask(grey([[0, 127, 128, 255]]))
    assert mask.tolist() == [[False, False, True, True]]


def test_colour_masks_are_read_by_luminance() -> None:
    pixels = np.array([[[255, 255, 255], [0, 0, 0], [200, 200, 200]]], dtype=np.uint8)
    assert binarize_mask(Image.fromarray(pixels)).tolist() == [[True, False, True]]


def test_transparent_pixels_regenerate_in_an_rgba_mask() -> None:
    # OpenAI's edit semantics: alpha 0 = edit; the colour is ignored.
    rgba = np.zeros((1, 4, 4), dtype=np.uint8)
    rgba[0, :, :3] = 255  # white everywhere: would mean "regenerate all" if colour counted
    rgba[0, :, 3] = [0, 100, 200, 255]
    assert binarize_mask(Image.fromarray(rgba, mode="RGBA")).tolist() == [
        [True, True, False, False]
    ]


def test_a_fully_opaque_rgba_mask_is_read_by_luminance() -> None:
    rgba = np.full((1, 2, 4), 255, dtype=np.uint8)
    rgba[0, 0, :3] = 0
    assert binarize_mask(Image.fromarray(rgba, mode="RGBA")).tolist() == [[False, True]]


def test_a_mask_of_another_size_fails_clearly() -> None:
    with pytest.raises(ValueError, match="the mask is 4x2 but the image is 4x3"):
        load_mask(Image.new("L", (4, 2), 255), (4, 3))


def test_an_all_black_mask_fails_clearly() -> None:
    with pytest.raises(ValueError, match="selects no pixel"):
        load_mask(Image.new("L", (8, 8), 0), (8, 8))
    with pytest.raises(ValueError, match="selects no pixel"):  # grey below half: still none
        load_mask(Image.new("L", (8, 8), 127), (8, 8))


def test_an_all_white_mask_selects_everything() -> None:
    assert load_mask(Image.new("L", (8, 4), 255), (8, 4)).all()


def test_mask_to_image_round_trips() -> None:
    mask = np.array([[True, False], [False, True]])
    image = mask_to_image(mask)
    assert image.mode == "L" and np.asarray(image).tolist() == [[255, 0], [0, 255]]
    assert np.array_equal(binarize_mask(image), mask)
