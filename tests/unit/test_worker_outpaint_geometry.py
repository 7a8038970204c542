"""Outpainting's canvas: per-side pixels or a ratio, the original in place, the border masked."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from services.common.contract import Outpaint
from services.common.image_rules import Extension, resolve_extension
from services.worker.pipelines.outpainting import extend_canvas


def test_pixels_per_side() -> None:
    extension = resolve_extension(Outpaint(left=8, top=0, right=24, bottom=4), (100, 60))
    assert extension == Extension(left=8, top=0, right=24, bottom=4)
    assert extension.canvas_size((100, 60)) == (132, 64)


def test_a_ratio_grows_every_side_by_that_share_of_the_image() -> None:
    extension = resolve_extension(Outpaint(ratio=0.25), (100, 60))
    assert extension == Extension(left=25, top=15, right=25, bottom=15)


@pytest.mark.parametrize(
    ("outpaint", "error"),
    [
        (Outpaint(), "at least one side"),
        (Outpaint(left=8, ratio=0.5), "not both"),
        (Outpaint(ratio=-0.5), r"ratio must be in \(0, 4\]"),
        (Outpaint(ratio=5), r"ratio must be in \(0, 4\]"),
    ],
)
def test_bad_extensions_fail_clearly(outpaint: Outpaint, error: str) -> None:
    with pytest.raises(ValueError, match=error):
        resolve_extension(outpaint, (64, 64))


def test_canvas_keeps_the_original_and_masks_only_the_border() -> None:
    rng = np.random.default_rng(0)
    original = rng.integers(0, 256, size=(30, 40, 3), dtype=np.uint8)
    canvas, mask = extend_canvas(Image.fromarray(original), Extension(5, 7, 3, 2))
    pixels = np.asarray(canvas)
    assert canvas.size == (48, 39) and mask.shape == (39, 48)
    assert np.array_equal(pixels[7:37, 5:45], original)
    assert not mask[7:37, 5:45].any()
    assert mask.sum() == 48 * 39 - 40 * 30
    # The border repeats the original's edge pixels.
    assert np.array_equal(pixels[0, 5:45], original[0])
    assert np.array_equal(pixels[10, :5], np.repeat(original[3, :1], 5, axis=0))


def test_outpaint_and_strength_survive_the_broker() -> None:
    from services.common.contract import GenerationRequest, Task, decode_request, encode_request

    request = GenerationRequest(
        task=Task.TASK_OUTPAINT, outpaint=Outpaint(left=8, bottom=16), strength=0.75
    )
    decoded = decode_request(encode_request(request))
    assert decoded.outpaint == Outpaint(left=8, bottom=16) and decoded.strength == 0.75
    assert not GenerationRequest().HasField("strength")  # unset means the profile default
