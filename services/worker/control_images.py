"""Control images for ControlNet jobs: the canny edge map a canny ControlNet was trained on.

The reference preprocessing (lllyasviel/ControlNet's `gradio_canny2image.py`, which the
canny ControlNets were trained with): resize the photo to the output size first, then run
OpenCV's `cv2.Canny` on the RGB pixels with hysteresis thresholds (100, 200 by default),
giving white one-pixel edges on black, repeated into three channels. An edge map the user
computed already (`preprocessed`) is only resized. The thresholds' defaults and limits are
services/common/image_rules.py's (`resolve_canny_thresholds`), shared with the gateway.
"""

from __future__ import annotations

import cv2
import numpy as np
from PIL import Image

from services.common.image_rules import CannyThresholds


def canny_edges(image: Image.Image, thresholds: CannyThresholds) -> Image.Image:
    """The canny edge map of `image` (any mode) as an RGB image of its size: 255 on edges,
    0 elsewhere, the same in every channel."""
    pixels = np.asarray(image.convert("RGB"))
    edges = cv2.Canny(pixels, thresholds.low, thresholds.high)
    return Image.fromarray(np.repeat(edges[..., None], 3, axis=2))


def control_image(
    source: Image.Image,
    size: tuple[int, int],
    preprocessed: bool,
    thresholds: CannyThresholds,
) -> Image.Image:
    """The RGB control image of PIL size `size` (the output's): `source` resized to it
    (stretched when the aspect ratios differ, as diffusers' ControlNet pipelines do), then,
    unless `preprocessed` (`source` is the edge map already), its canny edges."""
    resized = source.convert("RGB")
    if resized.size != size:
        resized = resized.resize(size, Image.Resampling.LANCZOS)
    return resized if preprocessed else canny_edges(resized, thresholds)
