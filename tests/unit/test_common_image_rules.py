"""The image-task rules both the gateway and the worker apply (services/common/image_rules.py)."""

from __future__ import annotations

import pytest
from PIL import Image

from services.common.contract import Outpaint, Task
from services.common.image_rules import (
    CannyThresholds,
    Extension,
    check_conditioning_scale,
    has_transparency,
    mask_selection,
    outpaint_sides,
    resolve_canny_thresholds,
    resolve_extension,
    side_within,
    sized_by_input_image,
    snap_up,
)


def test_luminance_masks_select_from_half_scale_up() -> None:
    mask = Image.frombytes("L", (4, 1), bytes([0, 127, 128, 255]))
    assert list(mask_selection(mask).getdata()) == [0, 0, 255, 255]


def test_a_transparent_alpha_selects_below_half_and_ignores_colour() -> None:
    mask = Image.new("RGBA", (4, 1), (255, 255, 255, 255))
    for x, alpha in enumerate((0, 127, 128, 255)):
        mask.putpixel((x, 0), (255, 255, 255, alpha))
    assert has_transparency(mask)
    assert list(mask_selection(mask).getdata()) == [255, 255, 0, 0]


def test_an_opaque_rgba_mask_is_read_by_its_luminance() -> None:
    mask = Image.new("RGBA", (2, 1), (0, 0, 0, 255))
    mask.putpixel((1, 0), (255, 255, 255, 255))
    assert not has_transparency(mask)
    assert list(mask_selection(mask).getdata()) == [0, 255]


def test_a_palette_mask_with_a_transparent_entry_uses_its_alpha() -> None:
    mask = Image.new("P", (2, 1), 0)
    mask.putpixel((1, 0), 1)
    mask.info["transparency"] = 0
    assert list(mask_selection(mask).getdata()) == [255, 0]


def test_outpaint_sides_round_the_ratio_per_side() -> None:
    assert outpaint_sides(Outpaint(ratio=0.25), (64, 96)) == Extension(16, 24, 16, 24)
    assert outpaint_sides(Outpaint(left=8, bottom=16), (64, 64)) == (8, 0, 0, 16)
    assert Extension(8, 0, 0, 16).canvas_size((64, 64)) == (72, 80)


def test_a_ratio_too_small_for_a_whole_pixel_is_refused_naming_the_image() -> None:
    with pytest.raises(ValueError, match="ratio 0.001 extends no side of a 64x64 image"):
        resolve_extension(Outpaint(ratio=0.001), (64, 64))


def test_canny_defaults_and_limits() -> None:
    assert CannyThresholds.with_defaults(0, 0) == CannyThresholds(100, 200)
    assert resolve_canny_thresholds(50, 0) == CannyThresholds(50, 200)
    for low, high in ((200, 0), (150, 150), (10, 256)):
        assert not CannyThresholds.with_defaults(low, high).valid
        with pytest.raises(ValueError, match="0 <= low < high <= 255"):
            resolve_canny_thresholds(low, high)


def test_conditioning_scale_limits() -> None:
    assert check_conditioning_scale(0) == 0.0 and check_conditioning_scale(2) == 2.0
    for scale in (-0.1, 2.01, float("nan"), float("inf")):
        with pytest.raises(ValueError, match="between 0 and 2"):
            check_conditioning_scale(scale)


def test_sizes() -> None:
    sized = [task for task in Task.values() if sized_by_input_image(task)]
    assert sorted(sized) == sorted(
        [Task.TASK_INPAINT, Task.TASK_OUTPAINT, Task.TASK_EDIT, Task.TASK_RESTORE]
    )
    assert side_within(64, 64, 2048) and side_within(2048, 64, 2048)
    assert not side_within(63, 64, 2048) and not side_within(2049, 64, 2048)
    assert [snap_up(side) for side in (1, 8, 9, 63, 64)] == [8, 8, 16, 64, 64]
