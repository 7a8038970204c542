"""Batches of toy-world scenes: images, scenes and captions, drawn from a stream seeded by
the step number (a resumed run sees the same batches)."""

from __future__ import annotations

import random
from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image

from toyworld.captions import detailed_caption, short_caption
from toyworld.scenes import Scene, render, sample_scene

IMAGE_SIZE = 64


@dataclass(frozen=True)
class ToyCaptions:
    """Scenes and one caption each; `sizes_stated` says which captions name the sizes (a
    detailed caption always does, a short one sometimes) and `detailed` which kind all are."""

    scenes: list[Scene]
    captions: list[str]
    sizes_stated: list[bool]
    detailed: bool


@dataclass(frozen=True)
class ToyBatch:
    """Images (B, 3, 64, 64) in [-1, 1], their scenes, and one caption per image."""

    images: torch.Tensor
    scenes: list[Scene]
    captions: list[str]


def to_model_range(images: list[Image.Image]) -> torch.Tensor:
    """RGB images -> (B, 3, H, W) floats in [-1, 1], as SD's VAE takes them."""
    pixels = np.stack([np.asarray(image.convert("RGB")) for image in images])
    return torch.from_numpy(pixels).permute(0, 3, 1, 2).float() / 127.5 - 1


def toy_captions(step: int, batch_size: int, seed: int, detailed_share: float = 0.5) -> ToyCaptions:
    """The scenes and captions of batch `step` of a run seeded `seed`. Captions are all
    detailed or all short within a batch (drawn per batch with probability
    `detailed_share`): a batch's prompts then encode to the same number of 75-token chunks,
    as one prompt does at inference."""
    rng = random.Random(seed * 1_000_003 + step)
    scenes = [sample_scene(rng) for _ in range(batch_size)]
    detailed = rng.random() < detailed_share
    captions, sizes_stated = [], []
    for scene in scenes:
        with_size = detailed or rng.random() < 0.3
        captions.append(
            detailed_caption(scene, rng).text if detailed else short_caption(scene, with_size)
        )
        sizes_stated.append(with_size)
    return ToyCaptions(scenes, captions, sizes_stated, detailed)


def toy_batch(step: int, batch_size: int, seed: int, detailed_share: float = 0.5) -> ToyBatch:
    """Batch `step` of a run seeded `seed`: `toy_captions`' scenes rendered."""
    text = toy_captions(step, batch_size, seed, detailed_share)
    images = to_model_range([render(scene, IMAGE_SIZE) for scene in text.scenes])
    return ToyBatch(images=images, scenes=text.scenes, captions=text.captions)
