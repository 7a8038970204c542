"""Restorers: what corrects a generated region against the preserved pixels around it
(the `Restorer` protocol, `choose_restorer`), and the colour fallback, a non-learned
stand-in for DiffRIR's colour correction (DiffRIR's own is diffrir/restorer.py; the
restore task's pipeline is pipelines/restoring.py).

Inpainting and outpainting leave brightness and contrast seams where generated pixels meet
preserved ones (DiffRIR was trained to remove exactly this: colour x * c1 + c2 on the
generated side). Without DiffRIR weights the worker corrects the first-order part of it:
per channel, an affine map that moves the generated side of the seam onto the preserved
side (its median, and its spread where both sides have one), applied to every masked pixel
and to no other.

Both statistics are taken over thin bands on either side of the mask's border, not over
the whole regions: a generated object may rightly differ from the scene around it, and
only the offset *at the seam* is an artefact. The bands are 1/32 of the image's shorter
side (16 px at 512, 2 px at 64): bands as wide as the hole took a drawn object for a colour
cast and washed it into the background. The offset is taken between medians (an object's
edge reaching into the band does not move it), and a flat band (a clear sky, a plain
wall) has no contrast to match, so the gain stays 1 there. When the mask has no border
(all regenerated, or nothing), there is no reference and the image is returned as is.

`Restorer` is what the pipelines call after inpainting and outpainting: DiffRIR
(services/worker/diffrir) when its weights are configured, else this colour fallback
(`COLOR_RESTORER`); `choose_restorer` applies that rule and a request's `restore` flag.
"""

from __future__ import annotations

from typing import Protocol

import numpy as np
import torch
import torch.nn.functional as F

# Width of the bands compared on either side of the seam, as a fraction of the image's
# shorter side, and at least MIN_RING_PX: enough pixels for stable statistics, local to
# the seam at any size.
RING_FRACTION = 1 / 32
MIN_RING_PX = 2
# A band whose standard deviation is below this (levels of 255) is flat: no contrast to match.
FLAT_STD = 2.0
# The contrast gain is clamped to this range: a nearly flat generated band would otherwise
# ask for a large gain and blow up its noise.
MIN_GAIN, MAX_GAIN = 0.25, 4.0


def ring_px_for(mask: np.ndarray) -> int:
    """The bands' width for an image of `mask`'s size."""
    return max(MIN_RING_PX, round(min(mask.shape[:2]) * RING_FRACTION))


def dilate(mask: np.ndarray, radius: int) -> np.ndarray:
    """`mask` grown by `radius` pixels (a square structuring element)."""
    tensor = torch.from_numpy(mask.astype(np.float32))[None, None]
    grown = F.max_pool2d(tensor, kernel_size=2 * radius + 1, stride=1, padding=radius)
    return grown[0, 0].numpy() > 0


def seam_bands(mask: np.ndarray, ring_px: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(inner, outer): the masked pixels within `ring_px` (default: `ring_px_for`) of an
    unmasked one, and the unmasked pixels within `ring_px` of a masked one (the preserved
    ring)."""
    ring_px = ring_px or ring_px_for(mask)
    outer = dilate(mask, ring_px) & ~mask
    inner = dilate(~mask, ring_px) & mask
    return inner, outer


def match_colors(image: np.ndarray, mask: np.ndarray, ring_px: int | None = None) -> np.ndarray:
    """Correct brightness and contrast inside `mask` of `image` (H, W, 3 uint8) so its side
    of the seam matches the preserved ring per channel. Pixels outside `mask` are returned
    unchanged, bit for bit."""
    inner, outer = seam_bands(mask, ring_px)
    if not inner.any() or not outer.any():
        return image.copy()
    pixels = image.astype(np.float64)
    restored = pixels.copy()
    for channel in range(pixels.shape[2]):
        values = pixels[..., channel]
        generated, preserved = values[inner], values[outer]
        gain = 1.0
        if min(generated.std(), preserved.std()) >= FLAT_STD:
            gain = float(np.clip(preserved.std() / generated.std(), MIN_GAIN, MAX_GAIN))
        corrected = (values[mask] - np.median(generated)) * gain + np.median(preserved)
        restored[..., channel][mask] = corrected
    result = np.clip(np.rint(restored), 0, 255).astype(np.uint8)
    result[~mask] = image[~mask]  # bit for bit, whatever rounding did above
    return result


class Restorer(Protocol):
    """Restores the generated region of an image against the preserved reference."""

    # Recorded on the job as `restore_used`.
    name: str

    def restore(
        self, generated: np.ndarray, reference: np.ndarray, mask: np.ndarray, seed: int = 0
    ) -> np.ndarray:
        """`generated` (H, W, 3 uint8) restored inside `mask` (H, W bool, True = generated)
        against `reference` (H, W, 3 uint8), equal to `reference` outside the mask bit for
        bit. `seed` drives a restorer that samples (DiffRIR's prior)."""
        ...


class ColorRestorer:
    """The non-learned fallback: `match_colors` on the generated region put into the
    reference (the seam statistics need the reference's pixels outside the mask)."""

    name = "color"

    def restore(
        self, generated: np.ndarray, reference: np.ndarray, mask: np.ndarray, seed: int = 0
    ) -> np.ndarray:
        """See `Restorer.restore`; deterministic, `seed` is unused."""
        return match_colors(np.where(mask[..., None], generated, reference), mask)


COLOR_RESTORER = ColorRestorer()


def choose_restorer(
    requested: bool | None, learned: Restorer | None, color_fallback: bool
) -> Restorer | None:
    """The restorer an inpaint or outpaint job runs after generating: none when the request
    says `restore: false`; else the learned one (DiffRIR) when loaded; else the colour
    fallback when the worker has it on (`LLMGA_WORKER_COLOR_RESTORE`). Unset means on."""
    if requested is False:
        return None
    if learned is not None:
        return learned
    return COLOR_RESTORER if color_fallback else None
