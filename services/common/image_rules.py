"""Rules of image tasks that the gateway and the worker both apply, written once.

The gateway checks a request with them before it queues a job (a 4xx naming the field);
the worker applies them again when it runs the job (the job record's error), so a request
the gateway accepts is one the worker runs the same way. Pillow and the standard library
only: the gateway loads no numpy-based worker code and no ML framework
(tests/unit/test_gateway_imports.py). The worker turns the results into arrays afterwards.

- Masks (`mask_selection`): an image with an alpha channel that is transparent somewhere
  selects where alpha is below 0.5 (OpenAI's edit semantics; colour ignored); any other
  image selects where its luminance is at least 0.5 of full scale (white = regenerate,
  LLMGA's and diffusers' rule).
- Outpaint geometry (`outpaint_sides`, `resolve_extension`): pixels per side, or one ratio
  of the image's sides, rounded as Python rounds the float32 the contract carries.
- ControlNet (canny) defaults and limits (`CannyThresholds`, `check_conditioning_scale`).
- Sizes: which tasks take their output size from the input image
  (`sized_by_input_image`), and the side checks (`side_within`, `snap_up`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import NamedTuple

from PIL import Image

from services.common.contract import Outpaint, Task

# -- masks ---------------------------------------------------------------------------------

# Binarisation threshold as a fraction of full scale (DESIGN.md: binarise at 0.5).
MASK_THRESHOLD = 0.5
# The same threshold on 8-bit values: v / 255 >= 0.5  <=>  v >= 127.5.
_HALF_SCALE = MASK_THRESHOLD * 255


def has_transparency(image: Image.Image) -> bool:
    """Whether `image` has an alpha channel (or a transparent palette entry) with at least
    one pixel not fully opaque."""
    if image.mode == "P" and "transparency" in image.info:
        image = image.convert("RGBA")
    if "A" not in image.getbands():
        return False
    lowest, _ = image.getchannel("A").getextrema()
    return isinstance(lowest, (int, float)) and lowest < 255


def mask_selection(mask: Image.Image) -> Image.Image:
    """The region a mask image selects, as an "L" image: 255 = regenerate, 0 = keep (the
    module docstring's rule). A fully opaque RGBA mask is read by its luminance."""
    if has_transparency(mask):
        alpha = mask.convert("RGBA").getchannel("A")
        return alpha.point(lambda a: 255 if a < _HALF_SCALE else 0)
    return mask.convert("L").point(lambda v: 255 if v >= _HALF_SCALE else 0)


# -- outpaint geometry ---------------------------------------------------------------------

# A ratio grows each side by at most this multiple of the image's side (a 64 px image with
# ratio 4 becomes 576 px wide): beyond it the original is too small to guide anything.
MAX_OUTPAINT_RATIO = 4.0


class Extension(NamedTuple):
    """Pixels added on each side of the image."""

    left: int
    top: int
    right: int
    bottom: int

    def canvas_size(self, image_size: tuple[int, int]) -> tuple[int, int]:
        """(width, height) of the extended canvas for an image of PIL size `image_size`."""
        width, height = image_size
        return width + self.left + self.right, height + self.top + self.bottom


def outpaint_sides(outpaint: Outpaint, image_size: tuple[int, int]) -> Extension:
    """The pixels `outpaint` adds to an image of PIL size `image_size`, unchecked: with a
    ratio, left and right grow by round(ratio x width), top and bottom by
    round(ratio x height); else the pixels per side as given."""
    if outpaint.ratio:
        width, height = image_size
        dx, dy = round(outpaint.ratio * width), round(outpaint.ratio * height)
        return Extension(dx, dy, dx, dy)
    return Extension(outpaint.left, outpaint.top, outpaint.right, outpaint.bottom)


def resolve_extension(outpaint: Outpaint, image_size: tuple[int, int]) -> Extension:
    """The checked extension `outpaint` asks for (`outpaint_sides`). Raises ValueError when
    both pixels and a ratio or neither are given, the ratio is outside
    (0, MAX_OUTPAINT_RATIO], or no side grows by a whole pixel."""
    given = (outpaint.left, outpaint.top, outpaint.right, outpaint.bottom)
    if outpaint.ratio and any(given):
        raise ValueError("outpaint takes pixels per side or a ratio, not both")
    if outpaint.ratio and not 0 < outpaint.ratio <= MAX_OUTPAINT_RATIO:
        raise ValueError(
            f"outpaint ratio must be in (0, {MAX_OUTPAINT_RATIO:g}], got {outpaint.ratio}"
        )
    extension = outpaint_sides(outpaint, image_size)
    if not any(extension):
        if outpaint.ratio:
            width, height = image_size
            raise ValueError(
                f"outpaint ratio {outpaint.ratio:g} extends no side of a {width}x{height} "
                "image by a whole pixel"
            )
        raise ValueError("outpaint must extend at least one side (pixels per side or a ratio)")
    return extension


# -- ControlNet (canny) --------------------------------------------------------------------

# The reference annotator's thresholds (lllyasviel/ControlNet, diffusers' examples): a
# request's 0 means these.
DEFAULT_LOW_THRESHOLD = 100
DEFAULT_HIGH_THRESHOLD = 200
MAX_CANNY_THRESHOLD = 255
# Past 2 the residuals swamp the UNet's own features and images break up into the edges
# (UIs such as AUTOMATIC1111's ControlNet extension stop at 2 as well).
MAX_CONDITIONING_SCALE = 2.0


@dataclass(frozen=True)
class CannyThresholds:
    """Canny's hysteresis thresholds on the gradient magnitude: a pixel above `high` is an
    edge; one between `low` and `high` is an edge when connected to one above `high`."""

    low: int
    high: int

    @classmethod
    def with_defaults(cls, low: int, high: int) -> CannyThresholds:
        """The thresholds a request asks for, 0 meaning the default (100 low, 200 high)."""
        return cls(low or DEFAULT_LOW_THRESHOLD, high or DEFAULT_HIGH_THRESHOLD)

    @property
    def valid(self) -> bool:
        """0 <= low < high <= 255."""
        return 0 <= self.low < self.high <= MAX_CANNY_THRESHOLD


def resolve_canny_thresholds(low: int, high: int) -> CannyThresholds:
    """`CannyThresholds.with_defaults`, checked: raises ValueError unless
    0 <= low < high <= 255."""
    thresholds = CannyThresholds.with_defaults(low, high)
    if not thresholds.valid:
        raise ValueError(
            f"canny thresholds must satisfy 0 <= low < high <= {MAX_CANNY_THRESHOLD}, "
            f"got low {thresholds.low} and high {thresholds.high} (0 means the default: "
            f"low {DEFAULT_LOW_THRESHOLD}, high {DEFAULT_HIGH_THRESHOLD})"
        )
    return thresholds


def check_conditioning_scale(scale: float) -> float:
    """`scale` as a float; ValueError unless it is finite and within
    [0, MAX_CONDITIONING_SCALE]."""
    if not (math.isfinite(scale) and 0 <= scale <= MAX_CONDITIONING_SCALE):
        raise ValueError(
            f"conditioning_scale must be between 0 and {MAX_CONDITIONING_SCALE:g}, got {scale}"
        )
    return float(scale)


# -- sizes ---------------------------------------------------------------------------------

# Tasks whose output has the input image's size (outpaint: plus the extension), so a
# request gives no width or height.
SIZED_BY_INPUT_IMAGE = frozenset(
    {Task.TASK_INPAINT, Task.TASK_OUTPAINT, Task.TASK_EDIT, Task.TASK_RESTORE}
)
# SD's VAE: one latent pixel per 8x8 image pixels.
LATENT_SCALE = 8


def sized_by_input_image(task: int) -> bool:
    """Whether jobs of `task` take their output size from their input image."""
    return task in SIZED_BY_INPUT_IMAGE


def side_within(side: int, low: int, high: int) -> bool:
    """Whether an image side is within the limits `low`..`high` (inclusive)."""
    return low <= side <= high


def snap_up(side: int) -> int:
    """The smallest multiple of 8 (a whole latent pixel) at least `side`."""
    return -(-side // LATENT_SCALE) * LATENT_SCALE
