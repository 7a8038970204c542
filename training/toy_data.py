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
class ToyBatch:
    """Images (B, 3, 64, 64) in [-1, 1], their scenes, and one caption per image."""

    images: torch.Tensor
    scenes: list[Scene]
    captions: list[str]


def to_model_range(images: list[Image.Image]) -> torch.Tensor:
    """RGB images -> (B, 3, H, W) floats in [-1, 1], as SD's VAE takes them."""
    pixels = np.stack([np.asarray(image.convert("RGB")) for image in images])
    return torch.from_numpy(pixels).permute(0, 3, 1, 2).float() / 127.5 - 1


def toy_batch(step: int, batch_size: int, seed: int, detailed_share: float = 0.5) -> ToyBatch:
    """Batch `step` of a run seeded `seed`. Captions are all detailed or all short within a
    batch (drawn per batch with probability `detailed_share`): a batch's prompts then
    encode to the same number of 75-token chunks, as one prompt does at inference."""
    rng = random.Random(seed * 1_000_003 + step)
    scenes = [sample_scene(rng) for _ in range(batch_size)]
    detailed = rng.random() < detailed_share
    captions = [
        detailed_caption(scene, rng).text if detailed else short_caption(scene, rng.random() < 0.3)
        for scene in scenes
    ]
    images = to_model_range([render(scene, IMAGE_SIZE) for scene in scenes])
    return ToyBatch(images=images, scenes=scenes, captions=captions)
