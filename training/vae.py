"""Train the toy VAE: `python -m training.vae --output .toy-train/vae`.

An `AutoencoderKL` (toyworld/models.py) trained from nothing on rendered scenes with L1 +
MSE reconstruction and a small KL term; at the end its `scaling_factor` is set to 1 / the
latents' standard deviation (SD's 0.18215 was found the same way) and the model is saved
with `save_pretrained` to `<output>/vae`.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

import torch
import torch.nn.functional as F
from accelerate import Accelerator
from diffusers import AutoencoderKL

from toyworld.models import build_vae
from training.runs import Run
from training.toy_data import toy_batch

logger = logging.getLogger(__name__)
KL_WEIGHT = 1e-5


def train_vae(
    output: Path, steps: int, batch_size: int = 16, lr: float = 3e-4, seed: int = 0
) -> AutoencoderKL:
    """Train (or resume) and save the VAE to `output/vae`; returns it."""
    torch.manual_seed(seed)
    accelerator = Accelerator()
    vae = build_vae()
    optimizer = torch.optim.AdamW(vae.parameters(), lr=lr, weight_decay=0.0)  # type: ignore[attr-defined]
    vae, optimizer = accelerator.prepare(vae, optimizer)
    run = Run(output, accelerator)

    def step_fn(step: int) -> dict[str, float]:
        images = toy_batch(step, batch_size, seed).images.to(accelerator.device)
        posterior = accelerator.unwrap_model(vae).encode(images).latent_dist
        recon = accelerator.unwrap_model(vae).decode(posterior.sample()).sample
        l1 = F.l1_loss(recon, images)
        mse = F.mse_loss(recon, images)
        kl = posterior.kl().mean()
        loss = l1 + mse + KL_WEIGHT * kl
        optimizer.zero_grad(set_to_none=True)
        accelerator.backward(loss)
        optimizer.step()
        return {"loss": loss.item(), "l1": l1.item(), "kl": kl.item()}

    run.loop(steps, step_fn, checkpoint_every=100, description="vae")
    model = accelerator.unwrap_model(vae).eval()
    with torch.no_grad():
        images = toy_batch(10**9, 256, seed).images.to(accelerator.device)
        latents = model.encode(images).latent_dist.mean
    model.register_to_config(scaling_factor=float(1 / latents.std()))
    model.save_pretrained(output / "vae", safe_serialization=True)
    return model


def main(argv: list[str] | None = None) -> None:
    """Command line (see --help)."""
    parser = argparse.ArgumentParser(prog="python -m training.vae", description=__doc__)
    parser.add_argument("--output", type=Path, default=Path(".toy-train/vae"))
    parser.add_argument("--steps", type=int, default=800)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--lr", type=float, default=3e-4)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    torch.set_num_threads(args.threads)
    train_vae(args.output, args.steps, args.batch_size, args.lr)


if __name__ == "__main__":
    main()
