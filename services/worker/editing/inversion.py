"""DDIM inversion of an image latent, DDIM sampling back from it, and the two ways an edit
keeps to the inversion: Direct Inversion and a mask of what may change.

The schedule is DDIM's (deterministic, eta 0) on the profile's noise levels, whatever
scheduler the pipeline generates with: inversion has to run the very steps sampling runs
backwards. Both directions use one formula, `ddim_transfer`, so a latent moved from one
noise level to another and back with the same noise prediction comes back exactly.

The trajectory of an inversion has `steps + 1` points: point 0 is the clean latent, point
k the latent at the k-th lowest timestep. Inversion step k-1 -> k predicts the noise of
point k-1 at point k's timestep (as null-text inversion and PnP Inversion do); sampling
step k -> k-1 predicts the noise of point k at that same timestep. The two predictions
differ because their inputs do, which is why plain DDIM inversion only approximately
reconstructs the image. Direct Inversion (Ju et al., ICLR 2024, "PnP Inversion") puts the
source branch back onto the trajectory after every sampling step, so it reconstructs the
image exactly (up to float rounding).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from diffusers.models.unets.unet_2d_condition import UNet2DConditionModel
from diffusers.schedulers.scheduling_ddim import DDIMScheduler

# After a sampling step to trajectory point k: (k, latents) -> the latents to go on with.
StepFix = Callable[[int, torch.Tensor], torch.Tensor]
# Called once per model evaluation of the schedule (progress).
OnStep = Callable[[], None]


@dataclass(frozen=True)
class DdimSchedule:
    """The noise levels of a DDIM schedule as trajectory points.

    `timesteps[k - 1]` is the timestep of point k (ascending, k = 1..steps) and `alphas[k]`
    its cumulative alpha; `alphas[0]` is the clean latent's (the scheduler's final alpha).
    """

    timesteps: list[int]
    alphas: list[float]

    @property
    def steps(self) -> int:
        """Sampling (or inversion) steps of the whole schedule."""
        return len(self.timesteps)


def ddim_schedule(scheduler_config: dict[str, object], steps: int) -> DdimSchedule:
    """The DDIM schedule of `steps` steps on the noise levels in `scheduler_config` (any SD
    scheduler's configuration: betas, timestep spacing and offset are what matter)."""
    scheduler = DDIMScheduler.from_config(scheduler_config)
    scheduler.set_timesteps(steps)
    timesteps = sorted(int(t) for t in scheduler.timesteps)
    alphas = [float(scheduler.final_alpha_cumprod)]
    alphas += [float(scheduler.alphas_cumprod[t]) for t in timesteps]
    return DdimSchedule(timesteps=timesteps, alphas=alphas)


def ddim_transfer(
    latents: torch.Tensor, noise_pred: torch.Tensor, alpha_from: float, alpha_to: float
) -> torch.Tensor:
    """Move `latents` from noise level `alpha_from` to `alpha_to` along `noise_pred`
    (DDIM, eta 0): predict the clean latent, then re-noise it with the same noise."""
    clean = (latents - (1 - alpha_from) ** 0.5 * noise_pred) / alpha_from**0.5
    return alpha_to**0.5 * clean + (1 - alpha_to) ** 0.5 * noise_pred


def predict_noise(
    unet: UNet2DConditionModel,
    latents: torch.Tensor,
    timestep: int,
    prompt_embeds: torch.Tensor,
    negative_prompt_embeds: torch.Tensor | None,
    guidance_scale: float,
) -> torch.Tensor:
    """The UNet's noise prediction for a batch of latents, one text conditioning per latent;
    with `negative_prompt_embeds`, classifier-free guided (one batched UNet call, the
    unconditional half first, as diffusers batches it)."""
    t = torch.tensor(timestep, device=latents.device)
    if negative_prompt_embeds is None:
        prediction: torch.Tensor = unet(latents, t, encoder_hidden_states=prompt_embeds).sample
        return prediction
    both = unet(
        torch.cat([latents, latents]),
        t,
        encoder_hidden_states=torch.cat([negative_prompt_embeds, prompt_embeds]),
    ).sample
    unconditional, conditional = both.chunk(2)
    guided: torch.Tensor = unconditional + guidance_scale * (conditional - unconditional)
    return guided


def ddim_invert(
    unet: UNet2DConditionModel,
    schedule: DdimSchedule,
    latents: torch.Tensor,
    prompt_embeds: torch.Tensor,
    num_steps: int,
    on_step: OnStep | None = None,
) -> list[torch.Tensor]:
    """Invert clean `latents` under `prompt_embeds` without guidance (guidance 1, as
    null-text and PnP Inversion invert: guidance would amplify the inversion error) for the
    first `num_steps` steps of `schedule`. Returns the trajectory, points 0..num_steps."""
    trajectory = [latents]
    for k in range(1, num_steps + 1):
        noise_pred = predict_noise(
            unet, trajectory[-1], schedule.timesteps[k - 1], prompt_embeds, None, 1.0
        )
        trajectory.append(
            ddim_transfer(trajectory[-1], noise_pred, schedule.alphas[k - 1], schedule.alphas[k])
        )
        if on_step is not None:
            on_step()
    return trajectory


def ddim_sample(
    unet: UNet2DConditionModel,
    schedule: DdimSchedule,
    latents: torch.Tensor,
    prompt_embeds: torch.Tensor,
    negative_prompt_embeds: torch.Tensor | None,
    guidance_scale: float,
    start: int,
    fix_step: StepFix | None = None,
    before_step: Callable[[int], None] | None = None,
    on_step: OnStep | None = None,
) -> torch.Tensor:
    """Denoise `latents` (trajectory point `start`) down to point 0 with DDIM.

    `before_step(k)` runs before the model evaluation of step k -> k-1 (attention control
    reads which step it is); `fix_step(k - 1, latents)` after it (Direct Inversion, a
    mask's kept region).
    """
    for k in range(start, 0, -1):
        if before_step is not None:
            before_step(k)
        noise_pred = predict_noise(
            unet,
            latents,
            schedule.timesteps[k - 1],
            prompt_embeds,
            negative_prompt_embeds,
            guidance_scale,
        )
        latents = ddim_transfer(latents, noise_pred, schedule.alphas[k], schedule.alphas[k - 1])
        if fix_step is not None:
            latents = fix_step(k - 1, latents)
        if on_step is not None:
            on_step()
    return latents


def direct_inversion(trajectory: Sequence[torch.Tensor]) -> StepFix:
    """Direct Inversion for a batch whose first latent is the source branch: after each
    step, the offset that puts the source branch back on the inversion trajectory.

    PnP Inversion adds the offset to the source branch only. It is added to every branch
    here: a target branch that computes what the source computes (same caption, or inside
    the attention-control window where it follows the source) then stays on the trajectory
    too, so an edit that changes nothing returns the input, and the target branch gets the
    same correction of the inversion error everywhere the edit leaves alone.
    """

    def fix(point: int, latents: torch.Tensor) -> torch.Tensor:
        return latents + (trajectory[point] - latents[:1])

    return fix


def keep_outside_mask(trajectory: Sequence[torch.Tensor], mask: torch.Tensor) -> StepFix:
    """DiffEdit's regeneration: after each step, the latents outside `mask` (bool, latent
    resolution, True = edit) are the inversion's at that point, so the region outside ends
    exactly on the input's latent."""

    def fix(point: int, latents: torch.Tensor) -> torch.Tensor:
        return torch.where(mask, latents, trajectory[point])

    return fix
