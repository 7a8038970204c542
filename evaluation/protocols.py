"""The papers' protocols in the toy world. Each takes a backend and the judge, runs its
cases (held-out scenes, fixed seeds) and returns a flat dict of numbers.

- text-to-image: adherence per attribute on short captions (and detailed ones, with
  attributes stated before / after token 75 apart) and the Fréchet distance between judge
  features of generated and rendered images;
- inpainting with narrow and wide masks around an object (and outpainting as the border
  mask the paper trains for, at the model's own size): the object redrawn in the hole,
  exactness outside, seam error;
- editing (MagicBrush's protocol): one object's colour or shape changed by source and
  target captions; the changed attribute right, L1/L2 outside the edited object;
- restoration: a region with a colour shift (what a generated region drifts by) restored
  against its reference: seam error before and after.
"""

from __future__ import annotations

import random
from dataclasses import replace

import numpy as np
from PIL import Image

from evaluation.backends import Backend, Restoring
from evaluation.metrics import (
    Tally,
    frechet_distance,
    outside_errors,
    score_scene,
    seam_error,
)
from toyworld.captions import detailed_caption, short_caption
from toyworld.judge import Judge
from toyworld.scenes import COLOUR_NAMES, SHAPES, Scene, object_mask, render, sample_scene

EVAL_SEED = 20_000_000  # held out: no training stream draws from it
SIZE = 64


def eval_scenes(count: int, seed: int = EVAL_SEED, max_objects: int = 3) -> list[Scene]:
    """`count` fixed held-out scenes."""
    rng = random.Random(seed)
    return [sample_scene(rng, max_objects) for _ in range(count)]


def text_to_image(
    backend: Backend, judge: Judge, count: int, detailed: bool = False, max_objects: int = 1
) -> dict[str, float]:
    """Adherence on `count` held-out captions (short by default) and the judge-feature
    Fréchet distance against the scenes' renderings."""
    scenes = eval_scenes(count, max_objects=max_objects)
    rng = random.Random(1)
    tally = Tally.empty()
    generated, rendered = [], []
    for index, scene in enumerate(scenes):
        caption = detailed_caption(scene, rng) if detailed else None
        prompt = caption.text if caption is not None else short_caption(scene)
        image = backend.text_to_image(prompt, seed=index).image
        generated.append(image)
        rendered.append(render(scene, SIZE))
        seen = judge.read([image])[0]
        score_scene(
            scene, seen, tally, sizes=detailed, late=caption.late if caption else frozenset()
        )
    result = {f"adherence_{k}": v for k, v in tally.rates().items()}
    result["frechet_judge"] = frechet_distance(judge.features(generated), judge.features(rendered))
    return result


def _box_mask(scene: Scene, index: int, margin: float) -> Image.Image:
    return object_mask(scene, index, SIZE, margin)


def _border_mask(width: int) -> Image.Image:
    mask = np.zeros((SIZE, SIZE), dtype=np.uint8)
    mask[:, SIZE - width :] = 255
    return Image.fromarray(mask)


def inpainting(backend: Backend, judge: Judge, count: int) -> dict[str, float]:
    """Narrow and wide masks around one object of each scene, the scene's caption as the
    prompt; and outpainting as a right border of a quarter / half the width."""
    results: dict[str, float] = {}
    scenes = eval_scenes(count, seed=EVAL_SEED + 1)
    for name, margin in (("narrow", 0.02), ("wide", 0.12)):
        tally, outside, seams = Tally.empty(), [], []
        for index, scene in enumerate(scenes):
            truth = render(scene, SIZE)
            mask = _box_mask(scene, 0, margin)
            output = backend.inpaint(truth, mask, short_caption(scene), seed=index).image
            seen = judge.read([output])[0]
            score_scene(replace(scene, objects=scene.objects[:1]), seen, tally)
            outside.append(outside_errors(output, truth, mask)["max_levels"])
            seams.append(seam_error(output, truth, mask))
        rates = tally.rates()
        results |= {f"inpaint_{name}_hole_{k}": rates[k] for k in ("shape", "colour")}
        results[f"inpaint_{name}_outside_max_levels"] = max(outside)
        results[f"inpaint_{name}_seam_l1"] = float(np.mean(seams))
    for name, width in (("narrow", SIZE // 4), ("wide", SIZE // 2)):
        background, outside, seams = [], [], []
        for index, scene in enumerate(scenes):
            truth = render(scene, SIZE)
            mask = _border_mask(width)
            output = backend.inpaint(truth, mask, short_caption(scene), seed=index).image
            background.append(judge.read([output])[0].background == scene.background)
            outside.append(outside_errors(output, truth, mask)["max_levels"])
            seams.append(seam_error(output, truth, mask))
        results[f"outpaint_{name}_background"] = float(np.mean(background))
        results[f"outpaint_{name}_outside_max_levels"] = max(outside)
        results[f"outpaint_{name}_seam_l1"] = float(np.mean(seams))
    return results


def edited(scene: Scene, rng: random.Random) -> tuple[Scene, str]:
    """The scene with its first object's colour or shape changed; which attribute."""
    obj = scene.objects[0]
    if rng.random() < 0.5:
        colours = [c for c in COLOUR_NAMES if c not in (obj.colour, scene.background)]
        new, attribute = replace(obj, colour=rng.choice(colours)), "colour"
    else:
        new, attribute = (
            replace(obj, shape=rng.choice([s for s in SHAPES if s != obj.shape])),
            "shape",
        )
    return replace(scene, objects=(new, *scene.objects[1:])), attribute


def editing(backend: Backend, judge: Judge, count: int, method: str) -> dict[str, float]:
    """Source scene -> target caption with one attribute changed: the attribute right,
    L1/L2 outside the edited object's box (MagicBrush's protocol)."""
    rng = random.Random(2)
    right, l1, l2 = [], [], []
    for index, scene in enumerate(eval_scenes(count, seed=EVAL_SEED + 2)):
        target, attribute = edited(scene, rng)
        source_image = render(scene, SIZE)
        output = backend.edit(
            source_image, short_caption(scene), short_caption(target), method, seed=index
        ).image
        seen = judge.read([output])[0].object_at(target.objects[0].position)
        right.append(
            seen is not None and getattr(seen, attribute) == getattr(target.objects[0], attribute)
        )
        errors = outside_errors(output, source_image, _box_mask(scene, 0, 0.04))
        l1.append(errors["l1"])
        l2.append(errors["l2"])
    return {
        f"edit_{method}_attribute_right": float(np.mean(right)),
        f"edit_{method}_outside_l1": float(np.mean(l1)),
        f"edit_{method}_outside_l2": float(np.mean(l2)),
    }


def colour_shifted(image: Image.Image, mask: Image.Image, rng: np.random.Generator) -> Image.Image:
    """`image` with the paper's colour degradation (x * c1 + c2) inside `mask`: what a
    generated region's colours drift by."""
    pixels = np.asarray(image).astype(np.float64) / 255
    c1 = 1 + rng.choice([-1, 1], size=3) * rng.uniform(0.06, 0.08, size=3)
    c2 = rng.uniform(-0.05, 0.05, size=3)
    inside = np.asarray(mask.convert("L"))[..., None] >= 128
    shifted = np.where(inside, np.clip(pixels * c1 + c2, 0, 1), pixels)
    return Image.fromarray((shifted * 255).round().astype(np.uint8))


def restoration(backend: Restoring, count: int) -> dict[str, float]:
    """Seam error of colour-shifted regions before (none) and after the backend's restore
    job; which restorer ran is the jobs' `restore_used`."""
    rng = np.random.default_rng(3)
    before, after, used = [], [], set()
    for index, scene in enumerate(eval_scenes(count, seed=EVAL_SEED + 3)):
        truth = render(scene, SIZE)
        mask = _box_mask(scene, 0, 0.08)
        shifted = colour_shifted(truth, mask, rng)
        result = backend.restore(shifted, truth, mask, seed=index)
        used.add(result.restore_used or "none")
        before.append(seam_error(shifted, truth, mask))
        after.append(seam_error(result.image, truth, mask))
    label = "+".join(sorted(used))
    return {
        "restore_none_seam_l1": float(np.mean(before)),
        f"restore_{label}_seam_l1": float(np.mean(after)),
    }
