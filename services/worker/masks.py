"""Inpainting masks: what a user's mask image means, as one boolean array.

`True` marks a pixel to regenerate. Two kinds of mask image are accepted:

- a greyscale or colour image: white (1) = regenerate, black (0) = keep, binarized at 0.5
  of its luminance (grey pixels go to the nearer side; LLMGA's and diffusers' rule);
- an image with an alpha channel that is transparent somewhere (OpenAI's edit semantics):
  regenerate where it is transparent, i.e. alpha below 0.5 (alpha 0 certainly). Its colour
  is ignored. A fully opaque RGBA mask is read by its luminance like any other.

A mask must have the image's size (a silent resize would move the edit), and must select
at least one pixel: an all-black mask asks for nothing to be generated, which is almost
certainly a mistake (an inverted or empty mask), so the job fails saying so instead of
returning the input unchanged. An all-white mask is pure generation at the image's size.
"""

from __future__ import annotations

import numpy as np
from PIL import Image

# Binarization threshold, as a fraction of full scale (DESIGN.md: binarize at 0.5).
THRESHOLD = 0.5


def has_transparency(image: Image.Image) -> bool:
    """Whether `image` has an alpha channel (or a transparent palette entry) with at least
    one pixel not fully opaque."""
    if image.mode == "P" and "transparency" in image.info:
        image = image.convert("RGBA")
    if "A" not in image.getbands():
        return False
    alpha = np.asarray(image.getchannel("A"))
    return bool((alpha < 255).any())


def binarize_mask(mask_image: Image.Image) -> np.ndarray:
    """The boolean mask (H, W) of `mask_image`: True where to regenerate (module docstring)."""
    if has_transparency(mask_image):
        alpha = np.asarray(mask_image.convert("RGBA").getchannel("A"), dtype=np.float32) / 255
        return alpha < THRESHOLD
    luminance = np.asarray(mask_image.convert("L"), dtype=np.float32) / 255
    return luminance >= THRESHOLD


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
