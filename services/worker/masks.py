"""Inpainting masks: what a user's mask image means, as one boolean array.

`True` marks a pixel to regenerate. Two kinds of mask image are accepted:

- a greyscale or colour image: white (1) = regenerate, black (0) = keep, binarized at 0.5
  of its luminance (grey pixels go to the nearer side; LLMGA's and diffusers' rule);
- an image with an alpha channel that is transparent somewhere (OpenAI's edit semantics):
  regenerate where it is transparent, i.e. alpha below 0.5 (alpha 0 certainly). Its colour
  is ignored. A fully opaque RGBA mask is read by its luminance like any other.

The rule itself is services/common/image_rules.py's `mask_selection`, which the gateway
applies too; here it becomes a boolean array.

A mask must have the image's size (a silent resize would move the edit), and must select
at least one pixel: an all-black mask asks for nothing to be generated, which is almost
certainly a mistake (an inverted or empty mask), so the job fails saying so instead of
returning the input unchanged. An all-white mask is pure generation at the image's size.
"""

from __future__ import annotations

import numpy as np
from PIL import Image

from services.common.image_rules import mask_selection


def binarize_mask(mask_image: Image.Image) -> np.ndarray:
    """The boolean mask (H, W) of `mask_image`: True where to regenerate (module docstring)."""
    return np.asarray(mask_selection(mask_image)) > 0


def load_mask(mask_image: Image.Image, image_size: tuple[int, int]) -> np.ndarray:
    """Check `mask_image` against the image it applies to (PIL size: width, height) and
    return its boolean mask. Raises ValueError with a message for the job record."""
    if mask_image.size != image_size:
        raise ValueError(
            f"the mask is {mask_image.width}x{mask_image.height} but the image is "
            f"{image_size[0]}x{image_size[1]}; they must be the same size"
        )
    mask = binarize_mask(mask_image)
    if not mask.any():
        raise ValueError(
            "the mask selects no pixel to regenerate (white, or transparent, marks the "
            "region to regenerate)"
        )
    return mask


def mask_to_image(mask: np.ndarray) -> Image.Image:
    """A boolean mask as the "L" image diffusers takes: 255 = regenerate, 0 = keep."""
    return Image.fromarray(np.where(mask, 255, 0).astype(np.uint8), mode="L")
