"""DiffEdit's mask (Couairon et al., ICLR 2023): where the source and the target caption
disagree about the noise in the image is where the edit goes.

The input latent is noised to half the schedule with several noise draws; for each, the
UNet predicts the noise under the source and under the target caption; the absolute
difference, averaged over channels and draws, is normalised to [0, 1] and thresholded.
"""

from __future__ import annotations

import torch
from diffusers.models.unets.unet_2d_condition import UNet2DConditionModel

from services.worker.editing.inversion import DdimSchedule, OnStep, predict_noise

# DiffEdit's settings (also diffusers' StableDiffusionDiffEditPipeline defaults): ten noise
# draws at half the noise schedule, threshold 0.5 of the normalised difference.
MASK_NOISE_DRAWS = 10
MASK_NOISE_LEVEL = 0.5
MASK_THRESHOLD = 0.5
# Below this largest difference (noise predictions have unit variance) the captions are
# taken to agree everywhere and the mask is empty: normalising float rounding noise to
# [0, 1] would give a mask of noise.
MIN_DIFFERENCE = 1e-4


@torch.no_grad()
def diffedit_mask(
    unet: UNet2DConditionModel,
    schedule: DdimSchedule,
    latents: torch.Tensor,
    source_embeds: torch.Tensor,
    target_embeds: torch.Tensor,
    generator: torch.Generator,
    on_step: OnStep | None = None,
) -> torch.Tensor:
    """The edit mask of clean `latents` (1, C, h, w) from source to target caption: bool
    (1, 1, h, w) at latent resolution, True = edit.

    Only conditional predictions are compared: with classifier-free guidance the
    unconditional terms cancel in the difference and the guidance scale disappears in the
    normalisation, so the mask would be the same.
    """
    point = max(1, round(MASK_NOISE_LEVEL * schedule.steps))
    alpha = schedule.alphas[point]
    embeds = torch.cat([source_embeds, target_embeds])
    difference = torch.zeros_like(latents[:, :1])
    for _ in range(MASK_NOISE_DRAWS):
        # Drawn in float32 on the CPU generator: the same noise on every device and dtype.
        noise = torch.randn(latents.shape, generator=generator).to(latents)
        noisy = alpha**0.5 * latents + (1 - alpha) ** 0.5 * noise
        source, target = predict_noise(
            unet, torch.cat([noisy, noisy]), schedule.timesteps[point - 1], embeds, None, 1.0
        ).chunk(2)
        difference += (target - source).abs().mean(dim=1, keepdim=True)
        if on_step is not None:
            on_step()
    difference /= MASK_NOISE_DRAWS
    low, high = difference.min(), difference.max()
    if high < MIN_DIFFERENCE:
        return torch.zeros_like(difference, dtype=torch.bool)
    normalised = (difference - low) / (high - low).clamp_min(MIN_DIFFERENCE)
    return normalised > MASK_THRESHOLD
