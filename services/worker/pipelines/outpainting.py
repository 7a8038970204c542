"""Outpainting: extend an image's canvas and generate the new border, keeping the original.

An outpaint job is an inpaint job on a prepared canvas:

1. resolve the extension per side, in pixels or as a ratio of the image's sides
   (`resolve_extension`, services/common/image_rules.py: the gateway checks requests with
   the same geometry);
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

import numpy as np
from PIL import Image

from services.common.contract import GenerationRequest
from services.common.image_rules import Extension, resolve_extension
from services.worker.pipelines.common import draw_seed
from services.worker.pipelines.inpainting import InpaintParams, resolve_inpaint_params
from services.worker.profiles import ModelProfile


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
