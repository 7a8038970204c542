"""Scenes: one to three coloured shapes at named positions on a plain or textured
background, sampled from a seed and rendered with Pillow.

Everything is a pure function of its inputs: a scene is sampled from a `random.Random`
and rendered the same way every time, so a seed names a scene and its image.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from PIL import Image, ImageDraw

SHAPES = ("circle", "square", "triangle")
COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (220, 30, 30),
    "green": (40, 170, 50),
    "blue": (30, 60, 220),
    "yellow": (245, 220, 30),
    "white": (245, 245, 245),
    "black": (15, 15, 15),
    "orange": (245, 140, 20),
    "purple": (140, 40, 180),
}
COLOUR_NAMES = tuple(COLOURS)
# An object's half-extent as a fraction of the image side. The largest fits its third of
# the image, so objects at different positions never overlap.
SIZES: dict[str, float] = {"small": 0.075, "medium": 0.115, "large": 0.155}
SIZE_NAMES = tuple(SIZES)
# Position name -> (column, row) of its cell in the 3 x 3 grid.
POSITIONS: dict[str, tuple[int, int]] = {
    "top left": (0, 0),
    "top": (1, 0),
    "top right": (2, 0),
    "left": (0, 1),
    "center": (1, 1),
    "right": (2, 1),
    "bottom left": (0, 2),
    "bottom": (1, 2),
    "bottom right": (2, 2),
}
POSITION_NAMES = tuple(POSITIONS)
MAX_OBJECTS = 3
# Rendered larger and downsampled: antialiased edges, as a photographed shape would have.
SUPERSAMPLING = 4


@dataclass(frozen=True)
class SceneObject:
    """One shape: what it is, its colour, its size and where it is."""

    shape: str
    colour: str
    size: str
    position: str


@dataclass(frozen=True)
class Scene:
    """A background and the objects on it, each at its own position."""

    objects: tuple[SceneObject, ...]
    background: str
    textured: bool

    def object_at(self, position: str) -> SceneObject | None:
        """The object at `position`, or None when that cell is empty."""
        return next((o for o in self.objects if o.position == position), None)


def sample_scene(rng: random.Random, max_objects: int = MAX_OBJECTS) -> Scene:
    """A random scene: 1..max_objects objects at distinct positions, none of the
    background's colour (it would be invisible)."""
    background = rng.choice(COLOUR_NAMES)
    count = rng.randint(1, max_objects)
    positions = rng.sample(POSITION_NAMES, count)
    object_colours = [c for c in COLOUR_NAMES if c != background]
    objects = tuple(
        SceneObject(
            shape=rng.choice(SHAPES),
            colour=rng.choice(object_colours),
            size=rng.choice(SIZE_NAMES),
            position=position,
        )
        for position in positions
    )
    return Scene(objects=objects, background=background, textured=rng.random() < 0.5)


def scene_from_seed(seed: int) -> Scene:
    """The scene that `seed` names."""
    return sample_scene(random.Random(seed))


def object_centre(position: str, side: int) -> tuple[float, float]:
    """The centre of `position`'s cell in pixels, for an image of `side` pixels."""
    column, row = POSITIONS[position]
    return ((column + 0.5) * side / 3, (row + 0.5) * side / 3)


def _texture_colour(rgb: tuple[int, int, int]) -> tuple[int, int, int]:
    """The stripes' colour: the background darkened, or lightened when it is dark."""
    if sum(rgb) < 120:
        return tuple(min(255, c + 50) for c in rgb)  # type: ignore[return-value]
    return tuple(int(c * 0.78) for c in rgb)  # type: ignore[return-value]


def _draw_object(draw: ImageDraw.ImageDraw, obj: SceneObject, side: int) -> None:
    cx, cy = object_centre(obj.position, side)
    r = SIZES[obj.size] * side
    fill = COLOURS[obj.colour]
    if obj.shape == "circle":
        draw.ellipse((cx - r, cy - r, cx + r, cy + r), fill=fill)
    elif obj.shape == "square":
        s = r * 0.9  # equal area with the circle, roughly: the sizes read the same
        draw.rectangle((cx - s, cy - s, cx + s, cy + s), fill=fill)
    else:  # an upright triangle, as tall as it is wide
        draw.polygon(((cx, cy - r), (cx + r, cy + r), (cx - r, cy + r)), fill=fill)


def _background(scene: Scene, big: int) -> Image.Image:
    """The background at the supersampled resolution: plain, or diagonal stripes."""
    rgb = COLOURS[scene.background]
    image = Image.new("RGB", (big, big), rgb)
    if scene.textured:
        draw = ImageDraw.Draw(image)
        stripe, period = big // 32, big // 8
        for offset in range(-big, big, period):
            corners = (
                (offset, 0),
                (offset + stripe, 0),
                (offset + stripe + big, big),
                (offset + big, big),
            )
            draw.polygon(corners, fill=_texture_colour(rgb))
    return image


def render_background(scene: Scene, size: int = 64) -> Image.Image:
    """The scene's background alone, as an RGB image of `size` x `size` pixels."""
    image = _background(scene, size * SUPERSAMPLING)
    return image.resize((size, size), Image.Resampling.BOX)


def render(scene: Scene, size: int = 64) -> Image.Image:
    """The scene as an RGB image of `size` x `size` pixels."""
    big = size * SUPERSAMPLING
    image = _background(scene, big)
    draw = ImageDraw.Draw(image)
    for obj in scene.objects:
        _draw_object(draw, obj, big)
    return image.resize((size, size), Image.Resampling.BOX)


def object_mask(scene: Scene, index: int, size: int = 64, margin: float = 0.0) -> Image.Image:
    """An "L" mask (255 inside) of object `index`'s cell region: its bounding box grown by
    `margin` (a fraction of the image side). The editing and inpainting protocols use it."""
    obj = scene.objects[index]
    cx, cy = object_centre(obj.position, size)
    r = (SIZES[obj.size] + margin) * size
    mask = Image.new("L", (size, size), 0)
    ImageDraw.Draw(mask).rectangle((cx - r, cy - r, cx + r, cy + r), fill=255)
    return mask


def main(argv: list[str] | None = None) -> None:
    """`python -m toyworld.scenes --out DIR --count N`: write N rendered scenes as PNGs (an
    image folder for commands that train on files, e.g. DiffRIR's)."""
    import argparse
    from pathlib import Path

    parser = argparse.ArgumentParser(prog="python -m toyworld.scenes", description=main.__doc__)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--count", type=int, default=2000)
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    rng = random.Random(args.seed)
    for index in range(args.count):
        render(sample_scene(rng), args.size).save(args.out / f"{index:05d}.png")


if __name__ == "__main__":
    main()
