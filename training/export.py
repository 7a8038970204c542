"""Write the trained toy models into the repository as fp16 safetensors:
`python -m training.export` (after `make toy-train`'s training steps).

Each model goes to toyworld/weights/<folder> with `save_pretrained` in float16, where the
worker's `toy` profile installs it from (services/worker/testing/tiny_models.py). Every
file must stay within `MAX_FILE_BYTES` (committed to git: small enough to review and
clone; the toy models are a few MB in all).
"""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

import torch
from diffusers import ControlNetModel, StableDiffusionInpaintPipeline, StableDiffusionPipeline

from services.worker.profiles import (
    TOY_SD15_CONTROLNET_DIRNAME,
    TOY_SD15_DIRNAME,
    TOY_SD15_INPAINTING_DIRNAME,
)
from services.worker.testing.tiny_models import toy_weights_dir

MAX_FILE_BYTES = 5 * 1024 * 1024
HALF = torch.float16


def _save(model: object, out: Path) -> None:
    if out.exists():
        shutil.rmtree(out)
    model.to(HALF).save_pretrained(out, safe_serialization=True)  # type: ignore[attr-defined]
    too_big = [p for p in out.rglob("*") if p.is_file() and p.stat().st_size > MAX_FILE_BYTES]
    if too_big:
        raise ValueError(f"files over {MAX_FILE_BYTES} bytes: {too_big}")


def export(t2i: Path | None, inpaint: Path | None, controlnet: Path | None, out: Path) -> None:
    """Export whichever trained models are given."""
    if t2i is not None:
        _save(
            StableDiffusionPipeline.from_pretrained(t2i, safety_checker=None),
            out / TOY_SD15_DIRNAME,
        )
    if inpaint is not None:
        inpainting = StableDiffusionInpaintPipeline.from_pretrained(
            inpaint, safety_checker=None, dtype=HALF
        )
        _save(inpainting, out / TOY_SD15_INPAINTING_DIRNAME)
    if controlnet is not None:
        _save(
            ControlNetModel.from_pretrained(controlnet, dtype=HALF),
            out / TOY_SD15_CONTROLNET_DIRNAME,
        )


def main(argv: list[str] | None = None) -> None:
    """Command line: the run folders' outputs that exist are exported."""
    parser = argparse.ArgumentParser(prog="python -m training.export", description=__doc__)
    parser.add_argument("--runs", type=Path, default=Path(".toy-train"))
    parser.add_argument("--out", type=Path, default=toy_weights_dir())
    args = parser.parse_args(argv)

    def existing(path: Path) -> Path | None:
        return path if path.exists() else None

    export(
        existing(args.runs / "t2i" / "pipeline"),
        existing(args.runs / "inpaint" / "pipeline"),
        existing(args.runs / "controlnet" / "controlnet"),
        args.out,
    )


if __name__ == "__main__":
    main()
