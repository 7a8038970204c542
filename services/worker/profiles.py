"""Model profiles: everything a worker loads, named once.

A profile says where each pipeline's weights come from (a local folder under the models
directory or a Hugging Face repository at a pinned revision) and the generation defaults
and limits that go with those weights. Both kinds load through the same
`StableDiffusionPipeline.from_pretrained` (inpainting: `StableDiffusionInpaintPipeline`)
code (see `loading.py`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from services.worker.tiny_models import TINY_SD15_DIRNAME, TINY_SD15_INPAINTING_DIRNAME


@dataclass(frozen=True)
class ModelSource:
    """Where one pipeline's weights come from."""

    # A Hugging Face repository id, or for `local` sources a folder name under models_dir.
    name: str
    local: bool = False
    # Hub revision (branch, tag or commit sha). Production deployments pin a commit sha
    # (LLMGA_WORKER_MODEL_REVISION) so every recorded image can be reproduced.
    revision: str | None = None

    def path_or_id(self, models_dir: Path) -> str:
        """What `from_pretrained` is given: a local path or a hub repository id."""
        return str(models_dir / self.name) if self.local else self.name


@dataclass(frozen=True)
class ModelProfile:
    """A set of models and their generation defaults and limits."""

    name: str
    architecture: Literal["sd15"]
    text_to_image: ModelSource
    # The inpainting/outpainting pipeline (a 9-channel SD 1.5 inpainting UNet); None: the
    # profile serves neither task.
    inpainting: ModelSource | None
    width: int
    height: int
    steps: int
    guidance_scale: float
    max_side: int = 2048
    max_steps: int = 150
    max_images: int = 8
    # Inpaint/outpaint default: the whole noise schedule (the masked region starts from pure
    # noise), as diffusers' StableDiffusionInpaintPipeline for SD 1.5 inpainting.
    inpaint_strength: float = 1.0


PROFILES: dict[str, ModelProfile] = {
    # Random-weight SD 1.5-architecture models built by `python -m services.worker.tiny_models`:
    # the real code path end to end on CPU in about a second per image (docs/worker.md).
    "tiny": ModelProfile(
        name="tiny",
        architecture="sd15",
        text_to_image=ModelSource(TINY_SD15_DIRNAME, local=True),
        inpainting=ModelSource(TINY_SD15_INPAINTING_DIRNAME, local=True),
        width=256,
        height=256,
        steps=20,
        guidance_scale=7.5,
        max_side=1024,
    ),
    # LLMGA's fine-tuned SD 1.5 at the reference defaults (512², 50 steps, CFG 7.5).
    "sd15": ModelProfile(
        name="sd15",
        architecture="sd15",
        text_to_image=ModelSource("binxia/llmga-sd15-t2i-v2", revision="main"),
        inpainting=ModelSource("binxia/llmga-sd15-inpainting-v2", revision="main"),
        width=512,
        height=512,
        steps=50,
        guidance_scale=7.5,
    ),
}


def get_profile(name: str) -> ModelProfile:
    """The profile called `name`; ValueError naming the known ones otherwise."""
    try:
        return PROFILES[name]
    except KeyError:
        raise ValueError(f"unknown model profile {name!r}; known: {sorted(PROFILES)}") from None
