"""Captioned images for Beyond CLIP's smoke runs and its reproduction table: the toy
world's one-object scenes (toyworld/), a shape in the center of a plain background, each
named by its short caption with the size stated ("a small red circle in the center on a
blue background"). Few enough to enumerate and split into training and held-out captions;
every caption names what is in its image, so the diffusion loss has something to learn
from."""

from __future__ import annotations

import itertools
import json
import random
from pathlib import Path

from toyworld.captions import short_caption
from toyworld.scenes import COLOUR_NAMES, SHAPES, SIZE_NAMES, Scene, SceneObject, render


def shape_scenes() -> dict[str, Scene]:
    """Every centred one-object scene on a plain background, by its caption, in a fixed
    order (an object is never the background's colour)."""
    scenes = {}
    for size, colour, shape, background in itertools.product(
        SIZE_NAMES, COLOUR_NAMES, SHAPES, COLOUR_NAMES
    ):
        if colour != background:
            scene = Scene((SceneObject(shape, colour, size, "center"),), background, textured=False)
            scenes[short_caption(scene, with_size=True)] = scene
    return scenes


def shape_captions() -> list[str]:
    """Every caption of `shape_scenes`, in its order."""
    return list(shape_scenes())


def split_captions(captions: list[str], held_out: float, seed: int) -> tuple[list[str], list[str]]:
    """(train, held-out): a seeded shuffle, then the last `held_out` fraction held out."""
    shuffled = captions[:]
    random.Random(seed).shuffle(shuffled)
    cut = round(len(shuffled) * (1 - held_out))
    return shuffled[:cut], shuffled[cut:]


def write_dataset(captions: list[str], folder: Path, side: int) -> Path:
    """Write each caption's image and a `data.jsonl` (the stage-2 format) into `folder`."""
    scenes = shape_scenes()
    unknown = [caption for caption in captions if caption not in scenes]
    if unknown:
        raise ValueError(f"not captions of shape_captions(): {unknown[:3]}")
    folder.mkdir(parents=True, exist_ok=True)
    lines = []
    for index, caption in enumerate(captions):
        name = f"{index:05d}.png"
        render(scenes[caption], side).save(folder / name)
        lines.append(json.dumps({"image": name, "caption": caption}))
    path = folder / "data.jsonl"
    path.write_text("\n".join(lines) + "\n")
    return path
