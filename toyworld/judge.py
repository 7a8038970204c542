"""The judge: a small CNN that reads a toy-world image back into a scene.

For each of the nine cells it says whether a shape is there and which (circle, square,
triangle or none), and that shape's colour and size; for the image, the background's colour
and whether it is striped. Objects sit at distinct cells (scenes.py), so a fixed set of
heads covers every scene. Its 256-d penultimate features are the toy world's Inception
features for the Fréchet distance (evaluation/metrics.py).

`python -m toyworld.judge --steps 3000` trains it on freshly rendered scenes, augmented
with blur, noise and colour jitter so that it reads generated (softer) images too, reports
its accuracy on held-out scenes and writes fp16 weights.
"""

from __future__ import annotations

import argparse
import json
import logging
import random
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageFilter
from safetensors.torch import load_file, save_file
from torch import nn
from tqdm import tqdm

from toyworld.scenes import (
    COLOUR_NAMES,
    POSITION_NAMES,
    SHAPES,
    SIZE_NAMES,
    Scene,
    SceneObject,
    render,
    sample_scene,
)

logger = logging.getLogger(__name__)

IMAGE_SIZE = 64
FEATURES = 256
CELLS = len(POSITION_NAMES)
# Logits: background colour, striped, then per cell shape (none + 3), colour, size.
SHAPE_CLASSES = ("none", *SHAPES)
PER_CELL = len(SHAPE_CLASSES) + len(COLOUR_NAMES) + len(SIZE_NAMES)
OUTPUTS = len(COLOUR_NAMES) + 1 + CELLS * PER_CELL
WEIGHTS = Path(__file__).parent / "weights" / "judge.safetensors"
# Held-out scenes come from seeds no training batch draws from (training uses its own
# random.Random stream; these are fixed so every report scores the same scenes).
HELD_OUT_SEED = 10_000_000


class JudgeNet(nn.Module):
    """Four stride-2 convolutions (64 -> 4 pixels), a 256-d feature layer, linear heads."""

    def __init__(self) -> None:
        super().__init__()
        channels = (3, 32, 64, 96, 128)
        layers: list[nn.Module] = []
        for c_in, c_out in zip(channels, channels[1:], strict=False):
            layers += [
                nn.Conv2d(c_in, c_out, 3, padding=1),
                nn.BatchNorm2d(c_out),
                nn.ReLU(inplace=True),
                nn.Conv2d(c_out, c_out, 3, stride=2, padding=1),
                nn.ReLU(inplace=True),
            ]
        self.convs = nn.Sequential(*layers)
        self.features = nn.Sequential(nn.Flatten(), nn.Linear(128 * 4 * 4, FEATURES), nn.ReLU())
        self.heads = nn.Linear(FEATURES, OUTPUTS)

    def embed(self, images: torch.Tensor) -> torch.Tensor:
        """(B, 3, 64, 64) in [0, 1] -> (B, 256) features."""
        return self.features(self.convs(images * 2 - 1))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.heads(self.embed(images))


@dataclass(frozen=True)
class SplitLogits:
    """The heads' logits by name: background (B, 8), striped (B,), per cell (B, 9, k)."""

    background: torch.Tensor
    striped: torch.Tensor
    shape: torch.Tensor
    colour: torch.Tensor
    size: torch.Tensor


def split_logits(logits: torch.Tensor) -> SplitLogits:
    """Cut the flat output into its heads."""
    n_colours = len(COLOUR_NAMES)
    cells = logits[:, n_colours + 1 :].reshape(len(logits), CELLS, PER_CELL)
    n_shapes = len(SHAPE_CLASSES)
    return SplitLogits(
        background=logits[:, :n_colours],
        striped=logits[:, n_colours],
        shape=cells[..., :n_shapes],
        colour=cells[..., n_shapes : n_shapes + n_colours],
        size=cells[..., n_shapes + n_colours :],
    )


def scene_targets(
    scenes: list[Scene], sizes_known: list[bool] | None = None, texture_known: bool = True
) -> dict[str, torch.Tensor]:
    """Class indices per head for `scenes`. What the loss ignores: the colour and size of
    empty cells (-100), sizes where `sizes_known` says False (-100), and the texture when
    not `texture_known` (-1); a caption reader is not asked what its caption leaves out."""
    background = torch.tensor([COLOUR_NAMES.index(s.background) for s in scenes])
    striped = torch.tensor([float(s.textured) if texture_known else -1.0 for s in scenes])
    shape = torch.zeros(len(scenes), CELLS, dtype=torch.long)
    colour = torch.full((len(scenes), CELLS), -100, dtype=torch.long)
    size = torch.full((len(scenes), CELLS), -100, dtype=torch.long)
    for i, scene in enumerate(scenes):
        for obj in scene.objects:
            cell = POSITION_NAMES.index(obj.position)
            shape[i, cell] = SHAPE_CLASSES.index(obj.shape)
            colour[i, cell] = COLOUR_NAMES.index(obj.colour)
            if sizes_known is None or sizes_known[i]:
                size[i, cell] = SIZE_NAMES.index(obj.size)
    return {
        "background": background,
        "striped": striped,
        "shape": shape,
        "colour": colour,
        "size": size,
    }


def to_tensor(images: list[Image.Image]) -> torch.Tensor:
    """RGB images -> (B, 3, 64, 64) floats in [0, 1] (resized to 64 if needed)."""
    arrays = [
        np.asarray(
            image.convert("RGB").resize((IMAGE_SIZE, IMAGE_SIZE), Image.Resampling.BILINEAR)
            if image.size != (IMAGE_SIZE, IMAGE_SIZE)
            else image.convert("RGB")
        )
        for image in images
    ]
    return torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2).float() / 255


def augment(image: Image.Image, rng: random.Random) -> Image.Image:
    """What a generated image differs by: softer edges, noise, slightly off colours."""
    if rng.random() < 0.6:
        image = image.filter(ImageFilter.GaussianBlur(rng.uniform(0.2, 1.2)))
    pixels = np.asarray(image).astype(np.float32)
    gain = np.array([rng.uniform(0.9, 1.1) for _ in range(3)], dtype=np.float32)
    offset = np.array([rng.uniform(-12, 12) for _ in range(3)], dtype=np.float32)
    noise = np.random.default_rng(rng.randrange(2**32)).normal(0, rng.uniform(0, 8), pixels.shape)
    pixels = pixels * gain + offset + noise  # type: ignore[assignment]
    return Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))


def _mean_over_known(losses: torch.Tensor, known: torch.Tensor) -> torch.Tensor:
    """Mean of `losses` where `known` (0 when nothing is: a batch may ask no sizes)."""
    return (losses * known).sum() / known.sum().clamp(min=1)


def loss_of(logits: torch.Tensor, targets: dict[str, torch.Tensor]) -> torch.Tensor:
    """Sum of the heads' cross-entropies (binary for striped), each over its known targets."""
    heads = split_logits(logits)

    def classes(head: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        flat = target.reshape(-1)
        losses = F.cross_entropy(
            head.reshape(len(flat), -1), flat, ignore_index=-100, reduction="none"
        )
        return _mean_over_known(losses, flat != -100)

    striped = targets["striped"]
    return (
        F.cross_entropy(heads.background, targets["background"])
        + 0.3
        * _mean_over_known(
            F.binary_cross_entropy_with_logits(
                heads.striped, striped.clamp(min=0), reduction="none"
            ),
            striped >= 0,
        )
        + classes(heads.shape, targets["shape"])
        + classes(heads.colour, targets["colour"])
        + classes(heads.size, targets["size"])
    )


def decode(logits: torch.Tensor) -> list[Scene]:
    """The scenes the logits say."""
    heads = split_logits(logits)
    background = heads.background.argmax(-1)
    shape, colour, size = heads.shape.argmax(-1), heads.colour.argmax(-1), heads.size.argmax(-1)
    scenes = []
    for i in range(len(logits)):
        objects = tuple(
            SceneObject(
                shape=SHAPE_CLASSES[int(shape[i, cell])],
                colour=COLOUR_NAMES[int(colour[i, cell])],
                size=SIZE_NAMES[int(size[i, cell])],
                position=POSITION_NAMES[cell],
            )
            for cell in range(CELLS)
            if int(shape[i, cell]) != 0
        )
        scenes.append(
            Scene(
                objects=objects,
                background=COLOUR_NAMES[int(background[i])],
                textured=bool(heads.striped[i] > 0),
            )
        )
    return scenes


class Judge:
    """A trained judge: images in, scenes (and features) out."""

    def __init__(self, network: JudgeNet) -> None:
        self.network = network.eval()

    @classmethod
    def load(cls, path: Path = WEIGHTS) -> Judge:
        """The judge with the weights in `path` (fp16 safetensors, loaded as fp32)."""
        network = JudgeNet()
        state = {k: v.float() for k, v in load_file(str(path)).items()}
        network.load_state_dict(state)
        return cls(network)

    @torch.no_grad()
    def read(self, images: list[Image.Image]) -> list[Scene]:
        """What each image shows."""
        return decode(self.network(to_tensor(images)))

    @torch.no_grad()
    def features(self, images: list[Image.Image]) -> torch.Tensor:
        """(N, 256) features for the Fréchet distance."""
        return self.network.embed(to_tensor(images))


def held_out_scenes(count: int) -> list[Scene]:
    """The fixed held-out scenes the judge's accuracy is reported on."""
    rng = random.Random(HELD_OUT_SEED)
    return [sample_scene(rng) for _ in range(count)]


def accuracy(judge: Judge, scenes: list[Scene], images: list[Image.Image]) -> dict[str, float]:
    """The judge's `scene_accuracy` on `images` of `scenes`."""
    predicted: list[Scene] = []
    for start in range(0, len(images), 256):
        predicted += judge.read(images[start : start + 256])
    return scene_accuracy(scenes, predicted)


def scene_accuracy(scenes: list[Scene], predicted: list[Scene]) -> dict[str, float]:
    """Per-attribute accuracy of `predicted` against the true `scenes`: background colour,
    striped, the shape in each cell (including "none", so mostly empty cells read right),
    and the shape, colour and size of each object; `scene` counts scenes read exactly
    right."""
    attributes = ("background", "striped", "cell_shape", "shape", "colour", "size", "scene")
    totals = dict.fromkeys(attributes, 0)
    objects = 0
    for truth, guess in zip(scenes, predicted, strict=True):
        totals["background"] += truth.background == guess.background
        totals["striped"] += truth.textured == guess.textured
        for position in POSITION_NAMES:
            want, got = truth.object_at(position), guess.object_at(position)
            totals["cell_shape"] += (want and want.shape) == (got and got.shape)
            if want is not None:
                objects += 1
                totals["shape"] += got is not None and got.shape == want.shape
                totals["colour"] += got is not None and got.colour == want.colour
                totals["size"] += got is not None and got.size == want.size
        totals["scene"] += set(truth.objects) == set(guess.objects) and (
            truth.background == guess.background
        )
    n = len(scenes)
    return {
        "background": totals["background"] / n,
        "striped": totals["striped"] / n,
        "cell_shape": totals["cell_shape"] / (n * CELLS),
        "shape": totals["shape"] / objects,
        "colour": totals["colour"] / objects,
        "size": totals["size"] / objects,
        "scene": totals["scene"] / n,
    }


def train(
    steps: int,
    batch_size: int,
    output: Path,
    seed: int = 0,
    lr: float = 2e-3,
    init: Path | None = None,
) -> Judge:
    """Train on fresh scenes for `steps` steps (from the weights in `init`, if given) and
    write fp16 weights to `output`."""
    torch.manual_seed(seed)
    rng = random.Random(seed)
    network = Judge.load(init).network.train() if init is not None else JudgeNet()
    optimizer = torch.optim.AdamW(network.parameters(), lr=lr, weight_decay=1e-4)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, lr, total_steps=steps)
    network.train()
    progress = tqdm(range(steps), desc="judge", mininterval=5)
    for _ in progress:
        scenes = [sample_scene(rng) for _ in range(batch_size)]
        images = [render(s, IMAGE_SIZE) for s in scenes]
        images = [augment(im, rng) if rng.random() < 0.7 else im for im in images]
        loss = loss_of(network(to_tensor(images)), scene_targets(scenes))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        schedule.step()
        progress.set_postfix(loss=f"{loss.item():.3f}", refresh=False)
    output.parent.mkdir(parents=True, exist_ok=True)
    save_file({k: v.half().contiguous() for k, v in network.state_dict().items()}, str(output))
    return Judge.load(output)


def main(argv: list[str] | None = None) -> None:
    """Train the judge, then report its held-out accuracy (clean and augmented)."""
    parser = argparse.ArgumentParser(prog="python -m toyworld.judge", description=__doc__)
    parser.add_argument("--steps", type=int, default=3000)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--output", type=Path, default=WEIGHTS)
    parser.add_argument("--held-out", type=int, default=2000)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--lr", type=float, default=2e-3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--init", type=Path, help="continue from these weights")
    parser.add_argument("--eval-only", action="store_true", help="report on existing weights")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    torch.set_num_threads(args.threads)
    started = time.perf_counter()
    judge = (
        Judge.load(args.output)
        if args.eval_only
        else train(args.steps, args.batch_size, args.output, args.seed, args.lr, args.init)
    )
    scenes = held_out_scenes(args.held_out)
    clean = [render(s, IMAGE_SIZE) for s in scenes]
    rng = random.Random(1)
    report = {
        "held_out_scenes": len(scenes),
        "clean": accuracy(judge, scenes, clean),
        "augmented": accuracy(judge, scenes, [augment(im, rng) for im in clean]),
        "train_steps": args.steps,
        "continued_from": None if args.init is None else str(args.init),
        "seconds": round(time.perf_counter() - started, 1),
    }
    print(json.dumps(report, indent=2))
    args.output.with_suffix(".json").write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
