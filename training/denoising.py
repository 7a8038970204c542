"""The denoising objective every diffusion training command shares: noise at a uniform
timestep, the network predicts that noise."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from diffusers import DDPMScheduler


@dataclass(frozen=True)
class NoisedLatents:
    """Latents noised at `timesteps`, and the noise to predict."""

    noisy: torch.Tensor
    noise: torch.Tensor
    timesteps: torch.Tensor


def add_training_noise(latents: torch.Tensor, schedule: DDPMScheduler) -> NoisedLatents:
    """Noise each latent at its own uniformly drawn timestep."""
    noise = torch.randn_like(latents)
    steps = int(schedule.config.num_train_timesteps)  # type: ignore[attr-defined]
    timesteps = torch.randint(0, steps, (len(latents),), device=latents.device)
    noisy = schedule.add_noise(latents, noise, timesteps)  # type: ignore[attr-defined]
    return NoisedLatents(noisy, noise, timesteps)
