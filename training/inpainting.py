"""Train the toy inpainting UNet: `python -m training.inpainting --t2i .toy-train/t2i-base/pipeline
--output .toy-train/inpaint`.

A 9-channel UNet starts from the text-to-image one (toyworld/models.py
`inpainting_unet_from`), with the frozen VAE and text encoder of that pipeline. Each step
takes a batch of scenes and their captions, a mask per image (`training_mask`: the paper's
mix of irregular brush strokes, boxes and outpainting borders from
services/worker/diffrir/synthesis.py `random_mask`, or a box around one of the scene's
objects), and builds the UNet input exactly as diffusers'
`StableDiffusionInpaintPipeline` does at inference: noisy latents, the mask resized to the
latents, and the latents of the image with the hole zeroed. The pipeline folder
`<output>/pipeline` loads in the worker as the `toy` profile's inpainting model.
"""

from __future__ import annotations

import logging
import random
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from accelerate import Accelerator
from diffusers import DDPMScheduler, StableDiffusionInpaintPipeline, StableDiffusionPipeline
from diffusers.training_utils import EMAModel

from services.worker.diffrir.synthesis import random_mask
from toyworld.models import inpainting_unet_from
from toyworld.scenes import Scene, object_mask
from training.denoising import add_training_noise, denoising_loss
from training.runs import Run, parse_fine_tune_args
from training.text_conditioning import encode_captions
from training.toy_data import toy_batch

logger = logging.getLogger(__name__)

# Share of masks that are a box around one object, with a margin of up to MAX_OBJECT_MARGIN
# of the image side: what a user masks to have a thing redrawn. The paper's random mix
# seldom covers a whole object, and a UNet trained on it alone filled such holes with
# background (the object redrawn in 12-28 % of narrow holes, docs/toy-world.md).
OBJECT_MASK_SHARE = 0.35
MAX_OBJECT_MARGIN = 0.12


def training_mask(scene: Scene, size: int, rng: np.random.Generator) -> np.ndarray:
    """One training mask (H, W bool, True = generated): a box around one of `scene`'s
    objects in `OBJECT_MASK_SHARE` of draws, else one of the paper's mix."""
    if rng.random() < OBJECT_MASK_SHARE:
        index = int(rng.integers(len(scene.objects)))
        box = object_mask(scene, index, size, margin=rng.uniform(0, MAX_OBJECT_MARGIN))
        return np.asarray(box) >= 128
    return random_mask(size, rng)


def train_inpainting(
    t2i: Path,
    output: Path,
    steps: int,
    batch_size: int = 32,
    lr: float = 3e-4,
    seed: int = 1,
    max_minutes: float = 0.0,
) -> StableDiffusionInpaintPipeline:
    """Train (or resume) and write `<output>/pipeline`."""
    torch.manual_seed(seed)
    accelerator = Accelerator()
    base = StableDiffusionPipeline.from_pretrained(t2i, safety_checker=None, dtype=torch.float32)
    vae, text_encoder, tokenizer = base.vae, base.text_encoder, base.tokenizer
    vae.requires_grad_(False).eval()
    text_encoder.requires_grad_(False).eval()
    unet = inpainting_unet_from(base.unet)
    schedule = DDPMScheduler.from_config(base.scheduler.config)
    optimizer = torch.optim.AdamW(unet.parameters(), lr=lr, weight_decay=1e-2)  # type: ignore[attr-defined]
    ema = EMAModel(unet.parameters(), decay=0.995)  # type: ignore[attr-defined]
    unet, optimizer = accelerator.prepare(unet, optimizer)
    accelerator.register_for_checkpointing(ema)
    scaling = float(vae.config.scaling_factor)

    def step_fn(step: int) -> dict[str, float]:
        batch = toy_batch(step, batch_size, seed)
        mask_rng = np.random.default_rng(seed * 1_000_003 + step)
        masks = torch.from_numpy(
            np.stack([training_mask(s, batch.images.shape[-1], mask_rng) for s in batch.scenes])
        )[:, None].float()
        rng = random.Random(step)
        captions = ["" if rng.random() < 0.1 else c for c in batch.captions]
        with torch.no_grad():
            latents = vae.encode(batch.images).latent_dist.sample() * scaling
            masked = batch.images * (masks < 0.5)
            masked_latents = vae.encode(masked).latent_dist.sample() * scaling
            text = encode_captions(tokenizer, text_encoder, captions)
        mask_latents = F.interpolate(masks, size=latents.shape[-2:])
        noised = add_training_noise(latents, schedule)
        inputs = torch.cat([noised.noisy, mask_latents, masked_latents], dim=1)
        loss = denoising_loss(unet(inputs, noised.timesteps, text).sample, noised, schedule)
        optimizer.zero_grad(set_to_none=True)
        accelerator.backward(loss)
        accelerator.clip_grad_norm_(unet.parameters(), 1.0)
        optimizer.step()
        ema.step(accelerator.unwrap_model(unet).parameters())
        return {"loss": loss.item()}

    Run(output, accelerator).loop(steps, step_fn, 100, "inpaint", max_minutes)
    final = accelerator.unwrap_model(unet)
    ema.copy_to(final.parameters())
    pipeline = StableDiffusionInpaintPipeline(
        vae=vae,
        text_encoder=text_encoder,
        tokenizer=tokenizer,
        unet=final,
        scheduler=base.scheduler,
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )
    pipeline.save_pretrained(output / "pipeline", safe_serialization=True)  # type: ignore[attr-defined]
    return pipeline


def main(argv: list[str] | None = None) -> None:
    """Command line (see --help)."""
    args = parse_fine_tune_args(
        argv, "python -m training.inpainting", __doc__, ".toy-train/inpaint", 800, 3e-4
    )
    train_inpainting(
        args.t2i, args.output, args.steps, args.batch_size, args.lr, max_minutes=args.max_minutes
    )


if __name__ == "__main__":
    main()
