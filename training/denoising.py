"""The denoising objective every diffusion training command shares: noise at a uniform
timestep, the network predicts that noise, the squared error weighted by Min-SNR."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from diffusers import DDPMScheduler
from diffusers.training_utils import compute_snr

# Min-SNR-5 (Hang et al. 2023; diffusers' `--snr_gamma`): with noise prediction, the
# nearly clean timesteps have the largest errors yet carry no information about what to
# draw; capping their weight at gamma / SNR leaves the gradient to the noisy timesteps,
# where the prompt decides the picture. Without it the toy UNet learned to ignore its text.
SNR_GAMMA = 5.0


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


def denoising_loss(
    prediction: torch.Tensor,
    noised: NoisedLatents,
    schedule: DDPMScheduler,
    snr_gamma: float | None = SNR_GAMMA,
) -> torch.Tensor:
    """Mean squared error of the predicted noise, each sample weighted min(SNR, gamma) / SNR
    (plain MSE when `snr_gamma` is None)."""
    errors = (prediction.float() - noised.noise.float()).pow(2).mean(dim=(1, 2, 3))
    if snr_gamma is None:
        return errors.mean()
    snr = compute_snr(schedule, noised.timesteps)
    weights = torch.clamp(snr, max=snr_gamma) / snr
    return (errors * weights).mean()
