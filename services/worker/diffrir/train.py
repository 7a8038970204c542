"""Train DiffRIR: `python -m services.worker.diffrir.train [--images DIR] --output PATH`.

Each step takes a batch of clean crops (from the images under `--images`, or synthetic
images when none is given), draws a random mask per crop, degrades the crops (synthesis.py:
simplified Real-ESRGAN second order, then the colour shift x * c1 + c2), and trains the
network to restore the clean crop:

    inputs = concat(degraded, (1 - mask) * clean)
    output = network(inputs, noise) * mask + (1 - mask) * clean
    loss   = L1(output, clean)

with AdamW (betas 0.9 / 0.99 as the reference's Adam) and an exponential moving average of
the weights (decay 0.999). The checkpoint is written in the released format (checkpoint.py:
`params_ema`, `params`, plus our `config`) and loads into the worker's restorer.

What differs from the reference's stage-2 training: there is no stage-1 teacher, so no
knowledge-distillation loss on the prior; the prior's 4 DDPM steps run from noise exactly as
at inference and are trained end to end through the L1 loss. `--init` starts from a released
checkpoint (fine-tuning), which is the practical use on one machine.
"""

from __future__ import annotations

import argparse
import copy
import logging
import math
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from services.worker.diffrir.checkpoint import load_network, save_checkpoint
from services.worker.diffrir.network import STRIDE, DiffRIR, DiffRIRConfig
from services.worker.diffrir.synthesis import Degradation, degrade, random_mask, synthetic_image

logger = logging.getLogger(__name__)

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".webp", ".bmp"}
# A network small enough to train a few steps on a CPU in seconds (tests, smoke runs).
TINY_CONFIG = DiffRIRConfig(
    dim=8,
    num_blocks=(1, 1, 1, 1),
    num_refinement_blocks=1,
    heads=(1, 1, 2, 2),
    n_encoder_res=1,
    prior_feats=8,
)


@dataclass(frozen=True)
class TrainOptions:
    """One training run."""

    output: Path
    images: Path | None = None  # None: synthetic images
    steps: int = 1000
    batch_size: int = 4
    crop: int = 256
    lr: float = 2e-4
    weight_decay: float = 0.0
    ema_decay: float = 0.999
    seed: int = 0
    config: DiffRIRConfig = field(default_factory=DiffRIRConfig)
    init: Path | None = None  # a checkpoint to start from (its config wins)
    degradation: Degradation = field(default_factory=Degradation)
    log_every: int = 50
    device: str = "cpu"

    def __post_init__(self) -> None:
        if self.crop < STRIDE or self.crop % STRIDE:
            raise ValueError(f"crop must be a positive multiple of {STRIDE}, got {self.crop}")
        if self.steps < 1 or self.batch_size < 1:
            raise ValueError("steps and batch_size must be at least 1")


def image_paths(folder: Path) -> list[Path]:
    """The image files under `folder` (recursively), sorted; ValueError when none."""
    paths = sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
    if not paths:
        raise ValueError(f"no images ({', '.join(sorted(IMAGE_SUFFIXES))}) under {folder}")
    return paths


def random_crop(image: Image.Image, crop: int, rng: np.random.Generator) -> np.ndarray:
    """A crop x crop RGB crop, horizontally flipped half the time; images smaller than the
    crop are scaled up first."""
    image = image.convert("RGB")
    if min(image.size) < crop:
        factor = crop / min(image.size)
        image = image.resize((math.ceil(image.width * factor), math.ceil(image.height * factor)))
    left = int(rng.integers(0, image.width - crop + 1))
    top = int(rng.integers(0, image.height - crop + 1))
    pixels = np.asarray(image.crop((left, top, left + crop, top + crop)))
    return pixels[:, ::-1] if rng.random() < 0.5 else pixels


def clean_batches(options: TrainOptions, rng: np.random.Generator) -> Iterator[torch.Tensor]:
    """Endless batches (B, 3, crop, crop) in [0, 1] of crops of the images, or synthetic."""
    paths = image_paths(options.images) if options.images is not None else []
    while True:
        crops = []
        for _ in range(options.batch_size):
            if paths:
                with Image.open(paths[int(rng.integers(len(paths)))]) as image:
                    crops.append(random_crop(image, options.crop, rng))
            else:
                crops.append(synthetic_image(options.crop, rng))
        yield torch.from_numpy(np.stack(crops)).permute(0, 3, 1, 2).float() / 255


def update_ema(ema: DiffRIR, network: DiffRIR, decay: float) -> None:
    """ema <- decay * ema + (1 - decay) * network, parameter by parameter."""
    with torch.no_grad():
        for ema_param, param in zip(ema.parameters(), network.parameters(), strict=True):
            ema_param.lerp_(param, 1 - decay)


def initial_network(options: TrainOptions) -> DiffRIR:
    """A fresh network of `options.config`, or the `--init` checkpoint's."""
    if options.init is None:
        return DiffRIR(options.config)
    network, _ = load_network(options.init)
    return network


def train(options: TrainOptions) -> list[float]:
    """Run `options.steps` steps, save the checkpoint to `options.output`, return the loss
    of every step."""
    torch.manual_seed(options.seed)
    rng = np.random.default_rng(options.seed)
    generator = torch.Generator("cpu").manual_seed(options.seed)
    device = torch.device(options.device)

    network = initial_network(options).to(device).train()
    ema = copy.deepcopy(network).eval()
    optimizer = torch.optim.AdamW(
        network.parameters(), lr=options.lr, betas=(0.9, 0.99), weight_decay=options.weight_decay
    )
    batches = clean_batches(options, rng)
    losses: list[float] = []
    started = time.perf_counter()
    for step in range(1, options.steps + 1):
        # A batch: clean crops, their masks and degraded versions.
        clean = next(batches)
        mask = torch.from_numpy(
            np.stack([random_mask(options.crop, rng) for _ in range(len(clean))])
        )[:, None].float()
        degraded = degrade(clean, options.degradation, rng, generator)
        clean, mask, degraded = clean.to(device), mask.to(device), degraded.to(device)

        # Restore, blend with the clean reference as at inference, L1 against the clean.
        inputs = torch.cat([degraded, (1 - mask) * clean], dim=1)
        noise = torch.randn((len(clean), network.config.prior_dim), generator=generator)
        restored = network(inputs, noise.to(device))
        loss = F.l1_loss(restored * mask + (1 - mask) * clean, clean)

        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        update_ema(ema, network, options.ema_decay)
        losses.append(loss.item())
        if step % options.log_every == 0 or step == options.steps:
            logger.info(
                "step %d/%d: L1 %.4f (%.2f s/step)",
                step, options.steps, losses[-1], (time.perf_counter() - started) / step,
            )  # fmt: skip

    save_checkpoint(options.output, ema.cpu(), network.cpu())
    logger.info("saved %s", options.output)
    return losses


def parse_args(argv: list[str] | None = None) -> TrainOptions:
    """Command-line options (see --help)."""
    parser = argparse.ArgumentParser(
        prog="python -m services.worker.diffrir.train", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--images", type=Path, help="folder of training images; default: synthetic")
    parser.add_argument("--output", type=Path, required=True, help="checkpoint to write (.pth)")
    parser.add_argument("--steps", type=int, default=1000)
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--crop", type=int, default=256, help=f"crop side, a multiple of {STRIDE}")
    parser.add_argument("--lr", type=float, default=2e-4)
    parser.add_argument("--weight-decay", type=float, default=0.0)
    parser.add_argument("--ema-decay", type=float, default=0.999)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--init", type=Path, help="checkpoint to start from (fine-tuning)")
    parser.add_argument("--tiny", action="store_true", help="a tiny network (smoke runs)")
    parser.add_argument(
        "--colour-only", action="store_true", help="only the colour degradation, no blur/noise/JPEG"
    )
    parser.add_argument(
        "--no-colour",
        action="store_true",
        help="no colour degradation (x * c1 + c2): the ablation of the paper's Table 4",
    )
    parser.add_argument("--log-every", type=int, default=50)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args(argv)
    return TrainOptions(
        output=args.output,
        images=args.images,
        steps=args.steps,
        batch_size=args.batch_size,
        crop=args.crop,
        lr=args.lr,
        weight_decay=args.weight_decay,
        ema_decay=args.ema_decay,
        seed=args.seed,
        config=TINY_CONFIG if args.tiny else DiffRIRConfig(),
        init=args.init,
        degradation=Degradation(
            second_order=not args.colour_only,
            gain_error=0.0 if args.no_colour else Degradation.gain_error,
            bias_error=0.0 if args.no_colour else Degradation.bias_error,
        ),
        log_every=args.log_every,
        device=args.device,
    )


def main(argv: list[str] | None = None) -> None:
    """Entry point: parse, train, log where the checkpoint went."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    train(parse_args(argv))


if __name__ == "__main__":
    main()
