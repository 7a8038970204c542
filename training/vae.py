"""Train the toy VAE: `python -m training.vae --output .toy-train/vae`.

An `AutoencoderKL` (toyworld/models.py) trained from nothing on rendered scenes with L1 +
MSE reconstruction and a small KL term; at the end its `scaling_factor` is set to 1 / the
latents' standard deviation (SD's 0.18215 was found the same way) and the model is saved
with `save_pretrained` to `<output>/vae`.

Two terms shape what the UNet will see (docs/toy-world.md measures both):

- pixels inside the objects weigh `OBJECT_WEIGHT` times more: the objects cover a few
  percent of the image, and with an unweighted loss the VAE learnt to draw backgrounds
  exactly and objects in the wrong colour (the judge read the right object colour in 62 %
  of reconstructions);
- `anchor_loss` (weight `ANCHOR_WEIGHT`) keeps three latent channels close to the image
  averaged over each latent pixel's block, so that what tells two shapes apart in pixels
  also tells them apart in latents.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

import numpy as np
import torch
from accelerate import Accelerator
from diffusers import AutoencoderKL

from toyworld.models import build_vae
from toyworld.scenes import Scene, object_mask
from training.runs import Run
from training.toy_data import toy_batch

logger = logging.getLogger(__name__)
KL_WEIGHT = 1e-5
OBJECT_WEIGHT = 10.0
ANCHOR_WEIGHT = 1.0


def pixel_weights(scenes: list[Scene], size: int) -> torch.Tensor:
    """(B, 1, size, size): 1 on the background, 1 + OBJECT_WEIGHT in the objects' boxes."""
    masks = []
    for scene in scenes:
        union = np.zeros((size, size), dtype=np.float32)
        for index in range(len(scene.objects)):
            union = np.maximum(union, np.asarray(object_mask(scene, index, size)) / 255)
        masks.append(union)
    return 1 + OBJECT_WEIGHT * torch.from_numpy(np.stack(masks))[:, None]


def anchor_loss(latents: torch.Tensor, images: torch.Tensor) -> torch.Tensor:
    """Mean squared distance between the latents' first three channels and the image
    averaged over each latent pixel's block. Unanchored, the encoder may store a detail in
    a direction the decoder amplifies: a circle's and a square's latents differed by 0.2 %
    of a medium object's latent energy (their pixels by 10 %), too little for a UNet's loss
    to notice. Anchored, 4.4 %."""
    pooled = torch.nn.functional.avg_pool2d(images, images.shape[-1] // latents.shape[-1])
    return (latents[:, :3] - pooled).pow(2).mean()


def train_vae(
    output: Path,
    steps: int,
    batch_size: int = 16,
    lr: float = 3e-4,
    seed: int = 0,
    anchor_weight: float = ANCHOR_WEIGHT,
) -> AutoencoderKL:
    """Train (or resume) and save the VAE to `output/vae`; returns it."""
    torch.manual_seed(seed)
    accelerator = Accelerator()
    vae = build_vae()
    optimizer = torch.optim.AdamW(vae.parameters(), lr=lr, weight_decay=0.0)  # type: ignore[attr-defined]
    vae, optimizer = accelerator.prepare(vae, optimizer)
    run = Run(output, accelerator)

    def step_fn(step: int) -> dict[str, float]:
        batch = toy_batch(step, batch_size, seed)
        images = batch.images.to(accelerator.device)
        weights = pixel_weights(batch.scenes, images.shape[-1]).to(accelerator.device)
        model = accelerator.unwrap_model(vae)
        posterior = model.encode(images).latent_dist
        recon = model.decode(posterior.sample()).sample
        error = recon - images
        l1 = (error.abs() * weights).mean()
        mse = (error.pow(2) * weights).mean()
        kl = posterior.kl().mean()
        anchor = anchor_loss(posterior.mean, images)
        loss = l1 + mse + KL_WEIGHT * kl + anchor_weight * anchor
        optimizer.zero_grad(set_to_none=True)
        accelerator.backward(loss)
        optimizer.step()
        return {"loss": loss.item(), "l1": l1.item(), "kl": kl.item(), "anchor": anchor.item()}

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
    parser.add_argument("--steps", type=int, default=2000)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--lr", type=float, default=3e-4)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument(
        "--anchor-weight",
        type=float,
        default=ANCHOR_WEIGHT,
        help="weight of the loss pulling three latent channels to the block-averaged image",
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    torch.set_num_threads(args.threads)
    train_vae(
        args.output,
        args.steps,
        args.batch_size,
        args.lr,
        anchor_weight=args.anchor_weight,
    )


if __name__ == "__main__":
    main()
