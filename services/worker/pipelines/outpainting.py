"""Outpainting: extend an image's canvas and generate the new border, keeping the original.

An outpaint job is an inpaint job on a prepared canvas:

1. resolve the extension per side, in pixels or as a ratio of the image's sides
   (`resolve_extension`);
2. build the extended canvas: the original pasted at (left, top), the new border filled
   by repeating the original's edge pixels (`extend_canvas`). With strength 1 (the
   default) the inpainting model never sees the fill (the masked image is zeroed there);
   with a lower strength the fill is the starting point, and edge colours give a
   plausible one, unlike black or noise;
3. the new border is the mask; run the inpainting pipeline (inpainting.py), which returns
   the original region exactly as it was.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from PIL import Image

from services.common.contract import GenerationRequest, Outpaint
from services.worker.pipelines.common import draw_seed
from services.worker.pipelines.inpainting import InpaintParams, resolve_inpaint_params
from services.worker.profiles import ModelProfile

# A ratio grows each side by at most this multiple of the image's side (a 64 px image with
# ratio 4 becomes 576 px wide): beyond it the original is too small to guide anything.
MAX_RATIO = 4.0


@dataclass(frozen=True)
class Extension:
    """Pixels added on each side of the image."""

    left: int
    top: int
    right: int
    bottom: int

    def canvas_size(self, image_size: tuple[int, int]) -> tuple[int, int]:
        """(width, height) of the extended canvas for an image of PIL size `image_size`."""
        width, height = image_size
        return width + self.left + self.right, height + self.top + self.bottom


def resolve_extension(outpaint: Outpaint, image_size: tuple[int, int]) -> Extension:
    """The per-side extension `outpaint` asks for on an image of PIL size `image_size`.

    Pixels per side, or `ratio` (> 0) for every side: left and right grow by
    round(ratio x width), top and bottom by round(ratio x height). Raises ValueError when
    both or neither are given, or the ratio is out of range.
    """
    sides = (outpaint.left, outpaint.top, outpaint.right, outpaint.bottom)
    if outpaint.ratio and any(sides):
        raise ValueError("outpaint takes pixels per side or a ratio, not both")
    if outpaint.ratio:
        if not 0 < outpaint.ratio <= MAX_RATIO:
            raise ValueError(f"outpaint ratio must be in (0, {MAX_RATIO:g}], got {outpaint.ratio}")
        width, height = image_size
        dx, dy = round(outpaint.ratio * width), round(outpaint.ratio * height)
        sides = (dx, dy, dx, dy)
    if not any(sides):
        raise ValueError("outpaint must extend at least one side (pixels per side or a ratio)")
    return Extension(*sides)


def extend_canvas(image: Image.Image, extension: Extension) -> tuple[Image.Image, np.ndarray]:
    """The extended canvas (RGB) and its mask (bool, True on the new border): the original
    at (left, top), the border filled by repeating the original's edge pixels."""
    pixels = np.pad(
        np.asarray(image.convert("RGB")),
        ((extension.top, extension.bottom), (extension.left, extension.right), (0, 0)),
        mode="edge",
    )
    mask = np.ones(pixels.shape[:2], dtype=bool)
    rows = slice(extension.top, extension.top + image.height)
    columns = slice(extension.left, extension.left + image.width)
    mask[rows, columns] = False
    return Image.fromarray(pixels), mask


def resolve_outpaint_params(
    request: GenerationRequest,
    profile: ModelProfile,
    image: Image.Image,
    draw: Callable[[], int] = draw_seed,
) -> InpaintParams:
    """Check an outpaint request for `image` and return the inpaint job that performs it:
    the extended canvas with its border as the mask.

    Raises ValueError with a message fit for the job record when the request is invalid.
    """
    if request.mask_image_id:
        raise ValueError("outpaint takes no mask: the new border is what is generated")
    extension = resolve_extension(request.outpaint, image.size)
    canvas, mask = extend_canvas(image, extension)
    return resolve_inpaint_params(request, profile, canvas, mask, draw)
