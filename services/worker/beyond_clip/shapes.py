"""Captioned synthetic images for smoke runs of the training and the tiny reproduction
table: a coloured shape on a coloured background, described in words. Every caption names
what is in its image, so the diffusion loss has something to learn from."""

from __future__ import annotations

import itertools
import json
import random
from pathlib import Path

from PIL import Image, ImageDraw

COLOURS = {
    "red": (220, 40, 40),
    "green": (40, 170, 60),
    "blue": (40, 70, 220),
    "yellow": (240, 210, 40),
    "white": (245, 245, 245),
    "black": (15, 15, 15),
    "orange": (245, 140, 30),
    "purple": (140, 60, 190),
}
SHAPES = ("circle", "square", "triangle")
SIZES = {"small": 0.25, "large": 0.45}


def shape_captions() -> list[str]:
    """Every caption the shapes world has, in a fixed order."""
    return [
        f"a {size} {colour} {shape} on a {background} background"
        for size, colour, shape, background in itertools.product(SIZES, COLOURS, SHAPES, COLOURS)
        if colour != background
    ]


def split_captions(captions: list[str], held_out: float, seed: int) -> tuple[list[str], list[str]]:
    """(train, held-out): a seeded shuffle, then the last `held_out` fraction held out."""
    shuffled = captions[:]
    random.Random(seed).shuffle(shuffled)
    cut = round(len(shuffled) * (1 - held_out))
    return shuffled[:cut], shuffled[cut:]


def draw_caption(caption: str, side: int) -> Image.Image:
    """The image a shapes caption describes (`shape_captions` format)."""
    words = caption.split()
    size, colour, shape, background = words[1], words[2], words[3], words[6]
    image = Image.new("RGB", (side, side), COLOURS[background])
    radius = SIZES[size] * side
    centre = side / 2
    box = (centre - radius, centre - radius, centre + radius, centre + radius)
    draw = ImageDraw.Draw(image)
    if shape == "circle":
        draw.ellipse(box, fill=COLOURS[colour])
    elif shape == "square":
        draw.rectangle(box, fill=COLOURS[colour])
    else:
        draw.polygon([(centre, box[1]), (box[2], box[3]), (box[0], box[3])], fill=COLOURS[colour])
    return image


def write_dataset(captions: list[str], folder: Path, side: int) -> Path:
    """Write each caption's image and a `data.jsonl` (the stage-2 format) into `folder`."""
    folder.mkdir(parents=True, exist_ok=True)
    lines = []
    for index, caption in enumerate(captions):
        name = f"{index:05d}.png"
        draw_caption(caption, side).save(folder / name)
        lines.append(json.dumps({"image": name, "caption": caption}))
    path = folder / "data.jsonl"
    path.write_text("\n".join(lines) + "\n")
    return path
