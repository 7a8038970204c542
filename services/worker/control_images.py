"""Control images for ControlNet jobs: the canny edge map a canny ControlNet was trained on.

The reference preprocessing (lllyasviel/ControlNet's `gradio_canny2image.py`, which the
canny ControlNets were trained with): resize the photo to the output size first, then run
OpenCV's `cv2.Canny` on the RGB pixels with hysteresis thresholds (100, 200 by default),
giving white one-pixel edges on black, repeated into three channels. An edge map the user
computed already (`preprocessed`) is only resized.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
from PIL import Image

# The reference annotator's defaults (and diffusers' ControlNet examples').
DEFAULT_LOW_THRESHOLD = 100
DEFAULT_HIGH_THRESHOLD = 200
MAX_THRESHOLD = 255


@dataclass(frozen=True)
class CannyThresholds:
    """Canny's hysteresis thresholds on the gradient magnitude: a pixel above `high` is an
    edge; one between `low` and `high` is an edge when connected to one above `high`."""

    low: int
    high: int


def resolve_canny_thresholds(low: int, high: int) -> CannyThresholds:
    """The thresholds a request asks for, 0 meaning the default (100 low, 200 high).

    Raises ValueError unless 0 <= low < high <= 255.
    """
    low = low or DEFAULT_LOW_THRESHOLD
    high = high or DEFAULT_HIGH_THRESHOLD
    if not 0 <= low < high <= MAX_THRESHOLD:
        raise ValueError(
            f"canny thresholds must satisfy 0 <= low < high <= {MAX_THRESHOLD}, "
            f"got low {low} and high {high} (0 means the default: low "
            f"{DEFAULT_LOW_THRESHOLD}, high {DEFAULT_HIGH_THRESHOLD})"
        )
    return CannyThresholds(low, high)


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
