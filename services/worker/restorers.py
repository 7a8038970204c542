"""Restorers: what corrects a generated region against the preserved pixels around it
(the `Restorer` protocol, `choose_restorer`), and the colour fallback, a non-learned
stand-in for DiffRIR's colour correction (DiffRIR's own is diffrir/restorer.py; the
restore task's pipeline is pipelines/restoring.py).

Inpainting and outpainting leave brightness and contrast seams where generated pixels meet
preserved ones (DiffRIR was trained to remove exactly this: colour x * c1 + c2 on the
generated side). Without DiffRIR weights the worker corrects the first-order part of it:
per channel, an affine map that gives the generated side of the seam the mean and standard
deviation of the preserved side, applied to every masked pixel and to no other.

Both statistics are taken over bands of `ring_px` pixels on either side of the mask's
border, not over the whole regions: a generated object may rightly be darker than the
scene around it, and only the offset *at the seam* is an artefact. When the mask has no
border (all regenerated, or nothing), there is no reference and the image is returned as is.

`Restorer` is what the pipelines call after inpainting and outpainting: DiffRIR
(services/worker/diffrir) when its weights are configured, else this colour fallback
(`COLOR_RESTORER`); `choose_restorer` applies that rule and a request's `restore` flag.
"""

from __future__ import annotations

from typing import Protocol

import numpy as np
import torch
import torch.nn.functional as F

# Width of the bands compared on either side of the seam. Wide enough for stable
# statistics on textured content, narrow enough to stay local to the seam at 256-1024 px.
RING_PX = 16
# The correction's contrast gain is clamped to this range: a flat band (std near 0, e.g.
# a clear sky) would otherwise ask for an arbitrarily large gain and blow up the noise.
MIN_GAIN, MAX_GAIN = 0.25, 4.0


def dilate(mask: np.ndarray, radius: int) -> np.ndarray:
    """`mask` grown by `radius` pixels (a square structuring element)."""
    tensor = torch.from_numpy(mask.astype(np.float32))[None, None]
    grown = F.max_pool2d(tensor, kernel_size=2 * radius + 1, stride=1, padding=radius)
    return grown[0, 0].numpy() > 0


def seam_bands(mask: np.ndarray, ring_px: int = RING_PX) -> tuple[np.ndarray, np.ndarray]:
    """(inner, outer): the masked pixels within `ring_px` of an unmasked one, and the
    unmasked pixels within `ring_px` of a masked one (the preserved ring)."""
    outer = dilate(mask, ring_px) & ~mask
    inner = dilate(~mask, ring_px) & mask
    return inner, outer


def match_colors(image: np.ndarray, mask: np.ndarray, ring_px: int = RING_PX) -> np.ndarray:
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
        gain = preserved.std() / max(generated.std(), 1e-6)
        gain = float(np.clip(gain, MIN_GAIN, MAX_GAIN))
        corrected = (values[mask] - generated.mean()) * gain + preserved.mean()
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
