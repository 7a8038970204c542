"""The two editing methods side by side on the tiny model: the measurement that chose the
worker's default edit method (docs/worker.md "Editing").

For each method, on a few synthetic images (a coloured disc, the "object", on a textured
gradient), with the edit's captions changing the object:

- latency of one edit (median over the images and repeats, one torch thread as the worker);
- source reconstruction with target caption == source caption: the largest latent error
  (relative to the latent's largest value) and the mean pixel error against the input;
- how much the image changes outside the object vs inside (mean absolute pixel change,
  0-255), against the input and against the method's own reconstruction (P2P decodes the
  whole latent, so its pixels also carry the VAE's round-trip error).

Random weights make semantic quality (does the pear look like a pear?) unmeasurable here;
only faithfulness, background preservation and latency are.

    make bench-edit     # or: python -m benchmarks.edit_comparison --images 3 --repeats 2
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from diffusers.pipelines.stable_diffusion.pipeline_stable_diffusion import StableDiffusionPipeline
from PIL import Image

from services.common.contract import EditMethod, GenerationRequest, Task
from services.worker.editing.inversion import ddim_schedule
from services.worker.loading import load_models
from services.worker.pipelines.editing import (
    EditParams,
    edit_latents,
    encode_edit_captions,
    encode_image,
    resolve_edit_params,
    run_edit,
)
from services.worker.profiles import TINY_SD15_DIRNAME, get_profile
from services.worker.testing.tiny_models import build_tiny

SOURCE = "a red ball on a wooden table in a bright room"
TARGET = "a blue cube on a wooden table in a bright room"
METHODS = {"p2p": EditMethod.EDIT_METHOD_P2P, "diffedit": EditMethod.EDIT_METHOD_DIFFEDIT}


@dataclass
class Scores:
    """One method's measurements, one entry per image (latency: per run)."""

    latency_s: list[float]
    recon_latent: list[float]
    recon_pixels: list[float]
    inside: list[float]
    outside: list[float]
    outside_vs_own_recon: list[float]
    changed_outside: list[float]


def synthetic_image(size: int, seed: int) -> tuple[Image.Image, np.ndarray]:
    """A textured gradient with a coloured disc; returns the image and the disc (bool)."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:size, 0:size]
    base = np.stack([x / size, y / size, np.full_like(x, 0.5, dtype=float)], axis=-1) * 200
    base += rng.normal(0, 6, base.shape)
    cy, cx = rng.integers(size // 4, 3 * size // 4, size=2)
    disc = (y - cy) ** 2 + (x - cx) ** 2 <= (size // 6) ** 2
    base[disc] = rng.integers(0, 256, size=3)
    return Image.fromarray(np.clip(base, 0, 255).astype(np.uint8)), disc


def params_for(image: Image.Image, method: str, target: str, steps: int) -> EditParams:
    request = GenerationRequest(task=Task.TASK_EDIT, prompt=target, steps=steps, seed=1)
    request.edit.source_caption = SOURCE
    request.edit.method = METHODS[method]  # type: ignore[assignment]
    return resolve_edit_params(request, get_profile("tiny"), image)


def pixels(image: Image.Image) -> np.ndarray:
    return np.asarray(image, dtype=np.float64)


@torch.no_grad()
def latent_reconstruction_error(pipeline: StableDiffusionPipeline, params: EditParams) -> float:
    """Largest latent error of an edit whose target is its source, relative to the
    latent's largest value (both methods' clean latent before decoding)."""
    latents = encode_image(pipeline, params.image)
    captions = encode_edit_captions(pipeline, params)
    schedule = ddim_schedule(dict(pipeline.scheduler.config), params.steps)
    edited, _ = edit_latents(pipeline, schedule, latents, captions, params, lambda: None)
    return float((edited - latents).abs().max() / latents.abs().max())


def load_tiny_editing_pipeline() -> StableDiffusionPipeline:
    """The tiny profile's editing pipeline on CPU (built first if `make models` has not)."""
    models_dir = Path(os.environ.get("LLMGA_MODELS_DIR", "~/.cache/llmga/models")).expanduser()
    build_tiny(TINY_SD15_DIRNAME, models_dir)
    models = load_models(
        get_profile("tiny"), models_dir, torch.device("cpu"), torch.float32, components={"editing"}
    )
    assert models.editing is not None
    return models.editing


def measure(
    pipeline: StableDiffusionPipeline, method: str, size: int, steps: int, images: int, repeats: int
) -> Scores:
    """Edit `images` synthetic images with `method` and score the results."""
    scores = Scores([], [], [], [], [], [], [])
    run_edit(pipeline, params_for(synthetic_image(size, 0)[0], method, TARGET, steps))  # warm-up
    for seed in range(images):
        image, disc = synthetic_image(size, seed)
        edit = params_for(image, method, TARGET, steps)
        for _ in range(repeats):
            started = time.perf_counter()
            (edited,) = run_edit(pipeline, edit).images
            scores.latency_s.append(time.perf_counter() - started)

        same = params_for(image, method, SOURCE, steps)
        (reconstructed,) = run_edit(pipeline, same).images
        scores.recon_latent.append(latent_reconstruction_error(pipeline, same))
        scores.recon_pixels.append(float(np.abs(pixels(reconstructed) - pixels(image)).mean()))

        change = np.abs(pixels(edited) - pixels(image)).mean(axis=-1)
        own = np.abs(pixels(edited) - pixels(reconstructed)).mean(axis=-1)
        scores.inside.append(float(change[disc].mean()))
        scores.outside.append(float(change[~disc].mean()))
        scores.outside_vs_own_recon.append(float(own[~disc].mean()))
        scores.changed_outside.append(float((own[~disc] > 2).mean()))
    return scores


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--size", type=int, default=256, help="image side (tiny default 256)")
    parser.add_argument("--steps", type=int, default=20, help="schedule steps (tiny default 20)")
    parser.add_argument("--images", type=int, default=3, help="synthetic images")
    parser.add_argument("--repeats", type=int, default=2, help="timed edits per image")
    args = parser.parse_args()
    torch.set_num_threads(1)  # as the benchmarked worker runs; steadier on a shared machine

    print(
        f"tiny model, CPU, 1 thread, {args.size}x{args.size}, {args.steps} steps, CFG 7.5, "
        f"{args.images} images x {args.repeats} repeats"
    )
    header = (
        f"{'method':<9} {'latency s':>9} {'recon latent':>12} {'recon px':>8} "
        f"{'inside':>7} {'outside':>7} {'outside vs own recon':>20} {'outside changed':>15}"
    )
    print(header)
    pipeline = load_tiny_editing_pipeline()
    for method in METHODS:
        s = measure(pipeline, method, args.size, args.steps, args.images, args.repeats)
        print(
            f"{method:<9} {statistics.median(s.latency_s):>9.2f} "
            f"{max(s.recon_latent):>12.1e} {statistics.mean(s.recon_pixels):>8.2f} "
            f"{statistics.mean(s.inside):>7.2f} {statistics.mean(s.outside):>7.2f} "
            f"{statistics.mean(s.outside_vs_own_recon):>20.2f} "
            f"{statistics.mean(s.changed_outside):>15.1%}"
        )
    print(
        "recon latent: largest latent error / largest latent value, target == source; "
        "recon px, inside, outside: mean |pixel change| vs the input (0-255); outside vs own "
        "recon: vs the method's reconstruction; outside changed: share of outside pixels "
        "that moved more than 2 levels from that reconstruction."
    )


if __name__ == "__main__":
    main()
