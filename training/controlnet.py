"""Train the toy canny ControlNet: `python -m training.controlnet --t2i
.toy-train/t2i-base/pipeline --output .toy-train/controlnet`.

A `ControlNetModel` initialised from the text-to-image UNet (zero convolutions at zero, as
ControlNet training starts); the UNet, VAE and text encoder stay frozen. The control image
is the canny edge map the worker computes (services/worker/control_images.py, default
thresholds), in [0, 1] as diffusers' ControlNet pipeline feeds it. The ControlNet's folder
`<output>/controlnet` loads in the worker as the `toy` profile's ControlNet.
"""

from __future__ import annotations

import logging
import random
from pathlib import Path

import numpy as np
import torch
from accelerate import Accelerator
from diffusers import ControlNetModel, DDPMScheduler, StableDiffusionPipeline
from PIL import Image

from services.common.image_rules import CannyThresholds
from services.worker.control_images import canny_edges
from toyworld.models import controlnet_from
from training.denoising import add_training_noise, denoising_loss
from training.runs import Run, parse_fine_tune_args
from training.text_conditioning import encode_captions
from training.toy_data import toy_batch

logger = logging.getLogger(__name__)
DEFAULT_THRESHOLDS = CannyThresholds(low=100, high=200)


def edge_maps(images: torch.Tensor) -> torch.Tensor:
    """Canny edges of images in [-1, 1] -> (B, 3, H, W) in [0, 1]."""
    pixels = ((images + 1) * 127.5).round().clamp(0, 255).byte().permute(0, 2, 3, 1).numpy()
    edges = [np.asarray(canny_edges(Image.fromarray(p), DEFAULT_THRESHOLDS)) for p in pixels]
    return torch.from_numpy(np.stack(edges)).permute(0, 3, 1, 2).float() / 255


def train_controlnet(
    t2i: Path,
    output: Path,
    steps: int,
    batch_size: int = 32,
    lr: float = 5e-4,
    seed: int = 2,
    max_minutes: float = 0.0,
) -> ControlNetModel:
    """Train (or resume) and write `<output>/controlnet`."""
    torch.manual_seed(seed)
    accelerator = Accelerator()
    base = StableDiffusionPipeline.from_pretrained(t2i, safety_checker=None, dtype=torch.float32)
    for frozen in (base.vae, base.text_encoder, base.unet):
        frozen.requires_grad_(False).eval()
    controlnet = controlnet_from(base.unet)
    schedule = DDPMScheduler.from_config(base.scheduler.config)
    optimizer = torch.optim.AdamW(controlnet.parameters(), lr=lr)  # type: ignore[attr-defined]
    controlnet, optimizer = accelerator.prepare(controlnet, optimizer)
    scaling = float(base.vae.config.scaling_factor)

    def step_fn(step: int) -> dict[str, float]:
        batch = toy_batch(step, batch_size, seed)
        rng = random.Random(step)
        # Half the captions dropped: the edges alone must carry the layout.
        captions = ["" if rng.random() < 0.5 else c for c in batch.captions]
        with torch.no_grad():
            latents = base.vae.encode(batch.images).latent_dist.sample() * scaling
            text = encode_captions(base.tokenizer, base.text_encoder, captions)
        noised = add_training_noise(latents, schedule)
        down, mid = controlnet(
            noised.noisy,
            noised.timesteps,
            encoder_hidden_states=text,
            controlnet_cond=edge_maps(batch.images),
            return_dict=False,
        )
        prediction = base.unet(
            noised.noisy,
            noised.timesteps,
            text,
            down_block_additional_residuals=down,
            mid_block_additional_residual=mid,
        ).sample
        loss = denoising_loss(prediction, noised, schedule)
        optimizer.zero_grad(set_to_none=True)
        accelerator.backward(loss)
        optimizer.step()
        return {"loss": loss.item()}

    Run(output, accelerator).loop(steps, step_fn, 100, "controlnet", max_minutes)
    final = accelerator.unwrap_model(controlnet)
    final.save_pretrained(output / "controlnet", safe_serialization=True)
    return final


def main(argv: list[str] | None = None) -> None:
    """Command line (see --help)."""
    args = parse_fine_tune_args(
        argv, "python -m training.controlnet", __doc__, ".toy-train/controlnet", 500, 5e-4
    )
    train_controlnet(
        args.t2i, args.output, args.steps, args.batch_size, args.lr, max_minutes=args.max_minutes
    )


if __name__ == "__main__":
    main()
