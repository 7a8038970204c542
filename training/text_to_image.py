"""Train a text-to-image UNet (and its text encoder) on captions encoded in 75-token chunks,
exactly as the worker encodes prompts at inference (training/text_conditioning.py).

The toy world, from nothing but the trained toy VAE and the pretrained toy text encoder
(training/text_encoder.py, the toy world's CLIP; frozen here, as SD's is):

    python -m training.text_to_image --toy --vae .toy-train/vae/vae \
        --text-encoder .toy-train/text-encoder --output .toy-train/t2i

Real SD 1.5 fine-tuning on GPUs, the same script (LLMGA's stage 2: detailed prompts, long
ones chunked), from a pipeline folder and an image folder with `metadata.jsonl`:

    accelerate launch -m training.text_to_image --pretrained PATH/TO/sd15 \
        --data PATH/TO/images --resolution 512 --batch-size 8 --lr 1e-5 --output runs/sd15

Each step: images to latents with the frozen VAE, captions (10 % dropped to "", for
classifier-free guidance) to chunked text features, noise at a uniform timestep, the UNet
predicts the noise (MSE weighted by Min-SNR, training/denoising.py). An EMA of the trained
weights is kept; the final pipeline folder (`<output>/pipeline`, `save_pretrained`) holds
the EMA weights and loads in the worker.
The run resumes from `<output>` (training/runs.py).
"""

from __future__ import annotations

import argparse
import json
import logging
import random
from dataclasses import dataclass
from pathlib import Path

import diffusers
import torch
from accelerate import Accelerator
from diffusers import (
    AutoencoderKL,
    DDPMScheduler,
    SchedulerMixin,
    StableDiffusionPipeline,
    UNet2DConditionModel,
)
from diffusers.training_utils import EMAModel
from transformers import CLIPTextModel, CLIPTokenizer

from training.denoising import SNR_GAMMA, add_training_noise, denoising_loss
from training.folder_data import FolderPairs
from training.runs import Run
from training.text_conditioning import encode_captions
from training.toy_data import toy_batch

logger = logging.getLogger(__name__)

# Trained in float32 whatever the checkpoint's dtype (the toy weights are committed in fp16).
FULL = torch.float32


@dataclass
class Components:
    """What a text-to-image pipeline is made of."""

    tokenizer: CLIPTokenizer
    text_encoder: CLIPTextModel
    vae: AutoencoderKL
    unet: UNet2DConditionModel
    scheduler: object


@dataclass(frozen=True)
class T2IOptions:
    """One run (see the command line's --help for each)."""

    output: Path
    steps: int = 2000
    batch_size: int = 32
    lr: float = 5e-4
    seed: int = 0
    toy: bool = False
    vae: Path | None = None
    text_encoder: Path | None = None
    pretrained: Path | None = None
    data: Path | None = None
    resolution: int = 64
    train_text_encoder: bool = True
    truncate: bool = False
    caption_dropout: float = 0.1
    snr_gamma: float | None = SNR_GAMMA
    detailed_share: float = 0.5
    ema_decay: float = 0.995
    warmup: int = 100
    checkpoint_every: int = 200
    max_minutes: float = 0.0


def load_components(options: T2IOptions) -> Components:
    """A fresh toy UNet around the trained toy VAE and text encoder (or a fresh text
    encoder without one), or a pretrained pipeline's components."""
    if options.toy:
        from services.worker.testing.tiny_models import sd15_scheduler
        from toyworld.models import build_text_encoder, build_unet
        from toyworld.tokenizer import build_world_tokenizer

        if options.vae is None:
            raise ValueError("--toy needs --vae (the trained toy VAE's folder)")
        if options.text_encoder is not None:
            tokenizer = CLIPTokenizer.from_pretrained(options.text_encoder / "tokenizer")
            text_encoder = CLIPTextModel.from_pretrained(
                options.text_encoder / "text_encoder", dtype=FULL
            )
        else:
            tokenizer = build_world_tokenizer(options.output / "tokenizer")
            text_encoder = build_text_encoder(tokenizer)
        return Components(
            tokenizer=tokenizer,
            text_encoder=text_encoder,
            vae=AutoencoderKL.from_pretrained(options.vae, dtype=FULL),
            unet=build_unet(),
            scheduler=sd15_scheduler(),
        )
    if options.pretrained is None:
        raise ValueError("give --toy or --pretrained")
    folder = options.pretrained
    return Components(
        tokenizer=CLIPTokenizer.from_pretrained(folder / "tokenizer"),
        text_encoder=CLIPTextModel.from_pretrained(folder / "text_encoder", dtype=FULL),
        vae=AutoencoderKL.from_pretrained(folder / "vae", dtype=FULL),
        unet=UNet2DConditionModel.from_pretrained(folder / "unet", dtype=FULL),
        scheduler=pipeline_scheduler(folder),
    )


def pipeline_scheduler(folder: Path) -> SchedulerMixin:
    """The pretrained pipeline's own sampling scheduler (PNDM for SD 1.5), saved with the
    fine-tuned pipeline; training draws its noise from a DDPM of the same configuration."""
    config = json.loads((folder / "scheduler" / "scheduler_config.json").read_text())
    scheduler_class = getattr(diffusers, config["_class_name"])
    return scheduler_class.from_pretrained(folder / "scheduler")  # type: ignore[no-any-return]


def train_text_to_image(options: T2IOptions) -> StableDiffusionPipeline:
    """Train (or resume) and write `<output>/pipeline`; returns that pipeline."""
    torch.manual_seed(options.seed)
    accelerator = Accelerator()
    parts = load_components(options)
    noise_schedule = DDPMScheduler.from_config(parts.scheduler.config)  # type: ignore[attr-defined]
    parts.vae.requires_grad_(False).eval()  # type: ignore[attr-defined]
    trained: list[torch.nn.Module] = [parts.unet]  # type: ignore[list-item]
    if options.train_text_encoder:
        trained.append(parts.text_encoder)
    else:
        parts.text_encoder.requires_grad_(False).eval()
    params = [p for module in trained for p in module.parameters()]
    optimizer = torch.optim.AdamW(params, lr=options.lr, weight_decay=1e-2)
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: min(1.0, (step + 1) / options.warmup)
    )
    emas = [EMAModel(module.parameters(), decay=options.ema_decay) for module in trained]
    unet, text_encoder, optimizer, schedule = accelerator.prepare(
        parts.unet, parts.text_encoder, optimizer, schedule
    )
    vae = parts.vae.to(accelerator.device)  # type: ignore[attr-defined]
    for ema in emas:
        ema.to(accelerator.device)
        accelerator.register_for_checkpointing(ema)
    folder_pairs = FolderPairs.read(options.data) if options.data is not None else None
    scaling = float(vae.config.scaling_factor)

    def step_fn(step: int) -> dict[str, float]:
        # Inputs: images and captions of this step's batch.
        if folder_pairs is not None:
            images, captions = folder_pairs.batch(
                step, options.batch_size, options.seed, options.resolution
            )
        else:
            batch = toy_batch(step, options.batch_size, options.seed, options.detailed_share)
            images, captions = batch.images, batch.captions
        rng = random.Random(step)
        captions = ["" if rng.random() < options.caption_dropout else c for c in captions]
        # Latents and text features.
        with torch.no_grad():
            latents = vae.encode(images.to(accelerator.device)).latent_dist.sample() * scaling  # type: ignore[attr-defined]
        with torch.set_grad_enabled(options.train_text_encoder):
            text = encode_captions(
                parts.tokenizer,
                accelerator.unwrap_model(text_encoder),
                captions,
                truncate=options.truncate,
            )
        # Noise at a uniform timestep; the UNet predicts it.
        noised = add_training_noise(latents, noise_schedule)
        prediction = unet(noised.noisy, noised.timesteps, text).sample
        loss = denoising_loss(prediction, noised, noise_schedule, options.snr_gamma)
        optimizer.zero_grad(set_to_none=True)
        accelerator.backward(loss)
        accelerator.clip_grad_norm_(params, 1.0)
        optimizer.step()
        schedule.step()
        for ema, module in zip(emas, trained, strict=True):
            ema.step(accelerator.unwrap_model(module).parameters())
        return {"loss": loss.item()}

    Run(options.output, accelerator).loop(
        options.steps, step_fn, options.checkpoint_every, "t2i", options.max_minutes
    )
    # The pipeline with the EMA weights.
    for ema, module in zip(emas, trained, strict=True):
        ema.copy_to(accelerator.unwrap_model(module).parameters())
    pipeline = StableDiffusionPipeline(
        vae=vae,
        text_encoder=accelerator.unwrap_model(text_encoder),
        tokenizer=parts.tokenizer,
        unet=accelerator.unwrap_model(unet),
        scheduler=parts.scheduler,
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )
    if accelerator.is_main_process:
        pipeline.save_pretrained(options.output / "pipeline", safe_serialization=True)  # type: ignore[attr-defined]
    return pipeline


def parse_args(argv: list[str] | None = None) -> T2IOptions:
    """Command-line options."""
    parser = argparse.ArgumentParser(prog="python -m training.text_to_image", description=__doc__)
    parser.add_argument("--output", type=Path, required=True, help="run folder (resumed if there)")
    parser.add_argument("--toy", action="store_true", help="toy models from nothing")
    parser.add_argument("--vae", type=Path, help="with --toy: the trained toy VAE folder")
    parser.add_argument(
        "--text-encoder",
        type=Path,
        help="with --toy: the pretrained toy text encoder's run folder (frozen)",
    )
    parser.add_argument("--pretrained", type=Path, help="an SD 1.5 pipeline folder to fine-tune")
    parser.add_argument("--data", type=Path, help="image folder with metadata.jsonl (default: toy)")
    parser.add_argument("--resolution", type=int, default=64)
    parser.add_argument("--steps", type=int, default=2000)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--lr", type=float, default=5e-4)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--freeze-text-encoder", action="store_true", help="train the UNet only (default for SD)"
    )
    parser.add_argument(
        "--truncate", action="store_true", help="ablation: 77-token truncation, no chunks"
    )
    parser.add_argument("--detailed-share", type=float, default=0.5)
    parser.add_argument(
        "--snr-gamma",
        type=float,
        default=SNR_GAMMA,
        help="Min-SNR weighting's gamma (0: plain MSE)",
    )
    parser.add_argument("--checkpoint-every", type=int, default=200)
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: default)")
    parser.add_argument(
        "--max-minutes", type=float, default=0.0, help="stop (resumable) after this long"
    )
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    return T2IOptions(
        output=args.output,
        steps=args.steps,
        batch_size=args.batch_size,
        lr=args.lr,
        seed=args.seed,
        toy=args.toy,
        vae=args.vae,
        text_encoder=args.text_encoder,
        pretrained=args.pretrained,
        data=args.data,
        resolution=args.resolution,
        train_text_encoder=args.toy and args.text_encoder is None and not args.freeze_text_encoder,
        truncate=args.truncate,
        detailed_share=args.detailed_share,
        snr_gamma=args.snr_gamma or None,
        checkpoint_every=args.checkpoint_every,
        max_minutes=args.max_minutes,
    )


def main(argv: list[str] | None = None) -> None:
    """Entry point."""
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    train_text_to_image(parse_args(argv))


if __name__ == "__main__":
    main()
